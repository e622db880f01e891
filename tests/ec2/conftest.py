"""Fixtures for EC2 tests: moto's server on 127.0.0.1 and real sshd hosts on loopback.

- ``moto_server`` (session, tests/conftest.py): one moto_server subprocess for the session;
  ``moto_endpoint``: its URL.
- ``aws_sandbox`` (session, autouse): dummy credentials, no ~/.aws, and a dead local
  ``AWS_ENDPOINT_URL`` so that nothing in these tests can reach real AWS.
- ``ec2_client``, ``s3_client`` (function): boto3 clients on moto.
- ``loopback_subnet`` (function): a fresh VPC + ``127.0.0.0/24`` subnet; moto gives its
  instances 127.0.0.4, .5, ... in launch order.
- ``ssh_hosts`` (session, tests/conftest.py): factory, ``ssh_hosts(["127.0.0.4", ...])`` ->
  running sshd hosts (``.ip``, ``.port``, ``.pid``, ``.stop()``); ``ssh_user_key``: the key.
- ``sandbox`` (module): a ``Sandbox`` that makes launched instances sshd hosts.

See docs/ec2-testing.md.
"""

from __future__ import annotations

import pytest

from tests.infra.moto_server import create_loopback_subnet, sandbox_aws_env

EC2_REGION = "us-west-2"


@pytest.fixture(scope="session", autouse=True)
def aws_sandbox(ec2_workdir):
    """Keep every AWS client in these tests away from real AWS and real credentials."""
    mp = pytest.MonkeyPatch()
    for k, v in sandbox_aws_env(ec2_workdir).items():
        mp.setenv(k, v)
    yield
    mp.undo()


@pytest.fixture(scope="session")
def moto_endpoint(moto_server) -> str:
    """``http://127.0.0.1:PORT`` of the session's moto server."""
    return moto_server.endpoint_url


@pytest.fixture
def ec2_client(moto_server):
    return moto_server.client("ec2", region=EC2_REGION)


@pytest.fixture
def s3_client(moto_server):
    return moto_server.client("s3", region="us-east-1")


@pytest.fixture
def loopback_subnet(ec2_client):
    """A new VPC 127.0.0.0/16 with subnet 127.0.0.0/24: its first instance is 127.0.0.4."""
    return dict(create_loopback_subnet(ec2_client), region=EC2_REGION)


@pytest.fixture(scope="module")
def sandbox(moto_server, ssh_hosts, ssh_user_key, tmp_path_factory, request):
    """Launch hosts of the module's clusters as sshd hosts on loopback (see ec2_support);
    leftover host processes are killed at the end of the module."""
    from tests.ec2.ec2_support import Sandbox

    mp = pytest.MonkeyPatch()
    # The job store (pyarrow) and boto3 reach S3 through AWS_ENDPOINT_URL: moto only.
    mp.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    workdir = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    box = Sandbox(moto_server, ssh_hosts, ssh_user_key, workdir)
    try:
        yield box
    finally:
        box.kill_leftovers()
        mp.undo()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failed EC2 test, attach the sshd and moto logs to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    factory = item.funcargs.get("ssh_hosts")
    if factory is not None and hasattr(factory, "logs"):
        rep.sections.append(("sshd host logs", factory.logs()))
    sandbox = item.funcargs.get("sandbox")  # the EC2 backend's hosts (tests/ec2/ec2_support)
    if sandbox is not None and hasattr(sandbox, "logs"):
        rep.sections.append(("EC2 host logs", sandbox.logs()))
    server = item.funcargs.get("moto_server")
    if server is not None:
        rep.sections.append(("moto_server log", server.log_tail()))
