"""Every wait ends and no answer is wrong: unreadable states, lost drivers, lost results.

Faults are injected into real jobs (a corrupted or removed store file, a stopped driver),
on the local store and on S3 (moto's server).
"""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import dato_dist as gl
from dato_dist import errors
from dato_dist.procs import group_members, kill_group
from dato_dist.store import Store
from tests import tasks
from tests.conftest import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store_uri(request, monkeypatch, tmp_path):
    """Where the test's jobs live: a local folder or an S3 bucket on moto."""
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_env")
        uri = f"s3://{bucket}/jobs"
    else:
        uri = str(tmp_path / "jobs")
    monkeypatch.setenv("DATO_DIST_STORE_URI", uri)
    return uri


def _store_and_rel(job, name):
    return Store(job.uri.rsplit("/", 1)[0]), f"{job.name}/{name}"


def _completed_job(env2, n=3):
    job = gl.deploy.map_job.create(tasks.add, [{"x": i, "y": 1} for i in range(n)],
                                   environment=env2)
    assert job.wait(timeout=60) == "Completed"
    return job


def test_wait_on_a_corrupt_state_raises_naming_the_file(store_uri, env2, monkeypatch):
    job = _completed_job(env2)
    store, rel = _store_and_rel(job, "state.json")
    state = store.read_json(rel)
    store.write_bytes(rel, b'{"status": "Runn', framed=False)  # a half-written state
    monkeypatch.setenv("DATO_DIST_STORE_READ_RETRY_TIMEOUT", "0.5")
    again = gl.deploy.job.load(job.uri)
    assert again.get_status() == "Unknown"  # never waits (beyond quick re-reads)
    start = time.monotonic()
    with pytest.raises(errors.StateUnreadable, match=r"state\.json.*could not be read"):
        again.wait(timeout=60)
    assert time.monotonic() - start < 10
    for call in (again.get_results, again.get_map_results):
        with pytest.raises(errors.StateUnreadable, match=r"state\.json"):
            call()
    store.write_json(rel, state)
    assert again.get_map_results() == [1, 2, 3]


def test_a_state_torn_for_a_moment_is_read_again(env2, monkeypatch):
    job = _completed_job(env2)
    store, rel = _store_and_rel(job, "state.json")
    state = store.read_json(rel)
    store.write_bytes(rel, b"", framed=False)
    restore = threading.Timer(0.5, store.write_json, (rel, state))
    restore.start()
    try:
        assert gl.deploy.job.load(job.uri).get_map_results() == [1, 2, 3]
    finally:
        restore.join(timeout=10)


def test_cli_job_wait_ends_on_a_corrupt_state(env2):
    job = _completed_job(env2)
    store, rel = _store_and_rel(job, "state.json")
    store.write_bytes(rel, b"[1, 2", framed=False)
    env = dict(os.environ, DATO_DIST_STORE_READ_RETRY_TIMEOUT="0.5")
    out = subprocess.run([sys.executable, "-m", "dato_dist.cli", "job", "wait", job.uri],
                         cwd=REPO, capture_output=True, text=True, timeout=60, env=env,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == errors.StateUnreadable.exit_code, out.stderr
    assert "state.json" in out.stderr and "could not be read" in out.stderr


def _driver_pid(job):
    store, rel = _store_and_rel(job, "launch.json")
    return store.read_json(rel)["pid"]


def test_a_driver_whose_heartbeat_stops_is_reported_lost(store_uri, env2, monkeypatch):
    """A driver that stops writing its heartbeat (here: stopped; elsewhere: its host died)
    makes the job Failed within driver.heartbeat_timeout, though its process exists."""
    monkeypatch.setenv("DATO_DIST_DRIVER_HEARTBEAT_INTERVAL", "0.2")
    monkeypatch.setenv("DATO_DIST_DRIVER_HEARTBEAT_TIMEOUT", "3")
    job = gl.deploy.map_job.create(tasks.sleepy, [{"i": i, "seconds": 60} for i in range(2)],
                                   environment=env2)
    pgid = None
    try:
        wait_for(lambda: job.get_status() == "Running", timeout=30, what="Running")
        pgid = _driver_pid(job)
        time.sleep(4)  # longer than the timeout: a live driver keeps its heartbeat fresh
        assert job.get_status() == "Running"
        os.kill(pgid, signal.SIGSTOP)
        start = time.monotonic()
        assert job.wait(timeout=60) == "Failed"
        assert time.monotonic() - start < 20
        error = job.get_error()
        assert "driver is lost" in error and "driver.heartbeat_timeout" in error, error
        assert gl.deploy.job.load(job.uri).get_status() == "Failed"
        with pytest.raises(errors.JobFailed, match="heartbeat"):
            job.get_results()
        job.cancel()  # the job reads Failed, yet what may still run of it is stopped
        wait_for(lambda: not group_members(pgid), timeout=30, what="the driver's group")
        assert job.get_status() == "Failed"
    finally:
        if pgid is not None:
            try:
                os.kill(pgid, signal.SIGCONT)
            except ProcessLookupError:
                pass  # cancel() stopped it
            kill_group(pgid, grace=1.0)


def test_a_missing_results_file_is_an_error_not_none(store_uri, env2):
    job = gl.deploy.map_job.create(tasks.add, [{"x": i, "y": 1} for i in range(3)],
                                   environment=env2)
    assert job.get_map_results() == [1, 2, 3]
    store, rel = _store_and_rel(job, "results")
    names = store.list(rel)
    assert names and store.read_json(f"{job.name}/state.json")["results_files"] == len(names)
    store.delete(f"{rel}/{names[0]}")
    again = gl.deploy.job.load(job.uri)
    for call in (again.get_map_results, again.get_results, again.get_metrics):
        with pytest.raises(errors.ResultsMissing, match=names[0]):
            call()


def test_a_corrupt_results_file_is_an_error_naming_it(env2):
    job = _completed_job(env2)
    store, rel = _store_and_rel(job, "results")
    name = store.list(rel)[0]
    path = store.local_path(f"{rel}/{name}")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 3)
    with pytest.raises(errors.CorruptStoreFile, match=name):
        gl.deploy.job.load(job.uri).get_map_results()


def test_a_completed_job_without_a_tasks_record_raises(env2):
    """A job written before results_files existed: a task with no record in a Completed
    job is reported missing, never returned as None nor as "raised None: None"."""
    job = gl.deploy.map_job.create(tasks.add, [{"x": 1, "y": 1}], environment=env2,
                                   combiner_function=tasks.add_combiner)
    assert job.get_results() == 2
    store, rel = _store_and_rel(job, "results")
    state = store.read_json(f"{job.name}/state.json")
    del state["results_files"]
    store.write_json(f"{job.name}/state.json", state)
    for name in store.list(rel):
        store.delete(f"{rel}/{name}")
    again = gl.deploy.job.load(job.uri)
    with pytest.raises(errors.ResultsMissing, match=r"no record of 2 task\(s\) \(add-0-0, "
                                                    r"the combiner\)"):
        again.get_results()
    with pytest.raises(errors.ResultsMissing, match="add-0-0"):
        again.get_map_results()


def test_a_lost_record_among_failed_tasks_is_missing_not_raised_none(env2):
    job = gl.deploy.map_job.create(tasks.add, [{"x": 1, "y": 1}, {"x": None, "y": 1}],
                                   environment=env2)
    with pytest.raises(errors.TasksFailed, match="raised TypeError"):
        job.get_results()
    store, rel = _store_and_rel(job, "results")
    state = store.read_json(f"{job.name}/state.json")
    del state["results_files"]
    store.write_json(f"{job.name}/state.json", state)
    for name in store.list(rel):
        store.delete(f"{rel}/{name}")
    with pytest.raises(errors.ResultsMissing, match=r"no record of 2 task\(s\)"):
        gl.deploy.job.load(job.uri).get_results()
