"""The Hadoop MiniCluster is a real YARN and HDFS: Hadoop's own CLIs, HDFS through
``hdfs-native`` + ``pyarrow.fs``, and a Skein application run to completion."""

import os
import subprocess
import sys
import time
import uuid

import pytest

pytestmark = pytest.mark.slow


def _running_nodes(out):
    return [line.split()[0] for line in out.splitlines()
            if len(line.split()) >= 2 and line.split()[1] == "RUNNING"]


def _field(report, name):
    """A value of `yarn application -status` / `yarn node -status` ('Name : value')."""
    for line in report.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return None


@pytest.mark.yarn
def test_yarn_node_list_shows_two_running_nodemanagers(minicluster):
    proc = minicluster.yarn("node", "-list")
    assert proc.returncode == 0, proc.stderr
    assert "Total Nodes:2" in proc.stdout, proc.stdout
    assert len(_running_nodes(proc.stdout)) == 2, proc.stdout


@pytest.mark.yarn
def test_yarn_classpath_glob_puts_conf_dir_first(minicluster):
    out = minicluster.yarn("classpath", "--glob", check=True).stdout.strip()
    entries = out.split(":")
    assert entries[0] == minicluster.conf_dir
    jars = entries[1:]
    assert any(os.path.basename(j).startswith("hadoop-yarn-client-") for j in jars)
    assert all(j.endswith(".jar") and os.path.exists(j) for j in jars)


@pytest.mark.yarn
@pytest.mark.hdfs
def test_status_cli_reports_healthy(minicluster):
    proc = subprocess.run([sys.executable, "-m", "dato_dist.yarn_app.minicluster", "status",
                           "--dir", minicluster.dir], capture_output=True, text=True,
                          timeout=120, cwd=os.path.dirname(os.path.dirname(
                              os.path.dirname(os.path.abspath(__file__)))))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"healthy": true' in proc.stdout


@pytest.mark.hdfs
def test_hdfs_write_read_list_delete_through_pyarrow(minicluster):
    fsspec = pytest.importorskip("fsspec")
    pafs = pytest.importorskip("pyarrow.fs")
    hdfs_fsspec = pytest.importorskip("hdfs_native.fsspec")

    # hdfs-native registers the fsspec "hdfs" protocol; the URI names the NameNode
    base = "/tmp/dato-dist-test-%s" % uuid.uuid4().hex[:8]
    fs, path = fsspec.core.url_to_fs(minicluster.hdfs_uri + base)
    assert isinstance(fs, hdfs_fsspec.HdfsFileSystem)
    assert path == base
    pfs = pafs.PyFileSystem(pafs.FSSpecHandler(fs))

    pfs.create_dir(base + "/sub")
    payload = b"hello hdfs\n" * 1000
    with pfs.open_output_stream(base + "/sub/a.bin") as f:
        f.write(payload)
    with pfs.open_output_stream(base + "/b.txt") as f:
        f.write(b"b")
    with pfs.open_input_stream(base + "/sub/a.bin") as f:
        assert f.read() == payload

    infos = pfs.get_file_info(pafs.FileSelector(base, recursive=True))
    listed = {i.path: (i.type, i.size) for i in infos}
    assert listed[base + "/sub"][0] == pafs.FileType.Directory
    assert listed[base + "/sub/a.bin"] == (pafs.FileType.File, len(payload))
    assert listed[base + "/b.txt"] == (pafs.FileType.File, 1)

    # the same file, seen by Hadoop's own client through the shim
    cat = subprocess.run([os.path.join(minicluster.bin_dir, "hdfs"), "dfs", "-cat",
                          minicluster.hdfs_uri + base + "/b.txt"], capture_output=True,
                         text=True, timeout=120, env=minicluster.client_env())
    assert cat.returncode == 0 and cat.stdout == "b", cat.stderr

    pfs.move(base + "/b.txt", base + "/c.txt")
    pfs.delete_file(base + "/c.txt")
    assert pfs.get_file_info(base + "/c.txt").type == pafs.FileType.NotFound
    pfs.delete_dir(base)
    assert pfs.get_file_info(base).type == pafs.FileType.NotFound


# The container's program: report to the key-value store and stdout, then wait (bounded) for
# the test to release it, so the test can look at the running containers.
CONTAINER_CODE = """
import os, sys, time, skein
c = skein.ApplicationClient.from_current()
name = os.environ["SKEIN_CONTAINER_ID"]
print("hello from %s python=%s" % (name, sys.executable), flush=True)
c.kv["out-" + name] = sys.executable.encode()
deadline = time.time() + 180
while c.kv.get("release") is None and time.time() < deadline:
    time.sleep(0.2)
print("released %s" % name, flush=True)
"""

AM_MB, AM_VCORES = 256, 1
WORKER_MB, WORKER_VCORES, WORKERS = 192, 2, 2


def _wait(predicate, timeout, interval=0.5, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


@pytest.mark.yarn
@pytest.mark.hdfs
def test_skein_application_succeeds_with_requested_resources_and_aggregated_logs(minicluster):
    skein = pytest.importorskip("skein")
    spec = skein.ApplicationSpec(
        name="dato-dist-minicluster-test",
        queue="default",
        master=skein.Master(resources=skein.Resources(memory=AM_MB, vcores=AM_VCORES)),
        services={"worker": skein.Service(
            instances=WORKERS,
            resources=skein.Resources(memory=WORKER_MB, vcores=WORKER_VCORES),
            script="python -c '%s'" % CONTAINER_CODE)})
    python_bin = minicluster.info["python_bin"]
    app_id = None
    done = False
    with skein.Client() as client:
        try:
            app = client.submit_and_connect(spec)
            app_id = app.id

            # both instances ran `python` (the cluster starter's) and wrote to the kv store
            keys = ["out-worker_%d" % i for i in range(WORKERS)]
            values = _wait(lambda: all(app.kv.get(k) for k in keys) and
                           {k: app.kv[k] for k in keys}, 120, what="both containers")
            for v in values.values():
                assert os.path.dirname(v.decode()) == python_bin

            # YARN gave what was asked: the NodeManagers' used resources add up to the AM plus
            # WORKERS containers of WORKER_MB / WORKER_VCORES (DominantResourceCalculator)
            nodes = _running_nodes(minicluster.yarn("node", "-list", check=True).stdout)
            used_mb = used_vcores = containers = 0
            for node in nodes:
                report = minicluster.yarn("node", "-status", node, check=True).stdout
                used_mb += int(_field(report, "Memory-Used").rstrip("MB"))
                used_vcores += int(_field(report, "CPU-Used").split()[0])
                containers += int(_field(report, "Containers"))
            assert containers == 1 + WORKERS
            assert used_mb == AM_MB + WORKERS * WORKER_MB
            assert used_vcores == AM_VCORES + WORKERS * WORKER_VCORES
            running = [c for c in app.get_containers() if c.service_name == "worker"]
            assert len(running) == WORKERS

            app.kv["release"] = b"1"
            def app_ended():
                out = minicluster.yarn("application", "-status", app_id).stdout
                return _field(out, "State") in ("FINISHED", "FAILED", "KILLED") and out
            report = _wait(app_ended, 120, 1, "the application to end")
            done = True
            assert _field(report, "State") == "FINISHED", report
            assert _field(report, "Final-State") == "SUCCEEDED", report
            finished = minicluster.yarn("application", "-list", "-appStates", "FINISHED",
                                        check=True).stdout
            assert app_id in finished

            # log aggregation: the containers' stdout, read back from HDFS by `yarn logs`
            def logs_ready():
                out = minicluster.yarn("logs", "-applicationId", app_id).stdout
                # the AM's log is aggregated on its own schedule: wait for it too
                return all("hello from worker_%d" % i in out and "released worker_%d" % i
                           in out for i in range(WORKERS)) and \
                    "LogType:application.master.log" in out and out
            logs = _wait(logs_ready, 60, 1, "aggregated logs")
            assert "python=%s" % os.path.join(python_bin, "python") in logs
            assert "LogType:application.master.log" in logs
        except BaseException:
            if app_id:
                print(minicluster.yarn("application", "-status", app_id).stdout)
                print(minicluster.yarn("logs", "-applicationId", app_id).stdout[-20000:])
                if not done:
                    client.kill_application(app_id)
            raise
