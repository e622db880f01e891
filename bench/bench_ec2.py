#!/usr/bin/env python
"""The EC2 backend against moto's EC2/S3 and real sshd hosts on loopback (issue 4, item 9).

Run from the repository root, as root (the sshd hosts need it)::

    .venv/bin/python bench/bench_ec2.py                 # 3 hosts, 3 repeats
    .venv/bin/python bench/bench_ec2.py --repeat 1 --out /tmp/ec2.json

Measured, each end to end from the client:

C1  ``ec2_cluster.create(..., num_hosts=3)`` until it returns: launch (moto), SSH
    readiness, bundle copy, the four bootstrap phases, idle watchdog, state in S3
J1  ``job.create(add, x=1, y=2)`` to ``get_results()`` in hand (first task result)
J2  the seed's ``map_job.create(add, [3 dicts])`` to ``get_map_results()``
J3  the seed's map_job with ``combiner_function`` to ``get_results()``
J4  ``map_job`` of 300 ``add`` calls to the last result
T1  ``cluster.stop()``: processes on the hosts stopped, instances terminated

Everything binds to loopback; every process started here is stopped by pid at the end.
Hosts are this machine, so the figures are the backend's own overhead (SSH, S3 round
trips, process start-up), not EC2's instance boot time.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def add(x, y):
    return x + y


def add_combiner(**kwargs):
    return sum(kwargs.values())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from tests.infra.moto_server import MotoServer, create_loopback_subnet, sandbox_aws_env
    from tests.infra.sshd import SshHostFactory, public_key_of

    work = Path(tempfile.mkdtemp(prefix="bench-ec2-"))
    os.environ.update(DATO_DIST_HOME=str(work / "home"), DATO_DIST_CONFIG=str(work / "c.toml"))
    moto = MotoServer.start(log_dir=work / "moto")
    factory = None
    results = {k: [] for k in ("C1", "J1", "J2", "J3", "J4", "T1")}
    try:
        os.environ.update(sandbox_aws_env(work, moto.endpoint_url))
        ips = [f"127.0.0.{4 + i}" for i in range(args.hosts)]
        factory = SshHostFactory(work / "sshd")
        factory(ips)
        ec2 = moto.client("ec2", region="us-west-2")
        ec2.import_key_pair(KeyName="bench", PublicKeyMaterial=public_key_of(
            factory.user_key).encode())
        moto.client("s3").create_bucket(Bucket="bench-ec2")

        import dato_dist as gl

        for rep in range(args.repeat):
            subnet = create_loopback_subnet(ec2)["subnet_id"]
            config = gl.deploy.Ec2Config(
                "us-west-2", "t3.micro", subnet_id=subnet, key_name="bench",
                key_file=str(factory.user_key), use_private_ips=True, ssh_user="root",
                ssh_port=factory.port, endpoint_url=moto.endpoint_url,
                host_python=sys.executable, runners_per_host=1,
                remote_dir=str(work / "hosts"), idle_action="terminate", ssh_timeout=60)
            t = time.perf_counter()
            c = gl.deploy.ec2_cluster.create(f"bench{rep}", f"s3://bench-ec2/c{rep}", config,
                                             args.hosts, idle_shutdown_timeout=-1)
            results["C1"].append(time.perf_counter() - t)
            try:
                t = time.perf_counter()
                assert gl.deploy.job.create(add, environment=c, x=1, y=2).get_results() == 3
                results["J1"].append(time.perf_counter() - t)
                t = time.perf_counter()
                job = gl.deploy.map_job.create(add, [{"x": 20, "y": 20}, {"x": None, "y": 10},
                                                     {"x": 5, "y": 5}], environment=c)
                assert job.get_map_results() == [40, None, 10]
                results["J2"].append(time.perf_counter() - t)
                t = time.perf_counter()
                job = gl.deploy.map_job.create(add, [{"x": 20, "y": 20}, {"x": 10, "y": 10},
                                                     {"x": 5, "y": 5}], environment=c,
                                               combiner_function=add_combiner)
                assert job.get_results() == 70
                results["J3"].append(time.perf_counter() - t)
                t = time.perf_counter()
                job = gl.deploy.map_job.create(add, [{"x": i, "y": 1} for i in range(300)],
                                               environment=c)
                assert job.get_map_results()[-1] == 300
                results["J4"].append(time.perf_counter() - t)
            finally:
                t = time.perf_counter()
                c.stop()
                results["T1"].append(time.perf_counter() - t)
    finally:
        if factory is not None:
            factory.stop_all()
        moto.stop()

    report = {"when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "load": os.getloadavg()},
              "hosts": args.hosts, "repeat": args.repeat,
              "seconds": {k: {"median": round(statistics.median(v), 3),
                              "all": [round(x, 3) for x in v]} for k, v in results.items() if v}}
    for k, v in report["seconds"].items():
        print(f"{k}: median {v['median']:.2f} s  {v['all']}")
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / "ec2.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
