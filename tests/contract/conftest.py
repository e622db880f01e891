"""The ``environment`` fixture of the job contract suite: every test in tests/contract runs
once per environment (Local, LocalAsync, YARN, EC2), against the real thing.

Each parameter is session-scoped: the YARN cluster, its dist folder and the EC2 cluster are
made once, and pytest groups the tests by environment, so an environment is torn down before
the next one is set up. The YARN and EC2 parameters carry the ``yarn`` / ``ec2`` marks
(``-m 'not yarn and not ec2'`` runs the local ones only).
"""

from __future__ import annotations

import pytest

from tests.contract.chaos import Ec2Chaos, LocalChaos, YarnChaos
from tests.contract.environments import Environment

# pytest runs the tests grouped by environment in this order and tears an environment down
# when the next is needed: EC2 first, so its hosts are gone before tests/ec2 starts its own
# (a session-scoped parameter that comes last lives to the end of the session).
# The first test of a cluster environment also pays for the cluster (a dist folder install,
# an EC2 launch and bootstrap): pytest-timeout counts fixture setup in the test's time.
ENVIRONMENTS = [
    pytest.param("EC2", id="EC2", marks=[pytest.mark.ec2, pytest.mark.slow,
                                         pytest.mark.timeout(900)]),
    pytest.param("YARN", id="YARN", marks=[pytest.mark.yarn, pytest.mark.hdfs,
                                           pytest.mark.slow, pytest.mark.timeout(900)]),
    pytest.param("Local", id="Local"),
    pytest.param("LocalAsync", id="LocalAsync"),
]


@pytest.fixture(scope="session", params=ENVIRONMENTS)
def environment(request, tmp_path_factory):
    """An :class:`~tests.contract.environments.Environment`: the GraphLab environment object
    (``.env``), its capability flags and its chaos adapter (``.chaos``)."""
    make = {"Local": _local, "LocalAsync": _local_async, "YARN": _yarn, "EC2": _ec2}
    yield from make[request.param](request, tmp_path_factory)


def _local(request, tmp_path_factory):
    import dato_dist as gl

    env = gl.deploy.environment.Local("contract-local", num_workers=2)
    yield Environment("Local", env, LocalChaos(), synchronous=True, logs_while_running=False,
                      timeout=60)


def _local_async(request, tmp_path_factory):
    import dato_dist as gl

    env = gl.deploy.environment.LocalAsync("contract-async", num_workers=2)
    yield Environment("LocalAsync", env, LocalChaos(), timeout=60)


def _yarn(request, tmp_path_factory):
    import dato_dist as gl

    cluster = request.getfixturevalue("minicluster")
    dist_path = request.getfixturevalue("dist_path")
    env = gl.deploy.hadoop_cluster.create("contract-hadoop", dist_path,
                                          hadoop_conf_dir=cluster.conf_dir, num_containers=2)
    yield Environment("YARN", env, YarnChaos(cluster), timeout=240, start_timeout=180,
                      log_delay=30, lost_driver_error=(
                          r"YARN application application_\d+_\d+ ended FAILED before the job "
                          r"finished.* Logs: yarn logs -applicationId application_\d+_\d+"))


def _ec2(request, tmp_path_factory):
    pytest.importorskip("fabric")
    import dato_dist as gl
    from tests.ec2.ec2_support import Sandbox
    from tests.infra.moto_server import sandbox_aws_env

    moto = request.getfixturevalue("moto_server")
    hosts = request.getfixturevalue("ssh_hosts")
    key = request.getfixturevalue("ssh_user_key")
    workdir = tmp_path_factory.mktemp("contract-ec2")
    mp = pytest.MonkeyPatch()
    # Dummy credentials, no ~/.aws; boto3 and the job store (pyarrow) reach moto only.
    for k, v in sandbox_aws_env(workdir, moto.endpoint_url).items():
        mp.setenv(k, v)
    cluster = box = None
    try:
        box = Sandbox(moto, hosts, key, workdir)
        cluster = gl.deploy.ec2_cluster.create("contract-ec2", f"s3://{box.bucket}/contract",
                                               box.config(), 2, idle_shutdown_timeout=-1)
        yield Environment("EC2", cluster, Ec2Chaos(box), timeout=90, start_timeout=60,
                          log_delay=20, lost_driver_error=(
                              r"driver on the head host exited with status -?\d+ without "
                              r"finishing the job; see its log: s3://.*/logs/driver\.log"))
    finally:
        try:
            if cluster is not None:
                cluster.stop()
        finally:
            if box is not None:
                box.kill_leftovers()
            mp.undo()


@pytest.fixture
def jobs(environment):
    """Register the jobs a test starts: any still running at its end is canceled, and on a
    failure the test's report gets each job's status, error and logs."""
    started = []
    yield started
    for job in started:
        try:
            job.cancel()
        except Exception:  # noqa: BLE001 - teardown must reach every job
            pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for job in item.funcargs.get("jobs") or []:
        try:
            text = f"status {job.get_status(_silent=True)}, error {job.get_error()}\n"
            for name, log in job.read_logs().items():
                text += f"--- {name} ---\n{log[-4000:]}\n"
        except Exception as e:  # noqa: BLE001 - a report must not fail
            text = f"(could not read the job: {e})"
        report.sections.append((f"job {job.name}", text))
