"""YARN errors at one choke point, and the [hadoop] config defaults (no cluster needed)."""

import pytest


def test_skein_errors_become_yarn_errors_naming_the_logs():
    skein = pytest.importorskip("skein")
    from dato_dist.errors import BackendError, InvalidArgument, YarnError
    from dato_dist.yarn_app.cluster import _yarn

    with pytest.raises(YarnError) as e:
        with _yarn("Asking YARN for the state of application_1_0001", "application_1_0001"):
            raise skein.exceptions.ConnectionError("Unable to connect to driver")
    assert isinstance(e.value, BackendError) and not isinstance(e.value, InvalidArgument)
    assert e.value.exit_code == 7 and e.value.app_id == "application_1_0001"
    assert str(e.value) == ("Asking YARN for the state of application_1_0001: Unable to "
                            "connect to driver. Logs: yarn logs -applicationId "
                            "application_1_0001")
    # skein's wrapped builtins (KeyError, ValueError of a gRPC answer) too
    with pytest.raises(YarnError, match=r"^Submitting: bad spec\. Check the queue\.$"):
        with _yarn("Submitting", hint="Check the queue."):
            raise ValueError("bad spec.")
    # an application YARN names in its answer is the one whose logs to read
    with pytest.raises(YarnError) as e:
        with _yarn("Submitting"):
            raise skein.exceptions.DriverError(
                "Failed to submit application_17_0018 to YARN: unknown queue: q")
    assert e.value.app_id == "application_17_0018"
    assert str(e.value).endswith("Logs: yarn logs -applicationId application_17_0018")
    # our own errors pass through unchanged
    with pytest.raises(InvalidArgument):
        with _yarn("Checking"):
            raise InvalidArgument("num_containers must be positive")


def test_yarn_error_message_gets_the_logs_command_once():
    from dato_dist.errors import YarnError

    e = YarnError("ended. See: yarn logs -applicationId application_9_0001",
                  app_id="application_9_0001")
    assert str(e).count("yarn logs -applicationId") == 1
    assert str(YarnError("no client")) == "no client"


def test_dist_folder_defaults_come_from_the_config(monkeypatch, tmp_path):
    from dato_dist.yarn_app import dist

    assert dist.defaults() == {"num_containers": 3, "container_size": 4096, "num_vcores": 2,
                               "start_port": 9100, "end_port": 9200}
    monkeypatch.setenv("DATO_DIST_HADOOP_NUM_CONTAINERS", "5")
    monkeypatch.setenv("DATO_DIST_HADOOP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DATO_DIST_CACHE", raising=False)
    assert dist.defaults()["num_containers"] == 5
    assert dist.default_cache_dir() == tmp_path / "cache"
    monkeypatch.setenv("DATO_DIST_CACHE", str(tmp_path / "env-cache"))
    assert dist.default_cache_dir() == tmp_path / "env-cache"
