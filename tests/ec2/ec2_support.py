"""Helpers for the EC2 backend tests: a sandbox (moto endpoint, loopback subnet, imported
key pair, bucket, hosts' folder) and an ``Ec2Config`` factory that can only reach loopback."""

from __future__ import annotations

import os
import signal
import sys
import uuid

from tests.conftest import wait_for
from tests.infra.moto_server import assert_local_endpoint, create_loopback_subnet
from tests.infra.sshd import public_key_of

REGION = "us-west-2"
HOST_IPS = ["127.0.0.4", "127.0.0.5", "127.0.0.6"]
#: Credentials given to Ec2Config in tests: moto accepts any, and none may leak anywhere.
ACCESS_KEY = "AKIDDATODISTTEST01"
SECRET_KEY = "sEcReT-dato-dist-test-never-written"


class Sandbox:
    def __init__(self, moto_server, ssh_hosts, ssh_user_key, workdir):
        self.moto = moto_server
        self.endpoint = assert_local_endpoint(moto_server.endpoint_url)
        self.ssh_hosts = ssh_hosts
        self.hosts = ssh_hosts(HOST_IPS)
        self.key_file = ssh_user_key
        self.ec2 = moto_server.client("ec2", region=REGION)
        self.s3 = moto_server.client("s3", region="us-east-1")
        self.key_name = f"dd-test-{uuid.uuid4().hex[:8]}"
        self.ec2.import_key_pair(KeyName=self.key_name,
                                 PublicKeyMaterial=public_key_of(ssh_user_key).encode())
        self.bucket = f"dd-ec2-{uuid.uuid4().hex[:10]}"
        self.s3.create_bucket(Bucket=self.bucket)
        self.remote_dir = str(workdir / "hosts")
        os.makedirs(self.remote_dir, exist_ok=True)

    def subnet(self):
        """A fresh 127.0.0.0/24 subnet: its instances get 127.0.0.4, .5, ... again."""
        return create_loopback_subnet(self.ec2)["subnet_id"]

    def config(self, **kwargs):
        from dato_dist.ec2.config import Ec2Config

        base = dict(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                    subnet_id=kwargs.pop("subnet_id", None) or self.subnet(),
                    key_name=self.key_name, key_file=str(self.key_file), use_private_ips=True,
                    ssh_user="root", ssh_port=self.ssh_hosts.port, endpoint_url=self.endpoint,
                    host_python=sys.executable, runners_per_host=1,
                    remote_dir=self.remote_dir, idle_action="terminate", ssh_timeout=30,
                    log_sync_interval=1.0)
        instance_type = kwargs.pop("instance_type", "t3.micro")
        base.update(kwargs)
        return Ec2Config(REGION, instance_type, **base)

    def instances(self, cluster_name):
        """``{instance id: state}`` of the instances tagged with ``cluster_name``."""
        out = {}
        for r in self.ec2.describe_instances(Filters=[
                {"Name": "tag:dato-dist:cluster", "Values": [cluster_name]}])["Reservations"]:
            for i in r["Instances"]:
                out[i["InstanceId"]] = i["State"]["Name"]
        return out

    def host_processes(self, needle):
        """Pids of live processes whose command line or working directory contains
        ``needle``."""
        from tests.contract.chaos import processes_matching

        return processes_matching(needle)

    def logs(self, files=12, lines=20):
        """The newest host-side logs (bootstrap, agents, drivers, runners, watchdog)."""
        found = []
        for root, _, names in os.walk(self.remote_dir):
            found += [os.path.join(root, n) for n in names if n.endswith(".log")]
        found.sort(key=lambda p: os.path.getmtime(p) if os.path.exists(p) else 0)
        out = []
        for path in found[-files:]:
            try:
                with open(path, errors="replace") as f:
                    tail = f.read().splitlines()[-lines:]
            except OSError:
                continue
            out.append(f"--- {os.path.relpath(path, self.remote_dir)} ---\n" + "\n".join(tail))
        return "\n".join(out) or "(no host logs)"

    def kill_leftovers(self):
        """Safety net: SIGKILL (by pid) anything still running from the hosts' folder."""
        for pid in self.host_processes(self.remote_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def pip_uninstall(python, *names):
    """``python -m pip uninstall -y names`` (bounded); its CompletedProcess."""
    import subprocess

    return subprocess.run([python, "-m", "pip", "uninstall", "-y", *names],
                          capture_output=True, text=True, timeout=120)


def importable(python, module):
    """Whether ``module`` can be imported by ``python`` (a fresh process)."""
    import subprocess

    return subprocess.run([python, "-c", f"import {module}"], capture_output=True,
                          timeout=60).returncode == 0


def wait_until(predicate, timeout, what, interval=0.2):
    """``tests.conftest.wait_for`` with the argument order of these tests."""
    return wait_for(predicate, timeout, interval=interval, what=what)
