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
    # region and instance_type default to the config keys ec2.region / ec2.instance_type,
    # shipped as GraphLab's 'us-west-2' / 'm3.xlarge' (test_defaults_come_from_the_config)
    assert [(p.name, p.default) for p in params[:9]] == [
        ("region", None), ("instance_type", None), ("aws_access_key_id", None),
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
    from dato_dist import errors
    from dato_dist.ec2 import provision

    with pytest.raises(getattr(errors, kind)) as e:
        with provision._aws("Launching"):
            raise _client_error(code, message)
    assert type(e.value).__name__ == kind
    assert getattr(e.value, "setting", None) == setting
    assert code in str(e.value) and str(e.value).startswith("Launching")
    if kind == "CapacityError":
        assert "instance_type" in str(e.value) and "quota" in str(e.value)


def test_refused_credentials_name_their_source(clean_aws):
    """AuthFailure & co. say where the keys came from (key id masked, never the secret)."""
    import dato_dist as gl
    from dato_dist.ec2 import provision
    from dato_dist.ec2.config import Ec2Config
    from dato_dist.errors import AwsCredentialsError, ConfigError

    def refused(config):
        with pytest.raises(AwsCredentialsError) as e:
            with provision._aws("Launching", config):
                raise _client_error("AuthFailure", "AWS was not able to validate")
        assert isinstance(e.value, ConfigError) and e.value.exit_code == 2
        return e.value

    e = refused(None)
    assert "environment variables AWS_ACCESS_KEY_ID" in str(e) and "test..." in str(e)
    assert e.source.startswith("the environment variables")
    explicit = Ec2Config(aws_access_key_id="AKIAEXPLICIT", aws_secret_access_key="n0t-shown")
    e = refused(explicit)
    assert "the Ec2Config arguments (aws_access_key_id AKIA...)" in str(e)
    assert "AKIAEXPLICIT" not in str(e) and "n0t-shown" not in str(e)
    gl.aws.set_credentials("AKIAFROMSETCREDS", "s3cr3t-not-shown")
    e = refused(Ec2Config())
    assert "gl.aws.set_credentials" in e.source and "s3cr3t" not in str(e)
    assert "AuthFailure" in str(e) and "sts get-caller-identity" in str(e)


def test_credentials_from_a_profile_file_name_the_file(clean_aws, tmp_path, monkeypatch):
    from dato_dist.ec2 import provision

    creds = tmp_path / "credentials"
    creds.write_text("[team]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = x\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_PROFILE", "team")
    source, fix = provision.credential_source(None)
    assert f"profile 'team' of {creds}" in source and "AKIA..." in source
    assert "AKIAPROFILE" not in source and str(creds) in fix


def test_no_credentials_is_a_clear_error():
    import botocore.exceptions

    from dato_dist.ec2 import provision
    from dato_dist.errors import AwsCredentialsError

    with pytest.raises(AwsCredentialsError) as e:
        with provision._aws("Describing"):
            raise botocore.exceptions.NoCredentialsError()
    assert "gl.aws.set_credentials" in str(e.value)


def test_defaults_come_from_the_config(tmp_path, monkeypatch):
    """[ec2] of conf/defaults.toml < user file < DATO_DIST_EC2_* < Ec2Config arguments."""
    from dato_dist.ec2.config import Ec2Config

    shipped = Ec2Config()
    assert (shipped.region, shipped.instance_type, shipped.ssh_user, shipped.ssh_port,
            shipped.port_range, shipped.idle_action, shipped.remote_dir) == (
        "us-west-2", "m3.xlarge", "ec2-user", 22, (9100, 9200), "shutdown", "~/dato-dist")
    user = tmp_path / "config.toml"
    user.write_text('[ec2]\nregion = "eu-west-1"\ninstance_type = "t3.micro"\n'
                    'start_port = 9300\nend_port = 9310\n')
    monkeypatch.setenv("DATO_DIST_CONFIG", str(user))
    monkeypatch.setenv("DATO_DIST_EC2_INSTANCE_TYPE", "c5.large")
    monkeypatch.setenv("DATO_DIST_EC2_SSH_TIMEOUT", "12")
    c = Ec2Config()
    assert (c.region, c.instance_type, c.port_range, c.ssh_timeout) == (
        "eu-west-1", "c5.large", (9300, 9310), 12.0)
    given = Ec2Config("us-east-1", "t3.nano", port_range=(9500, 9501), ssh_timeout=5)
    assert (given.region, given.instance_type, given.port_range, given.ssh_timeout) == (
        "us-east-1", "t3.nano", (9500, 9501), 5.0)
    # a config reloaded from its dict keeps its values whatever the config says now
    assert Ec2Config.from_dict(given.to_dict()) == given


def test_missing_module_folders_are_errors_at_config(tmp_path):
    from dato_dist.ec2.config import Ec2Config
    from dato_dist.errors import InvalidArgument

    with pytest.raises(InvalidArgument) as e:
        Ec2Config(extra_modules=[str(tmp_path / "no-such-module")])
    assert "no-such-module" in str(e.value) and "extra_modules" in str(e.value)
    assert isinstance(e.value, ValueError)
    with pytest.raises(InvalidArgument) as e:
        Ec2Config(modules=["python", "nope"])
    assert "'nope'" in str(e.value) and "packages" in str(e.value)  # names the built-ins
    (tmp_path / "mine").mkdir()
    ok = Ec2Config(extra_modules=[str(tmp_path / "mine")])
    assert ok.extra_modules == [str(tmp_path / "mine")]
    # a cluster's config reloaded on a machine without the folder still loads
    (tmp_path / "mine").rmdir()
    again = Ec2Config.from_dict(ok.to_dict())
    assert again.extra_modules == [str(tmp_path / "mine")]


def test_gl_aws_bad_arguments_are_ours(clean_aws):
    import dato_dist as gl
    from dato_dist.errors import InvalidArgumentType

    with pytest.raises(InvalidArgumentType, match="access_key"):
        gl.aws.set_credentials(None, "x")
    with pytest.raises(TypeError, match="secret_key"):
        gl.aws.set_credentials("AKIA", "")


def test_backend_errors_share_one_base():
    from dato_dist import errors

    assert issubclass(errors.Ec2Error, errors.BackendError)
    assert issubclass(errors.YarnError, errors.BackendError)
    assert issubclass(errors.BackendError, RuntimeError)
    assert errors.BackendError.exit_code == errors.Ec2Error.exit_code == 7
    assert errors.YarnError.exit_code == 7 and not issubclass(errors.YarnError, ValueError)
    assert errors.Ec2CredentialsError is errors.AwsCredentialsError


@pytest.mark.parametrize("folder", ["ec2", "yarn_app"])
def test_backend_code_raises_no_bare_builtin_errors(folder):
    """Backend code raises our errors (each also the builtin where one fits)."""
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / folder
    bare = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(exc, ast.Name) and exc.id in ("ValueError", "TypeError"):
                    bare.append(f"{path.name}:{node.lineno}")
    assert bare == []
