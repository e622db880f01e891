"""The local launcher: a per-user background process that starts job drivers by forking.

A new interpreter that imports pyarrow needs about 0.1 s before a driver can do anything;
for a job of many tiny tasks that is most of its time. The launcher pays it once: it
imports the driver's modules, then waits on a Unix socket in ``<home>/run`` and forks a
driver for each client request, in milliseconds. It does no I/O of its own with pyarrow,
so the only threads it has are the allocator's, which are fork-safe.

A driver forked here takes the client's environment variables, working directory and
``sys.path`` from the request (so functions pickled by reference import as they do in the
client), runs in its own session (so it outlives the launcher and its process group can be
killed as one), and is reaped by the launcher.

There is one launcher per home, interpreter and dato-dist build: the socket's name carries a
fingerprint of them, so an upgraded dato-dist never runs an older launcher's code. A
launcher exits after ``local.launcher_idle_timeout`` seconds without a request, and on
SIGTERM; ``dato-dist launcher stop`` stops it. Clients start it when it is missing, and
start the driver as a new interpreter when it cannot be reached.

Wire format: the client sends a 4-byte big-endian length and a JSON request
(``argv``, ``env``, ``cwd``, ``path``) with three file descriptors attached (the driver's
stdin, the pipe it writes to when the job ends, its log file); the launcher answers with
``+`` once it has read the whole request (a client whose connection closes before that
sends it again; after it, never: it may have started a driver), then one JSON line,
``{"pid": N}`` or ``{"error": "..."}``. Only processes of the launcher's own
user may connect (the socket's folder is private, and the peer's uid is checked).
"""

import argparse
import hashlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
import warnings

from . import procs

SOCKET_PREFIX = "launcher-"
_MAX_REQUEST = 16 * 1024 * 1024
_MAX_LOG_BYTES = 1024 * 1024
_FDS = 3  # stdin, done pipe, log file
_AF_UNIX_PATH_MAX = 104  # the smallest sun_path of the platforms we run on, minus a NUL
_TAKEN = b"+"  # sent by the launcher once it has read a whole request, before it forks
_ANSWER_TIMEOUT = 30.0  # seconds a sent request's answer is waited for, at least


def fingerprint():
    """What a launcher must share with its client: interpreter, dato-dist build, and the
    versions of the libraries it imports before forking."""
    import cloudpickle
    import pyarrow

    package = os.path.dirname(os.path.abspath(__file__))
    newest = 0.0
    for folder in (package, os.path.join(package, "environments")):
        for entry in os.scandir(folder):
            if entry.name.endswith(".py"):
                newest = max(newest, entry.stat().st_mtime)
    from ._version import __version__

    parts = [sys.executable, sys.version, package, __version__, repr(newest),
             pyarrow.__version__, cloudpickle.__version__]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def run_dir(home):
    """``<home>/run``, private to this user."""
    path = os.path.join(os.path.expanduser(str(home)), "run")
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o700)  # made by something else, or under another umask
    return path


def socket_path(home):
    return os.path.join(run_dir(home), f"{SOCKET_PREFIX}{fingerprint()}.sock")


# -- the client side ---------------------------------------------------------------------

class LauncherUnavailable(Exception):
    """The launcher could not start a driver; the caller starts one itself."""


def _connect(path, timeout):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


def _start(path, idle_timeout):
    """Start a launcher for ``path`` in its own session; return its Popen."""
    env = dict(os.environ)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [package_parent, env.get("PYTHONPATH", "")] if p)
    log_path = path[:-len(".sock")] + ".log"
    try:
        too_big = os.path.getsize(log_path) > _MAX_LOG_BYTES
    except OSError:
        too_big = False
    with open(log_path, "wb" if too_big else "ab") as log:  # a line per job: start afresh
        return subprocess.Popen(
            [sys.executable, "-m", "dato_dist.launcher", "--socket", path,
             "--idle-timeout", str(idle_timeout)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env, cwd="/")


class _NotTaken(ConnectionError):
    """The launcher closed the connection before it took the request: nothing was started
    for it, so it may be sent again (to this launcher's successor)."""


def _request(sock, argv, fds):
    payload = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": procs.current_dir(),
                          "path": list(sys.path)}).encode()
    data = struct.pack(">I", len(payload)) + payload
    try:
        sent = socket.send_fds(sock, [data[:65536]], list(fds))
        if sent < len(data):
            # Never an empty send: once the whole request is out, the launcher may have
            # answered and closed, and a send would fail (EPIPE) as if it had not taken it.
            sock.sendall(data[sent:])
        chunk = sock.recv(4096)
    except ConnectionError as e:  # reset or broken pipe: closed with the request unread
        raise _NotTaken(f"the launcher closed the connection without taking the request "
                        f"({e})") from e
    if chunk[:1] != _TAKEN:
        if not chunk:
            raise _NotTaken("the launcher closed the connection without taking the request")
        reply = chunk  # refused before taking it ("not your launcher")
    else:
        reply = chunk[1:]
    while not reply.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise LauncherUnavailable("the launcher took the request, then closed the "
                                      "connection without an answer")
        reply += chunk
    answer = json.loads(reply)
    if "pid" not in answer:
        raise LauncherUnavailable(answer.get("error", "no pid in the launcher's answer"))
    return answer["pid"]


def start_driver(home, argv, fds, *, idle_timeout, start_timeout=10.0, started=None):
    """Have the launcher of ``home`` fork a driver running ``driver.main(argv + [...])``.

    ``fds`` are the driver's stdin, the write end of its done pipe (``--done-fd`` is added
    to ``argv``) and its log file. Starts the launcher when none answers, waiting at most
    ``start_timeout`` s; a started launcher's Popen is passed to ``started``. Returns the
    driver's pid. Raises :class:`LauncherUnavailable` when no launcher can be reached.
    """
    path = socket_path(home)
    if len(path.encode()) >= _AF_UNIX_PATH_MAX:
        raise LauncherUnavailable(f"the socket path is too long for AF_UNIX: {path}")
    deadline = time.monotonic() + start_timeout
    proc = None
    last_error = None
    while time.monotonic() < deadline:
        try:
            sock = _connect(path, max(0.1, deadline - time.monotonic()))
        except (FileNotFoundError, ConnectionRefusedError) as e:
            last_error = e
            if proc is None:
                proc = _start(path, idle_timeout)
                if started is not None:
                    started(proc)
            elif proc.poll():  # (0: another launcher had the lock; it is coming up)
                raise LauncherUnavailable(
                    f"the launcher exited with status {proc.returncode} as it started; "
                    f"see {path[:-len('.sock')]}.log") from e
            time.sleep(0.01)
            continue
        except OSError as e:
            raise LauncherUnavailable(f"cannot connect to {path}: {e}") from e
        try:
            with sock:
                # Once sent, the request may start a driver: it is never sent twice (a second
                # driver of the job would share its pipes), so its answer gets time.
                sock.settimeout(max(_ANSWER_TIMEOUT, deadline - time.monotonic()))
                return _request(sock, argv, fds)
        except _NotTaken as e:
            # A launcher that was exiting (idle) as we connected: start another one.
            last_error, proc = e, None
            continue
        except OSError as e:  # a timeout included: a driver it forked exits without "go"
            raise LauncherUnavailable(f"the launcher at {path} failed: {e}") from e
    raise LauncherUnavailable(f"no launcher answered at {path} within {start_timeout:.0f} s "
                              f"({last_error}); see {path[:-len('.sock')]}.log")


def running(home):
    """``[{"pid", "start_time", "socket", "started"}, ...]`` for this home's live launchers."""
    folder = run_dir(home)
    found = []
    for name in sorted(os.listdir(folder)):
        if name.startswith(SOCKET_PREFIX) and name.endswith(".pid"):
            try:
                with open(os.path.join(folder, name)) as f:
                    info = json.load(f)
            except (OSError, ValueError):
                continue
            if procs.is_alive(info.get("pid"), info.get("start_time")):
                found.append(info)
    return found


def stop(home, *, grace=3.0):
    """Stop this home's launchers (SIGTERM, then SIGKILL after ``grace`` s); return their
    pids. Drivers they started go on: each is in its own session, a launcher alone in its
    process group."""
    stopped = []
    for info in running(home):
        if procs.is_alive(info["pid"], info["start_time"]):
            procs.kill_group(info["pid"], grace=grace)
            stopped.append(info["pid"])
    return stopped


# -- the launcher ------------------------------------------------------------------------

def _preload():
    """Import what every driver needs, so a forked driver starts at once."""
    import cloudpickle  # noqa: F401
    import pyarrow.fs  # noqa: F401  (the slow one)

    from . import driver, jobfiles, node, runner, serialize, store  # noqa: F401


def _peer_uid(conn):
    if not hasattr(socket, "SO_PEERCRED"):
        return os.getuid()  # not Linux: the private folder is the only guard
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _read_request(conn):
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, _FDS)
    try:
        while len(data) < 4:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError("short request")
            data += chunk
        (size,) = struct.unpack(">I", data[:4])
        if size > _MAX_REQUEST:
            raise ValueError(f"request of {size} bytes")
        while len(data) < 4 + size:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError("short request")
            data += chunk
        if len(fds) != _FDS:
            raise ValueError(f"expected {_FDS} file descriptors, got {len(fds)}")
        return json.loads(data[4:4 + size]), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _become_driver(request, fds, close):
    """In the forked child: take the client's context, then run the driver. Never returns."""
    code = 1
    try:
        for f in close:
            f.close()
        os.setsid()
        os.umask(0o077)  # what the driver and its runners create is theirs alone
        stdin_fd, done_fd, log_fd = fds
        os.dup2(stdin_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(stdin_fd)
        os.close(log_fd)
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(request["env"])
        try:
            os.chdir(request["cwd"] or "/")  # None: the client's folder was deleted
        except OSError as e:  # deleted since
            print(f"[dato-dist] cannot enter the client's folder: {e}; using /", flush=True)
            os.chdir("/")
        sys.path[:] = request["path"]
        from . import driver

        code = driver.main(list(request["argv"]) + ["--done-fd", str(done_fd)])
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code or 0)


def _reap():
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _serve_one(conn, server, lock):
    conn.settimeout(5.0)
    if _peer_uid(conn) != os.getuid():
        conn.sendall(b'{"error": "not your launcher"}\n')
        return
    try:
        request, fds = _read_request(conn)
    except (OSError, ValueError) as e:
        print(f"[dato-dist launcher] bad request: {e}", flush=True)
        return
    try:
        conn.sendall(_TAKEN)  # from here on, the client never sends this request again
        sys.stdout.flush()
        sys.stderr.flush()
        with warnings.catch_warnings():
            # Python 3.12+ warns about forking with threads; ours are the allocator's.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            _become_driver(request, fds, close=(conn, server, lock))
    except OSError as e:  # out of processes or memory: the client spawns instead
        print(f"[dato-dist launcher] fork failed: {e}", flush=True)
        conn.sendall(json.dumps({"error": f"the launcher could not fork: {e}"}).encode()
                     + b"\n")
        return
    finally:
        for fd in fds:
            os.close(fd)
    argv = request["argv"]
    job = argv[argv.index("--job") + 1] if "--job" in argv[:-1] else "?"
    print(f"[dato-dist launcher] driver {pid} for job {job}", flush=True)
    conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")


def _remove_stale(path):
    """Remove the lock and log files of other launchers of this folder that are gone
    (an older dato-dist build's); a file whose lock is held stays."""
    import fcntl

    folder, mine = os.path.dirname(path), os.path.basename(path)[:-len(".sock")]
    for name in os.listdir(folder):
        stem = name.rsplit(".", 1)[0]
        if not (name.startswith(SOCKET_PREFIX) and name.endswith(".lock")) or stem == mine:
            continue
        try:
            with open(os.path.join(folder, name), "a") as other:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                for suffix in (".log", ".lock"):
                    try:
                        os.unlink(os.path.join(folder, stem + suffix))
                    except FileNotFoundError:
                        pass
        except OSError:
            continue  # held: that launcher still runs


def serve(path, idle_timeout):
    """Run the launcher for socket ``path`` until idle for ``idle_timeout`` s or SIGTERM."""
    import fcntl

    lock = open(path[:-len(".sock")] + ".lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another launcher serves this socket
    if os.getpgid(0) != os.getpid():
        os.setsid()  # alone in its process group, however it was started: stop() kills that
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    _remove_stale(path)
    pid_path = path[:-len(".sock")] + ".pid"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Bound before the slow imports: a launcher that cannot serve fails at once (not
        # after seconds of imports on a loaded machine, when its client has given up on
        # it), and clients wait in the backlog, not in a connect loop.
        if os.path.exists(path):
            os.unlink(path)  # left by a launcher that was killed: we hold the lock now
        old_umask = os.umask(0o177)
        try:
            server.bind(path)
        finally:
            os.umask(old_umask)
        server.listen(64)
        _preload()
        info = {"pid": os.getpid(), "start_time": procs.start_time(os.getpid()),
                "socket": path, "started": time.time()}
        with open(pid_path + ".tmp", "w") as f:
            json.dump(info, f)
        os.replace(pid_path + ".tmp", pid_path)
        print(f"[dato-dist launcher] pid {os.getpid()} serving {path}", flush=True)
        last = time.monotonic()
        while time.monotonic() - last < idle_timeout:
            _reap()
            if select.select([server], [], [], 0.5)[0]:
                conn, _ = server.accept()
                with conn:
                    try:
                        _serve_one(conn, server, lock)
                    except OSError as e:
                        print(f"[dato-dist launcher] request failed: {e}", flush=True)
                last = time.monotonic()
        print("[dato-dist launcher] idle: exiting", flush=True)
    finally:
        server.close()
        for p in (path, pid_path):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        _reap()
        lock.close()
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dato_dist.launcher",
                                     description="Fork dato-dist job drivers on request.")
    parser.add_argument("--socket", required=True, help="the Unix socket to serve")
    parser.add_argument("--idle-timeout", type=float, default=600.0,
                        help="exit after this many seconds without a request")
    args = parser.parse_args(argv)
    return serve(args.socket, args.idle_timeout)


if __name__ == "__main__":
    sys.exit(main())
