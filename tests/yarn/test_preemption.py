"""YARN taking capacity back, and the driver while it asks YARN why a runner ended
(issue 10 item 5).

The test cluster runs the CapacityScheduler's preemption monitor with two queues, half of
the cluster guaranteed to each (yarn_app/minicluster.py): a job in ``default`` may use the
whole cluster while ``urgent`` is idle, and an application in ``urgent`` takes its half
back by preemption (the container is killed with exit status -102).
"""

import os
import signal
import time

import pytest

import dato_dist as gl
from dato_dist.yarn_app import minicluster as mc
from tests.conftest import kill_quietly, pid_alive, wait_for

pytestmark = [pytest.mark.yarn, pytest.mark.hdfs, pytest.mark.slow]


def hold(i, path, limit):
    """Run until ``path`` exists (the test creates it) or ``limit`` s passed."""
    import os
    import time

    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.1)
    return i


def gated(i, path, seconds):
    """Wait (bounded) until ``path`` exists, then take ``seconds``."""
    import os
    import time

    deadline = time.monotonic() + 300
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(seconds)
    return i


@pytest.fixture
def preempting(minicluster):
    """The cluster has the second queue and the preemption monitor (a cluster started by an
    older version, reused through DATO_DIST_TEST_HADOOP_DIR, may not)."""
    out = minicluster.yarn("queue", "-status", mc.PREEMPT_QUEUE).stdout
    if "Preemption : enabled" not in out:
        pytest.skip(f"the MiniCluster in {minicluster.dir} has no preempting queue "
                    f"'{mc.PREEMPT_QUEUE}': restart it with this version of "
                    "yarn_app/minicluster.py")


def _driver_log(job):
    return "".join(text for name, text in job.read_logs().items() if "driver" in name)


def _running(job, count):
    rows = [r for r in (job.get_metrics() or []) if r["status"] == "Running"]
    return rows if len(rows) >= count else None


@pytest.mark.parametrize("budget", [None, 1], ids=["runs-again", "budget-1-fails"])
def test_a_preempted_task_runs_again_without_using_up_its_lost_runner_budget(
        dist_path, minicluster, preempting, yarn_apps, tmp_path, monkeypatch, budget):
    """Three 2 GB workers in ``default`` (6.5 of the cluster's 8 GB, its guarantee is 4): an
    application in ``urgent`` asks for 2 GB, YARN preempts one worker's container, the
    driver classes the loss ``preempted`` with YARN's text, and the task runs again on a
    worker that is left (2 attempts, not Failed). With ``driver.max_task_preemptions`` at
    1, that task is Failed instead, class ``preempted``, with YARN's text (a map job
    with a failed task is Completed, GraphLab's rule; the task's result is None)."""
    import skein

    from dato_dist.yarn_app.cluster import skein_client

    if budget is not None:
        monkeypatch.setenv("DATO_DIST_DRIVER_MAX_TASK_PREEMPTIONS", str(budget))
    release = str(tmp_path / "release")
    hadoop = gl.deploy.hadoop_cluster.create(
        f"hadoop-preempted-{budget}", dist_path, hadoop_conf_dir=minicluster.conf_dir,
        num_containers=3, container_size=2048)
    job = gl.deploy.map_job.create(hold, [{"i": i, "path": release, "limit": 150}
                                          for i in range(3)], environment=hadoop)
    yarn_apps.append(job.app_id)
    client = skein_client(minicluster.conf_dir)
    other = None
    try:
        before = wait_for(lambda: _running(job, 3), 180, 0.3, what="3 running tasks")
        other = client.submit(skein.ApplicationSpec(
            name="dato-dist-test:reclaim", queue=mc.PREEMPT_QUEUE,
            master=skein.Master(resources=skein.Resources(memory=256, vcores=1)),
            services={"claim": skein.Service(
                instances=1, resources=skein.Resources(memory=2048, vcores=1),
                script="sleep 300")}))
        yarn_apps.append(other)
        t0 = time.monotonic()
        log = wait_for(lambda: "; preempted" in _driver_log(job) and _driver_log(job), 120,
                       1.0, what="the driver to see a preempted runner")
        print(f"preempted {time.monotonic() - t0:.1f} s after the reclaiming application "
              "was submitted")
        line = next(x for x in log.splitlines() if "; preempted" in x)
        # YARN's text for ContainerExitStatus.PREEMPTED, through Skein's container report
        assert "YARN's diagnostics: container container_" in line, line
        assert "preempted by scheduler" in line.lower(), line
    finally:
        open(release, "w").close()
        if other is not None:
            client.kill_application(other)
    if budget == 1:
        assert job.wait(timeout=180) == "Completed", job.get_error()
        rows = job.get_metrics()
        failed = [r for r in rows if r["status"] == "Failed"]
        assert len(failed) == 1 and sorted(rows["status"]) == [
            "Completed", "Completed", "Failed"], list(rows["status"])
        row = failed[0]
        assert row["failure_class"] == "preempted" and row["exception"] == "Preempted", row
        assert row["attempts"] == 1, row
        assert "preempted by scheduler" in row["exception_message"].lower(), row
        assert "was preempted 1 time (" in row["exception_message"], row
        index = int(row["task_name"].rsplit("-", 1)[1])  # task i is hold-0-<i>
        assert job.get_map_results() == [None if i == index else i for i in range(3)]
        return
    assert job.wait(timeout=180) == "Completed", job.get_error()
    assert job.get_map_results() == [0, 1, 2]
    rows = job.get_metrics()
    assert sorted(rows["attempts"]) == [1, 1, 2], list(rows["attempts"])
    again = rows[list(rows["attempts"]).index(2)]
    assert again["status"] == "Completed" and again["failure_class"] is None, again
    assert again["worker"] not in {r["worker"] for r in before
                                   if r["task_name"] == again["task_name"]}


def test_the_driver_serves_other_runners_while_it_asks_yarn_why_one_ended(
        dist_path, minicluster, yarn_apps, monkeypatch, tmp_path):
    """A runner stopped (SIGSTOP) is lost after its heartbeat timeout, but its container
    still runs, so YARN has no end to report and the driver's question takes its whole
    bound (container.EXPLAIN_TIMEOUT, 8 s). Meanwhile the other runner's records are
    taken and its WANTs answered: the job's completed count grows in that window. Then
    the stopped runner's tasks are re-queued and the job completes."""
    from dato_dist.yarn_app.container import EXPLAIN_TIMEOUT

    monkeypatch.setenv("DATO_DIST_RUNNER_HEARTBEAT_TIMEOUT", "3")
    hadoop = gl.deploy.hadoop_cluster.create("hadoop-explain", dist_path,
                                             hadoop_conf_dir=minicluster.conf_dir)
    n, go = 100, str(tmp_path / "go")
    job = gl.deploy.map_job.create(gated, [{"i": i, "path": go, "seconds": 0.25}
                                           for i in range(n)], environment=hadoop)
    yarn_apps.append(job.app_id)
    # both runners connected before any task ends (a loaded machine starts them far apart)
    wait_for(lambda: (job._files.read_state() or {}).get("runners", 0) >= 2, 240, 0.3,
             what="2 connected runners")
    open(go, "w").close()
    rows = wait_for(lambda: _running(job, 2), 60, 0.2, what="2 running tasks")
    pid = int(rows[0]["worker"].rsplit(":", 1)[1])
    try:
        os.kill(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        samples = []  # (seconds since the stop, completed, the driver's heartbeat)
        while time.monotonic() - stopped < 3 + EXPLAIN_TIMEOUT:
            state = job._files.read_state()
            samples.append((time.monotonic() - stopped, state["counts"]["completed"],
                            state.get("updated")))
            time.sleep(0.2)
        # lost at ~3 s; the question ends at ~3 + 8 s: look well inside that window
        inside = [s for s in samples if 4.5 <= s[0] <= 1 + EXPLAIN_TIMEOUT]
        assert inside, samples
        grew = inside[-1][1] - inside[0][1]
        print(f"completed while the driver asked YARN: {grew} task(s) in "
              f"{inside[-1][0] - inside[0][0]:.1f} s")
        assert grew >= 2, samples  # with the driver blocked: 0 (it takes no records)
        assert inside[-1][2] > inside[0][2], samples  # its heartbeat went on
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGCONT)
            kill_quietly(pid)
    assert job.wait(timeout=180) == "Completed", job.get_error()
    assert job.get_map_results() == list(range(n))
    log = _driver_log(job)
    assert "asking why it ended" in log, log[-3000:]
    assert "no heartbeat for 3 s; lost)" in log, log[-3000:]
