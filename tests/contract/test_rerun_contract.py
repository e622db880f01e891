"""The rerun contract (issue 10 item 4), on every environment of the ``environment`` fixture:
``job.rerun(failed_only=True)`` runs again, under the same id, only the tasks that failed or
never finished and keeps every completed result; a job whose driver was killed is resumed
so; ``dato-dist job rerun ID --failed``; and the refusals. Which tasks ran again is counted
by the tasks themselves (files in a shared folder, tests/contract/rerun_tasks.py).
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import textwrap

import pytest

import dato_dist as gl
from dato_dist.errors import RerunRefused
from tests.conftest import REPO, submit_together, wait_for
from tests.contract import rerun_tasks
from tests.contract.test_jobs import ended, start


def _params(folder, n, **extra):
    return [dict({"i": i, "folder": str(folder)}, **extra) for i in range(n)]


def _touch(path):
    open(path, "w").close()


#: The tests that start from a job whose odd tasks failed (``_failed_first_time``).
FIRST_RUNS = ("rerun", "cli", "racing")


@pytest.fixture(scope="module")
def first_runs(environment, tmp_path_factory):
    """On YARN, the first runs of the :data:`FIRST_RUNS` tests, submitted together so their
    applications start side by side (one takes 20-60 s to start); each test takes its own
    ``(folder, job)``. Elsewhere a job is quick to start: each test starts its own (None)."""
    if environment.name != "YARN":
        yield None
        return
    started = {}
    folders = {key: tmp_path_factory.mktemp(f"rerun-{key}") for key in FIRST_RUNS}
    try:
        made = submit_together({key: functools.partial(
            gl.deploy.map_job.create, rerun_tasks.fails_until_fixed, _params(folders[key], 6),
            environment=environment.env) for key in FIRST_RUNS})
        started = {key: (folders[key], job) for key, job in made.items()}
        yield started
    finally:
        for _, job in started.values():
            try:
                job.cancel()
            except Exception:  # noqa: BLE001 - teardown must reach every job
                pass


def _failed_first_time(environment, jobs, folder, first_runs=None, key=None, n=6):
    """A Completed map job whose odd tasks failed (``first_runs[key]`` if it was started
    already); the job, its results and the folder its tasks count their runs in."""
    if first_runs:
        folder, job = first_runs[key]
        jobs.append(job)
    else:
        job = start(environment, jobs, gl.deploy.map_job.create,
                    rerun_tasks.fails_until_fixed, _params(folder, n))
    assert ended(environment, job) == "Completed", job.get_error()
    first = job.get_map_results()
    assert [r is None for r in first] == [bool(i % 2) for i in range(n)]
    assert rerun_tasks.runs(folder, n) == [1] * n
    return job, first, folder


def _check_rerun_of_failed(job, folder, first, n=6):
    results = job.get_map_results()
    assert [r[0] for r in results] == list(range(n))
    assert [results[i] for i in range(0, n, 2)] == [first[i] for i in range(0, n, 2)]  # kept
    assert rerun_tasks.runs(folder, n) == [1 + i % 2 for i in range(n)]  # only failed ran
    metrics = job.get_metrics()
    assert metrics["status"] == ["Completed"] * n  # each task's final attempt
    assert metrics["attempts"] == [1 + i % 2 for i in range(n)]  # over both runs
    state = job._files.read_state()
    assert state["run"] == 2 and state["previous_runs"][0]["run"] == 1
    assert state["results_files"] >= 2  # the first run's files, then the rerun's


def test_rerun_failed_runs_only_the_failed_tasks(environment, jobs, tmp_path, first_runs):
    job, first, tmp_path = _failed_first_time(environment, jobs, tmp_path, first_runs, "rerun")
    name, uri = job.name, job.uri
    _touch(tmp_path / "fixed")
    assert job.rerun(failed_only=True) is job
    assert ended(environment, job) == "Completed", job.get_error()
    assert (job.name, job.uri) == (name, uri)  # the same job
    _check_rerun_of_failed(job, tmp_path, first)
    # a job loaded afresh reads the same
    again = gl.deploy.job.load(uri)
    assert again.get_map_results() == job.get_map_results()
    assert again.get_metrics()["attempts"] == [1, 2, 1, 2, 1, 2]
    _check_logs_of_each_run(environment, job, 2)
    # nothing left to run again: said so; every task again: all run a third time
    with pytest.raises(gl.errors.NothingToDo, match="nothing to run again"):
        job.rerun(failed_only=True)
    job.rerun()
    assert ended(environment, job) == "Completed", job.get_error()
    assert rerun_tasks.runs(tmp_path, 6) == [2, 3, 2, 3, 2, 3]
    assert job.get_metrics()["attempts"] == [2, 3, 2, 3, 2, 3]
    assert job._files.read_state()["run"] == 3
    _check_logs_of_each_run(environment, job, 3)


def _check_logs_of_each_run(environment, job, runs):
    """Each run keeps its own driver log: ``read_logs()`` is the latest run's, ``run=N`` an
    earlier one's (never replaced by a later run), ``run='all'`` every run's; the CLI too.
    (Each read of an ended YARN run is a ``yarn logs`` call: a few seconds.)"""
    if environment.name == "EC2":
        return  # EC2 does not name its logs by run (yet): read_logs() has them all
    mark = re.compile(r"job \S+ run (\d+): running")  # a rerun's driver says so first
    ended = f"job {job._files.job_id} Completed"  # a driver's last line
    logs = {}

    def runs_in(found):
        return {int(m) for text in found.values() for m in mark.findall(text)}

    def complete():  # a remote driver's last lines reach the store a moment later
        for run in range(1, runs + 1):
            if ended not in "".join(logs.get(run, {}).values()):
                logs[run] = job.read_logs(run=run)
        return all(ended in "".join(logs[run].values()) for run in logs) and len(logs) == runs

    wait_for(complete, environment.log_delay + 60, 1.0, what="every run's driver log")
    assert runs_in(logs[1]) == set()
    for run in range(2, runs + 1):
        assert runs_in(logs[run]) == {run}
    assert runs_in(job.read_logs()) == {runs}  # the latest run's
    with pytest.raises(gl.errors.InvalidArgument, match="a run of job"):
        job.read_logs(run=runs + 1)
    if runs < 3:
        return
    assert runs_in(job.read_logs(run="all")) == set(range(2, runs + 1))
    out = _cli("job", "logs", job.name, "--run", "1")
    assert out.returncode == 0 and f"# run 1 of {runs}" in out.stdout, out.stderr[-3000:]
    assert not mark.search(out.stdout), out.stdout[-3000:]


def test_lost_driver_then_rerun_failed_resumes(environment, jobs, tmp_path):
    environment.require("asynchronous")
    n, fast = 5, 2
    job = start(environment, jobs, gl.deploy.map_job.create, rerun_tasks.slow_until_released,
                _params(tmp_path, n, fast=fast))

    def started():  # runs-<i> files of the slow tasks
        return {i for i in range(fast, n) if os.path.exists(tmp_path / f"runs-{i}")}

    def ready():
        metrics = job.get_metrics() or []
        done = {int(r["task_name"].rsplit("-", 1)[1]) for r in metrics
                if r["status"] == "Completed"}
        running = {int(r["task_name"].rsplit("-", 1)[1]) for r in metrics
                   if r["status"] == "Running"}
        # every slow task that started is shown running: the killed run counts in attempts
        return done == set(range(fast)) and running and running == started()

    wait_for(ready, environment.start_timeout, 0.2, what="the fast tasks done, the slow running")
    kept = job.get_map_results(wait=False)[:fast]
    first_app = job.app_id
    runners = set(environment.chaos.processes(job))
    environment.chaos.kill_driver(job, 10)
    assert job.wait(timeout=environment.timeout) == "Failed"
    assert re.search(environment.lost_driver_error, job.get_error(), re.S), job.get_error()
    # the old runners find their driver gone and exit (else one could go on with its batch)
    wait_for(lambda: not environment.chaos.leftovers(job, runners), 60, 0.5,
             what="the killed run's runners to exit")
    _touch(tmp_path / "release")
    job.rerun(failed_only=True)
    assert job.wait(timeout=environment.timeout) == "Completed", job.get_error()
    results = job.get_map_results()
    assert [r[0] for r in results] == list(range(n))
    assert results[:fast] == kept  # completed before the kill: kept, not run again
    runs = rerun_tasks.runs(tmp_path, n)
    assert runs[:fast] == [1] * fast
    assert all(r in (1, 2) for r in runs[fast:])
    metrics = job.get_metrics()
    assert metrics["status"] == ["Completed"] * n
    assert metrics["attempts"] == runs  # a run the driver's death cut short counts
    state = job._files.read_state()
    assert state["run"] == 2 and state["previous_runs"][-1]["status"] == "Failed"
    if first_app is not None:  # YARN: a new application for the same job id
        assert job.app_id != first_app
        assert state["previous_runs"][-1]["app_id"] == first_app
        assert f"yarn logs -applicationId {job.app_id}" in str(job)


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "dato_dist.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, stdin=subprocess.DEVNULL)


def test_cli_rerun_failed_then_wait(environment, jobs, tmp_path, first_runs):
    job, first, tmp_path = _failed_first_time(environment, jobs, tmp_path, first_runs, "cli")
    _touch(tmp_path / "fixed")
    out = _cli("job", "rerun", job.name, "--failed")
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"Job '{job.name}': running the failed and unfinished tasks again" in out.stdout
    out = _cli("job", "wait", job.name, "--no-progress")
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"Job '{job.name}': Completed" in out.stdout
    _check_rerun_of_failed(gl.deploy.job.load(job.uri), tmp_path, first)
    # nothing failed now: the CLI says so, exit 2
    out = _cli("job", "rerun", job.name, "--failed")
    assert out.returncode == 2 and "nothing to run again" in out.stderr, out.stderr


def test_rerun_of_a_running_job_is_refused(environment, jobs, tmp_path):
    environment.require("asynchronous")
    job = start(environment, jobs, gl.deploy.map_job.create, rerun_tasks.slow_until_released,
                _params(tmp_path, 2, fast=0))
    try:
        with pytest.raises(RerunRefused, match=r"still (Pending|Running).*dato-dist job wait"):
            job.rerun(failed_only=True)
        out = _cli("job", "rerun", job.name)
        assert out.returncode == 5 and "Only a job that ended can run again" in out.stderr
        assert job._files.rerun_numbers() == []  # nothing was claimed
        assert job.get_status() in ("Pending", "Running")
    finally:
        _touch(tmp_path / "release")
    assert ended(environment, job) == "Completed", job.get_error()


RACER = """
    import os, sys, time
    import dato_dist as gl
    job = gl.deploy.job.load(sys.argv[1])
    open(sys.argv[2], "w").close()  # loaded: the test then makes sys.argv[3]
    deadline = time.monotonic() + 150
    while not os.path.exists(sys.argv[3]) and time.monotonic() < deadline:
        time.sleep(0.005)  # both start within milliseconds
    try:
        job.rerun(failed_only=True)
        print("STARTED")
    except gl.errors.RerunRefused as e:
        print("REFUSED", e)
"""


def test_racing_reruns_only_one_starts(environment, jobs, tmp_path, first_runs):
    job, first, folder = _failed_first_time(environment, jobs, tmp_path, first_runs, "racing")
    _touch(folder / "fixed")
    go = tmp_path / "go"
    racers = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(RACER), job.uri,
                                str(tmp_path / f"loaded-{k}"), str(go)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL)
              for k in range(2)]
    outs = []
    try:  # both start at once, once both have loaded the job
        wait_for(lambda: all(os.path.exists(tmp_path / f"loaded-{k}") for k in range(2))
                 or any(p.poll() is not None for p in racers), 120, 0.05,
                 what="both racers to load the job")
    finally:
        _touch(go)
    for p in racers:
        try:
            out, err = p.communicate(timeout=300)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert p.returncode == 0, err[-3000:]
        outs.append(out.strip().splitlines()[-1])
    assert sorted(o.split()[0] for o in outs) == ["REFUSED", "STARTED"], outs
    refused = [o for o in outs if o.startswith("REFUSED")][0]
    assert re.search(r"another rerun of it \(run 2\)|still (Pending|Running)", refused), refused
    # (``job`` saw the first run end and keeps that; a rerun elsewhere is seen by a new load)
    job = gl.deploy.job.load(job.uri)
    jobs.append(job)
    assert job.wait(timeout=environment.timeout) == "Completed", job.get_error()
    _check_rerun_of_failed(job, folder, first)  # the failed tasks ran once more, not twice
    assert job._files.rerun_numbers() == [2]
