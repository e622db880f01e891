"""The node supervisor (dato_dist/node.py): restart limits, log shipping, stopping
everything it started, the key source, and runner settings that travel in SETUP."""

import os
import signal
import subprocess
import sys
import time
from multiprocessing.connection import Listener

import pytest

import dato_dist as gl
from dato_dist import node
from dato_dist.jobfiles import JobFiles
from dato_dist.procs import is_alive
from dato_dist.runner import EXIT_NO_DRIVER
from dato_dist.store import Store
from tests import tasks
from tests.conftest import wait_for

KEY = b"k" * 32


@pytest.fixture
def silent_driver():
    """A listener that never accepts: a runner connecting to it waits in its handshake, so
    it stays alive until it is stopped (the test's stand-in for a busy driver's port)."""
    listener = Listener(("127.0.0.1", 0), authkey=KEY)
    yield listener.address
    listener.close()


@pytest.fixture
def runners(silent_driver, tmp_path):
    made = []

    def make(**kwargs):
        r = node.Runners(silent_driver, KEY, log_dir=str(tmp_path / "logs"), **kwargs)
        made.append(r)
        return r

    yield make
    for r in made:  # nothing a test started outlives it
        r.stop_all(grace=0.5, first=signal.SIGKILL)


def _alive_pids(r):
    return [r.pid(slot) for slot in r.procs]


def test_lost_runners_are_replaced_up_to_the_limit(runners):
    r = runners(max_restarts=2, id_prefix="h1-")
    r.start(1)
    outcomes = []
    for _ in range(3):
        pid = wait_for(lambda: r.pid(0) and is_alive(r.pid(0)) and r.pid(0), 10,
                       what="the runner to run")
        os.kill(pid, signal.SIGKILL)
        gone = wait_for(r.reap, 10, what="the killed runner to be reaped")
        assert gone == [(0, -signal.SIGKILL)]
        assert node.runner_lost(gone[0][1])
        outcomes.append(r.replace(0))
    assert outcomes == [True, True, False]  # two replacements, then the slot stays empty
    assert r.restarts == {0: 2} and not r.procs
    assert r.runner_id(0) == "h1-0" and r.slot_of("h1-0") == 0 and r.slot_of("h2-0") is None


def test_a_runner_done_is_not_lost(tmp_path):
    """A runner with no driver to work for exits with a 'done' code: nothing to replace."""
    with Listener(("127.0.0.1", 0)) as probe:
        address = probe.address  # a port nobody listens on once closed
    r = node.Runners(address, KEY, log_dir=str(tmp_path))
    r.start(1)
    gone = wait_for(r.reap, 30, what="the runner to give up")
    assert gone == [(0, EXIT_NO_DRIVER)] and not node.runner_lost(EXIT_NO_DRIVER)
    assert "cannot reach the driver" in (tmp_path / "runner-0.log").read_text()


def test_job_gives_up_after_max_runner_restarts(monkeypatch):
    """The limit comes from the job's spec (config driver.max_runner_restarts): with 0, a
    task that kills its only runner leaves the job without runners: Failed, saying why."""
    monkeypatch.setenv("DATO_DIST_DRIVER_MAX_RUNNER_RESTARTS", "0")
    env = gl.deploy.environment.LocalAsync("one", num_workers=1)
    job = gl.deploy.map_job.create(lambda i: tasks.suicide(), [{"i": 0}, {"i": 1}],
                                   environment=env)
    assert job.wait(timeout=60) == "Failed"
    assert "max_runner_restarts" in job.get_error()
    assert "replacement" not in job.read_logs()["driver.log"]


FORK_AND_STOP = r"""
import signal, sys
from dato_dist import node
from dato_dist.procs import is_alive
host, port, log_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
inner = node.Runners((host, port), b"k" * 32, log_dir=log_dir)
inner.start(2, fork=True)   # from a process without threads, as the driver does
inner.spawn(2)
pids = [inner.pid(slot) for slot in inner.procs]
print(" ".join(map(str, pids)), flush=True)
inner.stop_all(grace=0.5, first=signal.SIGTERM)
sys.exit(0 if not inner.procs and not any(is_alive(p) for p in pids) else 2)
"""


def test_stop_all_stops_forked_and_spawned_runners(runners, silent_driver, tmp_path):
    # Forked runners come from a fresh interpreter: pytest's process has threads, and a
    # fork of it could inherit a lock another thread holds.
    out = subprocess.run([sys.executable, "-c", FORK_AND_STOP, silent_driver[0],
                          str(silent_driver[1]), str(tmp_path / "inner-logs")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    inner_pids = [int(p) for p in out.stdout.split()]
    assert len(inner_pids) == 3 and not [p for p in inner_pids if is_alive(p)]

    r = runners()
    r.start(3)
    pids = wait_for(lambda: len(_alive_pids(r)) == 3 and _alive_pids(r), 10, what="runners")
    r.stop_all(grace=2.0, first=signal.SIGTERM)
    assert not r.procs and not [p for p in pids if is_alive(p)]


def test_stop_processes_kills_what_ignores_sigterm():
    stubborn = subprocess.Popen([sys.executable, "-c",
                                 "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"],
                                stdout=subprocess.PIPE)
    try:
        assert stubborn.stdout.readline() == b"ready\n"
        t0 = time.monotonic()
        codes = node.stop_processes([stubborn], grace=0.5)
        assert codes == [-signal.SIGKILL] and time.monotonic() - t0 < 5
    finally:
        if stubborn.poll() is None:
            stubborn.kill()
        stubborn.wait(10)


def test_log_shipper_copies_changed_files(tmp_path):
    files = JobFiles(Store(str(tmp_path / "store")), "job1")
    logs = tmp_path / "node-logs"
    logs.mkdir()
    (logs / "runner-0.log").write_text("one\n")
    shipper = node.LogShipper(files, [str(logs)], prefix="worker-7-", interval=0.05)
    with shipper:
        wait_for(lambda: "worker-7-runner-0.log" in files.log_names(), 10,
                 what="the first copy")
        assert files.read_log("worker-7-runner-0.log") == b"one\n"
        target = files.store.local_path(files.log_rel("worker-7-runner-0.log"))
        copied_at = os.stat(target).st_mtime_ns
        time.sleep(0.3)  # several turns with no change: no new copy
        assert os.stat(target).st_mtime_ns == copied_at
        with open(logs / "runner-0.log", "a") as f:
            f.write("two\n")
        wait_for(lambda: files.read_log("worker-7-runner-0.log") == b"one\ntwo\n", 10,
                 what="the changed file's copy")
        (logs / "driver.log").write_text("last words\n")
    # the final copy at exit takes what was written after the last turn
    assert files.read_log("worker-7-driver.log") == b"last words\n"


@pytest.mark.s3
def test_log_shipper_only_for_a_remote_store(tmp_path, s3_env, monkeypatch, env2):
    local = JobFiles(Store(str(tmp_path / "store")), "j")
    assert node.LogShipper.if_remote(local, [str(tmp_path)]) is None
    remote = JobFiles(Store(f"s3://{s3_env}/jobs"), "j")
    assert isinstance(node.LogShipper.if_remote(remote, [str(tmp_path)]), node.LogShipper)
    # a local job on a remote store: its driver copies the logs there
    monkeypatch.setenv("DATO_DIST_STORE_URI", f"s3://{s3_env}/jobs")
    job = gl.deploy.map_job.create(tasks.add, [{"x": i, "y": 1} for i in range(3)],
                                   environment=env2)
    assert job.get_map_results() == [1, 2, 3]
    files = JobFiles(Store(f"s3://{s3_env}/jobs"), job.id)
    wait_for(lambda: {"driver.log", "runner-0.log", "runner-1.log"} <= set(files.log_names())
             and b"Completed" in files.read_log("driver.log"), 20,
             what="the logs in S3")
    shipped = b"".join(files.read_log(n) for n in ("runner-0.log", "runner-1.log"))
    assert b"[dato-dist] task add-0-" in shipped


def test_job_keys_from_the_environment_or_a_key_value_store():
    environ = {"DATO_DIST_AUTHKEY": KEY.hex(), "OTHER": "x"}
    assert node.job_keys(environ=environ) == {"authkey": KEY}
    assert environ == {"OTHER": "x"}  # taken out: children get it only on purpose
    assert node.job_keys(environ={}) == {"authkey": None}
    assert node.key_environ({"authkey": KEY}) == {"DATO_DIST_AUTHKEY": KEY.hex()}

    class KeyValue(dict):  # Skein's kv.wait(key) returns the value once it is set
        def wait(self, key, timeout=None):
            return self[key]

    assert node.job_keys(KeyValue({"dato-dist.authkey": KEY.hex().encode()})) == {
        "authkey": KEY}


def test_record_driver_death_only_without_a_final_status(tmp_path):
    files = JobFiles(Store(str(tmp_path)), "j")
    files.write_state({"status": "Running", "counts": {"total": 3}})
    assert node.record_driver_death(files, "the driver died; see driver.log")
    state = files.read_state()
    assert state["status"] == "Failed" and state["error"] == "the driver died; see driver.log"
    assert state["counts"] == {"total": 3}
    files.write_state({"status": "Completed"})
    assert not node.record_driver_death(files, "too late")
    assert files.read_state() == {"status": "Completed"}


def test_runner_settings_reach_local_runners_in_setup(monkeypatch):
    """Non-default runner settings reach the runners from the job's spec (SETUP), with no
    flag on any command line; a long result_flush_interval is seen in the logs."""
    monkeypatch.setenv("DATO_DIST_RUNNER_RESULT_FLUSH_INTERVAL", "7.5")
    monkeypatch.setenv("DATO_DIST_RUNNER_HEARTBEAT_INTERVAL", "0.3")
    monkeypatch.setenv("DATO_DIST_JOB_MAX_RETRIES", "2")
    env = gl.deploy.environment.LocalAsync("two-set", num_workers=2)
    # Tasks that take a while, so both runners are up and set up before the job ends.
    job = gl.deploy.map_job.create(tasks.sleepy, [{"i": i, "seconds": 0.5} for i in range(4)],
                                   environment=env)
    assert job.get_map_results() == [0, 1, 4, 9]
    logs = job.read_logs()
    runner_logs = [text for name, text in logs.items() if name.startswith("runner-")]
    assert len(runner_logs) == 2
    for text in runner_logs:
        assert ("set up: max_retries=2, heartbeat_interval=0.3, "
                "result_flush_interval=7.5") in text, text
