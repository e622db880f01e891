"""Every wait ends and nothing is left behind, on EC2 (issue 10, items 1, 4 and 6).

Real faults on moto's EC2/S3 and sshd hosts on loopback: a head host that dies whole (its
driver and agent with it, while EC2 still says "running"), a driver that stops, a task that
starts processes in every way it can, and a rerun asked of a cluster that is gone.
The functions below are shipped by value (the hosts have only the installed dato_dist).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import kill_quietly
from tests.ec2.ec2_support import HOST_IPS, wait_until
from tests.polling import poll_until_completed

pytestmark = [pytest.mark.ec2, pytest.mark.timeout(180)]
pytest.importorskip("fabric")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def spawn(path, seconds=0.0, fail=False, i=0):
    """Start a child, a child in its own session and a double-forked grandchild (each
    sleeping 300 s), write their pids to ``path``, sleep ``seconds``; then return the pids
    (or raise, with ``fail``)."""
    import json as _json
    import os as _os
    import subprocess as _sp
    import time as _t

    plain = _sp.Popen(["sleep", "300"])
    detached = _sp.Popen(["sleep", "300"], start_new_session=True)
    out = _sp.run(["sh", "-c", "setsid sleep 300 >/dev/null 2>&1 & echo $!"],
                  capture_output=True, text=True, check=True)
    pids = [plain.pid, detached.pid, int(out.stdout.strip())]
    tmp = f"{path}.{_os.getpid()}.tmp"
    with open(tmp, "w") as f:
        _json.dump(pids, f)
    _os.replace(tmp, path)
    _t.sleep(seconds)
    if fail:
        raise RuntimeError(f"task {i} failed on purpose after starting {pids}")
    return pids


def nap(i, seconds):
    import time as _t

    _t.sleep(seconds)
    return i


def maybe_fail(i, flag):
    """Fails while the file ``flag`` exists; ``i`` otherwise."""
    import os as _os

    if i == 1 and _os.path.exists(flag):
        raise ValueError(f"task {i} fails while {flag} exists")
    return i * 10


def _alive(pids):
    from dato_dist.procs import is_alive

    return [p for p in pids if is_alive(p)]


def _describe(pids):
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            out.append(f"{pid}: {cmd[:300]}")
        except OSError:
            out.append(f"{pid}: gone")
    return "\n".join(out)


def _read_pids(paths):
    pids = []
    for p in paths:
        try:
            with open(p) as f:
                pids += json.load(f)
        except (OSError, ValueError):
            return None
    return pids


@pytest.fixture(scope="module")
def cluster(sandbox):
    import dato_dist as gl

    c = gl.deploy.ec2_cluster.create("ends_ec2", f"s3://{sandbox.bucket}/ends", sandbox.config(),
                                     2, idle_shutdown_timeout=-1)
    try:
        yield c
    finally:
        for ip in HOST_IPS[:2]:  # a test may have taken a host away
            sandbox.ssh_hosts([ip])
        c.stop()
        assert set(sandbox.instances("ends_ec2").values()) == {"terminated"}


# -- item 6: no process a task started survives its job ---------------------------------------

@pytest.mark.parametrize("end", ["Completed", "Failed", "Canceled"])
def test_no_process_a_task_started_survives_the_job(cluster, tmp_path, end):
    """A task starts a child, a detached child and a double-forked grandchild, on each host;
    once the job ended (completed, failed or canceled) none of them runs."""
    import dato_dist as gl

    paths = [str(tmp_path / f"pids-{i}.json") for i in range(2)]
    if end == "Failed":  # a plain job whose function raises ends Failed
        paths = paths[:1]
        job = gl.deploy.job.create(spawn, environment=cluster, path=paths[0], seconds=1.5,
                                   fail=True)
    else:
        seconds = 60 if end == "Canceled" else 1.5
        job = gl.deploy.map_job.create(spawn, [{"path": p, "seconds": seconds, "i": i}
                                               for i, p in enumerate(paths)],
                                       environment=cluster)
    pids = []
    try:
        pids = wait_until(lambda: _read_pids(paths), 60, "the tasks' processes")
        assert len(pids) == 3 * len(paths) and len(_alive(pids)) == len(pids)
        if end == "Canceled":
            job.cancel()
        assert job.wait(timeout=60) == end, job.get_error()
        wait_until(lambda: not _alive(pids), 20, "the tasks' processes to be stopped")
    finally:
        for pid in pids:
            kill_quietly(pid)
    if end == "Completed":
        assert sorted(sum(job.get_map_results(), [])) == sorted(pids)
    if end == "Failed":
        assert "failed on purpose" in job.get_error()


# -- item 1: a driver whose heartbeat in S3 is too old is lost ----------------------------------

@pytest.mark.parametrize("fault", ["driver_stopped", "head_host_killed"])
def test_a_lost_driver_is_reported_by_its_heartbeat(cluster, sandbox, monkeypatch, fault):
    """The head host stays "running" for EC2, so only the driver's heartbeat in S3 (the
    state's ``updated``) can tell: it goes stale, and the job reads Failed, class lost,
    within driver.heartbeat_timeout, with the reason. A stopped driver (its process exists)
    and a head host gone whole (driver, agent, sshd) alike; the agents stop what is left."""
    import dato_dist as gl
    from dato_dist import errors

    monkeypatch.setenv("DATO_DIST_DRIVER_HEARTBEAT_INTERVAL", "0.3")
    monkeypatch.setenv("DATO_DIST_DRIVER_HEARTBEAT_TIMEOUT", "3")
    job = gl.deploy.map_job.create(nap, [{"i": i, "seconds": 60} for i in range(2)],
                                   environment=cluster)
    head = sandbox.ssh_hosts.hosts[cluster.hosts[0].private_ip]
    driver = None
    try:
        wait_until(lambda: job.get_status() == "Running", 60, "the job to run")
        driver = wait_until(lambda: ((job._files.read_state() or {}).get("driver") or {}).get(
            "pid"), 30, "the driver's pid in the state")
        time.sleep(4)  # longer than the timeout: a live driver keeps its heartbeat fresh
        assert job.get_status() == "Running"
        if fault == "driver_stopped":
            os.kill(driver, signal.SIGSTOP)
        else:
            head.stop()  # sshd and every process of that host, as if it lost power
            wait_until(lambda: not _alive([driver]), 10, "the head's driver to be gone")
        assert cluster.is_running()  # EC2 cannot tell
        start = time.monotonic()
        assert job.wait(timeout=60) == "Failed"
        lost_after = time.monotonic() - start
        assert lost_after < 20
        error = job.get_error()
        assert error.startswith("[lost]") and "driver is lost" in error, error
        assert "driver.heartbeat_timeout" in error and "/logs" in error, error
        assert job.get_failure_class() == errors.LOST
        with pytest.raises(errors.JobFailed, match="heartbeat"):
            job.get_results()
        again = gl.deploy.job.load(job.uri)
        assert again.get_status() == "Failed"
        out = subprocess.run([sys.executable, "-m", "dato_dist.cli", "job", "wait", job.uri],
                             cwd=REPO, capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
        assert out.returncode != 0 and "driver is lost" in out.stdout + out.stderr, out
        # Nobody has to cancel it: each host's agent sees the stale heartbeat too and stops
        # the job's processes there (a stopped driver and its runners would wait forever).
        left = wait_until(lambda: not sandbox.host_processes(f"--job {job.id}") or None, 30,
                          "the agents to stop what is left of the job", interval=0.5)
        assert left
        print(f"{fault}: read lost after {lost_after:.1f} s, nothing of the job runs after "
              f"{time.monotonic() - start:.1f} s")
        if fault == "driver_stopped":
            assert not _alive([driver])
            # the head's agent recorded it: the store says Failed, so it stays Failed
            state = job._files.read_state()
            assert state["status"] == "Failed" and state["failure_class"] == errors.LOST
            assert "driver is lost" in state["error"], state["error"]
    finally:
        if fault == "driver_stopped" and driver is not None:
            try:
                os.kill(driver, signal.SIGCONT)
            except ProcessLookupError:
                pass
        else:
            sandbox.ssh_hosts([head.ip])  # power it back on
    left = sandbox.host_processes(f"--job {job.id}")
    assert not left, _describe(left)
    assert gl.deploy.job.load(job.uri).get_status() == "Failed"


# -- item 4: a rerun asked of a cluster that is gone --------------------------------------------

def _store_snapshot(sandbox, prefix):
    """``{key: ETag}`` of every object under ``prefix`` in the sandbox's bucket."""
    out = {}
    for page in sandbox.s3.get_paginator("list_objects_v2").paginate(Bucket=sandbox.bucket,
                                                                     Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = obj["ETag"]
    return out


@pytest.mark.parametrize("how", ["terminated", "stopped"])
def test_rerun_on_a_cluster_that_is_gone_fails_at_once_and_changes_nothing(
        sandbox, tmp_path, how):
    """``job.rerun()`` (and ``dato-dist job rerun``) of a job whose cluster was terminated
    (``cluster.stop()``) or whose instances were stopped (EC2 stop, as an idle shutdown
    does) raises ClusterNotRunning at once, naming the cluster and what to do, and leaves
    the job's files as they were: no claim, no state, no launch; a new job is refused
    alike and leaves nothing. Then the advice works: ``start()`` ends the old instances
    (stopped ones too) and launches new ones, and the rerun runs the failed task only."""
    import dato_dist as gl
    from dato_dist.errors import ClusterNotRunning

    name = f"gone-{how}"
    flag = tmp_path / "fail"
    flag.write_text("")
    c = gl.deploy.ec2_cluster.create(name, f"s3://{sandbox.bucket}/{name}", sandbox.config(),
                                     1, idle_shutdown_timeout=-1)
    ids = [h.instance_id for h in c.hosts]
    try:
        job = gl.deploy.map_job.create(maybe_fail, [{"i": i, "flag": str(flag)}
                                                    for i in range(3)], environment=c)
        assert job.wait(timeout=60) == "Completed"
        assert job.get_map_results() == [0, None, 20]
        if how == "terminated":
            c.stop()
        else:
            c._hosts().run_all(lambda h: c._agent_cmd(h, "stop-all", "--grace", "1"),
                               check=False, timeout=30)
            sandbox.ec2.stop_instances(InstanceIds=ids)
            wait_until(lambda: set(sandbox.instances(name).values()) == {"stopped"}, 30,
                       "the instances to be stopped")
        prefix = f"{name}/jobs/{job.name}/"
        before = _store_snapshot(sandbox, prefix)
        everything = _store_snapshot(sandbox, f"{name}/jobs/")
        assert f"{prefix}state.json" in before
        for who in (job, gl.deploy.job.load(job.uri)):
            start = time.monotonic()
            with pytest.raises(ClusterNotRunning) as e:
                who.rerun(failed_only=True)
            took = time.monotonic() - start
            print(f"rerun on a {how} cluster refused after {took:.2f} s")
            assert took < 10
            message = str(e.value)
            assert f"'{name}'" in message and "not running" in message, message
            assert f"Cannot rerun job '{job.name}'" in message, message
            assert ".start()" in message and f"s3://{sandbox.bucket}/{name}" in message
            assert _store_snapshot(sandbox, prefix) == before
            assert not [k for k in before if "/reruns/" in k]
        # A new job is refused the same way, and leaves nothing in the store either.
        with pytest.raises(ClusterNotRunning, match=f"'{name}'"):
            gl.deploy.map_job.create(maybe_fail, [{"i": 0, "flag": str(flag)}], environment=c)
        assert _store_snapshot(sandbox, f"{name}/jobs/") == everything
        out = subprocess.run([sys.executable, "-m", "dato_dist.cli", "job", "rerun", job.uri,
                              "--failed"], cwd=REPO, capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
        assert out.returncode == ClusterNotRunning.exit_code, out
        assert f"'{name}'" in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert _store_snapshot(sandbox, f"{name}/jobs/") == everything
        assert job.get_status() == "Completed"
        # What the message says to do: start it again (stopped instances are ended first,
        # not left behind), then rerun.
        c = gl.deploy.ec2_cluster.load(f"s3://{sandbox.bucket}/{name}")
        c.start()
        assert all(sandbox.instances(name)[i] == "terminated" for i in ids)
        ids += [h.instance_id for h in c.hosts]
        flag.unlink()
        again = gl.deploy.job.load(job.uri).rerun(failed_only=True)
        assert again.wait(timeout=90) == "Completed", again.get_error()
        assert again.get_map_results() == [0, 10, 20]
    finally:
        c.stop()
        assert set(sandbox.instances(name).values()) == {"terminated"}


# -- item 2: a running EC2 job polled as fast as possible reads whole -----------------------------



def test_a_running_ec2_job_polled_as_fast_as_possible(cluster):
    """The driver on the head host replaces state.json and writes results in S3 while the
    client polls ``get_status()``, ``get_metrics()`` and ``get_map_results(wait=False)`` in a
    tight loop: never 'Unknown', never an error, statuses only move forward, results only
    grow (the issue saw 'Unknown' once in 110 polls, and a CorruptStoreFile, on EC2)."""
    import dato_dist as gl

    n = 12
    job = gl.deploy.map_job.create(nap, [{"i": i, "seconds": 0.5} for i in range(n)],
                                   environment=cluster)
    polls, results = poll_until_completed(job, n, timeout=120)
    assert results == list(range(n))
    print(f"{polls} polls of status, metrics and results of an EC2 job")


# -- item 6: task output beyond the cap is cut, on the hosts too ----------------------------------

def shout(i, nbytes):
    import sys as _sys

    _sys.stdout.write("z" * nbytes + "\n")
    _sys.stdout.flush()
    return i


def test_task_output_beyond_the_cap_is_cut_on_the_hosts(cluster, monkeypatch):
    """runner.max_task_output reaches the hosts' runners (in SETUP): a task printing 1 MB
    leaves at most the cap in its runner's log in S3, with the marker line."""
    import dato_dist as gl

    monkeypatch.setenv("DATO_DIST_RUNNER_MAX_TASK_OUTPUT", "65536")
    job = gl.deploy.map_job.create(shout, [{"i": 0, "nbytes": 1_000_000}], environment=cluster)
    assert job.wait(timeout=60) == "Completed" and job.get_map_results() == [0]

    def cut_log():
        for name, text in job.read_logs().items():
            if name.startswith("runner-") and "output cut" in text:
                return name, text
        return None

    name, text = wait_until(cut_log, 30, "a runner log with the cut in S3")
    assert len(text) < 65536 + 4000, (name, len(text))
    assert (f"output cut: {1_000_001 - 65536} bytes of this task's output were dropped "
            "(over 65536 bytes, config key runner.max_task_output)") in text, text[-400:]


# -- items 3 and 5: never a wrong answer, failures explained, on EC2 ------------------------------

def end_runner_or_return(i):
    import os as _os

    if i == 1:
        _os._exit(7)  # ends the host's runner every time it runs
    return i


def test_a_task_that_ends_its_runner_on_a_host_is_lost_with_its_attempts(cluster):
    """The hosts' agents replace the runner each time; the driver fails the task alone as
    ``RunnerLost`` (class lost) after 3 runs, counted in ``attempts``; ``worker`` names the
    instance. And a results file of the job lost from S3 afterwards is an error naming it,
    never ``None``."""
    import dato_dist as gl
    from dato_dist import errors

    job = gl.deploy.map_job.create(end_runner_or_return, [{"i": i} for i in range(3)],
                                   environment=cluster)
    assert job.wait(timeout=120) == "Completed", job.get_error()
    assert job.get_map_results() == [0, None, 2]
    row = job.get_metrics()[1]
    assert row["exception"] == "RunnerLost" and row["failure_class"] == errors.LOST, row
    assert row["attempts"] == 3, row
    hosts = {h.instance_id for h in cluster.hosts}
    assert row["worker"].rsplit("-", 1)[0] in hosts, row["worker"]
    store = job._files.store
    names = job._files.results_names()
    assert names
    store.delete(f"{job._files.job_id}/results/{names[0]}")  # the S3 object goes
    again = gl.deploy.job.load(job.uri)
    for call in (again.get_map_results, again.get_metrics):
        with pytest.raises(errors.ResultsMissing, match=names[0]):
            call()


def import_missing(i):
    if i == 1:
        import dd_no_such_module_on_the_hosts  # noqa: F401
    return i


def test_a_module_missing_on_the_hosts_is_an_environment_failure(cluster):
    """A task whose import fails on the host is class environment (a package the hosts
    lack), not user: the fix is in the cluster's packages, not in the code."""
    import dato_dist as gl
    from dato_dist import errors

    job = gl.deploy.map_job.create(import_missing, [{"i": i} for i in range(3)],
                                   environment=cluster)
    assert job.wait(timeout=60) == "Completed", job.get_error()
    assert job.get_map_results() == [0, None, 2]
    row = job.get_metrics()[1]
    assert row["failure_class"] == errors.ENVIRONMENT, row
    assert "dd_no_such_module_on_the_hosts" in row["exception_message"], row
