"""Real OpenSSH servers playing EC2 hosts: one ``sshd`` per loopback address.

An EC2 instance that moto puts in a ``127.0.0.0/24`` subnet gets a private IP such as
127.0.0.4; :class:`SshHostFactory` starts an ``sshd -D -e`` listening only on that
address, with a private config, its own host key and a shared ``authorized_keys``, so
Fabric reaches it exactly as it reaches an EC2 host by private IP.  Each sshd is a
child process stopped by its own pid, so one host can be taken away while the others
keep answering.

Needs root (sshd's privilege separation and logging in as root) and Debian's
``openssh-server`` (:func:`ensure_openssh_server` installs it when missing).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "ssh-keygen"
#: Set by sshd (``SetEnv``) in every session of a host; used to find the host's processes.
HOST_MARKER_ENV = "DATO_DIST_TEST_HOST"
#: Set by sshd in every session of a host: a directory that is "this host's disk".
HOST_ROOT_ENV = "DATO_DIST_HOST_ROOT"


class SshdUnavailable(RuntimeError):
    """sshd cannot be installed or run here (not root, no apt-get, ...)."""


# -- installation ----------------------------------------------------------------------

def ensure_openssh_server(timeout: float = 600.0) -> str:
    """Return the sshd path, installing Debian's ``openssh-server`` if it is missing.

    Idempotent.  The install is done with a temporary ``policy-rc.d`` that forbids
    starting services, so the package never starts a system sshd on 0.0.0.0:22.
    """
    if os.access(SSHD, os.X_OK):
        return SSHD
    if os.geteuid() != 0:
        raise SshdUnavailable(f"{SSHD} is missing and we are not root to apt-get install it")
    if not shutil.which("apt-get"):
        raise SshdUnavailable(f"{SSHD} is missing and there is no apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        made_policy = True
    end = time.monotonic() + timeout
    try:
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "openssh-server"]
        r = subprocess.run(install, env=env, capture_output=True, text=True,
                           timeout=max(1.0, end - time.monotonic()))
        if r.returncode != 0:  # stale or missing package lists: update once, retry
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True,
                           text=True, timeout=max(1.0, end - time.monotonic()))
            r = subprocess.run(install, env=env, capture_output=True, text=True,
                               timeout=max(1.0, end - time.monotonic()))
        if r.returncode != 0:
            raise SshdUnavailable(f"apt-get install openssh-server failed:\n{r.stdout}\n{r.stderr}")
    finally:
        if made_policy:
            with contextlib.suppress(OSError):
                policy.unlink()
    if not os.access(SSHD, os.X_OK):
        raise SshdUnavailable(f"openssh-server installed but {SSHD} is missing")
    return SSHD


def generate_keypair(path: str | os.PathLike, key_type: str = "ed25519", comment: str = "") -> Path:
    """``ssh-keygen`` a key pair at ``path`` / ``path.pub`` (private key mode 0600)."""
    path = Path(path)
    for p in (path, path.with_name(path.name + ".pub")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    cmd = [SSH_KEYGEN, "-q", "-t", key_type, "-N", "", "-C", comment or path.name, "-f", str(path)]
    if key_type == "rsa":
        cmd[4:4] = ["-b", "2048"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    path.chmod(0o600)
    return path


def public_key_of(private_key_file: str | os.PathLike) -> str:
    """The OpenSSH public key line of a private key file (e.g. one moto created)."""
    r = subprocess.run([SSH_KEYGEN, "-y", "-f", str(private_key_file)], check=True,
                       capture_output=True, text=True, timeout=30)
    return r.stdout.strip()


# -- probes ------------------------------------------------------------------------------

def can_bind(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def tcp_open(ip: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def ssh_login(ip: str, port: int, user: str, key_filename: str, timeout: float = 10.0,
              command: str = "echo ok") -> str:
    """Log in with paramiko and run ``command``; return its stdout (raises on failure)."""
    import paramiko

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(ip, port=port, username=user, key_filename=str(key_filename),
                       timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                       allow_agent=False, look_for_keys=False)
        _, out, err = client.exec_command(command, timeout=timeout)
        text = out.read().decode()
        status = out.channel.recv_exit_status()
        if status != 0:
            raise RuntimeError(f"{command!r} on {ip}:{port} exited {status}: {err.read().decode()}")
        return text
    finally:
        client.close()


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def descendants(pid: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def pids_with_env(name: str, value: str) -> list[int]:
    """Processes whose environment has ``name=value`` (root can read every environ)."""
    needle = f"{name}={value}".encode()
    me = os.getpid()
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(d))
        except OSError:
            continue
    return found


def _kill(pids, sig=signal.SIGKILL) -> None:
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, sig)


# -- hosts -------------------------------------------------------------------------------

SSHD_CONFIG = """\
# private sshd_config written by tests/infra/sshd.py; nothing from /etc/ssh is read
Port {port}
ListenAddress {ip}
AddressFamily inet
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
LoginGraceTime 30
MaxStartups 100:30:200
MaxSessions 100
ClientAliveInterval 15
ClientAliveCountMax 4
Subsystem sftp internal-sftp
SetEnv {marker_env}={marker} {root_env}={host_root}
LogLevel {log_level}
"""


class SshHost:
    """One sshd on ``ip:port``: a stand-in EC2 host reached by its private IP."""

    def __init__(self, factory: "SshHostFactory", ip: str, port: int):
        self.factory = factory
        self.ip = ip
        self.port = port
        self.dir = factory.workdir / "hosts" / ip
        self.root = self.dir / "root"  # "this host's disk": $DATO_DIST_HOST_ROOT in sessions
        self.root.mkdir(parents=True, exist_ok=True)
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.config_path = self.dir / "sshd_config"
        self.pid_file = self.dir / "sshd.pid"
        self.log_path = self.dir / "sshd.log"
        self.marker = f"{ip}:{port}"
        self.proc: subprocess.Popen | None = None
        generate_keypair(self.host_key, "ed25519", comment=f"host-{ip}")
        self.config_path.write_text(SSHD_CONFIG.format(
            port=port, ip=ip, host_key=self.host_key, pid_file=self.pid_file,
            authorized_keys=factory.authorized_keys, marker_env=HOST_MARKER_ENV,
            marker=self.marker, root_env=HOST_ROOT_ENV, host_root=self.root,
            log_level=factory.log_level))

    # -- facts -----------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def host_public_key(self) -> str:
        """``ssh-ed25519 AAAA...`` as a known_hosts entry would hold it."""
        return " ".join(Path(str(self.host_key) + ".pub").read_text().split()[:2])

    @property
    def known_hosts_line(self) -> str:
        name = self.ip if self.port == 22 else f"[{self.ip}]:{self.port}"
        return f"{name} {self.host_public_key}"

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- lifecycle -------------------------------------------------------------------
    def start(self, deadline: float = 30.0) -> "SshHost":
        """Start sshd in the foreground as our child; wait until a real login works."""
        if self.is_running():
            return self
        if not can_bind(self.ip, self.port):
            raise RuntimeError(f"{self.ip}:{self.port} is already in use")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            self.wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, deadline: float = 30.0) -> float:
        """TCP connect, then a real SSH login, within ``deadline`` s; returns seconds."""
        t0 = time.monotonic()
        end = t0 + deadline
        last: Exception | str = "no TCP connection"
        while time.monotonic() < end:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"sshd for {self.ip}:{self.port} exited "
                                   f"({self.proc and self.proc.returncode}):\n{self.log_tail()}")
            if tcp_open(self.ip, self.port, timeout=1.0):
                try:
                    out = self.run("echo ready", timeout=max(1.0, min(10.0, end - time.monotonic())))
                    if out.strip() == "ready":
                        return time.monotonic() - t0
                except Exception as e:  # noqa: BLE001 - retried until the deadline
                    last = e
            time.sleep(0.05)
        raise TimeoutError(f"sshd on {self.ip}:{self.port} not ready after {deadline}s "
                           f"({last}):\n{self.log_tail()}")

    def run(self, command: str, timeout: float = 10.0) -> str:
        """Run ``command`` over a fresh SSH login (paramiko); return stdout."""
        return ssh_login(self.ip, self.port, self.factory.user, self.factory.user_key,
                         timeout=timeout, command=command)

    def session_pids(self) -> list[int]:
        """Every process belonging to this host: sshd's children and anything started
        in its sessions (found by the ``SetEnv`` marker, even once daemonized)."""
        pids = set(descendants(self.proc.pid)) if self.is_running() else set()
        pids |= set(pids_with_env(HOST_MARKER_ENV, self.marker))
        pids.discard(os.getpid())
        return sorted(pids)

    def stop(self, kill_processes: bool = True, timeout: float = 10.0) -> None:
        """Take the host away: stop its sshd (by pid) and, by default, SIGKILL every
        process of its sessions (as if the machine lost power)."""
        doomed = self.session_pids() if kill_processes else []
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        if kill_processes:
            end = time.monotonic() + timeout
            _kill(doomed)
            while time.monotonic() < end:
                left = pids_with_env(HOST_MARKER_ENV, self.marker)
                if not left:
                    break
                _kill(left)
                time.sleep(0.05)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def connection(self, **kwargs):
        """A ``fabric.Connection`` to this host with the test user key."""
        return self.factory.connection(self.ip, **kwargs)

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<SshHost {self.ip}:{self.port} pid={self.pid} {state}>"


class SshHostFactory:
    """Starts and tracks one sshd per loopback IP, all on one port, one user key.

    ``factory(["127.0.0.4", "127.0.0.5"])`` returns running :class:`SshHost` objects;
    calling it again for an IP whose host is running returns that same host, and for
    a stopped one starts it again (same host key, like a rebooted machine).
    """

    def __init__(self, workdir: str | os.PathLike | None = None, port: int | None = None,
                 user: str | None = None, log_level: str = "VERBOSE"):
        if os.geteuid() != 0:
            raise SshdUnavailable("sshd hosts need root (privilege separation, login as root)")
        ensure_openssh_server()
        # sshd refuses to start without its privilege separation directory
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="sshd-hosts-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.user = user or "root"
        self.log_level = log_level
        self.user_key = generate_keypair(self.workdir / "id_ed25519", "ed25519", comment="dato-dist-test")
        self.authorized_keys = self.workdir / "authorized_keys"
        self.authorized_keys.write_text(Path(str(self.user_key) + ".pub").read_text())
        self.authorized_keys.chmod(0o600)
        self.known_hosts = self.workdir / "known_hosts"
        self.known_hosts.touch()
        self._port = port or (int(os.environ["DATO_DIST_TEST_SSH_PORT"])
                              if os.environ.get("DATO_DIST_TEST_SSH_PORT") else None)
        self.hosts: dict[str, SshHost] = {}

    @property
    def port(self) -> int | None:
        """The one SSH port of every host (chosen on first use unless given)."""
        return self._port

    def _choose_port(self, ips) -> int:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if all(can_bind(ip, port) for ip in ips):
                return port
        raise RuntimeError(f"no port free on all of {ips}")

    def authorize_key(self, public_key: str) -> None:
        """Add a public key line to every host's authorized_keys (read at each login)."""
        line = public_key.strip()
        existing = self.authorized_keys.read_text().splitlines()
        if line not in existing:
            with open(self.authorized_keys, "a") as f:
                f.write(line + "\n")

    def authorize_private_key_file(self, path: str | os.PathLike) -> None:
        """Authorize the key pair whose private half is ``path`` (e.g. one moto made)."""
        self.authorize_key(public_key_of(path))

    def __call__(self, ips, deadline: float = 30.0) -> list[SshHost]:
        ips = [str(ip) for ip in ips]
        for ip in ips:
            if not ipaddress.ip_address(ip).is_loopback:
                raise ValueError(f"test hosts must be on loopback, not {ip}")
        if self._port is None:
            self._port = self._choose_port(ips)
        started = []
        try:
            for ip in ips:
                host = self.hosts.get(ip)
                if host is None:
                    host = self.hosts[ip] = SshHost(self, ip, self._port)
                if not host.is_running():
                    host.start(deadline)
                    started.append(host)
        except BaseException:
            for h in started:
                h.stop()
            raise
        self._write_known_hosts()
        return [self.hosts[ip] for ip in ips]

    start = __call__

    def _write_known_hosts(self) -> None:
        self.known_hosts.write_text("".join(h.known_hosts_line + "\n" for h in self.hosts.values()))

    @staticmethod
    def fabric_config():
        """Fabric config for tests: never read our stdin (pytest captures it, CI has none)."""
        import fabric

        return fabric.Config(overrides={"run": {"in_stream": False},
                                        "sudo": {"in_stream": False}})

    def connect_kwargs(self) -> dict:
        return {"key_filename": str(self.user_key), "allow_agent": False, "look_for_keys": False}

    def connection(self, ip: str, **kwargs):
        import fabric

        kwargs.setdefault("user", self.user)
        kwargs.setdefault("port", self._port or 22)
        kwargs.setdefault("connect_timeout", 10)
        kwargs.setdefault("connect_kwargs", self.connect_kwargs())
        kwargs.setdefault("config", self.fabric_config())
        return fabric.Connection(host=ip, **kwargs)

    def group(self, ips, **kwargs):
        """A ``fabric.ThreadingGroup`` fanning out to ``ips``."""
        import fabric

        kwargs.setdefault("user", self.user)
        kwargs.setdefault("port", self._port or 22)
        kwargs.setdefault("connect_timeout", 10)
        kwargs.setdefault("connect_kwargs", self.connect_kwargs())
        kwargs.setdefault("config", self.fabric_config())
        return fabric.ThreadingGroup(*ips, **kwargs)

    def stop_all(self, timeout: float = 10.0) -> None:
        for h in self.hosts.values():
            h.stop(timeout=timeout)

    def logs(self) -> str:
        """Every host's sshd log tail, for printing when a test fails."""
        return "\n".join(f"--- sshd {h.ip}:{h.port} ({'up' if h.is_running() else 'down'}) ---\n"
                         f"{h.log_tail()}" for h in self.hosts.values())
