"""The EC2 test infrastructure itself: moto's EC2/S3/SSM on 127.0.0.1 and sshd hosts.

These tests pin down the facts the EC2 backend relies on (docs/ec2-testing.md):
instances in a 127.0.0.0/24 subnet get 127.0.0.4, .5, ... in launch order; an sshd on
each such address is reached by Fabric like an EC2 host by private IP; a host can be
taken away alone; S3 works through pyarrow with an endpoint override.
"""

from __future__ import annotations

import os
import time
import urllib.request
import uuid

import pytest

from tests.infra.moto_server import AL2023_SSM_PARAMETER, assert_local_endpoint, free_port

pytestmark = pytest.mark.ec2

try:
    import fabric
except ImportError:  # the moto tests still run; the sshd host tests need the [ec2] extra
    fabric = None
needs_fabric = pytest.mark.skipif(fabric is None, reason="needs fabric (pip install .[ec2])")


def _ami(ec2):
    """Resolve the default AMI as the backend would: the SSM public parameter."""
    import boto3  # noqa: F401  (ensures the import error is clear)

    return ec2.describe_images(Owners=["amazon"],
                               Filters=[{"Name": "name", "Values": ["al2023-ami-2023*x86_64"]}],
                               )["Images"][0]["ImageId"]


def _launch(ec2, subnet, n, **extra):
    r = ec2.run_instances(ImageId=_ami(ec2), MinCount=n, MaxCount=n, InstanceType="t3.micro",
                          SubnetId=subnet["subnet_id"], **extra)
    return [(i["InstanceId"], i["PrivateIpAddress"]) for i in r["Instances"]]


def _wait(ec2, waiter, ids):
    ec2.get_waiter(waiter).wait(InstanceIds=ids, WaiterConfig={"Delay": 1, "MaxAttempts": 15})


# -- moto ------------------------------------------------------------------------------

def test_moto_server_is_local_and_healthy(moto_server, moto_endpoint):
    assert assert_local_endpoint(moto_endpoint).startswith("http://127.0.0.1:")
    assert moto_server.is_running() and moto_server.pid > 0
    with urllib.request.urlopen(moto_endpoint + "/moto-api/", timeout=5) as r:
        assert r.status == 200
    ident = moto_server.client("sts").get_caller_identity()
    assert ident["Account"] == "123456789012"  # moto's default account


def test_sandbox_blocks_clients_without_endpoint():
    """A client that forgets endpoint_url hits a dead local port, never AWS."""
    import boto3
    from botocore.config import Config

    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    c = boto3.client("ec2", region_name="us-west-2",
                     config=Config(connect_timeout=2, retries={"max_attempts": 1}))
    assert c.meta.endpoint_url.startswith("http://127.0.0.1:")
    t0 = time.monotonic()
    with pytest.raises(Exception) as ei:
        c.describe_instances()
    assert "Could not connect" in str(ei.value) or "Connect" in type(ei.value).__name__
    assert time.monotonic() - t0 < 10
    with pytest.raises(RuntimeError):
        assert_local_endpoint("https://ec2.us-west-2.amazonaws.com")


def test_loopback_subnet_gives_sequential_private_ips(ec2_client, loopback_subnet):
    ec2 = ec2_client
    first = _launch(ec2, loopback_subnet, 3)
    assert [ip for _, ip in first] == ["127.0.0.4", "127.0.0.5", "127.0.0.6"]
    ids = [i for i, _ in first]
    t0 = time.monotonic()
    _wait(ec2, "instance_running", ids)
    assert time.monotonic() - t0 < 5
    desc = ec2.describe_instances(InstanceIds=ids)["Reservations"][0]["Instances"]
    assert {i["State"]["Name"] for i in desc} == {"running"}
    assert {i["PrivateDnsName"] for i in desc} == {
        f"ip-127-0-0-{n}.us-west-2.compute.internal" for n in (4, 5, 6)}
    assert all("PublicIpAddress" not in i for i in desc)  # non-default subnet: private only
    # a second launch continues the sequence
    assert [ip for _, ip in _launch(ec2, loopback_subnet, 2)] == ["127.0.0.7", "127.0.0.8"]
    # terminating does not free an address for reuse
    ec2.terminate_instances(InstanceIds=ids[:1])
    _wait(ec2, "instance_terminated", ids[:1])
    assert _launch(ec2, loopback_subnet, 1)[0][1] == "127.0.0.9"
    # an explicit private IP is honoured
    r = ec2.run_instances(ImageId=_ami(ec2), MinCount=1, MaxCount=1,
                          SubnetId=loopback_subnet["subnet_id"], PrivateIpAddress="127.0.0.40")
    assert r["Instances"][0]["PrivateIpAddress"] == "127.0.0.40"


def test_each_new_subnet_starts_again_at_dot_4(ec2_client, loopback_subnet):
    from tests.infra.moto_server import create_loopback_subnet

    assert _launch(ec2_client, loopback_subnet, 1)[0][1] == "127.0.0.4"
    other = create_loopback_subnet(ec2_client)  # same CIDRs, new VPC: accepted
    assert _launch(ec2_client, other, 2)[0][1] == "127.0.0.4"
    other2 = create_loopback_subnet(ec2_client, "127.0.1.0/24", "127.0.1.0/24")
    assert _launch(ec2_client, other2, 1)[0][1] == "127.0.1.4"


def test_spot_requests_fulfil_at_once_in_the_subnet(ec2_client, loopback_subnet):
    ec2 = ec2_client
    base = _launch(ec2, loopback_subnet, 1)[0][1]
    assert base == "127.0.0.4"
    r = ec2.request_spot_instances(
        SpotPrice="0.05", InstanceCount=2, Type="one-time",
        LaunchSpecification={"ImageId": _ami(ec2), "InstanceType": "t3.micro",
                             "SubnetId": loopback_subnet["subnet_id"]})
    rids = [x["SpotInstanceRequestId"] for x in r["SpotInstanceRequests"]]
    ec2.get_waiter("spot_instance_request_fulfilled").wait(
        SpotInstanceRequestIds=rids, WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    reqs = ec2.describe_spot_instance_requests(SpotInstanceRequestIds=rids)["SpotInstanceRequests"]
    assert {x["State"] for x in reqs} == {"active"}
    assert {x["Status"]["Code"] for x in reqs} == {"fulfilled"}
    iids = [x["InstanceId"] for x in reqs]
    insts = [i for res in ec2.describe_instances(InstanceIds=iids)["Reservations"]
             for i in res["Instances"]]
    assert sorted(i["PrivateIpAddress"] for i in insts) == ["127.0.0.5", "127.0.0.6"]
    assert {i["InstanceLifecycle"] for i in insts} == {"spot"}
    # moto (5.2) does not set SpotInstanceRequestId on the instance: map request ->
    # instance through describe_spot_instance_requests' InstanceId, as above.
    ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=rids)
    ec2.terminate_instances(InstanceIds=iids)
    # run_instances with InstanceMarketOptions is the other way to get spot
    r = ec2.run_instances(ImageId=_ami(ec2), MinCount=1, MaxCount=1,
                          SubnetId=loopback_subnet["subnet_id"],
                          InstanceMarketOptions={"MarketType": "spot",
                                                 "SpotOptions": {"MaxPrice": "0.05"}})
    assert r["Instances"][0]["PrivateIpAddress"] == "127.0.0.7"
    assert r["Instances"][0]["InstanceLifecycle"] == "spot"


def test_run_instances_validates_ami_and_key(ec2_client, loopback_subnet):
    """The session's moto checks AMI and key pair like EC2 (MotoServer validate=True)."""
    with pytest.raises(ec2_client.exceptions.ClientError, match="InvalidAMIID.NotFound"):
        ec2_client.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1,
                                 SubnetId=loopback_subnet["subnet_id"])
    with pytest.raises(ec2_client.exceptions.ClientError, match="InvalidKeyPair.NotFound"):
        ec2_client.run_instances(ImageId=_ami(ec2_client), MinCount=1, MaxCount=1,
                                 SubnetId=loopback_subnet["subnet_id"], KeyName="no-such-key")
    # nothing was launched: the subnet still starts at .4
    assert _launch(ec2_client, loopback_subnet, 1)[0][1] == "127.0.0.4"


@pytest.mark.parametrize("region", ["us-east-1", "us-west-2", "eu-west-1"])
def test_default_ami_resolves_through_ssm(moto_server, region):
    ssm = moto_server.client("ssm", region=region)
    ami = ssm.get_parameter(Name=AL2023_SSM_PARAMETER)["Parameter"]["Value"]
    assert ami.startswith("ami-")
    ec2 = moto_server.client("ec2", region=region)
    imgs = ec2.describe_images(ImageIds=[ami])["Images"]
    assert len(imgs) == 1 and imgs[0]["Name"].startswith("al2023-ami-")
    with pytest.raises(ec2.exceptions.ClientError, match="InvalidAMIID.NotFound"):
        ec2.describe_images(ImageIds=["ami-0000000000000dead"])


@needs_fabric
def test_key_pairs_security_groups_and_tags(ec2_client, loopback_subnet, ssh_hosts):
    ec2 = ec2_client
    name = f"dd-test-{uuid.uuid4().hex[:8]}"
    created = ec2.create_key_pair(KeyName=name)
    assert created["KeyMaterial"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    with pytest.raises(ec2.exceptions.ClientError, match="InvalidKeyPair.Duplicate"):
        ec2.create_key_pair(KeyName=name)
    imported = ec2.import_key_pair(KeyName=name + "-imp",
                                   PublicKeyMaterial=open(str(ssh_hosts.user_key) + ".pub", "rb").read())
    assert imported["KeyName"] == name + "-imp"
    sg = ec2.create_security_group(GroupName=name, Description="dato-dist test",
                                   VpcId=loopback_subnet["vpc_id"])["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
        "IpRanges": [{"CidrIp": "127.0.0.1/32", "Description": "client"}]}])
    perms = ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"][0]["IpPermissions"]
    assert perms[0]["IpRanges"][0]["CidrIp"] == "127.0.0.1/32"
    found = ec2.describe_security_groups(Filters=[
        {"Name": "group-name", "Values": [name]},
        {"Name": "vpc-id", "Values": [loopback_subnet["vpc_id"]]}])["SecurityGroups"]
    assert [g["GroupId"] for g in found] == [sg]
    r = ec2.run_instances(
        ImageId=_ami(ec2), MinCount=2, MaxCount=2, SubnetId=loopback_subnet["subnet_id"],
        KeyName=name, SecurityGroupIds=[sg], InstanceInitiatedShutdownBehavior="terminate",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "dato-dist:cluster", "Value": name}, {"Key": "owner", "Value": "test"}]}])
    ids = [i["InstanceId"] for i in r["Instances"]]
    assert {i["KeyName"] for i in r["Instances"]} == {name}
    tagged = ec2.describe_instances(Filters=[
        {"Name": "tag:dato-dist:cluster", "Values": [name]},
        {"Name": "instance-state-name", "Values": ["pending", "running"]}])
    assert sorted(i["InstanceId"] for res in tagged["Reservations"] for i in res["Instances"]) == sorted(ids)
    attr = ec2.describe_instance_attribute(InstanceId=ids[0],
                                           Attribute="instanceInitiatedShutdownBehavior")
    assert attr["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    ec2.terminate_instances(InstanceIds=ids)
    ec2.delete_security_group(GroupId=sg)
    ec2.delete_key_pair(KeyName=name)
    ec2.delete_key_pair(KeyName=name + "-imp")
    assert name not in [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]]


def test_moto_can_check_credentials(ec2_workdir):
    """moto accepts any credentials, unless started with INITIAL_NO_AUTH_ACTION_COUNT:
    then the first N requests are free (make an IAM user and key with them) and every
    later request needs a real key (how to test 'wrong credential' errors)."""
    import boto3

    from tests.infra.moto_server import MotoServer

    with MotoServer.start(log_dir=ec2_workdir / "moto-auth",
                          extra_env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"}) as m:
        key = m.allowed_user_keys()

        def ec2(access, secret):
            return boto3.client("ec2", endpoint_url=m.endpoint_url, region_name="us-west-2",
                                aws_access_key_id=access, aws_secret_access_key=secret)

        assert ec2(key["AccessKeyId"], key["SecretAccessKey"]).describe_instances()["Reservations"] == []
        for access, secret in [("AKIAXXXXXXXXXXXXXXXX", "x"), (key["AccessKeyId"], "wrong")]:
            with pytest.raises(Exception, match="AuthFailure"):
                ec2(access, secret).describe_instances()
        s3 = boto3.client("s3", endpoint_url=m.endpoint_url, region_name="us-east-1",
                          aws_access_key_id="AKIAXXXXXXXXXXXXXXXX", aws_secret_access_key="x")
        with pytest.raises(Exception, match="InvalidAccessKeyId"):
            s3.list_buckets()
    assert not m.is_running()


# -- sshd hosts -----------------------------------------------------------------------

@needs_fabric
def test_fabric_reaches_moto_instances_by_private_ip(ec2_client, loopback_subnet, ssh_hosts,
                                                     ssh_user_key):
    ec2 = ec2_client
    launched = _launch(ec2, loopback_subnet, 3)
    ids = [i for i, _ in launched]
    _wait(ec2, "instance_running", ids)
    ips = [i["PrivateIpAddress"] for res in ec2.describe_instances(InstanceIds=ids)["Reservations"]
           for i in res["Instances"]]
    assert sorted(ips) == ["127.0.0.4", "127.0.0.5", "127.0.0.6"]

    t0 = time.monotonic()
    hosts = ssh_hosts(ips)
    start_s = time.monotonic() - t0
    assert [h.ip for h in hosts] == ips
    assert len({h.pid for h in hosts}) == 3 and len({h.port for h in hosts}) == 1
    assert start_s < 30, start_s

    for h in hosts:
        c = fabric.Connection(host=h.ip, user="root", port=h.port, connect_timeout=10,
                              connect_kwargs={"key_filename": ssh_user_key,
                                              "allow_agent": False, "look_for_keys": False})
        with c:
            # in_stream=False: Fabric must not read our stdin (pytest captures it; CI has none)
            out = c.run("echo $SSH_CONNECTION; hostname; echo $DATO_DIST_HOST_ROOT", hide=True,
                        in_stream=False)
            conn, hostname, root = out.stdout.split("\n")[:3]
            assert conn.split()[2:] == [h.ip, str(h.port)]  # the server side is that host
            assert hostname
            assert root == str(h.root)
            # files go to that host's own folder, named by its instance id
            iid = ids[ips.index(h.ip)]
            c.run(f'mkdir -p "$DATO_DIST_HOST_ROOT/{iid}" && echo hi > "$DATO_DIST_HOST_ROOT/{iid}/f"',
                  in_stream=False)
            assert (h.root / iid / "f").read_text() == "hi\n"

    group = ssh_hosts.group(ips)
    try:
        results = group.run("echo $SSH_CONNECTION", hide=True)
        assert sorted(r.stdout.split()[2] for r in results.values()) == ips
    finally:
        group.close()

    # take one host away: it stops answering, the others still do
    victim = hosts[1]
    victim.stop()
    assert not victim.is_running()
    group = ssh_hosts.group(ips, connect_timeout=5)
    try:
        with pytest.raises(fabric.exceptions.GroupException) as ei:
            group.run("echo $SSH_CONNECTION", hide=True)
        res = ei.value.result
        ok = sorted(r.stdout.split()[2] for c, r in res.succeeded.items())
        assert ok == [ips[0], ips[2]]
        assert [c.host for c in res.failed] == [victim.ip]
        assert isinstance(res.failed[list(res.failed)[0]], (OSError, Exception))
    finally:
        group.close()

    # and it comes back when started again (same host key)
    key_before = victim.host_public_key
    assert ssh_hosts([victim.ip])[0] is victim and victim.is_running()
    assert victim.host_public_key == key_before
    assert victim.run("echo back").strip() == "back"

    ec2.terminate_instances(InstanceIds=ids)
    _wait(ec2, "instance_terminated", ids)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a killed orphan may linger as a zombie: not alive)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    return not _alive(pid)


@needs_fabric
def test_stop_kills_the_hosts_processes(ssh_hosts):
    """stop() is a power cut: detached processes started over SSH die with the host."""
    host, other = ssh_hosts(["127.0.0.4", "127.0.0.5"])
    for h in (host, other):
        with h.connection() as c:
            c.run("setsid nohup sleep 300 > /dev/null 2>&1 < /dev/null & echo $! > $DATO_DIST_HOST_ROOT/sleep.pid",
                  hide=True)
    pid = int((host.root / "sleep.pid").read_text())
    other_pid = int((other.root / "sleep.pid").read_text())
    assert _alive(pid) and _alive(other_pid)
    assert pid in host.session_pids() and pid not in other.session_pids()
    t0 = time.monotonic()
    host.stop()
    assert _wait_dead(pid)
    assert time.monotonic() - t0 < 10
    assert _alive(other_pid)  # the other host is untouched
    with pytest.raises(Exception):  # noqa: B017 - any connection failure will do
        with fabric.Connection(host=host.ip, user="root", port=host.port, connect_timeout=3,
                               connect_kwargs=ssh_hosts.connect_kwargs()) as c:
            c.run("true", hide=True, in_stream=False)
    other.stop()
    assert _wait_dead(other_pid)
    ssh_hosts([host.ip, other.ip])  # leave them up for the next test


@needs_fabric
def test_moto_created_key_pair_logs_in(ec2_client, ssh_hosts, tmp_path):
    """A key pair created by moto (as the backend does when none is given) works with sshd."""
    material = ec2_client.create_key_pair(KeyName=f"dd-{uuid.uuid4().hex[:8]}")["KeyMaterial"]
    key = tmp_path / "moto-key.pem"
    key.write_text(material)
    key.chmod(0o600)
    ssh_hosts.authorize_private_key_file(key)
    host = ssh_hosts(["127.0.0.6"])[0]
    with fabric.Connection(host=host.ip, user="root", port=host.port, connect_timeout=10,
                           connect_kwargs={"key_filename": str(key), "allow_agent": False,
                                           "look_for_keys": False}) as c:
        assert c.run("echo moto-key", hide=True, in_stream=False).stdout.strip() == "moto-key"


@needs_fabric
def test_host_keys_can_be_pinned(ssh_hosts):
    """known_hosts written by the factory verifies each host (RejectPolicy)."""
    import paramiko

    hosts = ssh_hosts(["127.0.0.4", "127.0.0.5"])
    assert hosts[0].host_public_key != hosts[1].host_public_key
    for h in hosts:
        client = paramiko.SSHClient()
        client.load_host_keys(str(ssh_hosts.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(h.ip, port=h.port, username="root", key_filename=str(ssh_hosts.user_key),
                           allow_agent=False, look_for_keys=False, timeout=10)
            key = client.get_transport().get_remote_server_key()
            assert f"{key.get_name()} {key.get_base64()}" == h.host_public_key
        finally:
            client.close()


# -- S3 ---------------------------------------------------------------------------------

def test_s3_through_pyarrow(moto_server, s3_client):
    pafs = pytest.importorskip("pyarrow.fs")
    bucket = f"dd-test-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    fs = pafs.S3FileSystem(endpoint_override=moto_server.endpoint_override, scheme="http",
                           access_key="testing", secret_key="testing", region="us-east-1")
    with fs.open_output_stream(f"{bucket}/jobs/j1/spec.json") as f:
        f.write(b'{"a": 1}')
    with fs.open_input_stream(f"{bucket}/jobs/j1/spec.json") as f:
        assert f.read() == b'{"a": 1}'
    # visible to boto3 too
    assert s3_client.get_object(Bucket=bucket, Key="jobs/j1/spec.json")["Body"].read() == b'{"a": 1}'
    s3_client.put_object(Bucket=bucket, Key="jobs/j1/status", Body=b"Running")
    infos = fs.get_file_info(pafs.FileSelector(f"{bucket}/jobs/j1", recursive=True))
    assert sorted(i.base_name for i in infos) == ["spec.json", "status"]
    # "rename" on S3 is copy + delete
    fs.move(f"{bucket}/jobs/j1/status", f"{bucket}/jobs/j1/status.done")
    assert fs.get_file_info(f"{bucket}/jobs/j1/status").type == pafs.FileType.NotFound
    with fs.open_input_stream(f"{bucket}/jobs/j1/status.done") as f:
        assert f.read() == b"Running"
    # the helper builds the same filesystem
    assert moto_server.s3fs().get_file_info(f"{bucket}/jobs/j1/spec.json").size == 8
    # pyarrow refuses to delete (or create) a bucket unless allowed explicitly
    with pytest.raises(OSError, match="allow_bucket_deletion"):
        fs.delete_dir(bucket)
    fs.delete_dir_contents(bucket)
    s3_client.delete_bucket(Bucket=bucket)
    fs2 = moto_server.s3fs(allow_bucket_creation=True, allow_bucket_deletion=True)
    fs2.create_dir(bucket + "-2")
    assert bucket + "-2" in [b["Name"] for b in s3_client.list_buckets()["Buckets"]]
    fs2.delete_dir(bucket + "-2")


def test_pyarrow_s3_from_uri_with_env_endpoint(moto_server, s3_client, monkeypatch):
    """``S3FileSystem.from_uri`` / ``s3://`` paths follow AWS_ENDPOINT_URL (pyarrow >= 15)."""
    pafs = pytest.importorskip("pyarrow.fs")
    bucket = f"dd-test-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_object(Bucket=bucket, Key="x", Body=b"1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    fs, path = pafs.FileSystem.from_uri(f"s3://{bucket}/x?region=us-east-1")
    with fs.open_input_stream(path) as f:
        assert f.read() == b"1"


def test_free_port_is_loopback():
    p = free_port()
    assert 1024 <= p <= 65535
