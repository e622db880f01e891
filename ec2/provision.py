"""EC2 provisioning: the only module of dato-dist that imports boto3.

Launch tagged instances (on-demand or spot) with the security group and key pair they
need, wait with bounded boto3 waiters, and undo everything a failed launch created.
Every botocore error becomes a dato-dist error at one choke point, :func:`_aws`, with a
message naming the ``Ec2Config`` setting to fix.
"""

import contextlib
import functools
import getpass
import ipaddress
import logging
import os
import socket
import time
import urllib.parse
import urllib.request

import boto3
import botocore.config
import botocore.exceptions
from botocore.parsers import ResponseParserError

from dato_dist.errors import (
    AwsCredentialsError,
    CapacityError,
    DatoDistError,
    Ec2Error,
    Ec2SettingError,
    LaunchFailed,
)

log = logging.getLogger(__name__)

TAG_CLUSTER = "dato-dist:cluster"
TAG_OWNER = "dato-dist:owner"
TAG_ROLE = "dato-dist:role"
TAG_STATE = "dato-dist:s3-path"
#: SSM parameters that name the current Amazon Linux AMIs, in every region (and in moto).
DEFAULT_AMI_PARAMETERS = (
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
    "/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2",
)
_BOTO_CONFIG = botocore.config.Config(connect_timeout=10, read_timeout=60,
                                      retries={"max_attempts": 4, "mode": "standard"})

_CREDENTIAL_CODES = {"AuthFailure", "InvalidClientTokenId", "UnrecognizedClientException",
                     "SignatureDoesNotMatch", "InvalidAccessKeyId", "ExpiredToken",
                     "InvalidToken", "MissingAuthenticationToken"}
_CAPACITY_CODES = {"InsufficientInstanceCapacity", "InstanceLimitExceeded",
                   "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded", "SpotMaxPriceTooLow",
                   "InsufficientFreeAddressesInSubnet", "InsufficientCapacity",
                   "RequestLimitExceeded"}
_SETTING_CODES = {
    "InvalidAMIID.NotFound": "ami", "InvalidAMIID.Malformed": "ami",
    "InvalidAMIID.Unavailable": "ami", "InvalidKeyPair.NotFound": "key_name",
    "InvalidKeyPair.Duplicate": "key_name", "InvalidSubnetID.NotFound": "subnet_id",
    "InvalidSubnetID.Malformed": "subnet_id", "InvalidGroup.NotFound": "security_group_id",
    "InvalidGroupId.Malformed": "security_group_id", "InvalidGroup.Duplicate": "security_group",
    "InvalidParameterValue": None, "Unsupported": "instance_type",
    "InvalidInstanceType": "instance_type", "InvalidParameterCombination": None,
    "UnauthorizedOperation": None, "AccessDenied": None, "OptInRequired": "region",
}


# -- the choke point -------------------------------------------------------------------

@contextlib.contextmanager
def _aws(what, config=None):
    """Turn botocore errors inside the block into dato-dist errors that name the fix."""
    try:
        yield
    except DatoDistError:
        raise
    except botocore.exceptions.NoCredentialsError:
        raise AwsCredentialsError(
            f"{what}: no AWS credentials found (not in Ec2Config, gl.aws, the environment "
            "variables AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, nor boto3's profile files). "
            "Pass Ec2Config(aws_access_key_id=..., aws_secret_access_key=...), call "
            "gl.aws.set_credentials(...), or configure boto3's credential chain.",
            source=None) from None
    except (botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectTimeoutError) as e:
        raise Ec2SettingError(
            f"{what}: cannot reach AWS ({e}). Check Ec2Config(region=...) and "
            f"endpoint_url ({getattr(config, 'endpoint_url', None)!r}) and your network.",
            setting="endpoint_url") from None
    except ResponseParserError as e:
        raise Ec2SettingError(
            f"{what}: the endpoint answered with something that is not an AWS response "
            f"({str(e)[:120]}...). Check Ec2Config(region=...) and endpoint_url.",
            setting="region") from None
    except botocore.exceptions.WaiterError as e:
        raise Ec2Error(f"{what}: gave up waiting ({e}).") from None
    except botocore.exceptions.ClientError as e:
        err = e.response.get("Error", {})
        code, message = err.get("Code", "?"), err.get("Message", str(e))
        if code in _CREDENTIAL_CODES:
            raise credentials_refused(what, config, code, message) from None
        if code in _CAPACITY_CODES:
            raise CapacityError(
                f"{what}: EC2 cannot give these instances now ({code}: {message}). Try "
                "another instance_type, region or subnet_id, fewer num_hosts, a higher bid "
                "price, or ask AWS to raise your quota.") from None
        if code in _SETTING_CODES:
            setting = _SETTING_CODES[code]
            low = message.lower()
            if setting is None:
                for word, name in (("instance type", "instance_type"), ("ami", "ami"),
                                   ("iam", "iam_instance_profile"), ("subnet", "subnet_id"),
                                   ("key", "key_name"), ("group", "security_group")):
                    if word in low:
                        setting = name
                        break
            hint = (f" Fix Ec2Config({setting}=...)." if setting else
                    " Check the IAM permissions of your credentials." if "Unauthorized" in code
                    or "AccessDenied" in code else "")
            raise Ec2SettingError(f"{what}: {code}: {message}.{hint}", setting=setting,
                                  code=code) from None
        raise Ec2Error(f"{what}: {code}: {message}") from None
    except botocore.exceptions.BotoCoreError as e:
        raise Ec2Error(f"{what}: {e}") from None


def credentials_refused(what, config, code, message):
    """The :class:`AwsCredentialsError` for credentials AWS refused: where they came from
    and what to check (the key id masked, never the secret)."""
    source, fix = credential_source(config)
    endpoint = getattr(config, "endpoint_url", None) or os.environ.get("AWS_ENDPOINT_URL")
    return AwsCredentialsError(
        f"{what}: AWS refused the credentials ({code}: {message}). They came from {source}. "
        f"Check that the access key id and its secret are right, belong together and are "
        f"still active (IAM console, or `aws sts get-caller-identity`)"
        + (f" on the endpoint {endpoint}" if endpoint else "") + f"; then fix {fix}.",
        code=code, source=source)


def credential_source(config=None):
    """``(where, what to fix)``: the origin of the credentials a client of ``config`` (or
    boto3's default session, for None) signs with, in words, never showing the secret."""
    from . import aws

    if config is not None and config.aws_access_key_id:
        return (f"the Ec2Config arguments (aws_access_key_id {aws.mask(config.aws_access_key_id)})",
                "Ec2Config(aws_access_key_id=..., aws_secret_access_key=...)")
    if aws._credentials:
        return (f"gl.aws.set_credentials(...) (access key {aws.mask(aws._credentials['access_key'])})",
                "the keys given to gl.aws.set_credentials(...)")
    try:
        session = (boto3.session.Session(region_name=config.region) if config is not None
                   else boto3.session.Session())
        creds = session.get_credentials()
        method = creds.method if creds is not None else None
        key = aws.mask(creds.access_key) if creds is not None else None
        profile = session.profile_name
    except Exception:  # noqa: BLE001 - describing the source must not hide the real error
        return "boto3's credential chain", "your AWS credentials"
    if method == "env":
        return (f"the environment variables AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                f"(access key {key})", "those environment variables")
    if method in ("shared-credentials-file", "config-file"):
        path = (os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")
                if method == "shared-credentials-file"
                else os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"))
        return (f"boto3's credential chain: profile '{profile}' of {path} (access key {key})",
                f"profile '{profile}' in {path} (or AWS_PROFILE)")
    if method:
        return (f"boto3's credential chain ({method}, access key {key})",
                "the credentials of that source")
    return "nowhere (boto3's credential chain found none)", "your AWS credentials"


# -- sessions and clients ----------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def available_regions():
    """Every region name botocore knows for EC2, in every partition."""
    session = boto3.session.Session()
    regions = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    return frozenset(regions)


def check_region(region):
    """Raise unless ``region`` is an EC2 region (moto answers a typo with HTTP 500)."""
    regions = available_regions()
    if region not in regions:
        import difflib

        near = difflib.get_close_matches(region, sorted(regions), n=3, cutoff=0.6)
        raise Ec2SettingError(
            f"Ec2Config: region {region!r} is not an EC2 region"
            + (f" (did you mean one of {', '.join(near)}?)" if near else "") + ".",
            setting="region")


def _session(config):
    creds = {}
    if config.aws_access_key_id:
        creds = {"aws_access_key_id": config.aws_access_key_id,
                 "aws_secret_access_key": config.aws_secret_access_key}
    else:
        from . import aws

        key, secret = aws.get_credentials()
        if key and secret and aws._credentials:
            creds = {"aws_access_key_id": key, "aws_secret_access_key": secret}
    return boto3.session.Session(region_name=config.region, **creds)


def client(config, service):
    """A boto3 client for ``service`` with the config's credentials and endpoint."""
    return _session(config).client(service, endpoint_url=config.endpoint_url or None,
                                   config=_BOTO_CONFIG)


def chain_credentials(config):
    """Credentials from boto3's chain as ``{'aws_access_key_id', 'aws_secret_access_key'}``
    (plus ``aws_session_token`` when there is one); values None when there are none."""
    creds = _session(config).get_credentials()
    if creds is None:
        return {"aws_access_key_id": None, "aws_secret_access_key": None}
    frozen = creds.get_frozen_credentials()
    out = {"aws_access_key_id": frozen.access_key, "aws_secret_access_key": frozen.secret_key}
    if frozen.token:
        out["aws_session_token"] = frozen.token
    return out


def endpoint_is_local(config):
    """True when the config talks to an endpoint on loopback (moto in tests)."""
    url = config.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or ""
    host = urllib.parse.urlsplit(url).hostname if url else None
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def owner():
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name: still tag something useful
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


# -- preflight pieces --------------------------------------------------------------------

def resolve_ami(config, ec2=None):
    """The AMI id to launch: ``config.ami`` (checked) or the region's Amazon Linux."""
    ec2 = ec2 or client(config, "ec2")
    if config.ami:
        with _aws(f"Checking AMI {config.ami} in {config.region}", config):
            try:
                images = ec2.describe_images(ImageIds=[config.ami])["Images"]
            except botocore.exceptions.ClientError as e:
                if e.response.get("Error", {}).get("Code", "").startswith("InvalidAMIID"):
                    images = []
                else:
                    raise
        if not images:
            raise Ec2SettingError(
                f"Ec2Config: AMI {config.ami!r} does not exist in region {config.region} "
                "(AMIs are per region). Fix Ec2Config(ami=...), or leave it out to use the "
                "region's Amazon Linux.", setting="ami")
        return config.ami
    ssm = client(config, "ssm")
    for name in DEFAULT_AMI_PARAMETERS:
        try:
            with _aws(f"Resolving the default AMI ({name})", config):
                return ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except Ec2SettingError:
            raise
        except Ec2Error as e:
            log.debug("SSM parameter %s: %s", name, e)
    raise Ec2SettingError(f"No default AMI found in {config.region}: set Ec2Config(ami=...).",
                          setting="ami")


def client_cidr(config):
    """Who may SSH in by default: this machine's public address (/32), never 0.0.0.0/0."""
    if endpoint_is_local(config):
        return ["127.0.0.1/32"]
    try:
        with urllib.request.urlopen("https://checkip.amazonaws.com", timeout=5) as r:
            ip = r.read().decode().strip()
        ipaddress.ip_address(ip)
        return [f"{ip}/32"]
    except (OSError, ValueError) as e:
        raise Ec2SettingError(f"Could not find this machine's public address ({e}) to open "
                              "SSH to it only: pass Ec2Config(cidr_ip='x.x.x.x/32').",
                              setting="cidr_ip") from None


def key_dir():
    """Where private keys of key pairs made for clusters are kept (config key ec2.key_dir)."""
    from pathlib import Path

    from dato_dist.config import load

    cfg = load()
    d = Path(os.path.expanduser(cfg["ec2.key_dir"])) if cfg["ec2.key_dir"] else (
        cfg.home / "ec2" / "keys")
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    return d


def _save_private_key(path, material):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(material if material.endswith("\n") else material + "\n")
    os.chmod(path, 0o600)


class _Created:
    """What a launch made, so that a failure can undo exactly that."""

    def __init__(self):
        self.instance_ids = []
        self.security_group_id = None
        self.key_name = None
        self.key_file = None

    def to_dict(self):
        return {"security_group_id": self.security_group_id, "key_name": self.key_name,
                "key_file": self.key_file}


def _vpc_of_subnet(ec2, config):
    if not config.subnet_id:
        return None
    with _aws(f"Looking up subnet {config.subnet_id}", config):
        subnets = ec2.describe_subnets(SubnetIds=[config.subnet_id])["Subnets"]
    return subnets[0]["VpcId"]


def ensure_security_group(config, ec2, cluster_name, vpc_id, created):
    """The security group id to use; created (SSH from cidr_ip only) when missing."""
    if config.security_group_id:
        with _aws(f"Checking security group {config.security_group_id}", config):
            ec2.describe_security_groups(GroupIds=[config.security_group_id])
        return config.security_group_id
    name = config.security_group or f"dato-dist-{cluster_name}"
    filters = [{"Name": "group-name", "Values": [name]}]
    if vpc_id:
        filters.append({"Name": "vpc-id", "Values": [vpc_id]})
    with _aws(f"Looking up security group {name!r}", config):
        groups = ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
    if groups:
        return groups[0]["GroupId"]
    cidrs = config.cidr_ip or client_cidr(config)
    with _aws(f"Creating security group {name!r}", config):
        kwargs = {"GroupName": name, "Description": f"dato-dist cluster {cluster_name}"}
        if vpc_id:
            kwargs["VpcId"] = vpc_id
        gid = ec2.create_security_group(**kwargs)["GroupId"]
        created.security_group_id = gid
        ec2.create_tags(Resources=[gid], Tags=[{"Key": TAG_CLUSTER, "Value": cluster_name},
                                               {"Key": TAG_OWNER, "Value": owner()}])
        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": config.ssh_port, "ToPort": config.ssh_port,
             "IpRanges": [{"CidrIp": c, "Description": "SSH from the dato-dist client"}
                          for c in cidrs]},
            # drivers and runners talk inside the cluster only
            {"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535,
             "UserIdGroupPairs": [{"GroupId": gid}]}])
    log.info("Created security group %s (%s): SSH from %s", name, gid, ", ".join(cidrs))
    return gid


def ensure_key_pair(config, ec2, cluster_name, created):
    """``(key_name, key_file)``: the config's, or a new key pair saved locally (0600)."""
    if config.key_name:
        with _aws(f"Checking key pair {config.key_name!r}", config):
            ec2.describe_key_pairs(KeyNames=[config.key_name])
        if config.key_file and not os.path.isfile(config.key_file):
            raise Ec2SettingError(f"Ec2Config: key_file {config.key_file!r} does not exist.",
                                  setting="key_file")
        return config.key_name, config.key_file
    name = f"dato-dist-{cluster_name}-{os.urandom(3).hex()}"
    path = str(key_dir() / f"{name}.pem")
    with _aws(f"Creating key pair {name!r}", config):
        material = ec2.create_key_pair(KeyName=name)["KeyMaterial"]
    created.key_name = name
    _save_private_key(path, material)
    created.key_file = path
    log.info("Created key pair %s; private key in %s (mode 0600)", name, path)
    return name, path


# -- launch, describe, terminate ---------------------------------------------------------

def _run(config, ec2, *, role, count, ami, key_name, group_id, cluster_name, state_path,
         bid_price):
    tags = {"Name": cluster_name, **config.tags, TAG_CLUSTER: cluster_name,
            TAG_OWNER: owner(), TAG_ROLE: role}
    if state_path:
        tags[TAG_STATE] = state_path
    params = {"ImageId": ami, "InstanceType": config.instance_type, "MinCount": count,
              "MaxCount": count, "KeyName": key_name, "SecurityGroupIds": [group_id],
              "InstanceInitiatedShutdownBehavior": "terminate",
              "TagSpecifications": [{"ResourceType": "instance", "Tags": [
                  {"Key": k, "Value": v} for k, v in tags.items()]}]}
    if config.subnet_id:
        params["SubnetId"] = config.subnet_id
    if bid_price:
        params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
            "MaxPrice": bid_price, "SpotInstanceType": "one-time",
            "InstanceInterruptionBehavior": "terminate"}}
    if config.iam_instance_profile:
        key = "Arn" if config.iam_instance_profile.startswith("arn:") else "Name"
        params["IamInstanceProfile"] = {key: config.iam_instance_profile}
    with _aws(f"Launching {count} {config.instance_type} instance(s) ({role})", config):
        return [i["InstanceId"] for i in ec2.run_instances(**params)["Instances"]]


def describe(config, instance_ids, ec2=None):
    """``[{id, state, private_ip, public_ip, role}]`` in the order of ``instance_ids``."""
    if not instance_ids:
        return []
    ec2 = ec2 or client(config, "ec2")
    with _aws("Describing instances", config):
        pages = ec2.get_paginator("describe_instances").paginate(InstanceIds=list(instance_ids))
        found = {}
        for page in pages:
            for r in page["Reservations"]:
                for i in r["Instances"]:
                    tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
                    found[i["InstanceId"]] = {
                        "id": i["InstanceId"], "state": i["State"]["Name"],
                        "private_ip": i.get("PrivateIpAddress"),
                        "public_ip": i.get("PublicIpAddress"), "role": tags.get(TAG_ROLE),
                        "lifecycle": i.get("InstanceLifecycle", "on-demand")}
    return [found.get(i, {"id": i, "state": "missing"}) for i in instance_ids]


def _wait(config, ec2, waiter, instance_ids, timeout):
    delay = 1 if endpoint_is_local(config) else 5
    with _aws(f"Waiting for {len(instance_ids)} instance(s) to be {waiter.split('_')[-1]}",
              config):
        ec2.get_waiter(waiter).wait(InstanceIds=list(instance_ids), WaiterConfig={
            "Delay": delay, "MaxAttempts": max(1, int(timeout // delay))})


def launch(config, *, cluster_name, num_hosts, state_path=None, timeout=None):
    """Launch ``num_hosts`` tagged instances (the first is the head) and wait until they run.

    Returns ``(hosts, created)``: hosts as :func:`describe` gives them, and what this
    launch created (security group, key pair) as a dict. On any failure, Ctrl-C
    included, everything created is removed before the error propagates.
    """
    if timeout is None:
        from dato_dist.config import load

        timeout = load()["ec2.launch_timeout"]
    ec2 = client(config, "ec2")
    created = _Created()
    try:
        ami = resolve_ami(config, ec2)
        vpc_id = _vpc_of_subnet(ec2, config)
        group_id = ensure_security_group(config, ec2, cluster_name, vpc_id, created)
        key_name, key_file = ensure_key_pair(config, ec2, cluster_name, created)
        common = dict(ami=ami, key_name=key_name, group_id=group_id, cluster_name=cluster_name,
                      state_path=state_path)
        created.instance_ids += _run(config, ec2, role="head", count=1,
                                     bid_price=config.head_bid_price, **common)
        if num_hosts > 1:
            created.instance_ids += _run(config, ec2, role="worker", count=num_hosts - 1,
                                         bid_price=config.worker_bid_price, **common)
        log.info("Launched %s; waiting until they run", ", ".join(created.instance_ids))
        _wait(config, ec2, "instance_running", created.instance_ids, timeout)
        hosts = describe(config, created.instance_ids, ec2)
        for h in hosts:
            if h["state"] != "running":
                raise LaunchFailed(f"Instance {h['id']} is {h['state']}, not running.")
        info = created.to_dict()
        info.update(key_name=key_name, key_file=key_file, security_group_id=group_id,
                    ami=ami, created_security_group=created.security_group_id is not None,
                    created_key_pair=created.key_name is not None)
        return hosts, info
    except BaseException:
        rollback(config, created.instance_ids, created.to_dict())
        raise


def terminate(config, instance_ids, *, wait=True, timeout=300.0):
    """Terminate instances (and cancel their spot requests); wait (bounded) if asked."""
    if not instance_ids:
        return
    ec2 = client(config, "ec2")
    with _aws(f"Terminating {', '.join(instance_ids)}", config):
        ec2.terminate_instances(InstanceIds=list(instance_ids))
        with contextlib.suppress(botocore.exceptions.ClientError):
            reqs = ec2.describe_spot_instance_requests(Filters=[
                {"Name": "instance-id", "Values": list(instance_ids)}])["SpotInstanceRequests"]
            if reqs:
                ec2.cancel_spot_instance_requests(
                    SpotInstanceRequestIds=[r["SpotInstanceRequestId"] for r in reqs])
    if wait:
        _wait(config, ec2, "instance_terminated", instance_ids, timeout)


def delete_resources(config, created, *, timeout=120.0):
    """Delete the security group and key pair a launch created (and the local key)."""
    ec2 = client(config, "ec2")
    gid = created.get("security_group_id") if created.get(
        "created_security_group", True) else None
    if gid:
        deadline = time.monotonic() + timeout
        while True:  # EC2 says DependencyViolation until the instances are gone
            try:
                with _aws(f"Deleting security group {gid}", config):
                    ec2.delete_security_group(GroupId=gid)
                break
            except Ec2Error as e:
                if "DependencyViolation" not in str(e) or time.monotonic() > deadline:
                    log.warning("Could not delete security group %s: %s", gid, e)
                    break
                time.sleep(5)
    key = created.get("key_name") if created.get("created_key_pair", True) else None
    if key:
        try:
            with _aws(f"Deleting key pair {key}", config):
                ec2.delete_key_pair(KeyName=key)
        except DatoDistError as e:
            log.warning("Could not delete key pair %s: %s", key, e)
        if created.get("key_file"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(created["key_file"])


def rollback(config, instance_ids, created):
    """Undo a launch: terminate its instances, then delete what it created. Never raises."""
    log.warning("Rolling back: terminating %s", ", ".join(instance_ids) or "no instances")
    try:
        terminate(config, instance_ids, wait=True, timeout=300.0)
    except BaseException as e:  # noqa: BLE001 - keep undoing; report what is left
        log.error("Rollback could not terminate %s: %s. Terminate them yourself "
                  "(tag %s).", instance_ids, e, TAG_CLUSTER)
    try:
        delete_resources(config, created)
    except BaseException as e:  # noqa: BLE001
        log.error("Rollback could not delete %s: %s", created, e)


def find_clusters(config):
    """Instances tagged as dato-dist clusters in the region, by cluster name."""
    ec2 = client(config, "ec2")
    clusters = {}
    with _aws("Listing dato-dist instances", config):
        for page in ec2.get_paginator("describe_instances").paginate(Filters=[
                {"Name": "tag-key", "Values": [TAG_CLUSTER]},
                {"Name": "instance-state-name",
                 "Values": ["pending", "running", "stopping", "stopped"]}]):
            for r in page["Reservations"]:
                for i in r["Instances"]:
                    tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
                    c = clusters.setdefault(tags[TAG_CLUSTER], {
                        "name": tags[TAG_CLUSTER], "owner": tags.get(TAG_OWNER),
                        "s3_path": tags.get(TAG_STATE), "instances": []})
                    c["instances"].append({"id": i["InstanceId"], "state": i["State"]["Name"],
                                           "role": tags.get(TAG_ROLE),
                                           "type": i.get("InstanceType")})
    return clusters


class _NoBucket(Exception):
    pass


def check_credentials(config=None, what="Checking the AWS credentials"):
    """Ask STS who the credentials are (no permission needed): raises
    :class:`AwsCredentialsError` naming their source when AWS refuses them."""
    # one quick try: this is a diagnosis, often of another error that is reported anyway
    quick = botocore.config.Config(connect_timeout=5, read_timeout=10,
                                   retries={"max_attempts": 1, "mode": "standard"})
    if config is None:
        sts = boto3.session.Session().client("sts", config=quick)
    else:
        sts = _session(config).client("sts", endpoint_url=config.endpoint_url or None,
                                      config=quick)
    with _aws(what, config):
        return sts.get_caller_identity().get("Arn")


def ensure_bucket(config, s3_uri):
    """Create the bucket of ``s3_uri`` when it does not exist (in the config's region)."""
    bucket = urllib.parse.urlsplit(s3_uri).netloc
    s3 = client(config, "s3")
    what = f"Checking bucket {bucket}"
    try:
        with _aws(what, config):
            try:
                s3.head_bucket(Bucket=bucket)
                return
            except botocore.exceptions.ClientError as e:
                code = e.response.get("Error", {}).get("Code")
                if code in ("404", "NoSuchBucket", "NotFound"):
                    raise _NoBucket() from None
                if code not in ("403", "Forbidden"):
                    raise
            # HEAD answers have no body: a bare 403 does not say whether the credentials
            # or the permissions are wrong. A call with a body (same permission) does.
            s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
            raise Ec2SettingError(
                f"{what}: 403 Forbidden on HEAD, yet the bucket can be listed. Check the "
                "bucket policy of s3_path.", setting=None, code="403")
    except _NoBucket:
        pass
    with _aws(f"Creating bucket {bucket}", config):
        kwargs = {"Bucket": bucket}
        if config.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": config.region}
        s3.create_bucket(**kwargs)
