"""Nothing is lost, nothing is left running: runners killed, clients gone, jobs canceled."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import dato_dist as gl
from dato_dist.procs import group_members, is_alive
from tests import tasks
from tests.conftest import kill_quietly, wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def running_tasks(job):
    """``{task_name: runner pid}`` from the metrics' Running rows (runner heartbeats)."""
    metrics = job.get_metrics()
    if metrics is None:
        return {}
    return {r["task_name"]: int(r["worker"].rsplit(":", 1)[1])
            for r in metrics if r["status"] == "Running"}


def runner_pids(job):
    return list(running_tasks(job).values())


def driver_pid(job):
    return json.load(open(os.path.join(job.uri, "launch.json")))["pid"]


@pytest.mark.slow
def test_runner_killed_mid_task_its_tasks_rerun(env2):
    params = [{"i": i, "seconds": 1.0} for i in range(6)]
    job = gl.deploy.map_job.create(tasks.sleepy, params, environment=env2)
    running = wait_for(lambda: running_tasks(job), timeout=30, what="a running task")
    task, victim = next(iter(running.items()))
    os.kill(victim, signal.SIGKILL)
    assert job.wait(timeout=90) == "Completed"
    assert job.get_map_results() == [i * i for i in range(6)]
    metrics = job.get_metrics()
    assert metrics["status"] == ["Completed"] * 6
    rerun = [r for r in metrics if r["task_name"] == task][0]
    assert not rerun["worker"].endswith(f":{victim}")  # re-run on another runner
    assert "lost" in job.read_logs()["driver.log"]


@pytest.mark.slow
def test_task_that_kills_its_runner_fails_alone(env2):
    job = gl.deploy.map_job.create(
        lambda i: tasks.suicide() if i == 1 else i, [{"i": i} for i in range(3)],
        environment=env2)
    assert job.wait(timeout=120) == "Completed"
    assert job.get_map_results() == [0, None, 2]
    assert job.get_metrics()[1]["exception"] == "RunnerLost"


def test_client_exits_while_job_runs():
    code = (
        "import dato_dist as gl\n"
        "from tests import tasks\n"
        "env = gl.deploy.environment.LocalAsync('detached', num_workers=2)\n"
        "job = gl.deploy.map_job.create(tasks.sleepy, [{'i': i, 'seconds': 0.5} "
        "for i in range(4)], environment=env)\n"
        "print(job.uri, flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    uri = out.stdout.strip().splitlines()[-1]
    job = gl.deploy.job.load(uri)
    assert job.get_status() in ("Pending", "Running")  # the client is gone, the job is not
    assert job.get_map_results() == [0, 1, 4, 9]
    assert gl.deploy.job.load(job.name).get_status() == "Completed"


def test_cancel_ends_the_job_and_leaves_no_process(env2):
    job = gl.deploy.map_job.create(tasks.sleepy, [{"i": i, "seconds": 30} for i in range(4)],
                                   environment=env2)
    pids = wait_for(lambda: runner_pids(job), timeout=30, what="running tasks")
    pgid = driver_pid(job)
    assert is_alive(pgid)
    start = time.monotonic()
    job.cancel()
    assert time.monotonic() - start < 10
    assert job.get_status() == "Canceled"
    assert not group_members(pgid), "a process of the job is still running"
    assert not any(is_alive(p) for p in pids + [pgid])
    with pytest.raises(RuntimeError, match="canceled"):
        job.get_results()
    job.cancel()  # a no-op on an ended job
    assert job.get_status() == "Canceled"


def test_driver_killed_job_fails_with_an_explanation(env2):
    job = gl.deploy.map_job.create(tasks.sleepy, [{"i": i, "seconds": 30} for i in range(2)],
                                   environment=env2)
    wait_for(lambda: job.get_status() == "Running", timeout=30, what="Running")
    pgid = driver_pid(job)
    os.kill(pgid, signal.SIGKILL)
    assert job.wait(timeout=30) == "Failed"
    assert "driver" in job.get_error() and "exited without finishing" in job.get_error()
    # runners notice their driver is gone and exit (heartbeat fails)
    wait_for(lambda: not group_members(pgid), timeout=30, what="runners to exit")
    for pid in group_members(pgid):
        kill_quietly(pid)
