#!/usr/bin/env python
"""The seed's EC2 examples against local stand-ins for AWS: run as root from the repo root.

    sudo .venv/bin/python scripts/ec2_demo.py [--idle 20]

Starts moto's server on 127.0.0.1 (EC2, S3, SSM) and one OpenSSH server per host address
(127.0.0.4, .5, .6: the private IPs moto gives instances of a 127.0.0.0/24 subnet), then
runs what the GraphLab user guide shows: ``ec2_cluster.create``, ``print(ec2)``, the
map_job with a failing task and its metrics, the combiner, ``ec2_cluster.load`` from a
second process, and finally watches the idle cluster terminate itself. Everything it
started is stopped by pid at the end; nothing can reach real AWS (the endpoint is local).
Needs the ``test`` and ``ec2`` extras (``pip install -e .[test,ec2]``) and
``openssh-server`` (installed when missing).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def add(x, y):
    return x + y


def add_combiner(**kwargs):
    return sum(kwargs.values())


def show(code):
    print(f">>> {code}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle", type=int, default=20, help="idle_shutdown_timeout (seconds)")
    args = ap.parse_args()
    from tests.infra.moto_server import MotoServer, create_loopback_subnet, sandbox_aws_env
    from tests.infra.sshd import SshHostFactory, public_key_of

    work = Path(tempfile.mkdtemp(prefix="dato-dist-ec2-demo-"))
    os.environ.update(DATO_DIST_HOME=str(work / "home"), DATO_DIST_CONFIG=str(work / "c.toml"))
    print(f"# moto server and sshd hosts under {work}")
    moto = MotoServer.start(log_dir=work / "moto")
    hosts = None
    try:
        os.environ.update(sandbox_aws_env(work, moto.endpoint_url))
        hosts = SshHostFactory(work / "sshd")
        hosts(["127.0.0.4", "127.0.0.5", "127.0.0.6"])
        ec2_api = moto.client("ec2", region="us-west-2")
        subnet = create_loopback_subnet(ec2_api)["subnet_id"]
        ec2_api.import_key_pair(KeyName="demo", PublicKeyMaterial=public_key_of(
            hosts.user_key).encode())
        print(f"# EC2/S3 endpoint {moto.endpoint_url}; hosts 127.0.0.4-6 on port {hosts.port}")

        import logging

        import dato_dist as gl

        logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(name)s: %(message)s")
        show("ec2config = gl.deploy.Ec2Config(...)   # + the local endpoint, subnet, key, hosts")
        ec2config = gl.deploy.Ec2Config(
            "us-west-2", "m3.xlarge", subnet_id=subnet, key_name="demo",
            key_file=str(hosts.user_key), use_private_ips=True, ssh_user="root",
            ssh_port=hosts.port, endpoint_url=moto.endpoint_url, host_python=sys.executable,
            remote_dir=str(work / "hosts"), idle_action="terminate")
        show("ec2 = gl.deploy.ec2_cluster.create(name='add_ec2', s3_path='s3://add-test', "
             f"ec2_config=ec2config, num_hosts=3, idle_shutdown_timeout={args.idle})")
        t = time.perf_counter()
        ec2 = gl.deploy.ec2_cluster.create(name="add_ec2", s3_path="s3://add-test",
                                           ec2_config=ec2config, num_hosts=3,
                                           idle_shutdown_timeout=args.idle)
        print(f"# bootstrapped in {time.perf_counter() - t:.1f} s")
        show("print(ec2)")
        print(ec2)

        show("job = gl.deploy.map_job.create(add, [{'x': 20, 'y': 20}, {'x': None, 'y': 10}, "
             "{'x': 5, 'y': 5}], environment=ec2)")
        job = gl.deploy.map_job.create(add, [{"x": 20, "y": 20}, {"x": None, "y": 10},
                                             {"x": 5, "y": 5}], environment=ec2)
        show("print(job.get_map_results())")
        print(job.get_map_results())
        show("print(job.get_metrics())")
        print(job.get_metrics())
        show("job = gl.deploy.map_job.create(add, [...], environment=ec2, "
             "combiner_function=add_combiner)")
        job = gl.deploy.map_job.create(add, [{"x": 20, "y": 20}, {"x": 10, "y": 10},
                                             {"x": 5, "y": 5}], environment=ec2,
                                       combiner_function=add_combiner)
        show("print(job.get_results())")
        print(job.get_results())
        show("print(job.get_log_file_path())")
        print(job.get_log_file_path())

        print("# a second process: c = gl.deploy.ec2_cluster.load('s3://add-test')")
        subprocess.run([sys.executable, "-c", textwrap.dedent("""
            import dato_dist as gl
            c = gl.deploy.ec2_cluster.load('s3://add-test')
            print(c)
            job = gl.deploy.job.create(lambda x, y: x + y, environment=c, x=1, y=2)
            print('job.get_results():', job.get_results())
        """)], check=True, timeout=300)

        ids = [h.instance_id for h in ec2.hosts]
        print(f"# no more jobs: waiting for the idle shutdown ({args.idle} s)")
        deadline = time.monotonic() + args.idle + 120
        while time.monotonic() < deadline:
            states = [r["State"]["Name"] for res in ec2_api.describe_instances(
                InstanceIds=ids)["Reservations"] for r in res["Instances"]]
            print(f"#   {time.strftime('%H:%M:%S')} instances: {', '.join(states)}")
            if set(states) == {"terminated"}:
                break
            time.sleep(5)
        show("print(ec2)")
        print(ec2)
        ec2.stop()  # the security group; processes of the (simulated) hosts
    finally:
        if hosts is not None:
            hosts.stop_all()
        moto.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
