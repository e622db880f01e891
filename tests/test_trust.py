"""Shared machines and shared stores: a second local user (``nobody``) can neither read a
victim's jobs, nor make the victim run code by planting files, nor stall a job by
connecting to its driver. The attacks run as a real second user (``setpriv``), against the
local store and against S3 on moto."""

import os
import pickle
import shutil
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time

import pytest

import dato_dist as gl
from dato_dist import keys
from dato_dist.errors import StoreNotOwned, UntrustedStoreFile
from dato_dist.store import Store
from tests import tasks
from tests.conftest import kill_quietly, wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
PARAMS = [{"x": 1, "y": 2}, {"x": 3, "y": 4}]
ANSWER = [3, 7]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists("/usr/bin/python3"),
    reason="needs root, setpriv and /usr/bin/python3 to act as a second user")

# What the attacker unpickles into a victim's process if it ever gets there: it creates the
# marker file. Written by the attacker's own process (as nobody) with the store's own code.
EVIL = """
import os, pickle, sys
sys.path.insert(0, {repo!r})
from dato_dist.store import frame

class Evil:
    def __reduce__(self):
        return (open, ({marker!r}, "w"))

payload = pickle.dumps(Evil())
crc_framed = frame(payload)                                   # the old, CRC-only frame
forged = frame(payload, key=os.urandom(32), name="whatever")  # signed with a key of its own
"""


def as_nobody(code, *, env=None, check=True):
    """Run Python ``code`` as the user nobody (the system interpreter, our packages)."""
    environ = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": os.pathsep.join(
        [sysconfig.get_paths()["purelib"], REPO])}
    environ.update(env or {})
    r = subprocess.run(NOBODY + ["/usr/bin/python3", "-c", code], env=environ,
                       capture_output=True, text=True, timeout=60, cwd="/tmp")
    if check:
        assert r.returncode == 0, r.stderr
    return r


def aws_env():
    return {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                       "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")}


@pytest.fixture
def shared(monkeypatch):
    """A folder every local user may write (like /tmp or a team's folder), used as the
    victim's store root; the marker an exploit would create goes in it too."""
    path = tempfile.mkdtemp(prefix="dd-shared-", dir="/tmp")
    os.chmod(path, 0o1777)
    monkeypatch.setenv("DATO_DIST_STORE_URI", path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "dato_dist.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO)


def default_names(prefix, seconds=20):
    """The default job names of the next ``seconds`` seconds."""
    now = time.time()
    return [f"{prefix}-{time.strftime('%b-%d-%Y-%H-%M-%S', time.localtime(now + s))}"
            for s in range(-1, seconds)]


# -- nobody cannot read --------------------------------------------------------------------
@pytest.mark.parametrize("start_method", ["launcher", "spawn"])
def test_job_files_are_private_whatever_the_umask(shared, env2, monkeypatch, start_method):
    monkeypatch.setenv("DATO_DIST_LOCAL_START_METHOD", start_method)
    old = os.umask(0)
    try:
        job = gl.deploy.map_job.create(tasks.add, PARAMS, environment=env2)
        assert job.get_map_results() == ANSWER
    finally:
        os.umask(old)
    folder = job.uri
    seen = []
    for root, _dirs, files in os.walk(folder):
        assert stat.S_IMODE(os.stat(root).st_mode) == 0o700, root
        for name in files:
            path = os.path.join(root, name)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
            seen.append(os.path.relpath(path, folder))
    assert {"spec.json", "function.pkl", "tasks.pkl", "state.json", "launch.json",
            "logs/driver.log", "logs/runner-0.log", "results/00000000.pkl"} <= set(seen)
    r = as_nobody(f"print(open({os.path.join(folder, 'tasks.pkl')!r}, 'rb').read())",
                  check=False)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    r = as_nobody(f"import os; print(os.listdir({folder!r}))", check=False)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    key_file = keys.key_path()
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_a_store_of_another_user_is_refused(monkeypatch, env2, shared):
    theirs = os.path.join(shared, "their-store")
    as_nobody(f"import os; os.mkdir({theirs!r}, 0o777); os.chmod({theirs!r}, 0o777)")
    with pytest.raises(StoreNotOwned, match="belongs to user nobody"):
        Store(theirs).check()
    monkeypatch.setenv("DATO_DIST_STORE_URI", theirs)
    with pytest.raises(StoreNotOwned):
        gl.deploy.map_job.create(tasks.add, PARAMS, environment=env2)
    assert os.listdir(theirs) == []  # nothing of the victim's went there


# -- nobody cannot make the victim run code ------------------------------------------------
def test_results_planted_by_another_user_are_refused_unrun(shared, env2):
    job = gl.deploy.map_job.create(tasks.add, PARAMS, environment=env2)
    assert job.get_map_results() == ANSWER
    marker = os.path.join(shared, "pwned")
    results = os.path.join(job.uri, "results")
    # As if the store were group-writable (an old store made under umask 0, a team folder).
    os.chmod(job.uri, 0o777)
    os.chmod(results, 0o777)
    as_nobody(EVIL.format(repo=REPO, marker=marker) + f"""
open({os.path.join(results, "00000099.pkl")!r}, "wb").write(crc_framed)
tmp = {os.path.join(results, ".forged")!r}
open(tmp, "wb").write(forged)
os.replace(tmp, {os.path.join(results, "00000000.pkl")!r})  # the victim's own file, replaced
""")
    again = gl.deploy.job.load(job.uri)
    with pytest.raises(UntrustedStoreFile, match=r"results/0000000[09]\.pkl.*cannot be trusted"):
        again.get_map_results()
    r = cli("job", "show", job.uri)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "cannot be trusted" in r.stderr
    assert not os.path.exists(marker)


def test_a_function_planted_by_another_user_is_refused_unrun(shared, env2):
    job = gl.deploy.map_job.create(tasks.add, PARAMS, environment=env2)
    assert job.get_map_results() == ANSWER
    marker = os.path.join(shared, "pwned")
    os.chmod(job.uri, 0o777)
    as_nobody(EVIL.format(repo=REPO, marker=marker) + f"""
tmp = {os.path.join(job.uri, ".t")!r}
open(tmp, "wb").write(crc_framed)
os.replace(tmp, {os.path.join(job.uri, "tasks.pkl")!r})
""")
    with pytest.raises(UntrustedStoreFile, match="tasks.pkl"):
        gl.deploy.job.load(job.uri).get_parameters()
    assert not os.path.exists(marker)


def test_a_folder_planted_under_the_next_default_name_is_not_adopted(shared, env2):
    marker = os.path.join(shared, "pwned")
    planted = default_names("add")
    as_nobody(EVIL.format(repo=REPO, marker=marker) + f"""
import json
for name in {planted!r}:
    folder = os.path.join({shared!r}, name)
    os.makedirs(folder + "/results")
    os.chmod(folder, 0o777)
    os.chmod(folder + "/results", 0o777)
    open(folder + "/results/00000000.pkl", "wb").write(crc_framed)
""")
    job = gl.deploy.map_job.create(tasks.add, PARAMS, environment=env2)
    assert job.name not in planted and job.name.rsplit("-", 1)[0] in planted
    assert job.get_map_results() == ANSWER
    assert os.stat(job.uri).st_uid == 0
    for name in planted:  # the victim wrote nothing into the attacker's folders
        assert os.listdir(os.path.join(shared, name)) == ["results"]
    with pytest.raises(StoreNotOwned, match="belongs to user nobody"):
        gl.deploy.job.load(os.path.join(shared, planted[3]))
    r = cli("job", "show", os.path.join(shared, planted[3]))
    assert r.returncode == 4 and "belongs to user nobody" in r.stderr
    assert not os.path.exists(marker)


@pytest.mark.s3
def test_s3_results_planted_by_another_user_are_refused_unrun(s3_env, monkeypatch, env2):
    marker_dir = tempfile.mkdtemp(prefix="dd-marker-", dir="/tmp")
    marker = os.path.join(marker_dir, "pwned")
    monkeypatch.setenv("DATO_DIST_STORE_URI", f"s3://{s3_env}/jobs")
    try:
        job = gl.deploy.map_job.create(tasks.add, PARAMS, environment=env2)
        assert job.get_map_results() == ANSWER
        prefix = f"jobs/{job.name}"
        as_nobody(EVIL.format(repo=REPO, marker=marker) + f"""
import boto3
s3 = boto3.client("s3")
s3.put_object(Bucket={s3_env!r}, Key={prefix!r} + "/results/00000099.pkl", Body=crc_framed)
s3.put_object(Bucket={s3_env!r}, Key={prefix!r} + "/results/00000000.pkl", Body=forged)
""", env=aws_env())
        with pytest.raises(UntrustedStoreFile, match="cannot be trusted"):
            gl.deploy.job.load(job.uri).get_map_results()
        r = cli("job", "show", job.uri)
        assert r.returncode == 4 and "cannot be trusted" in r.stderr, r.stderr
        assert not os.path.exists(marker)
    finally:
        shutil.rmtree(marker_dir, ignore_errors=True)


@pytest.mark.s3
def test_s3_folder_planted_under_the_next_default_name_is_not_adopted(s3_env, monkeypatch,
                                                                       env2):
    marker_dir = tempfile.mkdtemp(prefix="dd-marker-", dir="/tmp")
    marker = os.path.join(marker_dir, "pwned")
    monkeypatch.setenv("DATO_DIST_STORE_URI", f"s3://{s3_env}/jobs")
    planted = default_names("add")
    try:
        as_nobody(EVIL.format(repo=REPO, marker=marker) + f"""
import boto3, json
s3 = boto3.client("s3")
for name in {planted!r}:
    spec = {{"id": name, "name": name, "kind": "map_job", "function_name": "add",
            "num_tasks": 2, "task_name_prefix": "add-0-", "has_combiner": False,
            "environment": {{"type": "LocalAsync", "name": "two"}}, "nonce": "0" * 32}}
    s3.put_object(Bucket={s3_env!r}, Key="jobs/" + name + "/spec.json",
                  Body=json.dumps(spec).encode())
    s3.put_object(Bucket={s3_env!r}, Key="jobs/" + name + "/results/00000000.pkl",
                  Body=crc_framed)
""", env=aws_env())
        job = gl.deploy.map_job.create(tasks.add, PARAMS, environment=env2)
        assert job.name not in planted
        assert job.get_map_results() == ANSWER
        with pytest.raises(UntrustedStoreFile, match="spec.json"):
            gl.deploy.job.load(f"s3://{s3_env}/jobs/{planted[3]}")
        r = cli("job", "show", f"s3://{s3_env}/jobs/{planted[3]}")
        assert r.returncode == 4 and "cannot be trusted" in r.stderr, r.stderr
        assert not os.path.exists(marker)
    finally:
        shutil.rmtree(marker_dir, ignore_errors=True)


# -- the same user elsewhere ---------------------------------------------------------------
def test_a_job_reloads_with_the_same_key_and_only_with_it(env2, monkeypatch):
    job = gl.deploy.map_job.create(tasks.add, PARAMS, environment=env2)
    assert job.get_map_results() == ANSWER
    with open(keys.key_path()) as f:
        copied = f.read().strip()
    # "Another machine": no key file of its own, the copied key in DATO_DIST_KEY.
    monkeypatch.setenv("DATO_DIST_KEY", copied)
    assert gl.deploy.job.load(job.uri).get_map_results() == ANSWER
    monkeypatch.setenv("DATO_DIST_KEY", os.urandom(32).hex())
    with pytest.raises(UntrustedStoreFile, match="copy your key file"):
        gl.deploy.job.load(job.uri)


def test_no_key_in_the_store_logs_or_command_lines(env2):
    job = gl.deploy.map_job.create(tasks.sleepy, [{"i": i, "seconds": 0.3} for i in range(4)],
                                   environment=env2)
    job_key, user_key = job._files.key.hex(), keys.user_key().hex()
    running = wait_for(lambda: job.get_status() == "Running" and _cmdlines(), timeout=30,
                       what="the job's processes")
    assert job.wait(timeout=60) == "Completed"
    forbidden = [job_key.encode(), user_key.encode(), bytes.fromhex(job_key),
                 bytes.fromhex(user_key)]
    for root, _, names in os.walk(job.uri):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                data = f.read()
            assert not [k for k in forbidden if k in data], os.path.join(root, name)
    assert not [k for k in forbidden[:2] if k.decode() in running]
    r = cli("job", "show", job.uri)
    assert r.returncode == 0 and job_key not in r.stdout + r.stderr
    assert job_key not in repr(job._files) and job_key not in str(job)


def _cmdlines():
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    out.append(f.read().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return "\n".join(out)


# -- nobody cannot stall a job -------------------------------------------------------------
def _driver_address(job):
    state = job._files.read_state() or {}
    return tuple(state["address"]) if state.get("address") else None


def _attack(address, stop):
    """1 silent connection and 100 that send garbage, as the user nobody, held until the
    file ``stop`` exists (in a folder nobody can see; at most 120 s)."""
    return subprocess.Popen(NOBODY + ["/usr/bin/python3", "-c", f"""
import os, socket, time
deadline, held = time.monotonic() + 120, []
for i in range(101):
    try:
        s = socket.create_connection({address!r}, timeout=5)
        held.append(s)
        if i:  # the first one stays silent
            s.sendall(os.urandom(64) if i % 2 else b"GET / HTTP/1.0\\r\\n\\r\\n")
    except OSError:
        pass
while not os.path.exists({stop!r}) and time.monotonic() < deadline:
    time.sleep(0.05)
"""], env={"PATH": "/usr/bin:/bin"}, cwd="/tmp")


def _run_with_runner_kills(env, attack_dir=None):
    """A job whose runners are killed twice and replaced; its wall time (and the driver's
    log). With ``attack_dir``, nobody holds a silent connection and sends garbage on 100
    more from the moment the driver listens."""
    start = time.monotonic()
    # 40 tasks of 0.3 s on 2 runners: 6 s of work, long enough to catch running twice on
    # a loaded machine (with 0.1 s tasks it once completed before the first poll saw one).
    job = gl.deploy.map_job.create(tasks.sleepy, [{"i": i, "seconds": 0.3} for i in range(40)],
                                   environment=env)
    attacker = None
    try:
        if attack_dir:
            address = wait_for(lambda: _driver_address(job), timeout=30, what="the driver")
            attacker = _attack(address, os.path.join(attack_dir, "stop"))
        for _ in range(2):
            running = wait_for(lambda: _running_pids(job) or _ended(job), timeout=30,
                               what="running tasks")
            assert running != "ended", f"the job ended ({job.get_status()}) before a kill"
            for pid in set(running):
                kill_quietly(pid)
            time.sleep(0.3)
        assert job.wait(timeout=90) == "Completed"
        elapsed = time.monotonic() - start
        assert job.get_map_results() == [i * i for i in range(40)]
        return elapsed, job.read_logs()["driver.log"]
    finally:
        if attacker is not None:
            open(os.path.join(attack_dir, "stop"), "w").close()
            try:
                attacker.wait(10)
            except subprocess.TimeoutExpired:
                kill_quietly(attacker.pid)
                attacker.wait(5)


def _ended(job):
    return "ended" if job.get_status() not in ("Pending", "Running") else None


def _running_pids(job):
    metrics = job.get_metrics()
    return [int(r["worker"].rsplit(":", 1)[1]) for r in metrics or ()
            if r["status"] == "Running"]


@pytest.mark.slow
def test_silent_and_garbage_connections_do_not_stall_replacement_runners(env2, attack_dir):
    """The job completes, its killed runners replaced, while nobody holds a silent
    connection open and sends garbage on 100 more. (That a good handshake is not queued
    behind silent ones is the next test's; the wall times are printed, not asserted: a
    timed test on a shared 2-core machine fails on load, not on code.)"""
    baseline, _ = _run_with_runner_kills(env2)
    attacked, log = _run_with_runner_kills(env2, attack_dir=attack_dir)
    print(f"job with runner kills: {baseline:.2f} s alone, {attacked:.2f} s under attack")
    assert "replacement" in log and "did not authenticate" in log
    # The log says so without a line per bad connection.
    assert log.count("did not authenticate") < 50


def test_acceptor_drops_bad_peers_and_lets_good_ones_in():
    """Unit view of the same: a wrong key and a silent peer, then an honest client."""
    from multiprocessing import AuthenticationError
    from multiprocessing.connection import Client

    from dato_dist.listener import Acceptor, bind_listener

    key = os.urandom(32)
    listener = bind_listener("127.0.0.1", None, key)
    acceptor = Acceptor(listener, handshake_timeout=0.5)
    try:
        silent = [socket.create_connection(listener.address) for _ in range(80)]
        with pytest.raises((AuthenticationError, EOFError, OSError)):
            Client(listener.address, authkey=b"wrong" * 8)
        t0 = time.monotonic()
        good = Client(listener.address, authkey=key)
        assert time.monotonic() - t0 < 0.5  # not queued behind the silent ones
        wait_for(lambda: acceptor.conns, timeout=5, what="the good connection")
        assert len(acceptor.conns) == 1
        # the silent ones are dropped after the deadline
        wait_for(lambda: acceptor.dropped >= 81, timeout=10, what="silent peers dropped")
        good.close()
        for s in silent:
            s.close()
    finally:
        acceptor.close()


def test_unpickling_is_never_reached_for_an_unsigned_file(tmp_path):
    """The check happens before pickle: a CRC-framed pickle is refused by JobFiles."""
    from dato_dist.jobfiles import JobFiles
    from dato_dist.store import frame

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    store = Store(str(tmp_path / "jobs"))
    files = JobFiles(store, "j", key=b"k" * 32)
    store.write_bytes("j/results/00000000.pkl", frame(pickle.dumps(Evil())), framed=False)
    with pytest.raises(UntrustedStoreFile):
        files.read_results()
    assert not marker.exists()


def test_the_user_key_file_is_private_and_checked(tmp_path, monkeypatch):
    from dato_dist.errors import KeyFileError

    monkeypatch.delenv("DATO_DIST_KEY", raising=False)
    old = os.umask(0)
    try:
        key = keys.user_key(tmp_path / "home")
    finally:
        os.umask(old)
    path = tmp_path / "home" / "key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(key) == 32
    assert keys.user_key(tmp_path / "home") == key  # made once, then read
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        keys.user_key(tmp_path / "home")
    os.chmod(path, 0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(KeyFileError, match="belongs to uid 65534"):
        keys.user_key(tmp_path / "home")
    monkeypatch.setenv("DATO_DIST_KEY", "not hex")
    with pytest.raises(KeyFileError, match="DATO_DIST_KEY"):
        keys.user_key(tmp_path / "home")
    assert keys.job_key(key, "a", "n1") != keys.job_key(key, "a", "n2") != keys.job_key(
        key, "b", "n1")
