"""Process helpers: liveness that survives pid reuse, and stopping a process group (Linux
``/proc``; elsewhere liveness falls back to ``kill(pid, 0)``)."""

import os
import signal
import socket
import time


def _stat(pid):
    """The fields of ``/proc/<pid>/stat`` after the command name, or None if unknown/gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces or parentheses: split after the last ')'.
    return data[data.rindex(b")") + 2:].split()


def start_time(pid):
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if unknown/gone."""
    fields = _stat(pid)
    return None if fields is None else int(fields[19])  # field 22 overall: starttime


def is_alive(pid, started=None):
    """True if ``pid`` runs (not a zombie) and, when ``started`` is given, is the same
    process as then."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _stat(pid)
    if fields is None:
        return not os.path.isdir("/proc")  # no /proc (not Linux): trust kill(0)
    if fields[0] == b"Z":
        return False
    return started is None or int(fields[19]) == started


def current_dir():
    """``os.getcwd()``, or None when this process's folder has been deleted."""
    try:
        return os.getcwd()
    except FileNotFoundError:
        return None


def describe_self():
    """What a later process needs to check that this one is still alive."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start_time": start_time(os.getpid())}


def group_members(pgid):
    """Pids of the live (non-zombie) processes of the process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit():
            fields = _stat(entry)
            if fields is not None and int(fields[2]) == pgid and fields[0] != b"Z":
                members.append(int(entry))
    return members


def _group_gone(pgid, within):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if os.path.isdir("/proc") and not group_members(pgid):
            return True  # only zombies left
        time.sleep(0.05)
    return False


def kill_group(pgid, *, grace=3.0):
    """SIGTERM the process group ``pgid``, then SIGKILL whatever is left after ``grace`` s.

    Returns True when the group is gone.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return True
        if _group_gone(pgid, grace):
            return True
    return False


def become_subreaper():
    """Make this process the reaper of its orphaned descendants (Linux ``prctl``), so a
    process a task started and detached (double fork, ``setsid``) stays findable by
    :func:`kill_descendants`. Returns False where that is not available."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def descendants(pid):
    """Pids of the live descendants of ``pid`` (from ``/proc``; [] without it)."""
    children = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit():
            fields = _stat(entry)
            if fields is not None and fields[0] != b"Z":
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def kill_descendants(pid=None):
    """SIGKILL every descendant of ``pid`` (default: this process) and reap this process's
    own children; returns how many were killed. Repeated until none is found, since a
    process may fork while its parent is being killed."""
    pid = os.getpid() if pid is None else pid
    killed = 0
    for _ in range(5):
        found = descendants(pid)
        if not found:
            break
        for child in found:
            try:
                os.kill(child, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + 1.0
        while pid == os.getpid() and time.monotonic() < deadline:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0 and not descendants(pid):
                    break
            except ChildProcessError:
                break
    return killed
