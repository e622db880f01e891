import pytest

from dato_dist.config import Config
from dato_dist.errors import ConfigError


def test_shipped_defaults():
    cfg = Config.load(environ={})
    assert cfg["local.num_workers"] == 0
    assert cfg["runner.heartbeat_interval"] == 1.0
    assert cfg.source("local.num_workers").endswith("defaults.toml")


def test_precedence_file_env_arguments(tmp_path, monkeypatch):
    user = tmp_path / "config.toml"
    user.write_text("[local]\nnum_workers = 3\n[job]\nmax_retries = 1\n")
    monkeypatch.setenv("DATO_DIST_CONFIG", str(user))
    cfg = Config.load(environ={"DATO_DIST_CONFIG": str(user)})
    assert cfg["local.num_workers"] == 3 and cfg.source("local.num_workers") == str(user)
    env = {"DATO_DIST_CONFIG": str(user), "DATO_DIST_LOCAL_NUM_WORKERS": "5"}
    cfg = Config.load(environ=env)
    assert cfg["local.num_workers"] == 5 and cfg.source("local.num_workers") == "the environment"
    assert cfg["job.max_retries"] == 1
    cfg = Config.load(overrides={"local.num_workers": 7}, environ=env)
    assert cfg["local.num_workers"] == 7 and cfg.source("local.num_workers") == "arguments"


def test_home_alias_and_store_uri(tmp_path):
    cfg = Config.load(environ={"DATO_DIST_HOME": str(tmp_path)})
    assert cfg.home == tmp_path
    assert cfg.store_uri == str(tmp_path / "jobs")
    cfg = Config.load(environ={"DATO_DIST_HOME": str(tmp_path),
                               "DATO_DIST_STORE_URI": "s3://bucket/jobs"})
    assert cfg.store_uri == "s3://bucket/jobs"


def test_bad_values_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="local.num_workers.*int"):
        Config.load(environ={"DATO_DIST_LOCAL_NUM_WORKERS": "many"})
    user = tmp_path / "c.toml"
    user.write_text("[local]\nnum_wrokers = 3\n")
    with pytest.raises(ConfigError, match="Unknown config key 'local.num_wrokers'"):
        Config.load(environ={"DATO_DIST_CONFIG": str(user)})
    user.write_text("[local\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.load(environ={"DATO_DIST_CONFIG": str(user)})
