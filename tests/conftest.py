"""Shared fixtures: an isolated DATO_DIST_HOME per test session, local environments, waits,
and the session's shared services (the Hadoop MiniCluster and its dist folder; moto's server
and the sshd hosts of the EC2 tests), so that tests/yarn, tests/ec2 and tests/contract
start each of them once."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from dato_dist.yarn_app import minicluster as mc


@pytest.fixture(scope="session", autouse=True)
def dato_home(tmp_path_factory):
    """Every test session gets its own home: nothing touches ~/.dato_dist."""
    home = tmp_path_factory.mktemp("dato_home")
    old = {k: os.environ.get(k) for k in ("DATO_DIST_HOME", "DATO_DIST_CONFIG")}
    os.environ["DATO_DIST_HOME"] = str(home)
    os.environ["DATO_DIST_CONFIG"] = str(home / "config.toml")
    yield home
    from dato_dist import launcher

    launcher.stop(home)  # the local launcher the session's first job started
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def env2():
    """A LocalAsync environment with two runners."""
    import dato_dist as gl

    return gl.deploy.environment.LocalAsync("two", num_workers=2)


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def submit_together(creates):
    """``{key: create()}`` for ``creates`` (``{key: function}``), run on threads: creating
    a job on a cluster waits for its application to start, and those waits overlap. Every
    job created is returned or, if one create raised, canceled before that is raised."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(len(creates) or 1) as pool:
        futures = {key: pool.submit(create) for key, create in creates.items()}
    made, error = {}, None
    for key, future in futures.items():
        try:
            made[key] = future.result()
        except Exception as e:  # noqa: BLE001 - raised below, after the cleanup
            error = error or e
    if error is not None:
        for job in made.values():
            try:
                job.cancel()
            except Exception:  # noqa: BLE001 - the first error is the one to see
                pass
        raise error
    return made


def pid_alive(pid):
    from dato_dist.procs import is_alive

    return is_alive(pid)


def kill_quietly(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def attack_dir():
    """A folder the user nobody can see into but not write (a second local user's attack
    in tests/test_trust.py waits there for its stop file)."""
    import tempfile

    path = tempfile.mkdtemp(prefix="dd-attack-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory):
    """moto's server on 127.0.0.1 for the S3 API, started and stopped by pid."""
    from tests.infra.moto_server import MotoServer

    server = MotoServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(moto_s3, monkeypatch):
    """AWS variables that point boto3 and pyarrow at moto (never at AWS); a fresh bucket."""
    import uuid

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_s3.endpoint_url)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    moto_s3.client("s3").create_bucket(Bucket=bucket)
    return bucket


# -- the Hadoop MiniCluster (YARN + HDFS on 127.0.0.1), one per test session ---------------
# DATO_DIST_TEST_HADOOP_DIR=DIR reuses a cluster started there by hand
# (python -m dato_dist.yarn_app.minicluster start --dir DIR) and leaves it running.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Container size of the session's dist folder (tests/yarn checks YARN's accounting of it).
HADOOP_WORKER_MB = 256
START_TIMEOUT = float(os.environ.get("DATO_DIST_TEST_HADOOP_TIMEOUT", "300"))


def _missing_prerequisite():
    try:
        mc.find_java_home()
    except mc.MiniClusterError as e:
        return str(e)
    home = os.path.join(mc.cache_root(), "hadoop-%s" % (
        os.environ.get("DATO_DIST_HADOOP_VERSION") or mc.DEFAULT_HADOOP_VERSION))
    if not mc.HadoopJars("", home).present() and not shutil.which("mvn"):
        return "Maven (mvn) is needed once to fetch the Hadoop jars"
    return None


@pytest.fixture(scope="session")
def minicluster(tmp_path_factory):
    """A running, healthy :class:`yarn_app.minicluster.MiniCluster`.

    Has ``conf_dir``, ``env`` (HADOOP_CONF_DIR, JAVA_HOME, PATH with the ``yarn`` shim),
    ``hdfs_uri`` (``hdfs://127.0.0.1:<port>``), ``info`` and ``yarn(*args)``. For the session,
    ``os.environ`` carries ``env`` (Skein reads it) and a private ``SKEIN_CONFIG``.
    """
    reason = _missing_prerequisite()
    if reason:
        pytest.skip("Hadoop MiniCluster unavailable: %s" % reason)
    state_dir = os.environ.get("DATO_DIST_TEST_HADOOP_DIR")
    keep = os.environ.get("DATO_DIST_TEST_HADOOP_KEEP") == "1"
    if state_dir:
        cluster = mc.MiniCluster(state_dir)
    else:
        cluster = mc.MiniCluster(str(tmp_path_factory.mktemp("hadoop")))
        keep = False
    started = False
    if not (cluster.is_running() and cluster.health()["healthy"]):
        cluster.start(timeout=START_TIMEOUT)
        started = True

    overrides = dict(cluster.env)
    overrides["SKEIN_CONFIG"] = os.path.join(cluster.dir, "skein")
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    try:
        yield cluster
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if started and not keep:
            cluster.stop(timeout=60)


@pytest.fixture(scope="session")
def dist_path(minicluster):
    """A dist folder deployed with the admin's command (``dato-dist hadoop install``), as a
    user would; installed once per session, in a folder of its own (sessions sharing one
    cluster must not replace each other's), removed at the end."""
    import uuid

    parent, name = f"{minicluster.hdfs_uri}/user/root", f"dato-dist-folder-{uuid.uuid4().hex[:8]}"
    path = f"{parent}/{name}"
    out = subprocess.run(
        [sys.executable, "-m", "dato_dist.cli", "hadoop", "install", path,
         "--num-containers", "2", "--container-size", str(HADOOP_WORKER_MB),
         "--num-vcores", "1", "--start-port", "9100", "--end-port", "9200"],
        capture_output=True, text=True, timeout=900, cwd=REPO, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-5000:]
    assert f"containers          : 2 x {HADOOP_WORKER_MB} MB, 1 vcores" in out.stdout
    yield path
    from dato_dist.store import Store

    Store(parent).delete(name)



# -- moto's server and sshd hosts for the EC2 backend, one each per test session ----------
# (tests/ec2/conftest.py has the per-test fixtures built on them; see docs/ec2-testing.md)

@pytest.fixture(scope="session")
def ec2_workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("ec2")


@pytest.fixture(scope="session")
def moto_server(ec2_workdir):
    """One moto_server subprocess (EC2, S3, IAM, ...) on 127.0.0.1, stopped by pid."""
    pytest.importorskip("moto.server", reason="needs moto[server]")
    pytest.importorskip("boto3")
    from tests.infra.moto_server import MotoServer

    server = MotoServer.start(log_dir=ec2_workdir / "moto", deadline=60)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ssh_hosts(ec2_workdir):
    """Factory: ``ssh_hosts(ips)`` starts (or reuses) one sshd per loopback IP."""
    from tests.infra.sshd import SshdUnavailable, SshHostFactory

    try:
        factory = SshHostFactory(ec2_workdir / "sshd")
    except SshdUnavailable as e:
        pytest.skip(f"sshd hosts unavailable: {e}")
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="session")
def ssh_user_key(ssh_hosts) -> str:
    """Private key (ed25519, mode 0600) that every sshd host accepts for root."""
    return str(ssh_hosts.user_key)
