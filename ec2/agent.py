"""What runs on an EC2 host for a job: ``python -m dato_dist.ec2.agent launch|run|stop|stop-all``.

No boto3 and no Fabric here: this runs on the hosts with the client's dato_dist.

- ``launch`` (over SSH, returns at once): on the head host picks a free port in the
  cluster's range for the driver; starts ``run`` detached (its own session) and prints
  ``{"pid", "start_time", "driver"}`` as JSON.
- ``run`` (detached): this host's node (:mod:`dato_dist.node`): on the head starts the
  job's driver; on every host starts K runners once the driver listens and replaces lost
  ones (``driver.max_runner_restarts`` from the job's spec); copies the host's logs of the
  job to the job store every few seconds while they run (so ``s3://.../logs`` fills during
  the job) and once at the end; records a driver that died without a final status; exits
  when its children have. SIGTERM: stops its children, copies the logs, exits. Store paths
  only through :class:`dato_dist.jobfiles.JobFiles`.
- ``stop``: SIGTERM the job's agent (checked by pid and start time), then SIGKILL its
  process group after a grace period.
- ``stop-all``: the same for every agent under the host's folder, and the idle watchdog.

The per-job key (``DATO_DIST_AUTHKEY``, see :func:`dato_dist.node.job_keys`) and the AWS
credentials arrive in the environment of the SSH command (sent on the channel's stdin,
never on a command line) and are only ever held in process memory. Runner settings come
from the driver in ``SETUP``.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

from dato_dist import errors, node, procs
from dato_dist.keys import JOB_KEY_ENV
from dato_dist.protocol import WORKER_ENV


def _job_dir(base, job):
    return os.path.join(base, "jobs", job)


def _free_port(base, ip, lo, hi):
    """A free port in ``lo..hi``, taken round-robin after the last one this host used.

    Not the first free port: a straggler runner of a job that just ended (one that was
    still starting) must not reach the next job's driver on a reused port.
    """
    import fcntl

    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, "ports.lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0)
        try:
            start = int(lock.read().strip() or lo)
        except ValueError:
            start = lo
        span = hi - lo + 1
        for k in range(span):
            port = lo + (start - lo + k) % span
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((ip, port))
                except OSError:
                    continue
            lock.seek(0)
            lock.truncate()
            lock.write(str(lo + (port - lo + 1) % span))
            lock.flush()
            return port
    raise SystemExit(f"no free port on {ip} in {lo}-{hi}")


def _write_json(path, obj):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def cmd_launch(args, rest):
    jdir = _job_dir(args.base, args.job)
    os.makedirs(os.path.join(jdir, "logs"), exist_ok=True)
    driver = args.driver
    if args.head:
        lo, hi = (int(p) for p in args.ports.split("-"))
        driver = f"{args.bind}:{_free_port(args.base, args.bind, lo, hi)}"
    cmd = [sys.executable, "-m", "dato_dist.ec2.agent", "run", "--driver", driver] + rest
    log = open(os.path.join(jdir, "logs", f"agent-{args.host_name}.log"), "ab")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=jdir)
    info = {"pid": proc.pid, "start_time": procs.start_time(proc.pid), "driver": driver,
            "host": args.host_name, "started": time.time()}
    _write_json(os.path.join(jdir, "agent.json"), info)
    print(json.dumps(info), flush=True)
    return 0


class _Agent:
    """``run``: this host's part of a job, through :mod:`dato_dist.node`: the driver (on the
    head), K runners, their logs, and the record of a driver that died."""

    def __init__(self, args):
        self.args = args
        self.jdir = _job_dir(args.base, args.job)
        self.log_dir = os.path.join(self.jdir, "logs")
        self.driver = None  # the head's driver process
        self.runners = None
        self.stopping = False
        self._files = None
        self._settings = None
        self.lost = None  # why the job's driver is lost (its heartbeat in the store is stale)
        self.job_key = None  # the job's store key, from the environment in run()

    @property
    def files(self):
        """The job's :class:`~dato_dist.jobfiles.JobFiles` (the only way to its store paths)."""
        if self._files is None:
            from dato_dist.jobfiles import JobFiles
            from dato_dist.store import Store

            self._files = JobFiles(Store(self.args.store), self.args.job, key=self.job_key)
        return self._files

    def _spawn_driver(self, host, port, env):
        a = self.args
        out = open(os.path.join(self.log_dir, "driver.log"), "ab")
        self.driver = subprocess.Popen(
            [sys.executable, "-m", "dato_dist.driver", "--store", a.store, "--job", a.job,
             "--host", host, "--ports", f"{port}-{port}"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=dict(env, **node.key_environ(self.keys),
                     **({JOB_KEY_ENV: self.job_key.hex()} if self.job_key else {})))
        out.close()
        print(f"[agent] started driver (pid {self.driver.pid})", flush=True)

    def _driver_up(self, host, port):
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            return False

    def _driver_exited(self):
        return self.driver is not None and self.driver.poll() is not None

    def _setting(self, key, default):
        """A setting of the job's spec (read once); ``default`` when it cannot be read."""
        if self._settings is None:
            try:
                self._settings = (self.files.read_spec() or {})["settings"]
            except Exception as e:  # noqa: BLE001 - unreadable spec: the defaults
                print(f"[agent] could not read the job's settings: {e}", flush=True)
                self._settings = {}
        return self._settings.get(key, default)

    def _max_restarts(self):
        return self._setting("max_runner_restarts", 0)

    def _job_over(self):
        """Whether the job is over for this host: its state in the store is final, or its
        driver's heartbeat there (``updated``) is older than driver.heartbeat_timeout. A
        hung driver (stopped, stuck, cut off from the store) writes nothing more, and its
        runners would wait on it forever; the client reports such a job lost, so its
        processes must not outlive that. Sets :attr:`lost` to the reason."""
        try:
            state = self.files.read_state() or {}
        except Exception:  # noqa: BLE001 - cannot tell: not over
            return False
        if state.get("status") in node.FINAL_STATUSES:
            return True
        timeout = self._setting("driver_heartbeat_timeout", None)
        updated = state.get("updated")
        if timeout is None or not isinstance(updated, (int, float)):
            return False
        age = time.time() - updated
        if age <= timeout:
            return False
        log_path = self.files.store.display_path(self.files.log_rel("driver.log"))
        self.lost = (f"The job's driver is lost: its heartbeat in the store is {age:.0f} s "
                     f"old, more than driver.heartbeat_timeout ({timeout:g} s); the agent on "
                     f"{self.args.host_name} stopped the job's processes there. See the "
                     f"driver's log: {log_path}")
        return True

    def stop_all(self, grace=3.0):
        """Stop every process this agent started: runners, then the driver."""
        if self.runners is not None:
            self.runners.stop_all(grace=grace, first=signal.SIGTERM)
        if self.driver is not None:
            node.stop_processes([self.driver], grace=grace)

    def run(self):
        a = self.args
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        self.keys = node.job_keys()  # out of this process's environment
        # The job's store key: this agent's (to read the signed spec) and the head's driver's;
        # runners never get it.
        job_key = os.environ.pop(JOB_KEY_ENV, None)
        self.job_key = bytes.fromhex(job_key) if job_key else None
        env = dict(os.environ)
        # Records name the instance and the runner: "<instance id>-<slot>:<pid>" (the pid
        # last, as on every environment).
        env[WORKER_ENV] = "{id}:{pid}"
        host, _, port = a.driver.rpartition(":")
        port = int(port)
        # This host's log folder is never the store's: always copy.
        with node.LogShipper(self.files, [self.log_dir], interval=a.log_interval):
            return self._run(host, port, env)

    def _run(self, host, port, env):
        a = self.args
        if a.head:
            self._spawn_driver(host, port, env)
        deadline = time.monotonic() + a.driver_wait
        last_check = time.monotonic()
        while not self._driver_up(host, port):
            if self.stopping or time.monotonic() > deadline or self._driver_exited():
                print(f"[agent] the driver at {a.driver} did not come up", flush=True)
                self.stop_all()
                if a.head and not self.stopping:
                    self._check_driver_outcome()
                return 2
            if time.monotonic() - last_check > 1.0:
                last_check = time.monotonic()
                if node.job_ended(self.files):  # a short job may end before this host joins
                    print("[agent] the job ended before this host joined", flush=True)
                    return 0
            time.sleep(0.05)
        self.runners = node.Runners((host, port), self.keys["authkey"], log_dir=self.log_dir,
                                    id_prefix=f"{a.host_name}-", env=env,
                                    max_restarts=self._max_restarts())
        self.runners.start(a.runners or os.cpu_count() or 1)
        last_check = 0.0
        ended_at = None
        while not self.stopping and (self.runners.procs or (
                self.driver is not None and self.driver.poll() is None)):
            now = time.monotonic()
            if ended_at is None and now - last_check >= 2.0:
                last_check = now
                if self._job_over():
                    ended_at = now
                    if self.lost:
                        print(f"[agent] {self.lost}", flush=True)
                        break
            for slot, code in self.runners.reap():
                if (node.runner_lost(code) and ended_at is None and not self._driver_exited()
                        and not self.stopping):
                    print(f"[agent] runner {self.runners.runner_id(slot)} exited with "
                          f"{code}", flush=True)
                    self.runners.replace(slot)  # bounded: driver.max_runner_restarts
            if ended_at is not None and now - ended_at > a.exit_grace:
                # The job is over but a process lingers (a runner stuck in its handshake
                # with a driver that finished, a driver slow to exit): end them.
                print("[agent] the job ended; stopping what is left of it", flush=True)
                break
            time.sleep(0.1)
        if self.stopping:
            print("[agent] stopping the job's processes on this host", flush=True)
        self.stop_all()
        if a.head:
            self._check_driver_outcome()
        print("[agent] done", flush=True)
        return 0

    def _check_driver_outcome(self):
        """A driver that died without a final status (killed, out of memory) or was lost
        (see :meth:`_job_over`) leaves the job unfinished in the store: record it as
        Failed, class lost, naming the driver's log."""
        if self.driver is None:
            return
        log_path = self.files.store.display_path(self.files.log_rel("driver.log"))
        reason = self.lost or (
            f"The job's driver on the head host exited with status "
            f"{self.driver.returncode} without finishing the job; see its log: {log_path}")
        try:
            if node.record_driver_death(self.files, reason, failure_class=errors.LOST):
                print("[agent] the driver died; the job is marked Failed", flush=True)
        except Exception as e:  # noqa: BLE001
            print(f"[agent] could not record the driver's death: {e}", flush=True)


def _stop_agent(info, grace):
    pid, started = info.get("pid"), info.get("start_time")
    if not procs.is_alive(pid, started):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    end = time.monotonic() + grace
    while time.monotonic() < end and procs.is_alive(pid, started):
        time.sleep(0.05)
    procs.kill_group(pid, grace=1.0)  # what is left of its group (runners) goes too
    return True


def cmd_stop(args, rest):
    info = _read_json(os.path.join(_job_dir(args.base, args.job), "agent.json")) or {}
    stopped = _stop_agent(info, args.grace)
    print(json.dumps({"job": args.job, "stopped": stopped}))
    return 0


def cmd_stop_all(args, rest):
    jobs_dir = os.path.join(args.base, "jobs")
    stopped = []
    for job in sorted(os.listdir(jobs_dir)) if os.path.isdir(jobs_dir) else []:
        info = _read_json(os.path.join(jobs_dir, job, "agent.json")) or {}
        if _stop_agent(info, args.grace):
            stopped.append(job)
    idle = _read_json(os.path.join(args.base, "idle.json")) or {}
    if procs.is_alive(idle.get("pid"), idle.get("start_time")):
        procs.kill_group(idle["pid"], grace=2.0)
        stopped.append("idle-watchdog")
    print(json.dumps({"stopped": stopped}))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dato_dist.ec2.agent")
    parser.add_argument("action", choices=["launch", "run", "stop", "stop-all"])
    parser.add_argument("--base", required=True, help="this host's dato-dist folder")
    parser.add_argument("--job")
    parser.add_argument("--store", help="URI of the job store")
    parser.add_argument("--host-name", default=socket.gethostname())
    parser.add_argument("--head", action="store_true", help="also run the job's driver")
    parser.add_argument("--bind", help="head: the address the driver listens on")
    parser.add_argument("--ports", help="head: START-END ports the driver may use")
    parser.add_argument("--driver", help="HOST:PORT of the job's driver")
    parser.add_argument("--runners", type=int, default=0, help="0: one per CPU")
    parser.add_argument("--log-interval", type=float, default=2.0)
    parser.add_argument("--driver-wait", type=float, default=120.0)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--exit-grace", type=float, default=10.0,
                        help="seconds the job's processes may outlive its end")
    args = parser.parse_args(argv)
    if args.action == "launch":
        rest = [x for x in (argv if argv is not None else sys.argv[1:]) if x != "launch"]
        rest = _without_option(rest, "--driver")
        return cmd_launch(args, rest)
    if args.action == "run":
        return _Agent(args).run()
    if args.action == "stop":
        return cmd_stop(args, [])
    return cmd_stop_all(args, [])


def _without_option(argv, name):
    out, skip = [], False
    for x in argv:
        if skip:
            skip = False
            continue
        if x == name:
            skip = True
            continue
        if x.startswith(name + "="):
            continue
        out.append(x)
    return out


if __name__ == "__main__":
    sys.exit(main())
