"""Reads of a file that is being replaced see the old or the new version, never a mix and
never "missing", on the local disk, HDFS and S3 (issue 10, item 2): first the store alone,
a writer thread replacing a file while readers poll it as fast as they can, then a running
job polled through the API as fast as a user's loop would."""

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

import dato_dist as gl
from dato_dist.store import Store
from tests import tasks
from tests.polling import poll_until_completed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLL_SECONDS = 4.0


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3),
                        pytest.param("hdfs", marks=[pytest.mark.hdfs, pytest.mark.slow])])
def store_uri(request, tmp_path):
    """A store root on each filesystem: a local folder, an S3 bucket on moto, HDFS."""
    if request.param == "s3":
        return f"s3://{request.getfixturevalue('s3_env')}/jobs"
    if request.param == "hdfs":
        cluster = request.getfixturevalue("minicluster")
        return f"{cluster.hdfs_uri}/tests/{tmp_path.name}-{uuid.uuid4().hex[:8]}/jobs"
    return str(tmp_path / "jobs")


def _version(n):
    """Version ``n`` of the file: its sizes differ (a torn read of a longer successor has the
    old length), and it carries its own digest, so any mix of two versions is seen."""
    body = json.dumps({"n": n, "pad": "x" * ((n * 7919) % 3000)}).encode()
    return hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def _check(data):
    digest, _, body = bytes(data).partition(b"\n")
    assert hashlib.sha256(body).hexdigest().encode() == digest, f"a torn read: {data[:80]!r}"
    return json.loads(body)["n"]


def write_loop(uri, seconds, gap):
    """Replace ``j/state.json`` of the store at ``uri`` with versions 1, 2, ... for
    ``seconds`` s (run in a process of its own, as a driver is); print how many. With
    ``gap``, the way pyarrow's libhdfs client has to: delete the old file, then rename."""
    store = Store(uri)
    fs, target, folder = store.fs, store.path("j/state.json"), store.path("j")
    n, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        n += 1
        if not gap:
            store.write_bytes("j/state.json", _version(n), framed=False)
            continue
        tmp = f"{folder}/.state.json.{n:08x}.tmp"
        with fs.open_output_stream(tmp) as out:
            out.write(_version(n))
        fs.delete_file(target)
        fs.move(tmp, target)
    print(n, flush=True)


def _race(store, *, gap=False, readers=3, seconds=POLL_SECONDS):
    """A writer process replaces ``j/state.json`` while ``readers`` threads read it as fast
    as they can; returns the versions each reader saw, in order."""
    store.write_bytes("j/state.json", _version(0), framed=False)
    code = ("import sys; from tests.test_consistent_reads import write_loop; "
            "write_loop(sys.argv[1], float(sys.argv[2]), sys.argv[3] == '1')")
    writer = subprocess.Popen([sys.executable, "-c", code, store.uri, str(seconds),
                               "1" if gap else "0"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    stop = threading.Event()
    seen = [[] for _ in range(readers)]
    errors = []

    def reader(out):
        try:
            while not stop.is_set():
                out.append(_check(store.read_bytes("j/state.json", framed=False)))
        except BaseException as e:  # noqa: BLE001 (reported by the test thread)
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(out,), daemon=True) for out in seen]
    for t in threads:
        t.start()
    try:
        out, err = writer.communicate(timeout=seconds + 120)
    finally:
        writer.kill()
        stop.set()
        for t in threads:
            t.join(30)
    assert not any(t.is_alive() for t in threads), "a reader hung"
    if errors:
        raise errors[0]
    assert writer.returncode == 0, err
    writes = int(out.split()[-1])
    assert writes >= 3, f"only {writes} replacements in {seconds} s"
    for out in seen:
        assert out and out == sorted(out), "a reader saw an older version after a newer one"
    print(f"{writes} replacements, {sum(map(len, seen))} reads by {readers} readers; "
          f"{len({n for out in seen for n in out})} versions seen")
    return seen


def test_a_file_being_replaced_reads_whole(store_uri):
    """The store's own writes (a rename on local and HDFS, one put on S3)."""
    _race(Store(store_uri))


def test_framed_files_being_replaced_read_whole(store_uri, tmp_path):
    """A framed file read while it is replaced is never reported corrupt."""
    store = Store(store_uri)
    store.write_bytes("j/r.bin", _version(0))
    code = ("import sys, time\n"
            "from dato_dist.store import Store\n"
            "from tests.test_consistent_reads import _version\n"
            "store, n, end = Store(sys.argv[1]), 0, time.monotonic() + 3\n"
            "while time.monotonic() < end:\n"
            "    n += 1\n"
            "    store.write_bytes('j/r.bin', _version(n))\n")
    writer = subprocess.Popen([sys.executable, "-c", code, store_uri], cwd=REPO)
    try:
        reads = 0
        while writer.poll() is None:
            _check(store.read_bytes("j/r.bin"))  # never CorruptStoreFile
            reads += 1
        assert writer.wait(60) == 0
    finally:
        writer.kill()
        writer.wait(10)
    assert reads >= 3


@pytest.mark.hdfs
@pytest.mark.slow
def test_hdfs_replacement_with_a_gap_is_never_read_as_missing(minicluster, tmp_path):
    """What pyarrow's libhdfs client must do (its rename cannot overwrite): delete the old
    file, then rename the new one into place. A reader in that gap reads again."""
    store = Store(f"{minicluster.hdfs_uri}/tests/{tmp_path.name}-{uuid.uuid4().hex[:8]}/jobs")
    _race(store, gap=True, readers=2)


@pytest.fixture
def job_store(store_uri, monkeypatch):
    monkeypatch.setenv("DATO_DIST_STORE_URI", store_uri)
    return store_uri


def test_a_running_job_polled_as_fast_as_possible(job_store, env2):
    """``get_status()``, ``get_metrics()`` and ``get_map_results(wait=False)`` in a tight loop
    on a running job: never 'Unknown', never an error, statuses only move forward, results
    only grow."""
    n = 24
    job = gl.deploy.map_job.create(tasks.sleepy, [{"i": i, "seconds": 0.2} for i in range(n)],
                                   environment=env2)
    polls, results = poll_until_completed(job, n, timeout=180)
    assert results == [i * i for i in range(n)]
    print(f"{polls} polls of status, metrics and results")
