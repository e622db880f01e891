"""Process helpers: liveness that survives pid reuse, and stopping a process group."""

import os
import signal
import socket
import time


def start_time(pid):
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if unknown/gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces or parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[19])  # field 22 overall: starttime


def is_alive(pid, started=None):
    """True if ``pid`` runs and, when ``started`` is given, is the same process as then."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = start_time(pid)
    if now is None:  # no /proc (not Linux): trust kill(0)
        return True
    try:  # a zombie has exited already
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        if data[data.rindex(b")") + 2:].split()[0] == b"Z":
            return False
    except OSError:
        return False
    return started is None or now == started


def describe_self():
    """What a later process needs to check that this one is still alive."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start_time": start_time(os.getpid())}


def kill_group(pgid, *, grace=3.0):
    """SIGTERM the process group ``pgid``, then SIGKILL whatever is left after ``grace`` s.

    Returns True when the group is gone.
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _group_exists(pgid):
            return True
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _group_exists(pgid):
            return True
        time.sleep(0.05)
    return False


def _group_exists(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Zombies still count for killpg; ignore a group whose members all exited.
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rindex(b")") + 2:].split()
        if int(rest[2]) == pgid and rest[0] != b"Z":
            return True
    return not os.path.isdir("/proc")
