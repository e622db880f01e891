"""What is specific to the Hadoop backend, on a real YARN and HDFS (the MiniCluster): the
cluster object, the dist folder, YARN's view of our applications (tags, ports, resources,
KILLED), ``yarn logs``. What every environment must do with a job is the contract suite
(tests/contract); the session's ``dist_path`` is in tests/conftest.py."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import dato_dist as gl
from tests import tasks
from tests.conftest import HADOOP_WORKER_MB as WORKER_MB
from tests.conftest import wait_for
from tests.wheels import make_wheel
from tests.yarn.test_minicluster import _field, _running_nodes

pytestmark = [pytest.mark.yarn, pytest.mark.hdfs, pytest.mark.slow]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRIVER_MB = 512


@pytest.fixture
def hadoop(dist_path, minicluster):
    return gl.deploy.hadoop_cluster.create("hadoop-test", dist_path,
                                           hadoop_conf_dir=minicluster.conf_dir)


def app_state(cluster, app_id):
    out = cluster.yarn("application", "-status", app_id).stdout
    return _field(out, "State"), _field(out, "Final-State")


def test_print_defaults_and_lookup_by_name(hadoop, dist_path, minicluster):
    assert str(hadoop) == textwrap.dedent(f"""\
        Hadoop Cluster:
        \tName:                    : hadoop-test
        \tCluster path             : {dist_path}
        \tHadoop conf dir          : {minicluster.conf_dir}

        \tNumber of Containers:    : 2
        \tContainer Size (in mb)   : 256
        \tContainer num of vcores  : 1
        \tPort range               : 9100 - 9200

        \tAdditional packages      : []""")
    again = gl.deploy.environments["hadoop-test"]
    assert again.dato_dist_path == dist_path and again.num_containers == 2
    other = gl.deploy.hadoop_cluster.create("hadoop-alias", turi_dist_path=dist_path,
                                            num_containers=3)
    assert other.num_containers == 3 and other.container_size == 256


def test_bad_values_are_errors_at_create(dist_path, minicluster, tmp_path):
    create = gl.deploy.hadoop_cluster.create
    with pytest.raises(ValueError, match="does not exist"):
        create("bad", dist_path, hadoop_conf_dir=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="No dato-dist folder at"):
        create("bad", f"{minicluster.hdfs_uri}/no/such/folder",
               hadoop_conf_dir=minicluster.conf_dir)
    with pytest.raises(ValueError, match="above the cluster's maximum allocation"):
        create("bad", dist_path, hadoop_conf_dir=minicluster.conf_dir, container_size=10 ** 6)
    with pytest.raises(ValueError, match="inverted"):
        create("bad", dist_path, hadoop_conf_dir=minicluster.conf_dir, start_port=9200,
               end_port=9100)


def test_yarn_sees_our_application_and_its_logs(hadoop, minicluster, yarn_apps):
    """Tags and name in ``yarn application -list``, the driver's port in the range, the
    application SUCCEEDED, and ``dato-dist job logs`` giving YARN's aggregated logs."""
    job = gl.deploy.map_job.create(tasks.add, [{"x": 20, "y": 20}, {"x": None, "y": 10},
                                               {"x": 5, "y": 5}], environment=hadoop)
    yarn_apps.append(job.app_id)
    assert job.get_map_results() == [40, None, 10]
    listed = minicluster.yarn("application", "-list", "-appStates", "ALL",
                              "-appTags", "dato-dist").stdout
    line = [l for l in listed.splitlines() if job.app_id in l][0]
    assert f"dato-dist:{job.name}" in line and "skein" in line
    assert 9100 <= job._files.read_state()["address"][1] <= 9200  # the driver's port
    wait_for(lambda: app_state(minicluster, job.app_id) == ("FINISHED", "SUCCEEDED"), 60,
             what="the application to finish")
    text = str(job)
    assert f"Application Id     : {job.app_id}" in text
    assert f"Command to view yarn logs: yarn logs -applicationId {job.app_id}" in text

    def aggregated_logs():  # YARN aggregates a few seconds after the application ends
        out = subprocess.run([sys.executable, "-m", "dato_dist.cli", "job", "logs", job.name],
                             capture_output=True, text=True, timeout=180, cwd=REPO).stdout
        return f"==> yarn logs -applicationId {job.app_id} <==" in out and out

    logs = wait_for(aggregated_logs, 90, 2, what="`dato-dist job logs` via yarn logs")
    assert "[dato-dist] task add-0-1 started" in logs and "LogType:worker.log" in logs


def test_failed_job_is_a_failed_application(hadoop, minicluster, yarn_apps):
    """GraphLab's rule on YARN: a plain job whose function raises is Failed, and so is
    its application (FAILED final state)."""
    job = gl.deploy.job.create(tasks.add, environment=hadoop, x=None, y=1)
    yarn_apps.append(job.app_id)
    assert job.wait(timeout=240) == "Failed"
    wait_for(lambda: app_state(minicluster, job.app_id) == ("FINISHED", "FAILED"), 60,
             what="the application to end FAILED")


def test_runner_settings_reach_yarn_runners_in_setup(hadoop, yarn_apps, monkeypatch):
    """Runner settings travel from the job's spec in SETUP (no flags on the containers'
    command lines): non-default values, result_flush_interval included, reach the workers."""
    monkeypatch.setenv("DATO_DIST_RUNNER_RESULT_FLUSH_INTERVAL", "7.5")
    monkeypatch.setenv("DATO_DIST_RUNNER_HEARTBEAT_INTERVAL", "0.3")
    job = gl.deploy.map_job.create(tasks.add, [{"x": i, "y": 1} for i in range(3)],
                                   environment=hadoop)
    yarn_apps.append(job.app_id)
    assert job.get_map_results() == [1, 2, 3]
    setup = "set up: max_retries=0, heartbeat_interval=0.3, result_flush_interval=7.5"

    def worker_logs():  # copied to HDFS by each container as it ends
        logs = job.read_logs()
        return [t for n, t in logs.items() if n.startswith("worker-") and setup in t]

    wait_for(worker_logs, 60, 1, what="the workers' SETUP lines in their logs on HDFS")


def test_resources_and_cancel_kills_the_application(hadoop, minicluster, yarn_apps):
    job = gl.deploy.map_job.create(tasks.sleepy, [{"i": i, "seconds": 60} for i in range(4)],
                                   environment=hadoop)
    yarn_apps.append(job.app_id)
    wait_for(lambda: len(job.get_metrics() or []) == 2, 180, 0.5, what="2 tasks running")
    assert job.get_status() == "Running"
    # YARN gave what was asked: the driver's AM plus 2 workers of 256 MB, 1 vcore
    used_mb = containers = 0
    for node in _running_nodes(minicluster.yarn("node", "-list").stdout):
        report = minicluster.yarn("node", "-status", node).stdout
        used_mb += int(_field(report, "Memory-Used").rstrip("MB"))
        containers += int(_field(report, "Containers"))
    assert containers == 3 and used_mb == DRIVER_MB + 2 * WORKER_MB
    job.cancel()
    assert job.get_status() == "Canceled"
    wait_for(lambda: app_state(minicluster, job.app_id)[1] == "KILLED", 60,
             what="YARN to show KILLED")


def test_legacy_hadoop_environment(dist_path, minicluster, monkeypatch):
    monkeypatch.setenv("DATO_DIST_HADOOP_DIST_PATH", dist_path)
    env = gl.deploy.environment.Hadoop("legacy-hd", config_dir=minicluster.conf_dir,
                                       memory_mb=128, virtual_cores=1)
    assert env.container_size == 128 and env.num_vcores == 1
    assert gl.deploy.environments["legacy-hd"].hadoop_conf_dir == minicluster.conf_dir


def test_additional_packages_and_user_package_management(dist_path, minicluster, tmp_path,
                                                         yarn_apps):
    make_wheel(tmp_path / "dist", "ddtinypkg", "0.1", {"ddtinypkg/__init__.py": "ANSWER = 42\n"})
    if "ddtinypkg-0.1-py3-none-any.whl" in gl.deploy.hadoop_cluster.show_available_packages(
            dist_path)["user_packages"]:  # left by an earlier session on a reused cluster
        gl.deploy.hadoop_cluster.remove_package(dist_path, "ddtinypkg-0.1-py3-none-any.whl")
    uploaded = gl.deploy.hadoop_cluster.upload_packages(dist_path, str(tmp_path / "dist"))
    assert uploaded == ["ddtinypkg-0.1-py3-none-any.whl"]
    available = gl.deploy.hadoop_cluster.show_available_packages(dist_path)
    assert "ddtinypkg-0.1-py3-none-any.whl" in available["user_packages"]
    assert any(p.startswith("pyarrow==") for p in available["default_packages"])
    with pytest.raises(ValueError, match="already"):
        gl.deploy.hadoop_cluster.upload_packages(dist_path, str(tmp_path / "dist"))

    hd = gl.deploy.hadoop_cluster.create("hadoop-pkgs", dist_path,
                                         hadoop_conf_dir=minicluster.conf_dir,
                                         num_containers=1, additional_packages="ddtinypkg")
    job = gl.deploy.job.create(tasks.answer_from_package, environment=hd)
    yarn_apps.append(job.app_id)
    assert job.get_results() == 42
    # containers copy their logs to HDFS every few seconds and when they end
    wait_for(lambda: "installing ddtinypkg" in "".join(job.read_logs().values()), 60, 1,
             what="the worker's log on HDFS")
    gl.deploy.hadoop_cluster.remove_package(dist_path, "ddtinypkg-0.1-py3-none-any.whl")
    assert gl.deploy.hadoop_cluster.show_available_packages(dist_path)["user_packages"] == []


def test_dist_folder_show_and_version_check(dist_path, minicluster):
    out = subprocess.run([sys.executable, "-m", "dato_dist.cli", "hadoop", "show", dist_path],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0 and f"dato-dist version   : {gl.__version__}" in out.stdout
    from dato_dist.store import Store

    store = Store(dist_path)
    config = store.read_json("config.json")
    store.write_json("config.json", dict(config, dato_dist_version="0.0.1"))
    try:
        with pytest.raises(ValueError, match="holds dato-dist 0.0.1, this client is"):
            gl.deploy.hadoop_cluster.create("hadoop-old", dist_path,
                                            hadoop_conf_dir=minicluster.conf_dir)
    finally:
        store.write_json("config.json", config)


def test_a_submission_yarn_rejects_is_a_yarn_error_and_a_failed_job(hadoop, monkeypatch,
                                                                    yarn_apps):
    """A queue that does not exist: YARN refuses the application. That is a YarnError (exit
    7, never InvalidArgument) saying what was done, and the job is Failed with it."""
    import uuid

    from dato_dist.errors import InvalidArgument, YarnError

    name = f"rejected-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DATO_DIST_HADOOP_QUEUE", "no-such-queue")
    with pytest.raises(YarnError) as e:
        gl.deploy.job.create(tasks.add, name=name, environment=hadoop, x=1, y=2)
    yarn_apps.append(e.value.app_id)
    message = str(e.value)
    assert not isinstance(e.value, InvalidArgument) and e.value.exit_code == 7
    assert message.startswith(f"Submitting job '{name}' to YARN (queue no-such-queue): ")
    assert "unknown queue" in message
    # YARN named the application it refused: the message ends with its logs command
    assert e.value.app_id.startswith("application_")
    assert message.endswith(f"yarn logs -applicationId {e.value.app_id}")
    job = gl.deploy.jobs[name]
    assert job.get_status() == "Failed" and job.get_error() == message


# -- trust (issue 9): private job folders, signed files, a listener nobody can block ------
def _killed_worker_job(hadoop, yarn_apps, attack_dir=None):
    """A job whose running worker container is killed (YARN replaces it); with
    ``attack_dir``, the user nobody holds 1 silent and 100 garbage connections to the
    driver from the moment it listens. Returns (job, seconds)."""
    import time

    from tests.test_trust import _attack, _driver_address

    start = time.monotonic()
    job = gl.deploy.map_job.create(tasks.sleepy, [{"i": i, "seconds": 2} for i in range(6)],
                                   environment=hadoop)
    yarn_apps.append(job.app_id)
    attacker = None
    try:
        if attack_dir:
            address = wait_for(lambda: _driver_address(job), 240, 0.3, what="the driver")
            attacker = _attack(address, os.path.join(attack_dir, "stop"))

        def running():
            rows = [r for r in (job.get_metrics() or []) if r["status"] == "Running"]
            return rows and rows[0]

        row = wait_for(running, 120, 0.3, what="a running task")
        os.kill(int(row["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
        assert job.wait(timeout=240) == "Completed"
        assert job.get_map_results() == [i * i for i in range(6)]
        return job, time.monotonic() - start
    finally:
        if attacker is not None:
            open(os.path.join(attack_dir, "stop"), "w").close()
            attacker.wait(10)


@pytest.mark.skipif(os.geteuid() != 0, reason="acts as the user nobody")
def test_yarn_job_private_signed_and_not_stalled_by_bad_connections(hadoop, yarn_apps,
                                                                    attack_dir):
    from dato_dist.store import _native_hdfs

    _, baseline = _killed_worker_job(hadoop, yarn_apps)
    job, attacked = _killed_worker_job(hadoop, yarn_apps, attack_dir=attack_dir)
    print(f"YARN job with a container killed: {baseline:.1f} s alone, {attacked:.1f} s "
          "under attack")
    assert attacked < 2 * baseline + 30, (baseline, attacked)
    store = job._files.store
    client = _native_hdfs(store.fs)
    assert client.get_file_info(store.path(job.id)).permission == 0o700
    key = job._files.key.hex().encode()
    names = []
    for info in client.list_status(store.path(job.id), recursive=True):
        if not info.isdir:
            names.append(info.path)
            with client.read(info.path) as f:
                assert key not in f.read(), info.path
    assert any(n.endswith("results/00000000.pkl") for n in names), names
    def logs():
        text = "\n".join(job.read_logs().values())
        return "did not authenticate" in text and text

    text = wait_for(logs, 120, 2.0, what="the drops in the driver's log")
    assert key.decode() not in text
    assert gl.deploy.job.load(job.uri).get_map_results() == [i * i for i in range(6)]
