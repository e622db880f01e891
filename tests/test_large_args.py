"""Large arguments: written to the store's chunk files without a copy in memory, read by
the runners themselves and checked against the digests the signed index lists, durable (a
reloaded job, a rerun, reads back every argument), and a local job starts on them while
they are written."""

import hashlib
import os
import pickle
import threading
import time

import pytest

import dato_dist as gl
from dato_dist import driver, largeargs, submit
from dato_dist.errors import CorruptStoreFile, StoreError, UntrustedStoreFile
from dato_dist.jobfiles import JobFiles
from dato_dist.store import Store


def blob_size(data, n=None):
    return len(data) if n is None else (len(data), n)


def _dumps(kwargs, i):
    return pickle.dumps(kwargs)


def test_split_keeps_the_users_objects_and_cuts_chunks_on_task_boundaries():
    big = [os.urandom(300 * 1024) for _ in range(5)]
    tasks = [{"a": big[0], "n": 1}, {"n": 2}, {"a": big[1], "b": big[2]}, {"a": big[3]},
             {"a": big[4], "s": "x" * 10}]
    plan = largeargs.split(tasks, _dumps, chunk_bytes=300 * 1024)
    assert plan.starts == [0, 2, 3, 4]  # task 2's two values stay in one chunk
    assert [len(c) for c in plan.chunks] == [1, 2, 1, 1]
    assert all(a is b for a, b in zip([v for c in plan.chunks for v in c], big))  # no copy
    assert pickle.loads(plan.rests[0]) == {"a": None, "n": 1}
    assert plan.refs[1] == [] and plan.refs[2] == [("a", 0, 300 * 1024, 0),
                                                   ("b", 300 * 1024, 300 * 1024, 1)]
    assert not largeargs.is_large(bytearray(big[0])) and not largeargs.is_large(b"x")


def _files(tmp_path):
    return JobFiles(Store(str(tmp_path / "s")), "j", key=b"k" * 32)


def _large_tasks(tmp_path, n=4, size=300 * 1024):
    files = _files(tmp_path)
    params = [{"data": os.urandom(size), "i": i} for i in range(n)]
    plan = largeargs.split(params, _dumps, chunk_bytes=size)  # one task per chunk
    files.write_payload(function_bytes=b"f", combiner_bytes=None,
                        tasks_blob=plan.tasks_content())
    return files, plan, params


def test_tasks_load_from_chunks_on_local_and_remote_paths(tmp_path):
    files, plan, params = _large_tasks(tmp_path)
    files.write_args(plan)
    _f, _c, tasks = files.read_payload()
    assert isinstance(tasks, largeargs.LargeTasks) and len(tasks) == 4
    assert isinstance(tasks[0].source, str)  # local: the runner reads the chunk itself
    assert [t.load() for t in tasks] == params
    remote = pickle.loads(pickle.dumps(tasks[2]))  # as it travels to a runner
    assert remote.load() == params[2]
    # what a remote store's driver sends: the values, read and checked here
    carried = largeargs.LargeArgs(tasks[1].rest, tasks[1].refs, (params[1]["data"],))
    assert pickle.loads(pickle.dumps(carried)).load() == params[1]
    assert driver._max_batch_tasks(tasks) == driver.MAX_BATCH_BYTES // len(tasks[0])


def test_a_changed_chunk_or_a_forged_index_is_refused(tmp_path):
    files, plan, params = _large_tasks(tmp_path)
    files.write_args(plan)
    _f, _c, tasks = files.read_payload()
    path = tasks[1].source
    with open(path, "r+b") as f:  # one flipped byte of task 1's argument
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(UntrustedStoreFile, match=r"000001\.bin.*argument 'data'"):
        tasks[1].load()
    assert tasks[0].load() == params[0]
    # an index signed with another key (or unsigned) never reaches pickle
    rel = "j/args/000002.pkl"
    files.store.write_bytes(rel, pickle.dumps([hashlib.sha256(b"x").digest()]),
                            key=os.urandom(32))
    with pytest.raises(UntrustedStoreFile, match="000002.pkl"):
        files.read_payload()[2][2]
    files.store.write_bytes(rel, pickle.dumps([b""]))
    with pytest.raises(UntrustedStoreFile, match="000002.pkl"):
        files.read_payload()[2][2]


def test_a_task_waits_for_its_chunk_and_the_wait_is_bounded(tmp_path):
    """A local job's driver hands out a task once its chunk is signed, while the client
    writes the later ones; a chunk that never comes fails it after its wait (CHUNK_WAIT
    for a driver); a reader of a finished job is told at once."""
    files, plan, params = _large_tasks(tmp_path)
    files.args_wait = 10.0  # as the driver's
    _f, _c, tasks = files.read_payload()  # before any chunk is written
    writer = threading.Timer(0.3, files.write_args, args=(plan,))
    t0 = time.monotonic()
    writer.start()
    try:
        assert tasks[0].load() == params[0]
        assert time.monotonic() - t0 >= 0.25
    finally:
        writer.join(10)
    assert [t.load() for t in tasks] == params
    late_files = _large_tasks(tmp_path / "late")[0]
    with pytest.raises(StoreError, match=r"000000\.pkl is not there \("):  # a reader: at once
        late_files.read_payload()[2][0]
    late_files.args_wait = 0.2
    t0 = time.monotonic()
    with pytest.raises(StoreError, match=r"000000\.pkl is not there after 0 s"):
        late_files.read_payload()[2][0]
    assert 0.2 <= time.monotonic() - t0 < 5


@pytest.mark.parametrize("key", [None, b"k" * 32])
@pytest.mark.parametrize("size", [10, 3 * 1024 * 1024])  # small: header first; large: after
def test_store_writes_parts_and_checks_them(tmp_path, key, size):
    store = Store(str(tmp_path / "s"))
    parts = [b"head", os.urandom(size), memoryview(b"tail"), b""]
    store.write_bytes("j/f.pkl", parts, key=key)
    assert bytes(store.read_bytes("j/f.pkl", key=key)) == b"".join(bytes(p) for p in parts)
    assert oct(os.stat(store.local_path("j/f.pkl")).st_mode & 0o777) == "0o600"
    assert not [n for n in os.listdir(tmp_path / "s" / "j") if n.endswith(".tmp")]
    path = store.local_path("j/f.pkl")
    with open(path, "r+b") as f:  # one flipped byte in the payload
        f.seek(os.path.getsize(path) - 6)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(UntrustedStoreFile if key else CorruptStoreFile):
        store.read_bytes("j/f.pkl", key=key)


def test_batches_of_large_tasks_stay_small():
    four_mib = b"x" * (4 * 1024 * 1024)
    assert driver._max_batch_tasks([four_mib] * 3) == 2
    assert driver._max_batch_tasks([b"x" * (20 * 1024 * 1024)]) == 1
    assert driver._max_batch_tasks([{"x": 1}]) > 10 ** 6
    assert driver._max_batch_tasks([b"small"] * 10) > 10 ** 5


def test_large_arguments_are_durable(env2):
    """Each task's 1 MiB argument reaches its runner and stays in the store: the job
    reloaded from its URI gives back every argument (each checked against its signed
    digest when read), and so does a rerun."""
    size = 1024 * 1024
    assert size >= submit.LARGE_ARGUMENT
    base = os.urandom(size - 1)
    params = [{"data": base + bytes([i])} for i in range(20)]  # two chunks
    job = gl.deploy.map_job.create(blob_size, params, environment=env2)
    chunks = sorted(os.listdir(os.path.join(job.uri, "args")))
    assert chunks == ["000000.bin", "000000.pkl", "000001.bin", "000001.pkl"]  # at create
    assert job.get_map_results() == [size] * 20
    _f, _c, stored = job._files.read_payload()
    assert isinstance(stored, largeargs.LargeTasks)
    again = gl.deploy.job.load(job.uri)
    got = again.get_parameters()
    assert [got[name] for name in sorted(got, key=lambda n: int(n.rsplit("-", 1)[1]))] == \
        params
    assert again.rerun().get_map_results() == [size] * 20
    # not only bytes: the other arguments are in each task's own pickle
    mixed = gl.deploy.map_job.create(blob_size, [dict(p, n=i) for i, p in enumerate(params)],
                                     environment=env2)
    assert mixed.get_map_results() == [(size, i) for i in range(20)]
    assert gl.deploy.job.load(mixed.uri).get_parameters()[f"{mixed._spec['task_name_prefix']}3"]\
        == dict(params[3], n=3)
    # a large str stays in its task's pickle, and batches stay small all the same
    texts = [{"data": "x" * size} for _ in range(3)]
    job = gl.deploy.map_job.create(blob_size, texts, environment=env2)
    assert job.get_map_results() == [size] * 3
    assert driver._max_batch_tasks(job._files.read_payload()[2]) < 10


def test_a_changed_argument_fails_its_task_in_the_runner(env2):
    """The runner checks what it reads: a chunk changed after create fails its tasks
    (UntrustedStoreFile, class infrastructure) on a rerun, and runs no task on it."""
    size = 512 * 1024
    params = [{"data": os.urandom(size)} for _ in range(3)]
    job = gl.deploy.map_job.create(blob_size, params, environment=env2)
    assert job.get_map_results() == [size] * 3
    path = os.path.join(job.uri, "args", "000000.bin")
    with open(path, "r+b") as f:
        f.seek(size + 10)  # task 1's value
        f.write(b"\0" if f.read(1) != b"\0" else b"\1")
    again = gl.deploy.job.load(job.uri).rerun()
    assert again.get_map_results()[0::2] == [size, size]
    rows = {r["task_name"]: r for r in again.get_metrics()}
    bad = rows[f"{job._spec['task_name_prefix']}1"]
    assert bad["status"] == "Failed" and bad["exception"] == "UntrustedStoreFile"
    assert bad["failure_class"] == "infrastructure" and "000000.bin" in bad["exception_message"]


@pytest.mark.s3
def test_large_arguments_on_an_s3_store(s3_env, monkeypatch, env2):
    """On S3 the chunks are written before the job starts and the driver reads them
    through the store, checks each value and sends it: the same arguments come back."""
    monkeypatch.setenv("DATO_DIST_STORE_URI", f"s3://{s3_env}/jobs")
    size = submit.LARGE_ARGUMENT * 2
    params = [{"data": os.urandom(size)} for _ in range(3)]
    job = gl.deploy.map_job.create(blob_size, params, environment=env2)
    assert job.uri.startswith(f"s3://{s3_env}/")
    assert job.get_map_results() == [size] * 3
    got = gl.deploy.job.load(job.uri).get_parameters()
    prefix = job._spec["task_name_prefix"]
    assert [got[f"{prefix}{i}"] for i in range(3)] == params
    store = Store(f"s3://{s3_env}/jobs")
    parts = [b"a", os.urandom(2 * 1024 * 1024)]
    store.write_bytes("x/f.pkl", parts, key=b"k" * 32)
    assert bytes(store.read_bytes("x/f.pkl", key=b"k" * 32)) == b"".join(parts)


def test_a_create_that_fails_writing_the_chunks_leaves_nothing(env2):
    """A local job's driver starts before its chunks are written; a create that fails
    while writing them (here a folder stands where chunk 2 goes, a real write failure)
    raises, stops that driver and leaves no job in the store or in the session."""
    import json

    from dato_dist import procs
    from dato_dist.config import Config
    from tests.conftest import wait_for

    root = Store(env2.store_uri(Config.load())).local_path("")
    folder = os.path.join(root, "trap-large")
    found = {}

    def trap():  # from the moment create makes the job's folder (before any chunk)
        deadline = time.monotonic() + 30
        while not os.path.isdir(folder) and time.monotonic() < deadline:
            time.sleep(0.001)
        os.makedirs(os.path.join(folder, "args", "000002.bin"), exist_ok=True)
        found["trapped"] = True
        launch = os.path.join(folder, "launch.json")
        while not os.path.exists(launch) and time.monotonic() < deadline:
            time.sleep(0.001)
        with open(launch) as f:
            found["pid"] = json.load(f)["pid"]

    trapper = threading.Thread(target=trap, daemon=True)
    trapper.start()
    params = [{"data": os.urandom(4 * 1024 * 1024)} for _ in range(16)]  # 4 chunks
    with pytest.raises(StoreError, match="000002.bin"):
        gl.deploy.map_job.create(blob_size, params, environment=env2, name="trap-large")
    trapper.join(30)
    assert found.get("trapped") and found.get("pid"), found
    assert not os.path.exists(folder)
    assert "trap-large" not in gl.deploy.jobs.names()
    wait_for(lambda: not procs.is_alive(found["pid"]), timeout=10, what="the driver stopped")
