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


@pytest.mark.parametrize("key, env_name, value, expected", [
    ("store.write_retries", "DATO_DIST_STORE_WRITE_RETRIES", "-1", ">= 0"),
    ("local.num_workers", "DATO_DIST_LOCAL_NUM_WORKERS", "-1", ">= 0"),
    ("runner.heartbeat_timeout", "DATO_DIST_RUNNER_HEARTBEAT_TIMEOUT", "0", "> 0"),
    ("local.launcher_idle_timeout", "DATO_DIST_LOCAL_LAUNCHER_IDLE_TIMEOUT", "-1", "> 0"),
    ("driver.heartbeat_timeout", "DATO_DIST_DRIVER_HEARTBEAT_TIMEOUT", "nan", "finite"),
    ("runner.max_batch_size", "DATO_DIST_RUNNER_MAX_BATCH_SIZE", "0", ">= 1"),
    ("local.start_method", "DATO_DIST_LOCAL_START_METHOD", "fork", "'launcher', 'spawn'"),
])
def test_out_of_range_values_name_the_key_and_the_variable(key, env_name, value, expected):
    with pytest.raises(ConfigError) as e:
        Config.load(environ={env_name: value})
    message = str(e.value)
    assert f"'{key}'" in message and f"environment variable {env_name}" in message
    assert expected in message and "got " in message


def test_out_of_range_values_from_a_file_and_keywords(tmp_path):
    user = tmp_path / "c.toml"
    user.write_text("[store]\nwrite_retries = -1\n")
    with pytest.raises(ConfigError, match=rf"'store.write_retries' from the file {user} "
                                          r"must be a finite number >= 0, got -1"):
        Config.load(environ={"DATO_DIST_CONFIG": str(user)})
    with pytest.raises(ConfigError, match=r"'runner.heartbeat_timeout' from the keyword "
                                          r"argument.*> 0, got 0.0"):
        Config.load(overrides={"runner.heartbeat_timeout": 0}, environ={})


def test_a_timeout_shorter_than_its_interval_is_refused():
    with pytest.raises(ConfigError, match=r"'runner.heartbeat_timeout' \(1.5, from the "
                                          r"environment variable .*at least 2 x "
                                          r"'runner.heartbeat_interval'"):
        Config.load(environ={"DATO_DIST_RUNNER_HEARTBEAT_TIMEOUT": "1.5"})
    with pytest.raises(ConfigError, match="driver.heartbeat_interval"):
        Config.load(overrides={"driver.heartbeat_interval": 30.0}, environ={})
    ok = Config.load(environ={"DATO_DIST_DRIVER_HEARTBEAT_INTERVAL": "1",
                              "DATO_DIST_DRIVER_HEARTBEAT_TIMEOUT": "3"})
    assert ok["driver.heartbeat_timeout"] == 3.0


def test_every_shipped_key_with_a_range_has_a_check():
    cfg = Config.load(environ={})
    from dato_dist.config import CHECKS

    numeric = {k for k, v in cfg.to_dict().items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert numeric <= set(CHECKS), numeric - set(CHECKS)


def test_a_bad_value_stops_create_before_anything_is_written(env2, monkeypatch):
    import dato_dist as gl
    from tests import tasks

    before = set(gl.deploy.jobs.names())
    monkeypatch.setenv("DATO_DIST_STORE_WRITE_RETRIES", "-1")
    with pytest.raises(ConfigError, match="DATO_DIST_STORE_WRITE_RETRIES"):
        gl.deploy.job.create(tasks.add, environment=env2, x=1, y=2)
    monkeypatch.delenv("DATO_DIST_STORE_WRITE_RETRIES")
    assert set(gl.deploy.jobs.names()) == before


def test_backend_keys_are_range_checked(monkeypatch):
    from dato_dist.config import load
    from dato_dist.errors import ConfigError

    for key, bad in (("EC2_SSH_PORT", "70000"), ("EC2_IDLE_ACTION", "reboot"),
                     ("HADOOP_NUM_CONTAINERS", "0"), ("HADOOP_START_PORT", "0")):
        monkeypatch.setenv(f"DATO_DIST_{key}", bad)
        with pytest.raises(ConfigError, match=f"DATO_DIST_{key}"):
            load()
        monkeypatch.delenv(f"DATO_DIST_{key}")
