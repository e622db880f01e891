"""The idle-shutdown watchdog on the head host: ``python -m dato_dist.ec2.idle``.

The cluster is busy while any job agent on the head host runs (every job has one: it
runs the job's driver). After ``--timeout`` seconds with none, the watchdog ends the
cluster with one of two actions:

- ``shutdown`` (real EC2, the default): ``shutdown -h now`` on this host; instances are
  launched with ``InstanceInitiatedShutdownBehavior=terminate``, so this terminates
  them and needs no AWS credentials on the hosts. (Every host runs its own watchdog.)
- ``terminate``: terminate every instance of the cluster through the EC2 API (the
  endpoint and credentials come from this process's environment, in memory only).
  Tests use this: they cannot power the machine off.

Starting a job resets the clock (its ``agent.json`` is new, and its agent is alive).
"""

import argparse
import json
import os
import subprocess
import sys
import time

from dato_dist import procs


def _busy_since(base):
    """``(busy, newest activity time)`` from the job agents under ``base``."""
    jobs = os.path.join(base, "jobs")
    busy, newest = False, 0.0
    for job in os.listdir(jobs) if os.path.isdir(jobs) else []:
        path = os.path.join(jobs, job, "agent.json")
        try:
            newest = max(newest, os.path.getmtime(path))
            with open(path) as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue
        if procs.is_alive(info.get("pid"), info.get("start_time")):
            busy = True
    return busy, newest


def act(args):
    print(f"[idle] idle for {args.timeout} s: {args.action}", flush=True)
    if args.action == "terminate":
        from .config import Ec2Config
        from .provision import terminate

        config = Ec2Config(args.region, endpoint_url=args.endpoint_url or None)
        terminate(config, args.instances.split(","), wait=False)
    else:
        cmd = ["shutdown", "-h", "now"] if os.geteuid() == 0 else ["sudo", "shutdown", "-h", "now"]
        subprocess.run(cmd, check=False, timeout=60)


def detach(argv, base):
    """Start ``python -m dato_dist.ec2.idle`` (without --detach) in its own session; record its pid."""
    os.makedirs(base, exist_ok=True)
    old = _read(os.path.join(base, "idle.json"))
    if procs.is_alive(old.get("pid"), old.get("start_time")):
        procs.kill_group(old["pid"], grace=2.0)  # one watchdog per host
    out = open(os.path.join(base, "idle.log"), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "dato_dist.ec2.idle"] + [a for a in argv
                                                                  if a != "--detach"],
                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=base)
    info = {"pid": proc.pid, "start_time": procs.start_time(proc.pid)}
    tmp = os.path.join(base, f".idle.json.{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.replace(tmp, os.path.join(base, "idle.json"))
    print(json.dumps(info), flush=True)
    return 0


def _read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m dato_dist.ec2.idle")
    p.add_argument("--base", required=True)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--poll", type=float, default=10.0)
    p.add_argument("--action", choices=["shutdown", "terminate"], default="shutdown")
    p.add_argument("--region")
    p.add_argument("--endpoint-url")
    p.add_argument("--instances", default="")
    p.add_argument("--detach", action="store_true",
                   help="start the watchdog in its own session, record it, return")
    args = p.parse_args(argv)
    if args.detach:
        return detach(argv if argv is not None else sys.argv[1:], args.base)
    last_active = time.time()
    print(f"[idle] watching {args.base}: {args.action} after {args.timeout} s idle", flush=True)
    while True:
        busy, newest = _busy_since(args.base)
        now = time.time()
        if busy:
            last_active = now
        last_active = max(last_active, newest)
        if now - last_active >= args.timeout:
            try:
                act(args)
            except Exception as e:  # noqa: BLE001 - try again at the next turn
                print(f"[idle] {args.action} failed: {e}", flush=True)
                time.sleep(args.poll)
                continue
            return 0
        time.sleep(min(args.poll, max(0.2, args.timeout / 5)))


if __name__ == "__main__":
    sys.exit(main())
