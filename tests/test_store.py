"""One contract suite for the job store, over every filesystem it runs on."""

import os
import pickle
import uuid

import pyarrow.fs as pafs
import pytest

from dato_dist.errors import CorruptStoreFile, StoreError, StoreUnreachable
from dato_dist.jobfiles import JobFiles
from dato_dist.records import failure, new_batch, of_records
from dato_dist.store import Store, frame


@pytest.fixture(params=["local", "file-uri", pytest.param("s3", marks=pytest.mark.s3),
                        pytest.param("hdfs", marks=[pytest.mark.hdfs, pytest.mark.slow])])
def store(request, tmp_path):
    if request.param == "local":
        return Store(str(tmp_path / "jobs"))
    if request.param == "file-uri":
        return Store(f"file://{tmp_path}/jobs")
    if request.param == "hdfs":
        cluster = request.getfixturevalue("minicluster")
        return Store(f"{cluster.hdfs_uri}/tests/{tmp_path.name}-{uuid.uuid4().hex[:8]}/jobs")
    bucket = request.getfixturevalue("s3_env")
    return Store(f"s3://{bucket}/jobs")


def test_bytes_and_json_round_trip(store):
    store.write_bytes("j/a.bin", b"\x00payload")
    assert store.read_bytes("j/a.bin") == b"\x00payload"
    store.write_bytes("j/a.bin", b"second")  # replacing is atomic too
    assert store.read_bytes("j/a.bin") == b"second"
    store.write_json("j/state.json", {"status": "Running", "n": [1, 2]})
    assert store.read_json("j/state.json") == {"status": "Running", "n": [1, 2]}
    assert store.read_json("j/missing.json", default=None) is None
    with pytest.raises(FileNotFoundError):
        store.read_bytes("j/missing.bin")


def test_list_exists_delete(store):
    for name in ("b", "a", "c"):
        store.write_bytes(f"j/results/{name}.pkl", b"x")
    assert store.list("j/results") == ["a.pkl", "b.pkl", "c.pkl"]
    assert store.list("nothing/here") == []
    assert store.exists("j/results/a.pkl") and not store.exists("j/results/z.pkl")
    store.delete("j")
    assert not store.exists("j/results/a.pkl")


def test_truncated_file_is_reported_not_read(store):
    store.write_bytes("j/r.pkl", pickle.dumps(list(range(100))))
    whole = store.read_bytes("j/r.pkl", framed=False)
    store.write_bytes("j/r.pkl", whole[: len(whole) // 2], framed=False)
    with pytest.raises(CorruptStoreFile, match=r"j/r\.pkl.*of \d+ bytes present"):
        store.read_bytes("j/r.pkl")
    store.write_bytes("j/r.pkl", b"this is not a file the store wrote", framed=False)
    with pytest.raises(CorruptStoreFile, match="marker"):
        store.read_bytes("j/r.pkl")
    flipped = bytearray(frame(b"abcdef"))
    flipped[-1] ^= 0xFF
    store.write_bytes("j/r.pkl", bytes(flipped), framed=False)
    with pytest.raises(CorruptStoreFile, match="checksum"):
        store.read_bytes("j/r.pkl")
    store.write_bytes("j/s.json", b"{half", framed=False)
    with pytest.raises(CorruptStoreFile, match="not JSON"):
        store.read_json("j/s.json")


def test_json_rewritten_while_read_is_never_torn(store):
    """A driver rewrites state.json while clients read it; a reader never sees a mix of
    two versions (on S3, pyarrow's HEAD-then-ranged-GET read can straddle a rewrite)."""
    import threading
    import time

    stop = threading.Event()

    def rewrite():
        n = 0
        while not stop.is_set():
            n += 1
            store.write_json("j/state.json", {"n": n, "pad": "x" * (n % 97) * 40})

    store.write_json("j/state.json", {"n": 0})
    writer = threading.Thread(target=rewrite, daemon=True)
    writer.start()
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert "n" in store.read_json("j/state.json")
    finally:
        stop.set()
        writer.join(10)


def test_listing_a_folder_while_another_process_makes_it_never_raises(tmp_path):
    """A client lists ``results/`` while the driver (another process) makes it: pyarrow's
    local listing finds it missing, then asks whether it is there, and it is; that listing
    raised FileNotFoundError (a polling ``get_map_results`` failed in CI this way)."""
    import subprocess
    import sys
    import time

    folder = tmp_path / "jobs" / "j" / "results"
    folder.parent.mkdir(parents=True)
    store = Store(str(tmp_path / "jobs"))
    churn = subprocess.Popen([sys.executable, "-c", (
        "import os, sys, time\n"
        "end = time.monotonic() + 30\n"
        "while time.monotonic() < end:\n"
        "    os.mkdir(sys.argv[1]); os.rmdir(sys.argv[1])\n"), str(folder)])
    try:
        deadline, lists = time.monotonic() + 2, 0
        while time.monotonic() < deadline:
            assert store.list("j/results") == []
            lists += 1
        assert lists > 1000  # enough listings to have raced the folder many times
    finally:
        churn.kill()
        churn.wait(10)


def test_job_files_results_in_batches(store):
    files = JobFiles(store, "job1", key=b"k" * 32)
    batch = new_batch("h:1")
    batch.update(index=[0, 2], start=[1.0, 2.0], run_time=[0.1, 0.2], attempts=[1, 1],
                 values=[10, 12])
    lost = failure(1, 3.0, 3, "h:2", "RunnerLost", "lost", None)
    files.write_results(0, [batch, of_records([lost])])
    again = new_batch("h:3")
    again.update(index=[2], start=[4.0], run_time=[0.3], attempts=[2], values=[b"x"])
    files.write_results(1, [again])
    records = files.read_results()
    assert sorted(records) == [0, 1, 2] and records[1]["status"] == "Failed"
    assert records[2]["worker"] == "h:3" and records[2]["attempts"] == 2  # a later batch wins
    assert records.map_values(3) == [10, None, b"x"]
    assert records.completed(0) and not records.completed(1) and records.value(0) == 10
    assert store.list("job1/results") == ["00000000.pkl", "00000001.pkl"]
    assert not files.cancel_requested()
    files.request_cancel()
    assert files.cancel_requested()


def test_s3_store_missing_bucket_is_unreachable(s3_env):
    with pytest.raises(StoreUnreachable, match="no-such-bucket-here"):
        Store("s3://no-such-bucket-here/jobs").check()


class _FlakyLocal(pafs.FileSystemHandler):
    """The local filesystem, failing the first ``failures`` output streams it opens."""

    def __init__(self, failures):
        self.fs, self.failures = pafs.LocalFileSystem(), failures

    def get_type_name(self):
        return "flaky"

    def open_output_stream(self, path, metadata):
        if self.failures:
            self.failures -= 1
            raise OSError("injected write failure")
        return self.fs.open_output_stream(path)

    def get_file_info(self, paths):
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.fs.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError("not supported")

    def delete_file(self, path):
        self.fs.delete_file(path)

    def move(self, src, dest):
        self.fs.move(src, dest)

    def copy_file(self, src, dest):
        self.fs.copy_file(src, dest)

    def open_input_stream(self, path):
        return self.fs.open_input_stream(path)

    def open_input_file(self, path):
        return self.fs.open_input_file(path)

    def open_append_stream(self, path, metadata):
        return self.fs.open_append_stream(path)

    def normalize_path(self, path):
        return path


def test_write_errors_are_retried_then_reported(tmp_path):
    flaky = Store(str(tmp_path), write_retries=3,
                  filesystem=pafs.PyFileSystem(_FlakyLocal(failures=2)))
    flaky.write_bytes("a.bin", b"ok")  # two failures, then success
    assert flaky.read_bytes("a.bin") == b"ok"
    broken = Store(str(tmp_path), write_retries=2,
                   filesystem=pafs.PyFileSystem(_FlakyLocal(failures=10)))
    with pytest.raises(StoreError, match="failed after 3 attempts: injected write failure"):
        broken.write_bytes("b.bin", b"never")
    assert not (tmp_path / "b.bin").exists()


@pytest.mark.s3
def test_a_job_on_an_s3_store(s3_env, monkeypatch, env2):
    import dato_dist as gl
    from tests import tasks

    monkeypatch.setenv("DATO_DIST_STORE_URI", f"s3://{s3_env}/jobs")
    job = gl.deploy.map_job.create(tasks.add, [{"x": 1, "y": 2}, {"x": None, "y": 1}],
                                   environment=env2, combiner_function=tasks.add_combiner)
    assert job.uri.startswith(f"s3://{s3_env}/jobs/")
    assert job.get_results() == 3
    assert job.get_map_results() == [3, None]
    assert job.get_metrics()["status"] == ["Completed", "Failed"]
    again = gl.deploy.job.load(job.uri)
    assert again.get_map_results() == [3, None]
    store = Store(f"s3://{s3_env}/jobs")
    assert store.exists(f"{job.name}/spec.json") and store.list(f"{job.name}/results")


def test_signed_files_verify_and_refuse_others(store):
    """A file signed with a key is returned only with that key and at that path; a file
    anyone wrote without it (or altered) is UntrustedStoreFile, before any unpickling."""
    from dato_dist.errors import UntrustedStoreFile

    key, other = b"k" * 32, b"o" * 32
    store.write_bytes("j/results/0.pkl", b"payload", key=key)
    assert bytes(store.read_bytes("j/results/0.pkl", key=key)) == b"payload"
    with pytest.raises(UntrustedStoreFile, match=r"results/0\.pkl.*does not match"):
        store.read_bytes("j/results/0.pkl", key=other)
    whole = bytes(store.read_bytes("j/results/0.pkl", framed=False))
    store.write_bytes("j/results/1.pkl", whole, framed=False)  # moved: bound to its path
    with pytest.raises(UntrustedStoreFile):
        store.read_bytes("j/results/1.pkl", key=key)
    store.write_bytes("j/results/2.pkl", b"payload")  # CRC-framed, no signature
    with pytest.raises(UntrustedStoreFile, match="no signature"):
        store.read_bytes("j/results/2.pkl", key=key)
    altered = bytearray(whole)
    altered[-1] ^= 1
    store.write_bytes("j/results/0.pkl", bytes(altered), framed=False)
    with pytest.raises(UntrustedStoreFile):
        store.read_bytes("j/results/0.pkl", key=key)


def test_job_folders_are_created_exclusively(store):
    """Creating a job's folder fails when anything is there: a folder someone else made
    (with or without a spec) is never adopted."""
    assert store.create_job_dir("fresh", "n1")
    assert not store.create_job_dir("fresh", "n2")
    store.write_bytes("planted/results/00000000.pkl", b"x", framed=False)
    assert not store.create_job_dir("planted", "n3")
    from dato_dist.store import _native_hdfs

    client = _native_hdfs(store.fs)
    if client is not None:  # HDFS: the job's folder is its owner's only
        assert client.get_file_info(store.path("fresh")).permission == 0o700
    if store.local_path("fresh"):
        assert os.stat(store.local_path("fresh")).st_mode & 0o777 == 0o700
