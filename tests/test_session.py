"""The jobs / environments collections and their listing index (dato_dist/session.py):
concurrent clients, delete, migration from per-entry files, index corruption."""

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from dato_dist import session
from dato_dist.config import load as load_config


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh home of its own: the session folder starts empty."""
    monkeypatch.setenv("DATO_DIST_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATO_DIST_CONFIG", str(tmp_path / "home" / "config.toml"))
    return tmp_path / "home"


def _register(name, created, env="async"):
    session.jobs.register(name, f"/nowhere/{name}", env, created)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_listing_order_and_private_files(home):
    for i, name in enumerate(["a", "c", "b"]):
        _register(name, 1000.0 + i)
    _register("z", 1001.0)  # same date as 'c': name order breaks the tie
    assert session.jobs.names() == ["b", "c", "z", "a"]
    assert len(session.jobs) == 4
    rows = session.jobs.list()
    assert rows["Name"] == ["b", "c", "z", "a"] and rows["Index"] == [0, 1, 2, 3]
    assert session.jobs._entry(0)["name"] == "b"
    assert session.jobs._entry(-1)["name"] == "a"
    assert session.jobs.uri_of("c") == "/nowhere/c"
    text = str(session.jobs)
    assert text.startswith("Job(s):\n+") and "async" in text
    sdir = load_config().session_dir
    assert _mode(sdir / "jobs") == 0o700
    assert _mode(sdir / "jobs" / "a.json") == 0o600
    assert _mode(sdir / session.INDEX_FILE) == 0o600
    with pytest.raises(IndexError, match="there are 4"):
        session.jobs._entry(4)
    with pytest.raises(KeyError, match="No job named 'nope'"):
        session.jobs._entry("nope")


def test_lazy_listing_prints_as_a_table(home):
    """list() and print(jobs) read only the head from the index; what they print is what
    the whole table prints."""
    from dato_dist.table import Table

    for i in range(14):
        _register(f"t{i:02d}", 100.0 + i)
    listing = session.jobs.list()
    assert len(listing) == listing.num_rows == 14
    text = str(listing)
    assert "[14 rows x 4 columns]" in text and "print_rows" in text and "t13" in text
    assert "t03" not in text  # only the head (10 rows)
    full = Table(listing.column_names, session.jobs.list().to_pylist())
    assert text == str(full)
    assert listing.format(num_rows=20) == full.format(num_rows=20)
    assert str(session.jobs) == "Job(s):\n" + text
    assert listing["Name"][-1] == "t00" and len(listing.to_pylist()) == 14


def test_delete_and_pattern_delete(home):
    for i in range(6):
        _register(f"keep-{i}" if i % 2 else f"drop-{i}", 2000.0 + i)
    assert session.jobs.delete(pattern="drop-*", silent=True) == ["drop-4", "drop-2", "drop-0"]
    assert session.jobs.names() == ["keep-5", "keep-3", "keep-1"]
    del session.jobs[0]
    assert session.jobs.names() == ["keep-3", "keep-1"]
    session.jobs.delete("keep-1", silent=True)
    assert session.jobs.names() == ["keep-3"]
    assert "keep-1" not in session.jobs and "keep-3" in session.jobs
    assert not (load_config().session_dir / "jobs" / "keep-1.json").exists()


_CLIENT = textwrap.dedent("""
    import sys
    from dato_dist.session import jobs
    tag, n = sys.argv[1], int(sys.argv[2])
    for i in range(n):
        assert jobs.reserve(f"{tag}-{i}", f"/x/{tag}-{i}", "async", 3000.0 + i)
        jobs.register(f"{tag}-{i}", f"/x/{tag}-{i}", "async", 3000.0 + i)
        if i % 25 == 0:
            jobs.names()  # listing (and so reconciling the index) while the other writes
    print("ok")
""")


def test_concurrent_registers_from_two_processes(home):
    _register("before", 1.0)
    session.jobs.names()  # the index exists before the clients start
    n = 150
    procs = [subprocess.Popen([sys.executable, "-c", _CLIENT, tag, str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for tag in ("p", "q")]
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
        assert proc.returncode == 0 and out.strip() == "ok", err
    names = session.jobs.names()
    assert len(names) == 2 * n + 1 == len(set(names))
    assert set(names) == {"before"} | {f"{t}-{i}" for t in "pq" for i in range(n)}
    # the index itself holds every entry (a fresh read needs no file but the index's)
    conn = session._Index(load_config().session_dir).connection()
    assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 2 * n + 1


def test_migration_from_per_entry_files(home):
    """Session folders written before the index: read once, indexed, made private."""
    jdir = home / "session" / "jobs"
    jdir.mkdir(parents=True)
    for i in range(30):
        (jdir / f"old-{i}.json").write_text(json.dumps(
            {"name": f"old-{i}", "uri": f"/old/{i}", "environment": "async",
             "created": 500.0 + i}, indent=1))
        os.chmod(jdir / f"old-{i}.json", 0o644)
    (jdir / "junk.json").write_text("{not json")
    assert not (home / "session" / session.INDEX_FILE).exists()
    assert session.jobs.names() == [f"old-{i}" for i in reversed(range(30))]
    assert (home / "session" / session.INDEX_FILE).exists()
    assert _mode(jdir / "old-3.json") == 0o600
    assert session.jobs.uri_of("old-3") == "/old/3"
    _register("new", 10_000.0)
    assert session.jobs.names()[:2] == ["new", "old-29"]


def test_corrupt_index_is_rebuilt_from_the_files(home, caplog):
    for i in range(20):
        _register(f"j{i}", 100.0 + i)
    expected = session.jobs.names()
    index = home / "session" / session.INDEX_FILE
    session._Index._connections.clear()  # as a new process would open it
    for suffix in ("-wal", "-shm"):
        if os.path.exists(f"{index}{suffix}"):
            os.unlink(f"{index}{suffix}")
    index.write_bytes(b"this is not an sqlite database at all" * 100)
    with caplog.at_level(logging.WARNING, logger="dato_dist.session"):
        assert session.jobs.names() == expected
    assert "unreadable" in caplog.text and "nothing is lost" in caplog.text
    assert [p for p in os.listdir(home / "session") if ".corrupt-" in p]
    _register("after", 1000.0)
    assert session.jobs.names()[0] == "after"


def test_index_reconciles_an_interrupted_update(home):
    """A writer that died between its file and its index row loses nothing: the file is
    the truth, and a row whose file is gone is not listed."""
    _register("a", 1.0)
    time.sleep(session.QUIET_NS / 1e9 + 0.05)
    assert session.jobs.names() == ["a"]  # a quiet folder: the index is stamped with it
    conn = session._Index(load_config().session_dir).connection()
    jdir = home / "session" / "jobs"
    assert conn.execute("SELECT value FROM meta WHERE key = 'jobs_stamp'").fetchone()[0] == \
        os.stat(jdir).st_mtime_ns
    # died after writing its file, before its index row
    (jdir / "b.json").write_text(json.dumps({"name": "b", "uri": "/b", "environment": "e",
                                             "created": 2.0}))
    # died after removing its file, before removing its row
    (jdir / "a.json").unlink()
    assert session.jobs.names() == ["b"]
    assert len(session.jobs) == 1


def test_environments_index(home):
    import dato_dist as gl

    gl.deploy.environment.LocalAsync("e1")
    gl.deploy.environment.Local("e2")
    envs = session.environments
    assert envs.names() == ["e2", "e1"]
    assert envs.list()["Type"] == ["Local", "LocalAsync"]
    assert envs[0].name == "e2" and envs["e1"].name == "e1"
    gl.deploy.environment.LocalAsync("e2")  # replaced: its type changes in the listing
    assert dict(zip(envs.names(), envs.list()["Type"]))["e2"] == "LocalAsync"
    with pytest.raises(KeyError, match="No environment named 'e3'"):
        envs["e3"]
