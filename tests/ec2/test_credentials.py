"""Wrong AWS credentials are an ``AwsCredentialsError`` naming where they came from, from
the first call that uses them (issue 9 item 4), on a moto server that checks keys."""

from __future__ import annotations

import uuid

import pytest

pytestmark = [pytest.mark.ec2, pytest.mark.timeout(120)]

REGION = "us-west-2"
WRONG_SECRET = "wrong-secret-never-shown-0123456789"


@pytest.fixture(scope="module")
def auth_moto(ec2_workdir):
    """A moto server in its auth mode: the first 3 requests make an IAM user allowed
    everything; every later request needs that user's key, signed with its secret."""
    pytest.importorskip("moto.server", reason="needs moto[server]")
    from tests.infra.moto_server import MotoServer

    with MotoServer.start(log_dir=ec2_workdir / "moto-credentials",
                          extra_env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"}) as m:
        m.key = m.allowed_user_keys()
        yield m


@pytest.fixture
def aws_env(auth_moto, monkeypatch):
    """This process's AWS environment pointed at the auth server with the good key (what
    the job store, through pyarrow, signs with); ``gl.aws`` credentials cleared after."""
    from dato_dist.ec2 import aws

    monkeypatch.setenv("AWS_ENDPOINT_URL", auth_moto.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", auth_moto.key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", auth_moto.key["SecretAccessKey"])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    saved = dict(aws._credentials)
    aws._credentials.clear()
    yield auth_moto
    aws._credentials.clear()
    aws._credentials.update(saved)


def _good(m, service, region="us-east-1"):
    import boto3

    return boto3.client(service, endpoint_url=m.endpoint_url, region_name=region,
                        aws_access_key_id=m.key["AccessKeyId"],
                        aws_secret_access_key=m.key["SecretAccessKey"])


def _bucket(m):
    name = f"dd-creds-{uuid.uuid4().hex[:10]}"
    _good(m, "s3").create_bucket(Bucket=name)
    return name


def _config(m, **kwargs):
    from dato_dist.ec2.config import Ec2Config

    return Ec2Config(REGION, "t3.micro", endpoint_url=m.endpoint_url, ami="ami-1", **kwargs)


def _tagged(m, cluster):
    ec2 = _good(m, "ec2", REGION)
    return [i["InstanceId"] for r in ec2.describe_instances(Filters=[
        {"Name": "tag:dato-dist:cluster", "Values": [cluster]}])["Reservations"]
        for i in r["Instances"]]


def test_wrong_secret_in_ec2config_fails_at_the_bucket_check(aws_env):
    """Was: ``Ec2Error: Checking bucket ...: 403: Forbidden``."""
    import dato_dist as gl
    from dato_dist.errors import AwsCredentialsError

    m = aws_env
    bucket = _bucket(m)
    config = _config(m, aws_access_key_id=m.key["AccessKeyId"],
                     aws_secret_access_key=WRONG_SECRET)
    with pytest.raises(AwsCredentialsError) as e:
        gl.deploy.ec2_cluster.create("creds-arg", f"s3://{bucket}/c", config, 1)
    message = str(e.value)
    assert message.startswith(f"Checking bucket {bucket}: AWS refused the credentials")
    assert "SignatureDoesNotMatch" in message and "Forbidden" not in message
    assert "the Ec2Config arguments" in e.value.source
    assert WRONG_SECRET not in message and m.key["AccessKeyId"] not in message
    assert _tagged(m, "creds-arg") == []  # nothing was launched


def test_unknown_key_id_in_ec2config_fails_at_the_first_ec2_call(aws_env):
    from dato_dist.ec2 import provision
    from dato_dist.errors import AwsCredentialsError

    config = _config(aws_env, aws_access_key_id="AKIADOESNOTEXIST0000",
                     aws_secret_access_key=WRONG_SECRET)
    with pytest.raises(AwsCredentialsError) as e:
        provision.find_clusters(config)
    assert "AuthFailure" in str(e.value) and "Ec2Config arguments" in str(e.value)
    assert "AKIADOESNOTEXIST0000" not in str(e.value) and WRONG_SECRET not in str(e.value)


def test_wrong_secret_from_gl_aws_fails_at_the_first_state_read(aws_env):
    """gl.aws.set_credentials feeds the job store (pyarrow) too: its bare 403 becomes ours."""
    import dato_dist as gl
    from dato_dist.errors import AwsCredentialsError

    m = aws_env
    bucket = _bucket(m)
    gl.aws.set_credentials(m.key["AccessKeyId"], WRONG_SECRET)
    with pytest.raises(AwsCredentialsError) as e:
        gl.deploy.ec2_cluster.create("creds-glaws", f"s3://{bucket}/c", _config(m), 1)
    message = str(e.value)
    assert f"Reading s3://{bucket}/c/cluster.json: AWS refused the credentials" in message
    assert "gl.aws.set_credentials" in e.value.source and WRONG_SECRET not in message
    assert _tagged(m, "creds-glaws") == []


def test_wrong_secret_in_the_environment_load_and_cli(aws_env, monkeypatch, capsys):
    import dato_dist as gl
    from dato_dist import cli
    from dato_dist.errors import AwsCredentialsError

    m = aws_env
    bucket = _bucket(m)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", WRONG_SECRET)
    with pytest.raises(AwsCredentialsError) as e:
        gl.deploy.ec2_cluster.load(f"s3://{bucket}/nothing")
    assert "the environment variables AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" in str(e.value)
    assert WRONG_SECRET not in str(e.value)
    code = cli.main(["ec2", "list", "--region", REGION, "--endpoint-url", m.endpoint_url])
    out = capsys.readouterr()
    assert code == 2, out
    assert "AWS refused the credentials" in out.err and "environment variables" in out.err
    assert "Traceback" not in out.err and WRONG_SECRET not in out.out + out.err


def test_good_credentials_pass_every_check(aws_env):
    from dato_dist.ec2 import provision

    m = aws_env
    bucket = _bucket(m)
    good = _config(m, aws_access_key_id=m.key["AccessKeyId"],
                   aws_secret_access_key=m.key["SecretAccessKey"])
    provision.ensure_bucket(good, f"s3://{bucket}/c")
    provision.ensure_bucket(good, f"s3://{bucket}-new/c")  # created when missing
    assert provision.check_credentials(good).endswith("user/u")
    assert provision.find_clusters(good) == {}
