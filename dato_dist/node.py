"""What runs on a node for every backend: the job's runners, their logs and their end.

Backends only get a process onto a machine (the local launcher or a new interpreter, a
YARN container's script, an SSH command); what that process then does for the job is here:

- :func:`job_keys` takes the job's keys from the node's key source: the environment
  locally and on EC2 (sent on the SSH channel's stdin there), Skein's key-value store on
  YARN. Keys never touch the store or a command line.
- :class:`Runners` starts N runners for a driver (forked before any store I/O where the
  caller can, so they start in milliseconds; otherwise fresh interpreters), replaces lost
  ones up to a bound, and stops everything it started, by pid.
- :class:`LogShipper` copies the node's log files to ``<job>/logs/`` through
  :class:`~dato_dist.jobfiles.JobFiles` when the job store is remote (a local store gets the
  logs written in place).
- :func:`record_driver_death` marks a job whose driver died without a final status Failed.

Runner settings are not here: runners get them from their driver in ``SETUP``, which takes
them from the job's spec (:func:`dato_dist.protocol.runner_settings`).
"""

import glob
import os
import signal
import subprocess
import sys
import threading
import time

from . import protocol as P

#: The job's keys: name -> (environment variable, Skein key-value entry). A key added here
#: travels to every node the same way as the others.
KEYS = {"authkey": (P.AUTHKEY_ENV, "dato-dist.authkey")}

#: A job in one of these states is over: nothing on a node has work left for it.
FINAL_STATUSES = ("Completed", "Failed", "Canceled")

#: Seconds between two copies of a node's logs to a remote store.
LOG_SHIP_INTERVAL = 5.0


def job_keys(kv=None, *, environ=None, timeout=None):
    """The job's keys, ``{name: bytes or None}`` for every name in :data:`KEYS`.

    With ``kv`` (a Skein application's key-value store) each is waited for there (the client
    puts it once the application runs); otherwise it is taken out of the environment
    (``environ``, default ``os.environ``), so a process started later inherits it only when
    it is given on purpose (:func:`key_environ`).
    """
    environ = os.environ if environ is None else environ
    keys = {}
    for name, (env_name, kv_name) in KEYS.items():
        if kv is not None:
            value = kv.wait(kv_name, timeout=timeout) if timeout else kv.wait(kv_name)
            value = value.decode()
        else:
            value = environ.pop(env_name, None)
        keys[name] = bytes.fromhex(value) if value else None
    return keys


def key_environ(keys):
    """The environment variables that hand ``keys`` (from :func:`job_keys`) to a child."""
    return {KEYS[name][0]: value.hex() for name, value in keys.items() if value is not None}


def stop_processes(processes, *, grace=2.0, first=signal.SIGTERM):
    """Stop ``processes`` (``Popen`` objects or pids of our children): send
    ``first`` (None: none, they were told to stop), wait up to ``grace`` s for them to exit,
    SIGKILL those left, and reap them all. Returns their exit codes by position."""
    procs_ = list(processes)
    codes = [None] * len(procs_)

    def poll(k):
        p = procs_[k]
        if codes[k] is None:
            codes[k] = _poll(p)
        return codes[k]

    if first is not None:
        for k, p in enumerate(procs_):
            if poll(k) is None:
                _signal(p, first)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(poll(k) is None for k in range(len(procs_))):
        time.sleep(0.02)
    for k, p in enumerate(procs_):
        if poll(k) is None:
            _signal(p, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(poll(k) is None for k in range(len(procs_))):
        time.sleep(0.02)
    return codes


def _pid(p):
    return p.pid if isinstance(p, subprocess.Popen) else p


def _signal(p, sig):
    try:
        os.kill(_pid(p), sig)
    except ProcessLookupError:
        pass


def _poll(p):
    """The exit code of our child ``p`` (negative: killed by that signal), None if running."""
    if isinstance(p, subprocess.Popen):
        return p.poll()
    try:
        pid, status = os.waitpid(p, os.WNOHANG)
    except ChildProcessError:
        return 0  # reaped elsewhere: gone, status unknown
    if pid == 0:
        return None
    return os.waitstatus_to_exitcode(status)


class Runners:
    """The runner processes of one node, for the driver at ``address``.

    Slot ``k`` runs the runner with id ``<id_prefix><k>``, logging to
    ``<log_dir>/runner-<id>.log``. :meth:`fork` starts one by forking this process (only
    while it has no threads and has done no store I/O); :meth:`spawn` starts a fresh
    interpreter (``python -m dato_dist.runner``, the key in its environment only).
    :meth:`replace` spawns a lost one again, at most ``max_restarts`` times per slot.

    Examples
    --------
    >>> runners = Runners(("127.0.0.1", 5000), key, log_dir="/tmp/logs")  # doctest: +SKIP
    >>> runners.start(2)                                                  # doctest: +SKIP
    >>> runners.stop_all()                                                # doctest: +SKIP
    """

    def __init__(self, address, authkey, *, log_dir, id_prefix="", max_restarts=0, env=None,
                 log_prefix=""):
        self.address, self.authkey, self.log_dir = tuple(address), authkey, log_dir
        self.log_prefix = log_prefix  # of the log files' names (a rerun's: "run<N>.")
        self.id_prefix, self.max_restarts = id_prefix, max_restarts
        self.env = env  # the spawned runners' environment (default: ours), key added
        self.procs = {}  # slot -> pid (forked) or Popen (spawned)
        self.restarts = {}  # slot -> replacements started

    def runner_id(self, slot):
        return f"{self.id_prefix}{slot}"

    def slot_of(self, runner_id):
        """The slot of the runner ``runner_id`` if it is one of ours, else None."""
        rest = runner_id[len(self.id_prefix):] if runner_id.startswith(self.id_prefix) else ""
        return int(rest) if rest.isdigit() else None

    def _log_fd(self, slot):
        os.makedirs(self.log_dir, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.log_dir, f"{self.log_prefix}runner-{self.runner_id(slot)}.log"),
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)  # private whatever the umask
        return fd

    def start(self, count, *, fork=False, close=()):
        """Start slots ``0..count-1``: forked (``close`` is closed in each child) or spawned."""
        for slot in range(count):
            if fork:
                self.fork(slot, close=close)
            else:
                self.spawn(slot)

    def fork(self, slot, *, close=()):
        """Fork this process into the runner of ``slot``; ``close`` (objects with
        ``close()``) are closed in the child."""
        sys.stdout.flush()
        sys.stderr.flush()
        fd = self._log_fd(slot)
        pid = os.fork()
        if pid == 0:  # the runner
            code = 1
            try:
                for obj in close:
                    obj.close()
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.close(fd)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                from . import runner

                code = runner.serve(self.address, self.authkey, self.runner_id(slot))
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code or 0)
        os.close(fd)
        self.procs[slot] = pid

    def spawn(self, slot):
        """Start the runner of ``slot`` as a fresh interpreter."""
        fd = self._log_fd(slot)
        env = dict(os.environ if self.env is None else self.env,
                   **key_environ({"authkey": self.authkey}))
        cmd = [sys.executable, "-m", "dato_dist.runner", "--driver",
               f"{self.address[0]}:{self.address[1]}", "--id", self.runner_id(slot)]
        try:
            self.procs[slot] = subprocess.Popen(cmd, stdout=fd, stderr=fd, env=env,
                                                stdin=subprocess.DEVNULL)
        finally:
            os.close(fd)

    def forgive(self, slot):
        """Do not count the next replacement of ``slot``: its runner's loss quarantined the
        tasks it held rather than blame one (the driver's ``_lose``; such losses are
        bounded by the job's tasks, since each quarantines at least two)."""
        self.restarts[slot] = self.restarts.get(slot, 0) - 1

    def replace(self, slot):
        """Spawn the runner of ``slot`` again unless it was replaced ``max_restarts`` times
        already; True if it was."""
        if self.restarts.get(slot, 0) >= self.max_restarts:
            return False
        self.restarts[slot] = self.restarts.get(slot, 0) + 1
        print(f"[dato-dist] starting a replacement for runner {self.runner_id(slot)} "
              f"({self.restarts[slot]} of {self.max_restarts})", flush=True)
        self.spawn(slot)
        return True

    def pid(self, slot):
        p = self.procs.get(slot)
        return None if p is None else _pid(p)

    def reap(self):
        """``[(slot, exit code)]`` of the runners that exited since the last call."""
        gone = []
        for slot, p in list(self.procs.items()):
            code = _poll(p)
            if code is not None:
                del self.procs[slot]
                gone.append((slot, code))
        return gone

    def kill(self, slot, sig=signal.SIGKILL):
        p = self.procs.get(slot)
        if p is not None:
            _signal(p, sig)

    def stop_all(self, *, grace=2.0, first=None):
        """Stop every runner still running: they were sent STOP, so they get ``grace`` s to
        exit (after ``first``, e.g. SIGTERM on cancel), then SIGKILL."""
        stop_processes(self.procs.values(), grace=grace, first=first)
        self.procs.clear()


def runner_lost(code):
    """Whether a runner that exited with ``code`` was lost (killed, crashed, ended by its
    task) rather than done: told to stop, or its driver gone."""
    return code not in P.EXIT_DONE


class LogShipper:
    """Copies a node's log files to ``<job>/logs/`` in the store, every ``interval`` s on a
    thread and once more at the end (``with LogShipper(...):``). Only files that changed
    since their last copy are written; a failing copy is reported and retried next time.

    ``folders`` are the folders (or globs of files) whose files are copied, each stored as
    ``<prefix><file name>``.
    """

    def __init__(self, files, folders, *, prefix="", interval=LOG_SHIP_INTERVAL):
        self.files, self.folders, self.prefix = files, list(folders), prefix
        self.interval = interval
        self._shipped = {}  # path -> (size, mtime) at its last copy
        self._stop = threading.Event()
        self._thread = None
        self._lock = threading.Lock()

    @classmethod
    def if_remote(cls, files, folders, **kwargs):
        """A shipper when the job's logs folder is not on this machine's disk, else None."""
        if files.store.local_path(files.log_rel()):
            return None
        return cls(files, folders, **kwargs)

    def _paths(self):
        for folder in self.folders:
            pattern = os.path.join(folder, "*") if os.path.isdir(folder) else folder
            for path in sorted(glob.glob(pattern)):
                if os.path.isfile(path):
                    yield path

    def ship(self):
        """Copy every changed log file now."""
        with self._lock:
            for path in self._paths():
                try:
                    st = os.stat(path)
                    if self._shipped.get(path) == (st.st_size, st.st_mtime_ns):
                        continue
                    with open(path, "rb") as f:
                        data = f.read()
                    name = f"{self.prefix}{os.path.basename(path)}"
                    self.files.store.write_bytes(self.files.log_rel(name), data, framed=False)
                    self._shipped[path] = (st.st_size, st.st_mtime_ns)
                except Exception as e:  # noqa: BLE001 - logs are best effort; the job goes on
                    print(f"[dato-dist] could not copy {path} to the job store: {e}",
                          file=sys.stderr, flush=True)

    def _loop(self):
        while not self._stop.wait(self.interval):
            self.ship()

    def start(self):
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop copying, then copy what changed once more."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        sys.stdout.flush()
        sys.stderr.flush()
        self.ship()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def job_ended(files):
    """True when the job's state in the store is final; False when not, or unreadable."""
    try:
        state = files.read_state()
    except Exception:  # noqa: BLE001 - cannot tell: not ended
        return False
    return (state or {}).get("status") in FINAL_STATUSES


def record_driver_death(files, reason, failure_class=None):
    """Mark the job Failed with ``reason`` (and ``failure_class``, when given) unless it has
    a final status already: its driver died (killed, out of memory) without writing one.
    True if it was marked."""
    state = files.read_state() or {}
    if state.get("status") in FINAL_STATUSES:
        return False
    state.update(status="Failed", ended=time.time(), error=reason)
    if failure_class is not None:
        state["failure_class"] = failure_class
    state.setdefault("started", None)
    files.write_state(state)
    return True
