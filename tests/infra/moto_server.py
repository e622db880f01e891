"""moto's server mode (``moto[server]``) on 127.0.0.1, started and stopped by pid.

Usage::

    with MotoServer.start() as moto:
        ec2 = moto.client("ec2", region="us-west-2")
        ...

Nothing here can reach real AWS: the server binds to 127.0.0.1, every client made
here gets ``endpoint_url`` on 127.0.0.1 and dummy credentials, and
:func:`assert_local_endpoint` refuses any endpoint that is not on loopback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

DUMMY_ACCESS_KEY = "testing"
DUMMY_SECRET_KEY = "testing"
DEFAULT_REGION = "us-east-1"
#: A port that nothing listens on: AWS clients that forget their endpoint fail fast here.
DEAD_ENDPOINT = "http://127.0.0.1:9"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ACCESS_LOG = re.compile(r'^\S+ - - \[[^]]*\] "[A-Z]+ \S* HTTP/[0-9.]+" \d{3} ')


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def is_loopback_host(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def assert_local_endpoint(url: str) -> str:
    """Return ``url`` if its host is on loopback; raise otherwise (fail fast, never AWS)."""
    host = urllib.parse.urlsplit(url if "://" in url else "http://" + url).hostname or ""
    if not is_loopback_host(host):
        raise RuntimeError(f"refusing non-local AWS endpoint {url!r} in tests")
    return url


def sandbox_aws_env(tmpdir: str | os.PathLike, endpoint_url: str = DEAD_ENDPOINT) -> dict:
    """Environment variables that keep boto3/pyarrow away from real AWS.

    Dummy credentials, no shared config/credentials files, no instance metadata, and a
    global ``AWS_ENDPOINT_URL`` (boto3 >= 1.28 honours it) pointing at ``endpoint_url``.
    The default is a dead local port, so a client that forgets ``endpoint_url`` fails
    fast instead of reaching AWS or silently working.
    """
    tmpdir = Path(tmpdir)
    return {
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
        "AWS_SESSION_TOKEN": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_DEFAULT_REGION": DEFAULT_REGION,
        "AWS_REGION": DEFAULT_REGION,
        "AWS_CONFIG_FILE": str(tmpdir / "aws-config-does-not-exist"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmpdir / "aws-credentials-do-not-exist"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": assert_local_endpoint(endpoint_url),
    }


def boto3_session(region: str = DEFAULT_REGION):
    """A boto3 session with dummy credentials (never the user's real ones)."""
    import boto3

    return boto3.session.Session(
        aws_access_key_id=DUMMY_ACCESS_KEY,
        aws_secret_access_key=DUMMY_SECRET_KEY,
        region_name=region,
    )


def boto3_client(service: str, endpoint_url: str, region: str = DEFAULT_REGION, **kwargs):
    """A boto3 client for ``service`` on a local endpoint, with dummy credentials."""
    from botocore.config import Config

    cfg = kwargs.pop(
        "config",
        Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 2, "mode": "standard"}),
    )
    return boto3_session(region).client(
        service, endpoint_url=assert_local_endpoint(endpoint_url), config=cfg, **kwargs
    )


class MotoServer:
    """One ``moto_server`` subprocess on 127.0.0.1:PORT."""

    def __init__(self, proc: subprocess.Popen, host: str, port: int, log_path: Path):
        self.proc = proc
        self.host = host
        self.port = port
        self.log_path = log_path

    # -- lifecycle -------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        port: int | None = None,
        host: str = "127.0.0.1",
        deadline: float = 60.0,
        log_dir: str | os.PathLike | None = None,
        extra_env: dict | None = None,
        validate: bool = True,
    ) -> "MotoServer":
        """Start moto_server and wait (at most ``deadline`` s) until it answers.

        ``validate`` (default) makes run_instances check, as EC2 does, that the AMI and
        the key pair exist (``MOTO_ENABLE_AMI_VALIDATION``,
        ``MOTO_ENABLE_KEYPAIR_VALIDATION``); moto accepts any by default.
        """
        if not is_loopback_host(host):
            raise ValueError(f"moto_server must bind to loopback, not {host!r}")
        port = port or free_port(host)
        log_dir = Path(log_dir or tempfile.mkdtemp(prefix="moto-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"moto_server-{port}.log"
        env = dict(os.environ)
        # The server itself never needs credentials; keep real ones out of it anyway.
        for k in list(env):
            if k.startswith("AWS_"):
                del env[k]
        env.update({"AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
                    "AWS_EC2_METADATA_DISABLED": "true", "PYTHONUNBUFFERED": "1"})
        if validate:
            env.update({"MOTO_ENABLE_AMI_VALIDATION": "true",
                        "MOTO_ENABLE_KEYPAIR_VALIDATION": "true"})
        env.update(extra_env or {})
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, start_new_session=True,
            )
        server = cls(proc, host, port, log_path)
        try:
            server.wait_ready(deadline)
        except BaseException:
            server.stop()
            raise
        return server

    def wait_ready(self, deadline: float = 60.0) -> float:
        """Poll GET /moto-api/ until 200; return the seconds it took."""
        t0 = time.monotonic()
        end = t0 + deadline
        last = None
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"moto_server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.endpoint_url + "/moto-api/", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except (urllib.error.URLError, OSError) as e:  # not up yet
                last = e
            time.sleep(0.1)
        raise TimeoutError(
            f"moto_server on {self.endpoint_url} not ready after {deadline}s ({last}):\n"
            f"{self.log_tail()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def is_running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s; always reaps the child."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)

    def __enter__(self) -> "MotoServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- use -------------------------------------------------------------------------
    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def endpoint_override(self) -> str:
        """``host:port`` as ``pyarrow.fs.S3FileSystem(endpoint_override=...)`` wants it."""
        return f"{self.host}:{self.port}"

    def session(self, region: str = DEFAULT_REGION):
        return boto3_session(region)

    def client(self, service: str, region: str = DEFAULT_REGION, **kwargs):
        return boto3_client(service, self.endpoint_url, region, **kwargs)

    def allowed_user_keys(self, user: str = "u") -> dict:
        """An IAM user allowed everything: its ``{"AccessKeyId", "SecretAccessKey", ...}``
        (for a server started with ``INITIAL_NO_AUTH_ACTION_COUNT``, which checks keys)."""
        import json

        iam = self.client("iam")
        iam.create_user(UserName=user)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        iam.put_user_policy(UserName=user, PolicyName="all", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        return key

    def s3fs(self, region: str = DEFAULT_REGION, **kwargs):
        """A ``pyarrow.fs.S3FileSystem`` on this server with dummy credentials."""
        from pyarrow import fs

        kwargs.setdefault("connect_timeout", 5)
        kwargs.setdefault("request_timeout", 30)
        return fs.S3FileSystem(
            endpoint_override=self.endpoint_override, scheme="http",
            access_key=DUMMY_ACCESS_KEY, secret_key=DUMMY_SECRET_KEY, region=region, **kwargs)

    def reset(self) -> None:
        """Forget every resource in every region and service (POST /moto-api/reset)."""
        req = urllib.request.Request(self.endpoint_url + "/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            if r.status != 200:
                raise RuntimeError(f"moto reset failed: HTTP {r.status}")

    def log_tail(self, n: int = 40, access_log: bool = False) -> str:
        """The last ``n`` lines of the server's log, without the one-line-per-request
        access log unless ``access_log`` (errors and tracebacks are what matter)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        if not access_log:
            lines = [ln for ln in lines if not _ACCESS_LOG.search(_ANSI.sub("", ln))]
        return "\n".join(lines[-n:])

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<MotoServer {self.endpoint_url} pid={self.pid} {state}>"


def create_loopback_subnet(ec2, vpc_cidr: str = "127.0.0.0/16",
                           subnet_cidr: str = "127.0.0.0/24", tags: dict | None = None) -> dict:
    """Create a VPC and a subnet whose instances get loopback private IPs.

    In moto every new subnet hands out private IPs in order from its 4th host address:
    ``127.0.0.4, 127.0.0.5, ...`` for ``127.0.0.0/24`` (.1-.3 are AWS-reserved, like
    on EC2); terminated instances keep their address (it is not reused).
    """
    vpc = ec2.create_vpc(CidrBlock=vpc_cidr)["Vpc"]
    sub = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock=subnet_cidr)["Subnet"]
    if tags:
        ec2.create_tags(Resources=[vpc["VpcId"], sub["SubnetId"]],
                        Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    return {"vpc_id": vpc["VpcId"], "subnet_id": sub["SubnetId"],
            "cidr": subnet_cidr, "availability_zone": sub["AvailabilityZone"]}


#: SSM public parameter that resolves the current Amazon Linux 2023 AMI on real AWS;
#: moto serves it too (and the AMI it names exists in ``describe_images``).
AL2023_SSM_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
