"""The Hadoop MiniCluster (YARN + HDFS on 127.0.0.1) for the tests in this folder.

One cluster per test session. ``DATO_DIST_TEST_HADOOP_DIR=DIR`` names a state dir: a cluster
already running there (``python -m yarn_app.minicluster start --dir DIR``) is reused and left
running; otherwise one is started there (kept running at the end only with
``DATO_DIST_TEST_HADOOP_KEEP=1``). Without it, a cluster is started in a temporary dir and
stopped, by its pid, when the session ends.
"""

import os
import shutil

import pytest

from yarn_app import minicluster as mc

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
