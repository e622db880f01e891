"""SSH to the cluster's hosts: the only module of dato-dist that imports Fabric.

A :class:`HostSet` runs commands on hosts in parallel and returns a result per host
(like ``fabric.ThreadingGroup``, but each host may get its own command). Host keys are
recorded at first contact (:meth:`HostSet.wait_ready`) and checked on every later
connection. Commands never read the client's stdin: under pytest that raises, and in CI
there is no stdin at all. A command's environment (credentials, a job's key) is written to
the SSH channel's stdin as one line that the remote shell reads and evaluates before the
command, so no value is ever on a host's command line (``ps``); the shell then points its
stdin at ``/dev/null``. Without an environment, ``in_stream=False``. paramiko/invoke errors
become a failed :class:`Result` at one choke point, :meth:`HostSet.run`.
"""

import io
import logging
import shlex
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import fabric
import invoke
import paramiko

from dato_dist.errors import Ec2SettingError, HostsFailed, InvalidArgument

log = logging.getLogger(__name__)


class Host:
    """One EC2 instance as SSH sees it."""

    def __init__(self, *, instance_id, address, private_ip, role, index, host_key=None,
                 cpus=None, base=None):
        self.instance_id = instance_id
        self.address = address  # what we SSH to (public or private IP)
        self.private_ip = private_ip  # what the other hosts reach it at
        self.role = role
        self.index = index
        self.host_key = host_key  # "ssh-ed25519 AAAA..." once recorded
        self.cpus = cpus
        self.base = base  # this host's dato-dist folder (absolute), once known

    def to_dict(self):
        return {k: getattr(self, k) for k in ("instance_id", "address", "private_ip", "role",
                                              "index", "host_key", "cpus", "base")}

    @classmethod
    def from_dict(cls, d):
        return cls(**d)

    def __str__(self):
        return f"{self.instance_id} ({self.address})"

    __repr__ = __str__


class Result:
    """The outcome of one command on one host."""

    def __init__(self, host, *, stdout="", stderr="", exited=None, error=None):
        self.host, self.stdout, self.stderr = host, stdout, stderr
        self.exited, self.error = exited, error

    @property
    def ok(self):
        return self.error is None and self.exited == 0

    def __repr__(self):
        return f"Result<{self.host} ok={self.ok} exited={self.exited} error={self.error}>"


class _RecordHostKey(paramiko.MissingHostKeyPolicy):
    """Trust on first use: keep the key the host presented (it is checked afterwards)."""

    def __init__(self, host):
        self.host = host

    def missing_host_key(self, client, hostname, key):
        self.host.host_key = f"{key.get_name()} {key.get_base64()}"
        client.get_host_keys().add(hostname, key.get_name(), key)


def env_prefix(env):
    """``export K='v' ...;`` for a remote shell (values quoted; never logged)."""
    if not env:
        return ""
    return "export " + " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items()) + "; "


#: Prefix of a command whose environment arrives on stdin (one line, ``env_prefix``): the
#: remote shell reads and evaluates that line, then points its stdin at /dev/null, so
#: neither the values (not on any command line: ``ps`` on the host shows only this
#: prefix) nor the SSH channel's stdin reach the command or what it detaches.
ENV_FROM_STDIN = ('IFS= read -r __dd_env || exit 97; eval "$__dd_env"; unset __dd_env; '
                  "exec </dev/null; ")


class _WholeRead(io.StringIO):
    """A stdin for invoke that gives everything at the first read.

    invoke reads a stream that is not a terminal one character per loop turn, with a
    10 ms sleep between turns: a 300-character environment line would cost every
    command 3 s (enough for a short idle watchdog to find the cluster idle while a job
    was being started)."""

    def read(self, size=-1):
        return super().read()


def env_stdin(env):
    """``(command prefix, stdin text)`` to pass ``env`` to a remote command."""
    if not env:
        return "", None
    line = env_prefix(env)
    if "\n" in line or "\r" in line:  # shlex.quote keeps newlines inside quotes
        raise InvalidArgument("environment values for the hosts must be single-line")
    return ENV_FROM_STDIN, line + "\n"


class HostSet:
    """Parallel SSH to a cluster's hosts with one key, host keys pinned after first use."""

    def __init__(self, hosts, *, user, port=22, key_file=None, connect_timeout=10.0,
                 loopback_only=False):
        self.hosts = list(hosts)
        self.user, self.port, self.key_file = user, port, key_file
        self.connect_timeout = connect_timeout
        self.loopback_only = loopback_only
        self._conns = {}
        self._lock = threading.Lock()

    def _check_address(self, host):
        if self.loopback_only:
            import ipaddress

            if not ipaddress.ip_address(host.address).is_loopback:
                raise Ec2SettingError(
                    f"refusing to SSH to {host.address}: the AWS endpoint is local, so every "
                    "host must be on loopback (Ec2Config(use_private_ips=True)?)",
                    setting="use_private_ips")

    def connection(self, host):
        """A (cached) Fabric connection to ``host``; its host key checked if recorded."""
        with self._lock:
            conn = self._conns.get(host.instance_id)
            if conn is not None and conn.is_connected:
                return conn
        self._check_address(host)
        connect_kwargs = {"allow_agent": False, "look_for_keys": False,
                          "banner_timeout": self.connect_timeout,
                          "auth_timeout": self.connect_timeout}
        if self.key_file:
            connect_kwargs["key_filename"] = self.key_file
        config = fabric.Config(overrides={"run": {"in_stream": False, "hide": True, "warn": True},
                                          "sudo": {"in_stream": False}, "load_ssh_configs": False})
        conn = fabric.Connection(host.address, user=self.user, port=self.port,
                                 connect_timeout=self.connect_timeout, config=config,
                                 connect_kwargs=connect_kwargs)
        if host.host_key:
            kind, b64 = host.host_key.split()[:2]
            name = host.address if self.port == 22 else f"[{host.address}]:{self.port}"
            conn.client.get_host_keys().add(name, kind, paramiko.PKey.from_type_string(
                kind, __import__("base64").b64decode(b64)))
            conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            conn.client.set_missing_host_key_policy(_RecordHostKey(host))
        with self._lock:
            self._conns[host.instance_id] = conn
        return conn

    def drop(self, host):
        with self._lock:
            conn = self._conns.pop(host.instance_id, None)
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass

    def run(self, host, command, *, env=None, timeout=None, _retry=True):
        """Run ``command`` on ``host``; a :class:`Result`, never an SSH exception.

        A cached connection that turns out dead (the host's sshd restarted) is replaced
        once, transparently.
        """
        prefix, stdin = env_stdin(env)
        full = prefix + command
        with self._lock:
            reused = host.instance_id in self._conns
        try:
            # The environment (credentials, the job's key) travels on the channel's stdin,
            # never on the host's command lines; without one, stdin is not used at all.
            in_stream = _WholeRead(stdin) if stdin is not None else False
            r = self.connection(host).run(full, timeout=timeout, in_stream=in_stream,
                                          hide=True, warn=True)
            return Result(host, stdout=r.stdout, stderr=r.stderr, exited=r.exited)
        except invoke.exceptions.CommandTimedOut as e:
            self.drop(host)
            return Result(host, stdout=e.result.stdout, stderr=e.result.stderr,
                          error=f"timed out after {timeout} s")
        except paramiko.BadHostKeyException as e:
            self.drop(host)
            return Result(host, error=f"host key mismatch ({e}); the host was replaced or "
                                      "this is not the cluster's host")
        except (paramiko.SSHException, socket.error, EOFError, ValueError,
                invoke.exceptions.UnexpectedExit, invoke.exceptions.ThreadException) as e:
            self.drop(host)
            if reused and _retry:
                return self.run(host, command, env=env, timeout=timeout, _retry=False)
            return Result(host, error=f"{type(e).__name__}: {e}")

    def put(self, host, data, remote_path):
        """Copy ``data`` (bytes) to ``remote_path`` on ``host`` over SFTP."""
        try:
            self.connection(host).put(io.BytesIO(data), remote_path)
            return Result(host, exited=0)
        except (paramiko.SSHException, socket.error, EOFError, OSError, ValueError) as e:
            self.drop(host)
            return Result(host, error=f"copying to {remote_path}: {type(e).__name__}: {e}")

    def run_all(self, command, *, hosts=None, env=None, timeout=None, step="command",
                check=True):
        """Run on every host in parallel; ``command`` may be a function of the host.

        Returns ``{host: Result}``; with ``check``, raises :class:`HostsFailed` (carrying
        every host's result) when any host failed.
        """
        hosts = self.hosts if hosts is None else list(hosts)
        if not hosts:
            return {}

        def one(h):
            cmd = command(h) if callable(command) else command
            e = env(h) if callable(env) else env
            return self.run(h, cmd, env=e, timeout=timeout)

        with ThreadPoolExecutor(max_workers=min(32, len(hosts))) as pool:
            results = dict(zip(hosts, pool.map(one, hosts)))
        if check and not all(r.ok for r in results.values()):
            raise HostsFailed(step=step, results=results)
        return results

    def put_each(self, what, *, hosts=None, step="copy"):
        """Copy to every host in parallel; ``what(host)`` gives ``(bytes, remote_path)``."""
        hosts = self.hosts if hosts is None else list(hosts)
        with ThreadPoolExecutor(max_workers=min(32, len(hosts) or 1)) as pool:
            results = dict(zip(hosts, pool.map(lambda h: self.put(h, *what(h)), hosts)))
        if not all(r.ok for r in results.values()):
            raise HostsFailed(step=step, results=results)
        return results

    def wait_ready(self, deadline, *, command="echo ready; nproc"):
        """Wait until every host answers over SSH (recording its host key at first
        contact); returns ``{host: Result}``. Raises :class:`HostsFailed` at the deadline."""
        end = time.monotonic() + deadline

        def one(h):
            last = None
            delay = 0.2
            cmd = command(h) if callable(command) else command
            while True:
                r = self.run(h, cmd, timeout=max(1.0, min(30.0, end - time.monotonic())))
                if r.ok:
                    return r
                last = r
                if time.monotonic() + delay > end:
                    last.error = f"not reachable over SSH within {deadline:.0f} s: {last.error}"
                    return last
                time.sleep(delay)
                delay = min(delay * 1.5, 5.0)

        with ThreadPoolExecutor(max_workers=min(32, len(self.hosts) or 1)) as pool:
            results = dict(zip(self.hosts, pool.map(one, self.hosts)))
        if not all(r.ok for r in results.values()):
            raise HostsFailed(step="ssh", results=results)
        return results

    def close(self):
        for h in list(self.hosts):
            self.drop(h)
