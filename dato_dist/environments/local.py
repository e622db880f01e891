"""The environments on this machine: ``Local`` (synchronous) and ``LocalAsync`` (background).

Both start the job's driver as a detached process (its own session, so it outlives the
client) that forks the runners: forked by the local launcher (:mod:`dato_dist.launcher`),
or, when that cannot be reached or ``local.start_method = "spawn"``, as a new interpreter.
``Local`` then waits for it; ``LocalAsync`` returns.
"""

import collections
import logging
import os
import select
import socket
import subprocess
import sys
import time

from .. import procs
from ..errors import ConfigError, InvalidArgument
from ..rerun import log_prefix
from .base import Environment

log = logging.getLogger(__name__)

_children = []  # drivers started by this process, polled so they do not linger as zombies
#: (store uri, job id) -> read end of the pipe its driver writes a byte to when the job ends
_done_fds = collections.OrderedDict()
_MAX_DONE_FDS = 64


def _reap():
    for p in list(_children):  # (forked drivers are not our children: nothing to reap)
        if p.poll() is not None:
            _children.remove(p)


class _LaunchedDriver:
    """A driver forked by the launcher: its ``pid`` and its ``stdin`` (the go pipe)."""

    def __init__(self, pid, stdin_fd):
        self.pid = pid
        self.stdin = os.fdopen(stdin_fd, "wb", buffering=0)

    def poll(self):
        return None if procs.is_alive(self.pid) else 0

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while procs.is_alive(self.pid):
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("driver", timeout)
            time.sleep(0.01)
        return 0


def _remember_done_fd(key, fd):
    _done_fds[key] = fd
    while len(_done_fds) > _MAX_DONE_FDS:  # jobs nobody waits on: fall back to polling
        os.close(_done_fds.popitem(last=False)[1])


#: Why the launcher could not be used in this process (then every job spawns its driver).
_launcher_failed = None


def _launch_driver(argv, log_path, done_w, config):
    """Have the local launcher fork the driver; None when it cannot (the caller spawns)."""
    global _launcher_failed
    from .. import launcher

    if _launcher_failed is not None:
        return None
    go_r, go_w = os.pipe()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(log_fd, 0o600)
    try:
        pid = launcher.start_driver(config.home, argv, (go_r, done_w, log_fd),
                                    idle_timeout=config["local.launcher_idle_timeout"],
                                    started=_children.append)
    except launcher.LauncherUnavailable as e:
        os.close(go_w)
        _launcher_failed = str(e)
        log.warning("Starting job drivers as new interpreters from now on in this process "
                    "(slower): %s", e)
        return None
    except BaseException:
        os.close(go_w)
        raise
    finally:
        os.close(go_r)
        os.close(log_fd)
    return _LaunchedDriver(pid, go_w)


class LocalAsync(Environment):
    """Run jobs in the background on this machine; the default environment (``'async'``).

    Parameters
    ----------
    name : str
        The environment's name in ``gl.deploy.environments``.
    num_workers : int, optional
        Runner processes; default: config ``local.num_workers`` (0 = one per CPU).

    Examples
    --------
    >>> env = LocalAsync('bg', num_workers=2)
    >>> print(env)
    LocalAsync: ["name": bg]
    """

    type_name = "LocalAsync"

    def __init__(self, name, *, num_workers=None):
        super().__init__(name)
        if num_workers is not None and (not isinstance(num_workers, int)
                                        or isinstance(num_workers, bool) or num_workers < 1):
            raise InvalidArgument(f"num_workers must be a positive int, got {num_workers!r}.")
        self.num_workers = num_workers

    def __str__(self):
        return f'{self.type_name}: ["name": {self.name}]'

    __repr__ = __str__

    def to_dict(self):
        d = super().to_dict()
        if self.num_workers is not None:
            d["num_workers"] = self.num_workers
        return d

    @classmethod
    def from_dict(cls, data):
        return cls(data["name"], num_workers=data.get("num_workers"))

    def store_uri(self, config):
        return config.store_uri

    def workers(self, config):
        return self.num_workers or config["local.num_workers"] or os.cpu_count() or 1

    def _log_dir(self, files):
        local = files.store.local_path(files.log_rel())
        if local:
            return local
        from ..config import load

        return str(load().home / "logs" / files.job_id)

    def prepare(self, files, settings, config):
        """Start the driver now; it forks its runners and loads its imports, then waits on
        its stdin for the word ``go`` (sent by :meth:`start_job` once the job is written)."""
        _reap()
        log_dir = self._log_dir(files)
        os.makedirs(log_dir, mode=0o700, exist_ok=True)
        os.chmod(log_dir, 0o700)  # private whatever the umask
        # Runner settings are not passed: the driver sends them from the spec in SETUP.
        cmd = [sys.executable, "-m", "dato_dist.driver", "--store", files.store.uri,
               "--job", files.job_id, "--local-runners", str(self.workers(config)),
               "--local-log-dir", log_dir, "--wait-go"]
        prefix = log_prefix(settings.get("run"))  # a rerun's logs do not mix with earlier runs'
        if prefix:
            cmd += ["--log-prefix", prefix]
        log_path = os.path.join(log_dir, prefix + "driver.log")
        method = config["local.start_method"]
        if method not in ("launcher", "spawn"):
            raise ConfigError(f"Config key local.start_method must be 'launcher' or 'spawn', "
                              f"got {method!r}.")
        done_r, done_w = os.pipe()
        try:
            proc = None
            if method == "launcher":
                proc = _launch_driver(cmd[3:], log_path, done_w, config)
            if proc is None:
                env = dict(os.environ)
                # Functions pickled by reference must import in the runners as they do here.
                env["PYTHONPATH"] = os.pathsep.join(
                    p for p in [procs.current_dir()] + sys.path if p)
                with open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
                          "ab") as out:
                    proc = subprocess.Popen(cmd + ["--done-fd", str(done_w)],
                                            stdin=subprocess.PIPE, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True,
                                            env=env, pass_fds=(done_w,))
                _children.append(proc)
        except BaseException:
            os.close(done_r)
            raise
        finally:
            os.close(done_w)
        _remember_done_fd((files.store.uri, files.job_id), done_r)
        return {"proc": proc, "log_dir": log_dir}

    def wait_for_change(self, files, timeout):
        fd = _done_fds.get((files.store.uri, files.job_id))
        if fd is None:
            time.sleep(timeout)
            return
        if select.select([fd], [], [], timeout)[0]:
            os.close(_done_fds.pop((files.store.uri, files.job_id)))  # a byte, or EOF

    def abandon(self, prepared):
        if prepared:
            procs.kill_group(prepared["proc"].pid, grace=1.0)
            _reap()

    def start_job(self, files, spec, config, prepared=None):
        prepared = prepared or self.prepare(files, spec["settings"], config)
        proc = prepared["proc"]
        try:
            files.write_launch({"host": socket.gethostname(), "pid": proc.pid,
                                "start_time": procs.start_time(proc.pid),
                                "log_dir": prepared["log_dir"]})
            proc.stdin.write(b"go " + files.key.hex().encode() + b"\n")  # a private pipe
            proc.stdin.close()
        except BaseException:
            self.abandon(prepared)
            raise
        return proc

    def is_alive(self, files, launch, state):
        info = (state or {}).get("driver") or launch
        if not info or info.get("host") != socket.gethostname():
            return None
        _reap()
        return procs.is_alive(info.get("pid"), info.get("start_time"))

    def stop_job(self, files, launch):
        if launch and launch.get("host") == socket.gethostname() and procs.is_alive(
                launch.get("pid"), launch.get("start_time")):
            procs.kill_group(launch["pid"])
        _reap()

    def log_location(self, files):
        return self._log_dir(files)

    def describe(self, files, launch):
        launch = launch or {}
        return [("Process pid", launch.get("pid")),
                ("Execution Directory", files.uri),
                ("Log file", os.path.join(self.log_location(files), "driver.log"))]


class Local(LocalAsync):
    """Run jobs on this machine and wait for them: ``job.create`` returns when it ended.

    Examples
    --------
    >>> print(Local('here'))
    Local: ["name": here]
    """

    type_name = "Local"
    synchronous = True
