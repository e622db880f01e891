"""Failures explained on YARN (issue 10 item 5): a container killed by its NodeManager for
exceeding its memory is class 'memory' with YARN's diagnostics, in seconds; a runner whose
container dies is 'lost' and its re-runs are counted; a module missing on the node is
'environment'; records name the container and host that ran each task."""

import os
import re
import signal
import xml.etree.ElementTree as ET

import pytest

import dato_dist as gl
from tests import tasks
from tests.conftest import HADOOP_WORKER_MB, submit_together, wait_for

# the first test using ``started`` also waits for every job's application to start
pytestmark = [pytest.mark.yarn, pytest.mark.hdfs, pytest.mark.slow, pytest.mark.timeout(900)]
WORKER = re.compile(r"^container_\w+@[^:]+:\d+$")  # container id @ host : pid


MISSING_PACKAGE = "ddt-no-such-package-4c1e9"


def held(i, path):
    """Wait (at most 240 s) until ``path`` exists; ``i * i``."""
    import os
    import time

    deadline = time.monotonic() + 240
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return i * i


@pytest.fixture(scope="module")
def started(dist_path, minicluster, tmp_path_factory):
    """Every job of this module, submitted at once, so YARN starts their applications side
    by side (one takes 20-60 s to start here) and each test waits for its own. The job a
    test kills a container of holds its tasks until that test releases them."""
    release = str(tmp_path_factory.mktemp("failures-yarn") / "release")
    hadoop = gl.deploy.hadoop_cluster.create("hadoop-failures", dist_path,
                                             hadoop_conf_dir=minicluster.conf_dir)
    badpkg = gl.deploy.hadoop_cluster.create(
        "hadoop-badpkg", dist_path, hadoop_conf_dir=minicluster.conf_dir, num_containers=1,
        additional_packages=MISSING_PACKAGE)
    submit = {
        "memory": lambda: gl.deploy.job.create(tasks.hog, environment=hadoop,
                                               mb=4 * HADOOP_WORKER_MB, seconds=120),
        "lost": lambda: gl.deploy.map_job.create(
            tasks.dies_first, [{"i": i} for i in range(3)], environment=hadoop),
        "killed": lambda: gl.deploy.map_job.create(
            held, [{"i": i, "path": release} for i in range(4)], environment=hadoop),
        "environment": lambda: gl.deploy.job.create(tasks.import_missing, environment=hadoop),
        "badpkg": lambda: gl.deploy.job.create(tasks.add, environment=badpkg, x=1, y=2),
    }
    jobs = {"release": release}
    try:
        # create() returns once YARN runs the application master (30-60 s each here):
        # on threads, those waits overlap
        jobs.update(submit_together(submit))
        yield jobs
    finally:
        open(release, "w").close()
        for name, job in jobs.items():
            if name != "release":
                try:
                    job.cancel()
                except Exception:  # noqa: BLE001 - teardown must reach every job
                    pass


def _effective_conf(minicluster):
    path = os.path.join(minicluster.dir, "effective-conf.xml")
    root = ET.parse(path).getroot()
    return {p.findtext("name"): p.findtext("value") for p in root.iter("property")}


@pytest.fixture
def enforcing(minicluster):
    """The cluster checks containers' physical memory (yarn_app/minicluster.py turns it on;
    a cluster started by an older version, reused through DATO_DIST_TEST_HADOOP_DIR, may
    not)."""
    conf = _effective_conf(minicluster)
    if not (conf.get("yarn.minicluster.control-resource-monitoring") == "true"
            and conf.get("yarn.nodemanager.pmem-check-enabled") == "true"
            and conf.get("yarn.nodemanager.resource.memory.enforced") == "false"):
        pytest.skip(f"the MiniCluster in {minicluster.dir} does not enforce container "
                    "memory: restart it with this version of yarn_app/minicluster.py")
    return conf


def test_the_test_cluster_enforces_physical_memory_only(minicluster, enforcing):
    assert enforcing["yarn.nodemanager.vmem-check-enabled"] == "false"
    assert int(enforcing["yarn.nodemanager.container-monitor.interval-ms"]) <= 1000


def test_a_task_beyond_its_container_memory_fails_as_memory_in_seconds(started, enforcing,
                                                                       yarn_apps):
    """1 GiB in a 256 MB container: the NodeManager kills the container; the job is Failed
    at once (no re-run in a container of the same size), class 'memory', with YARN's
    diagnostic text in get_error() and in the task's record."""
    job = started["memory"]
    yarn_apps.append(job.app_id)
    wait_for(lambda: job.get_status() != "Pending", 180, 0.2, what="the driver to start")
    assert job.wait(timeout=90) == "Failed", job.get_error()
    state = job._files.read_state()
    lost_at = job._read_records()[0]["start"]  # when the task started (its heartbeat)
    # the driver's life includes starting the worker containers (~20-30 s here)
    seconds = state["ended"] - state["started"]
    print(f"memory kill: job Failed {seconds:.1f} s after its driver started, "
          f"{state['ended'] - lost_at:.1f} s after the task started")
    assert job.get_failure_class() == "memory", job.get_error()
    error = job.get_error()
    assert error.startswith("[memory] "), error
    # YARN's diagnostics as Skein's container report has them
    assert re.search(r"YARN's diagnostics: container container_\w+ ended FAILED: "
                     r"[\d.]+ [KMG]B of 256 MB physical memory used", error), error
    row = job.get_metrics()[0]
    assert row["status"] == "Failed" and row["failure_class"] == "memory"
    assert row["exception"] == "MemoryExceeded" and row["attempts"] == 1
    assert "physical memory" in row["exception_message"].lower()
    assert WORKER.match(row["worker"]), row["worker"]
    assert job._files.read_state()["failure_class"] == "memory"
    assert seconds < 90 and state["ended"] - lost_at < 15, (seconds, lost_at)


def test_a_task_whose_container_dies_each_time_is_lost_and_each_run_counted(started,
                                                                           yarn_apps):
    """A task that ends its container's process: YARN replaces the container, the task
    runs again, and after MAX_TASK_LOSSES runs it is Failed, class 'lost', with the
    container's diagnostics; the other tasks complete."""
    job = started["lost"]
    yarn_apps.append(job.app_id)
    assert job.wait(timeout=300) == "Completed", job.get_error()
    rows = job.get_metrics()
    lost = rows[0]
    assert lost["status"] == "Failed" and lost["failure_class"] == "lost", lost
    assert lost["exception"] == "RunnerLost" and lost["attempts"] == 3
    assert "YARN's diagnostics: container container_" in lost["exception_message"], lost
    assert WORKER.match(lost["worker"]), lost["worker"]
    assert rows["failure_class"] == ["lost", None, None]
    assert all(WORKER.match(w) for w in rows["worker"])


def test_a_killed_container_reruns_its_task_and_counts_the_attempt(started, yarn_apps):
    job = started["killed"]
    yarn_apps.append(job.app_id)

    def running():
        rows = [r for r in (job.get_metrics() or []) if r["status"] == "Running"]
        return rows and rows[0]

    row = wait_for(running, 180, 0.3, what="a running task")
    assert WORKER.match(row["worker"]), row["worker"]
    os.kill(int(row["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    open(started["release"], "w").close()
    assert job.wait(timeout=240) == "Completed", job.get_error()
    assert job.get_map_results() == [i * i for i in range(4)]
    rerun = job.get_metrics()[int(row["task_name"].rsplit("-", 1)[1])]
    assert rerun["attempts"] == 2, rerun
    assert rerun["worker"] != row["worker"]  # another container ran it again


def test_a_module_missing_on_the_node_is_an_environment_failure(started, yarn_apps):
    job = started["environment"]
    yarn_apps.append(job.app_id)
    assert job.wait(timeout=240) == "Failed"
    assert job.get_failure_class() == "environment"
    assert "ddt_no_such_module" in job.get_error()
    assert job.get_metrics()[0]["failure_class"] == "environment"


def test_a_package_that_cannot_be_installed_on_the_node_is_an_environment_failure(
        started, yarn_apps):
    """A worker whose pip install of the cluster's additional packages fails says why in
    Skein's kv; once no worker is left, the job is Failed, class 'environment', with pip's
    reason, rather than waiting for runners that will never come."""
    missing = MISSING_PACKAGE
    job = started["badpkg"]
    yarn_apps.append(job.app_id)
    assert job.wait(timeout=300) == "Failed", job.get_error()
    assert job.get_failure_class() == "environment", job.get_error()
    error = job.get_error()
    assert error.startswith("[environment] ") and missing in error, error
    assert "pip install" in error, error
