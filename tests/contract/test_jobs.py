"""The job contract: the same behaviours, with the same assertions, on every environment.

Each test runs once per environment of the ``environment`` fixture (tests/contract/
conftest.py): Local, LocalAsync, YARN (the MiniCluster) and EC2 (moto + sshd hosts).
A test that needs a capability an environment lacks (a synchronous ``Local`` job cannot be
reached while it runs) is skipped there, saying why. Kills are real: the chaos adapters
SIGKILL the job's own processes (tests/contract/chaos.py).
"""

from __future__ import annotations

import fractions
import functools
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

import dato_dist as gl
from dato_dist.metrics import COLUMNS
from tests import tasks
from tests.conftest import REPO, wait_for

SEED_PARAMS = [{"x": 20, "y": 20}, {"x": None, "y": 10}, {"x": 5, "y": 5}]
GOOD_PARAMS = [{"x": 20, "y": 20}, {"x": 10, "y": 10}, {"x": 5, "y": 5}]
FINAL = ("Completed", "Failed", "Canceled")


def run_python(code, *args, timeout=300):
    """Run ``code`` in a new interpreter from the repository root (a second client)."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=REPO,
                         capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-5000:]
    return out.stdout


def ended(environment, job):
    """The job's final status, within the environment's bound; a ``Local`` job has ended
    when ``create`` returned."""
    if environment.synchronous:
        assert job.get_status() in FINAL
    return job.wait(timeout=environment.timeout)


def start(environment, jobs, create, *args, **kwargs):
    """``create(*args, environment=..., **kwargs)``, registered for teardown."""
    job = create(*args, environment=environment.env, **kwargs)
    jobs.append(job)
    return job


# -- results, metrics and the final status rule ------------------------------------------

def test_seed_map_job_results_and_metrics(environment, jobs):
    job = start(environment, jobs, gl.deploy.map_job.create, tasks.add, SEED_PARAMS)
    assert ended(environment, job) == "Completed"  # failed tasks, no combiner: Completed
    assert job.get_map_results() == [40, None, 10]
    assert job.get_error() is None
    metrics = job.get_metrics()
    assert tuple(metrics.column_names) == COLUMNS
    assert metrics["task_name"] == ["add-0-0", "add-0-1", "add-0-2"]
    assert metrics["status"] == ["Completed", "Failed", "Completed"]
    assert metrics["exception"] == [None, "TypeError", None]
    assert "unsupported operand" in metrics[1]["exception_message"]
    assert metrics[1]["exception_traceback"].startswith("Traceback (most recent call last)")
    assert "in add" in metrics[1]["exception_traceback"]
    assert metrics[1]["run_time"] is None and metrics[0]["run_time"] >= 0
    assert metrics["attempts"] == [1, 1, 1]
    assert all(re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", t) for t in metrics["start_time"])
    assert all(re.match(r"^.+:\d+$", w) for w in metrics["worker"])
    assert metrics["failure_class"] == [None, "user", None]
    assert "[3 rows x 10 columns]" in str(metrics)
    with pytest.raises(RuntimeError, match="get_map_results"):
        job.get_results()
    assert job.get_start_time() <= job.get_end_time()
    text = str(job)
    for section in ("Info", "Help", "Environment", "Metrics", "Execution Information"):
        assert f"\n{section}\n" in f"\n{text}"
    assert "Status             : Completed" in text


def test_map_job_whose_tasks_all_fail_completes(environment, jobs):
    job = start(environment, jobs, gl.deploy.map_job.create, tasks.add,
                [{"x": None, "y": 1}, {"x": None, "y": 2}])
    assert ended(environment, job) == "Completed"
    assert job.get_map_results() == [None, None]
    assert job.get_metrics()["status"] == ["Failed", "Failed"]
    with pytest.raises(RuntimeError, match="2 of 2 task"):
        job.get_results()


def test_plain_job_whose_function_raises_fails(environment, jobs):
    job = start(environment, jobs, gl.deploy.job.create, tasks.add, x=None, y=1)
    assert ended(environment, job) == "Failed"
    assert "TypeError" in job.get_error() and "unsupported operand" in job.get_error()
    assert job.get_failure_class() == "user" and job.get_error().startswith("[user] ")
    row = job.get_metrics()[0]
    assert row["status"] == "Failed" and row["exception"] == "TypeError"
    with pytest.raises(RuntimeError, match="unsupported operand"):
        job.get_results()
    assert "Status             : Failed" in str(job)


def test_seed_combiner(environment, jobs):
    job = start(environment, jobs, gl.deploy.map_job.create, tasks.add, GOOD_PARAMS,
                combiner_function=tasks.add_combiner)
    assert ended(environment, job) == "Completed"
    assert job.get_results() == 70
    assert job.get_map_results() == [40, 20, 10]
    assert len(job.get_metrics()) == 3  # the combiner is not a row


def test_combiner_gets_none_for_failed_tasks(environment, jobs):
    job = start(environment, jobs, gl.deploy.map_job.create, tasks.add, SEED_PARAMS,
                combiner_function=tasks.record_combiner)
    assert ended(environment, job) == "Completed"
    assert job.get_results() == {"add-0-0": 40, "add-0-1": None, "add-0-2": 10}


def test_combiner_that_raises_fails_the_job(environment, jobs):
    job = start(environment, jobs, gl.deploy.map_job.create, tasks.add, GOOD_PARAMS,
                combiner_function=tasks.failing_combiner)
    assert ended(environment, job) == "Failed"
    assert "ValueError" in job.get_error() and "combiner says no" in job.get_error()
    with pytest.raises(RuntimeError, match="combiner says no"):
        job.get_results()
    assert job.get_map_results() == [40, 20, 10]


def test_max_retries(environment, jobs, tmp_path):
    job = start(environment, jobs, gl.deploy.job.create, tasks.flaky, max_retries=1,
                path=str(tmp_path / "flaky"))
    assert ended(environment, job) == "Completed"
    assert job.get_results() == "ok"
    assert job.get_metrics()[0]["attempts"] == 2
    job = start(environment, jobs, gl.deploy.job.create, tasks.flaky,
                path=str(tmp_path / "flaky2"))
    assert ended(environment, job) == "Failed"
    assert job.get_metrics()[0]["attempts"] == 1
    with pytest.raises(RuntimeError, match="first attempt fails"):
        job.get_results()


def test_task_calling_sys_exit_fails_that_task_only(environment, jobs):
    job = start(environment, jobs, gl.deploy.map_job.create, tasks.exits,
                [{"i": i} for i in range(3)])
    assert ended(environment, job) == "Completed"
    assert job.get_map_results() == [0, None, 2]
    row = job.get_metrics()[1]
    assert row["status"] == "Failed" and row["exception"] == "SystemExit"


def test_unpicklable_result_fails_that_task_only(environment, jobs):
    job = start(environment, jobs, gl.deploy.map_job.create, tasks.unpicklable_result,
                [{"i": i} for i in range(3)])
    assert ended(environment, job) == "Completed"
    assert job.get_map_results() == [0, None, 2]
    row = job.get_metrics()[1]
    assert row["status"] == "Failed" and row["exception"] == "PicklingError"
    assert "could not be serialized" in row["exception_message"]


def test_objects_lambdas_and_partials(environment, jobs):
    half = fractions.Fraction(1, 2)
    job = start(environment, jobs, gl.deploy.map_job.create, tasks.mixed_result,
                [{"i": i} for i in range(4)])
    lam = start(environment, jobs, gl.deploy.job.create, lambda a: a * 2, a=half)
    part = start(environment, jobs, gl.deploy.map_job.create,
                 functools.partial(tasks.add, y=1), [{"x": 1}, {"x": half}])
    assert ended(environment, job) == "Completed"
    assert job.get_map_results() == [0, half, 2, fractions.Fraction(3, 2)]
    assert ended(environment, lam) == "Completed" and lam.get_results() == 1
    assert lam.name.startswith("lambda-")
    assert ended(environment, part) == "Completed"
    assert part.get_map_results() == [2, fractions.Fraction(3, 2)]
    assert part.get_metrics()["task_name"] == ["add-0-0", "add-0-1"]
    assert part.get_parameters()["add-0-1"] == {"x": half}


# -- logs ---------------------------------------------------------------------------------

def test_logs_through_get_log_file_path_and_the_cli(environment, jobs):
    job = start(environment, jobs, gl.deploy.map_job.create, tasks.chatty,
                [{"i": i} for i in range(3)])
    assert ended(environment, job) == "Completed"
    assert job.get_map_results() == [0, 1, 2]
    path = job.get_log_file_path()
    if environment.env.remote:
        assert path.startswith(job.uri.split("/", 3)[0] + "//") and path.endswith("/logs")
    else:
        assert os.path.isfile(os.path.join(path, "driver.log"))
    expected = [f"hello from task {i}" for i in range(3)] + [
        f"warning from task {i}" for i in range(3)] + [
        f"[dato-dist] task chatty-0-{i} started" for i in range(3)]

    def all_there():
        text = "".join(job.read_logs().values())
        return all(e in text for e in expected)

    wait_for(all_there, environment.log_delay, 0.5, what="every task's output in the logs")
    out = subprocess.run([sys.executable, "-m", "dato_dist.cli", "job", "logs", job.name],
                         capture_output=True, text=True, timeout=180, cwd=REPO,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"# logs of job {job.name}: {path}" in out.stdout
    for e in expected:
        assert e in out.stdout


def test_logs_while_the_job_runs(environment, jobs):
    environment.require("asynchronous", "logs_while_running")
    job = start(environment, jobs, gl.deploy.map_job.create, tasks.announce_then_sleep,
                [{"i": i, "seconds": 60} for i in range(2)])

    def announced():
        return "announcing task" in "".join(job.read_logs().values())

    wait_for(announced, environment.start_timeout + environment.log_delay, 0.5,
             what="a task's output in the logs while it runs")
    assert job.get_status() == "Running"


# -- lost processes, clients that leave, cancel -------------------------------------------

def test_lost_runner_its_tasks_rerun_and_attempts_count(environment, jobs):
    environment.require("asynchronous")
    job = start(environment, jobs, gl.deploy.map_job.create, tasks.sleepy,
                [{"i": i, "seconds": 2} for i in range(6)])
    task, victim = environment.chaos.kill_runner(job, environment.start_timeout)
    assert job.wait(timeout=environment.timeout) == "Completed", job.get_error()
    assert job.get_map_results() == [i * i for i in range(6)]
    metrics = job.get_metrics()
    assert metrics["status"] == ["Completed"] * 6
    rerun = [r for r in metrics if r["task_name"] == task][0]
    assert not rerun["worker"].endswith(f":{victim}")  # another runner ran it again
    assert rerun["attempts"] == 2  # the lost run counts
    wait_for(lambda: "lost (" in "".join(job.read_logs().values()), environment.log_delay,
             0.5, what="the driver's log line about the lost runner")


def test_lost_driver_fails_the_job_with_a_clear_error(environment, jobs):
    environment.require("asynchronous")
    job = start(environment, jobs, gl.deploy.map_job.create, tasks.sleepy,
                [{"i": i, "seconds": 60} for i in range(2)])
    wait_for(lambda: environment.chaos.processes(job) and job.get_status() == "Running",
             environment.start_timeout, 0.5, what="the job to run")
    runners = set(environment.chaos.processes(job))
    t0 = time.monotonic()
    environment.chaos.kill_driver(job, 10)
    assert job.wait(timeout=environment.timeout) == "Failed"
    assert time.monotonic() - t0 < environment.timeout  # not Running forever
    assert re.search(environment.lost_driver_error, job.get_error(), re.S), job.get_error()
    assert job.get_failure_class() == "lost", job.get_error()
    with pytest.raises(RuntimeError, match="failed"):
        job.get_results()
    # the runners find their driver gone and exit
    wait_for(lambda: not environment.chaos.leftovers(job, runners), 60, 0.5,
             what="the job's runners to exit")


def test_the_job_goes_on_when_its_client_exits(environment, jobs):
    environment.require("asynchronous")
    uri = run_python("""
        import sys
        import dato_dist as gl
        from tests import tasks
        env = gl.deploy.environments[sys.argv[1]]   # found by name in a new process
        job = gl.deploy.map_job.create(tasks.sleepy, [{'i': i, 'seconds': 3}
                                                      for i in range(4)], environment=env)
        print(job.uri)
        """, environment.env.name).strip().splitlines()[-1]
    job = gl.deploy.job.load(uri)
    jobs.append(job)
    assert job.get_status() in ("Pending", "Running")  # the client is gone, the job is not
    out = run_python("""
        import sys
        import dato_dist as gl
        job = gl.deploy.job.load(sys.argv[1])
        print(job.get_map_results())
        print(job.get_status())
        """, uri).splitlines()
    assert out[-2:] == ["[0, 1, 4, 9]", "Completed"]
    assert gl.deploy.job.load(job.name).get_metrics()["status"] == ["Completed"] * 4


def test_cancel_leaves_nothing_running(environment, jobs):
    environment.require("asynchronous")
    job = start(environment, jobs, gl.deploy.map_job.create, tasks.sleepy,
                [{"i": i, "seconds": 60} for i in range(4)])
    wait_for(lambda: len(environment.chaos.processes(job)) >= 3, environment.start_timeout,
             0.5, what="the driver and two runners at work")
    pids = environment.chaos.processes(job)
    t0 = time.monotonic()
    job.cancel()
    assert time.monotonic() - t0 < 30
    assert job.get_status() == "Canceled"
    wait_for(lambda: not environment.chaos.leftovers(job, pids), 30, 0.5,
             what="every process of the job to end")
    with pytest.raises(RuntimeError, match="canceled"):
        job.get_results()
    job.cancel()  # a no-op on an ended job
    assert job.get_status() == "Canceled"
    assert gl.deploy.job.load(job.uri).get_status() == "Canceled"
