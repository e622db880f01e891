"""Large arguments: written to the store without a copy in memory, sent to runners in
small batches, and durable (a reloaded job reads back every argument)."""

import os
import pickle

import pytest

import dato_dist as gl
from dato_dist import driver, submit
from dato_dist.errors import CorruptStoreFile, UntrustedStoreFile
from dato_dist.store import Store


def blob_size(data, n=None):
    return len(data) if n is None else (len(data), n)


def test_kwargs_parts_are_the_pickle_of_the_kwargs():
    cases = [{"data": os.urandom(5000), "b": b""}, {"ü-key": b"abc"}, {"x": 1, "y": "s"},
             {"data": bytearray(b"12")}, {}]
    parts = [submit._kwargs_parts(kw, f"task {i}") for i, kw in enumerate(cases)]
    for kw, p in zip(cases, parts):
        assert pickle.loads(b"".join(p)) == kw
    big = cases[0]["data"]
    assert any(part is big for part in parts[0])  # the user's object itself, not a copy
    kind, tasks = pickle.loads(b"".join(submit._pickled_tasks_parts(parts)))
    assert kind == "pickled" and [pickle.loads(t) for t in tasks] == cases


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
    reloaded from its URI gives back every argument (and its task pickles are checked
    with the job's key when read)."""
    size = 1024 * 1024
    assert size >= submit.LARGE_ARGUMENT
    base = os.urandom(size - 1)
    params = [{"data": base + bytes([i])} for i in range(6)]
    job = gl.deploy.map_job.create(blob_size, params, environment=env2)
    assert job.get_map_results() == [size] * 6
    _f, _c, stored = job._files.read_payload()
    assert all(isinstance(t, bytes) for t in stored)  # one pickle per task
    again = gl.deploy.job.load(job.uri)
    got = again.get_parameters()
    assert [got[name] for name in sorted(got, key=lambda n: int(n.rsplit("-", 1)[1]))] == \
        params
    # not only bytes: the task pickles are made by the usual path, still one per task
    mixed = gl.deploy.map_job.create(blob_size, [dict(p, n=i) for i, p in enumerate(params)],
                                     environment=env2)
    assert mixed.get_map_results() == [(size, i) for i in range(6)]
    assert gl.deploy.job.load(mixed.uri).get_parameters()[f"{mixed._spec['task_name_prefix']}3"]\
        == dict(params[3], n=3)


@pytest.mark.s3
def test_large_arguments_on_an_s3_store(s3_env, monkeypatch, env2):
    """On S3 the parts are put in one request (header first) and the driver reads the
    tasks file through the store (no map): the same arguments come back."""
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
