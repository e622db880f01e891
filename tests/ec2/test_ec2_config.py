"""Ec2Config and ec2_cluster.create's GraphLab signature and validation (no servers)."""

from __future__ import annotations

import inspect

import pytest

pytestmark = pytest.mark.ec2


@pytest.fixture
def clean_aws(monkeypatch):
    """``gl.aws.set_credentials`` writes this process's environment: undo it after."""
    from dato_dist.ec2 import aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    saved = dict(aws._credentials)
    aws._credentials.clear()
    yield aws
    aws._credentials.clear()
    aws._credentials.update(saved)


def test_graphlab_names_and_signatures():
    import dato_dist as gl
    from dato_dist.ec2.config import Ec2Config

    assert gl.deploy.Ec2Config is Ec2Config
    params = list(inspect.signature(Ec2Config).parameters.values())
    assert [(p.name, p.default) for p in params[:9]] == [
        ("region", "us-west-2"), ("instance_type", "m3.xlarge"), ("aws_access_key_id", None),
        ("aws_secret_access_key", None), ("security_group", None), ("tags", None),
        ("cidr_ip", None), ("subnet_id", None), ("security_group_id", None)]
    assert all(p.kind is p.KEYWORD_ONLY for p in params[9:])
    create = inspect.signature(gl.deploy.ec2_cluster.create).parameters
    assert [(n, p.default) for n, p in create.items()] == [
        ("name", inspect.Parameter.empty), ("s3_path", inspect.Parameter.empty),
        ("ec2_config", inspect.Parameter.empty), ("num_hosts", 1),
        ("additional_packages", []), ("idle_shutdown_timeout", 1800)]
    assert callable(gl.deploy.ec2_cluster.load)
    assert callable(gl.aws.set_credentials)


def test_str_masks_the_key(clean_aws):
    from dato_dist.ec2.config import Ec2Config

    c = Ec2Config(aws_access_key_id="ABCDEFGHIJ", aws_secret_access_key="very-secret")
    assert str(c) == "[instance_type: m3.xlarge, region: us-west-2, aws_access_key: ABCD...]"
    assert "very-secret" not in repr(c) and "very-secret" not in str(c.to_dict())
    assert "ABCDEFGHIJ" not in str(c.to_dict())
    assert c.get_credentials() == {"aws_access_key_id": "ABCDEFGHIJ",
                                   "aws_secret_access_key": "very-secret"}


def test_credentials_precedence(clean_aws):
    import dato_dist as gl
    from dato_dist.ec2.config import Ec2Config

    c = Ec2Config()
    assert c.get_credentials()["aws_access_key_id"] == "testing"  # the environment
    gl.aws.set_credentials("AKIAFROMSETCREDS", "s3cr3t")
    assert c.get_credentials() == {"aws_access_key_id": "AKIAFROMSETCREDS",
                                   "aws_secret_access_key": "s3cr3t"}
    assert "aws_access_key: AKIA..." in str(c)
    explicit = Ec2Config(aws_access_key_id="AKIAEXPLICIT", aws_secret_access_key="x")
    assert explicit.get_credentials()["aws_access_key_id"] == "AKIAEXPLICIT"


@pytest.mark.parametrize("kwargs, error, words", [
    ({"security_group": "a", "security_group_id": "sg-1"}, ValueError, "not both"),
    ({"aws_access_key_id": "AKIA"}, ValueError, "both"),
    ({"aws_secret_access_key": "x"}, ValueError, "both"),
    ({"region": "us-wset-2"}, ValueError, "us-wset-2"),
    ({"tags": ["a"]}, TypeError, "tags"),
    ({"tags": {"a": 1}}, TypeError, "tags"),
    ({"cidr_ip": "not-a-cidr"}, ValueError, "cidr_ip"),
    ({"cidr_ip": 5}, TypeError, "cidr_ip"),
    ({"head_bid_price": 0.42}, TypeError, "str"),
    ({"worker_bid_price": "cheap"}, ValueError, "worker_bid_price"),
    ({"instance_type": 3}, TypeError, "instance_type"),
    ({"ssh_port": 0}, ValueError, "ssh_port"),
    ({"key_file": "/tmp/k.pem"}, ValueError, "key_name"),
    ({"idle_action": "explode"}, ValueError, "idle_action"),
])
def test_validation(kwargs, error, words):
    from dato_dist.ec2.config import Ec2Config

    with pytest.raises(error) as e:
        Ec2Config(**kwargs)
    assert words in str(e.value)


def test_region_typo_names_the_setting():
    from dato_dist.ec2.config import Ec2Config
    from dato_dist.errors import Ec2SettingError

    with pytest.raises(Ec2SettingError) as e:
        Ec2Config("us-wset-2")
    assert e.value.setting == "region" and "us-west-2" in str(e.value)


def test_cidr_and_round_trip():
    from dato_dist.ec2.config import Ec2Config

    c = Ec2Config("eu-west-1", "t3.micro", cidr_ip="10.0.0.0/8", tags={"team": "ds"},
                  head_bid_price="0.42", ami="ami-123", use_private_ips=True)
    assert c.cidr_ip == ["10.0.0.0/8"]
    assert Ec2Config(cidr_ip=["1.2.3.4/32", "5.6.7.8/32"]).cidr_ip == ["1.2.3.4/32",
                                                                       "5.6.7.8/32"]
    again = Ec2Config.from_dict(c.to_dict())
    assert again == c and again.head_bid_price == "0.42" and again.tags == {"team": "ds"}


@pytest.mark.parametrize("args, kwargs, error", [
    (("bad name!", "s3://b/p"), {}, ValueError),
    (("ok", "/local/path"), {}, ValueError),
    (("ok", "s3://b/p"), {"num_hosts": 0}, ValueError),
    (("ok", "s3://b/p"), {"additional_packages": 5}, TypeError),
    (("ok", "s3://b/p"), {"idle_shutdown_timeout": "soon"}, TypeError),
])
def test_create_validates_before_launching(args, kwargs, error):
    import dato_dist as gl

    config = gl.deploy.Ec2Config()
    with pytest.raises(error):
        gl.deploy.ec2_cluster.create(args[0], args[1], config, **kwargs)


def test_cluster_attributes_and_packages():
    from dato_dist.ec2.cluster import Ec2Cluster
    from dato_dist.ec2.config import Ec2Config

    c = Ec2Cluster("c1", "s3://bucket/c1/", Ec2Config(), 4, "names==0.3.0", -1)
    assert c.s3_state_path == "s3://bucket/c1" and c.num_hosts == 4
    assert c.additional_packages == ["names==0.3.0"]
    c.additional_packages = ["a", "b"]
    assert c.additional_packages == ["a", "b"]
    assert c.idle_shutdown_timeout == -1
    again = Ec2Cluster.from_dict(c.to_dict())
    assert again == c and again.ec2_config == c.ec2_config
    assert c.store_uri(None) == "s3://bucket/c1/jobs"


def _client_error(code, message="m"):
    import botocore.exceptions

    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": message}},
                                           "RunInstances")


@pytest.mark.parametrize("code, message, kind, setting", [
    ("InsufficientInstanceCapacity", "no m3.xlarge", "CapacityError", None),
    ("InstanceLimitExceeded", "limit", "CapacityError", None),
    ("VcpuLimitExceeded", "vcpus", "CapacityError", None),
    ("InvalidParameterValue", "Invalid value 'm9.huge' for instance type", "Ec2SettingError",
     "instance_type"),
    ("InvalidAMIID.NotFound", "no such image", "Ec2SettingError", "ami"),
    ("InvalidKeyPair.NotFound", "no such key", "Ec2SettingError", "key_name"),
    ("AuthFailure", "bad key", "AwsCredentialsError", "aws_access_key_id"),
    ("UnauthorizedOperation", "not allowed", "Ec2SettingError", None),
    ("SomethingNew", "surprise", "Ec2Error", None),
])
def test_botocore_errors_become_ours(code, message, kind, setting):
    from dato_dist.ec2 import provision
    from dato_dist import errors

    with pytest.raises(getattr(errors, kind)) as e:
        with provision._aws("Launching"):
            raise _client_error(code, message)
    assert type(e.value).__name__ == kind
    assert getattr(e.value, "setting", None) == setting
    assert code in str(e.value) and str(e.value).startswith("Launching")
    if kind == "CapacityError":
        assert "instance_type" in str(e.value) and "quota" in str(e.value)


def test_no_credentials_is_a_clear_error():
    import botocore.exceptions

    from dato_dist.ec2 import provision
    from dato_dist.errors import AwsCredentialsError

    with pytest.raises(AwsCredentialsError) as e:
        with provision._aws("Describing"):
            raise botocore.exceptions.NoCredentialsError()
    assert "gl.aws.set_credentials" in str(e.value)
