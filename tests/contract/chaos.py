"""Chaos adapters: real kills of a job's real processes, per environment.

Every environment of the suite runs its processes on this machine (YARN's containers on the
MiniCluster's NodeManager, EC2's hosts as sshd sessions on loopback), so a runner or driver
is killed by its pid, read from what the job itself reports: the metrics' ``worker``
column (``host:pid`` of the runner running a task) and the driver's entry in its state.
"""

from __future__ import annotations

import os
import signal

from dato_dist.procs import group_members, is_alive
from tests.conftest import wait_for


def running_tasks(job):
    """``{task_name: runner pid}`` of the tasks the metrics show Running."""
    return {r["task_name"]: int(r["worker"].rsplit(":", 1)[1])
            for r in (job.get_metrics() or []) if r["status"] == "Running" and r["worker"]}


def processes_matching(needle):
    """Pids of live (not zombie) processes whose command line or working directory
    contains ``needle``."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{d}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
            cwd = os.readlink(f"/proc/{d}/cwd")
        except OSError:
            continue
        if (needle in cmd or needle in cwd) and state != b"Z":
            found.append(int(d))
    return found


class Chaos:
    """What every environment shares; subclasses add where else a job's processes hide."""

    def kill_runner(self, job, timeout):
        """SIGKILL the runner of a running task; ``(task_name, runner pid)``."""
        running = wait_for(lambda: running_tasks(job), timeout, 0.2, what="a running task")
        task, pid = sorted(running.items())[0]
        os.kill(pid, signal.SIGKILL)
        return task, pid

    def driver_pid(self, job, timeout):
        def pid():
            return ((job._files.read_state() or {}).get("driver") or {}).get("pid")

        return wait_for(pid, timeout, 0.2, what="the driver's pid in the job's state")

    def kill_driver(self, job, timeout):
        """SIGKILL the job's driver; its pid."""
        pid = self.driver_pid(job, timeout)
        os.kill(pid, signal.SIGKILL)
        return pid

    def processes(self, job):
        """What the job itself names as its processes now: driver and running runners."""
        state = job._files.read_state() or {}
        pids = set(running_tasks(job).values())
        if (state.get("driver") or {}).get("pid"):
            pids.add(state["driver"]["pid"])
        return pids

    def leftovers(self, job, pids):
        """What of ``pids`` (and of the job, found the environment's way) still runs."""
        return sorted(p for p in pids if is_alive(p))


class LocalChaos(Chaos):
    def leftovers(self, job, pids):
        launch = job._files.read_launch() or {}
        # the driver leads a process group holding its runners and their replacements
        members = group_members(launch["pid"]) if launch.get("pid") else []
        return sorted(set(super().leftovers(job, pids)) | set(members))


class YarnChaos(Chaos):
    def __init__(self, cluster):
        self.cluster = cluster

    def app_state(self, app_id):
        out = self.cluster.yarn("application", "-status", app_id).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "State":
                return value.strip()
        return None

    def leftovers(self, job, pids):
        found = set(super().leftovers(job, pids))
        found |= set(processes_matching(job.app_id))  # a container's cwd holds its app id
        state = self.app_state(job.app_id)
        out = [f"application {job.app_id} {state}"] if state in (
            "NEW", "NEW_SAVING", "SUBMITTED", "ACCEPTED", "RUNNING") else []
        return out + sorted(found)


class Ec2Chaos(Chaos):
    def __init__(self, sandbox):
        self.sandbox = sandbox

    def leftovers(self, job, pids):
        found = set(super().leftovers(job, pids))
        launch = job._files.read_launch() or {}
        if launch.get("driver"):  # the runners' and agents' command lines name it
            found |= set(self.sandbox.host_processes(launch["driver"]))
        found |= set(self.sandbox.host_processes(f"--job {job.id}"))
        return sorted(found)
