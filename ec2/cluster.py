"""``Ec2Cluster`` and ``gl.deploy.ec2_cluster``: clusters of EC2 hosts that run jobs.

``create`` launches tagged instances (:mod:`ec2.provision`), waits for SSH, bootstraps
the hosts with host modules (:mod:`ec2.bootstrap` over :mod:`ec2.hosts`), starts the
idle-shutdown watchdog on the head host and writes the cluster's state (no secrets) to
``<s3_path>/cluster.json``; any failure or Ctrl-C terminates what the launch created.
``load(s3_path)`` rebuilds the cluster anywhere from that state.

A job on the cluster lives in the job store ``<s3_path>/jobs``: its driver runs on the
head host, its runners on every host (``python -m dato_dist.ec2.agent``), its logs are copied to
``<s3_path>/jobs/<job>/logs`` while it runs.
"""

import json
import logging
import os
import secrets
import shlex
import time
import urllib.parse

from dato_dist.environments.base import Environment, record_start_failure
from dato_dist.errors import (
    AwsCredentialsError,
    ClusterNotFound,
    ClusterNotRunning,
    DatoDistError,
    HostsFailed,
    InvalidArgument,
    InvalidArgumentType,
    LaunchFailed,
)
from dato_dist.keys import JOB_KEY_ENV
from dato_dist.protocol import AUTHKEY_ENV
from dato_dist.session import check_name, environments
from dato_dist.store import Store

from . import bootstrap, provision
from .config import Ec2Config
from .hosts import Host, HostSet

log = logging.getLogger(__name__)

STATE_FILE = "cluster.json"


def _check_s3_path(s3_path):
    if not isinstance(s3_path, str):
        raise InvalidArgumentType(f"s3_path must be a str like 's3://bucket/folder', got "
                                  f"{s3_path!r}.")
    parts = urllib.parse.urlsplit(s3_path)
    if parts.scheme != "s3" or not parts.netloc:
        raise InvalidArgument(f"s3_path must look like 's3://bucket/folder', got {s3_path!r}.")
    return s3_path.rstrip("/")


def _packages(value):
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(p, str) for p in value):
        return list(value)
    raise InvalidArgumentType(f"additional_packages must be a str or a list of str, got "
                              f"{value!r}.")


def _read_state(s3_path):
    try:
        return Store(s3_path).read_json(STATE_FILE, default=None)
    except FileNotFoundError:
        return None
    except OSError:
        # S3 answers refused credentials with a bare 403 here (pyarrow, boto3's chain):
        # ask STS, so that the error says the credentials are wrong and where they came from.
        try:
            provision.check_credentials(None, f"Reading {s3_path}/{STATE_FILE}")
        except AwsCredentialsError:
            raise
        except DatoDistError as e:  # the check could not run: the store's error says more
            log.debug("credentials check: %s", e)
        raise


class Ec2Cluster(Environment):
    """A cluster of EC2 hosts that runs jobs; its state lives under ``s3_path``.

    Made by :func:`create` (which launches it) or :func:`load`. Pass it as
    ``environment=`` to ``gl.deploy.job.create`` / ``map_job.create``.

    Examples
    --------
    >>> c = gl.deploy.ec2_cluster.create('dato-kaggle', 's3://gl-dato-kaggle',
    ...                                  gl.deploy.Ec2Config(), num_hosts=4)  # doctest: +SKIP
    >>> print(c)                                                               # doctest: +SKIP
    S3 State Path: s3://gl-dato-kaggle
    EC2 Config   : [instance_type: m3.xlarge, region: us-west-2, aws_access_key: ABCD...]
    Num Hosts    : 4
    Status       : Running
    """

    type_name = "Ec2Cluster"
    remote = True

    def __init__(self, name, s3_path, ec2_config, num_hosts=1, additional_packages=(),
                 idle_shutdown_timeout=1800):
        super().__init__(check_name(name, "cluster name"))
        self.s3_path = _check_s3_path(s3_path)
        if not isinstance(ec2_config, Ec2Config):
            raise InvalidArgumentType(f"ec2_config must be a gl.deploy.Ec2Config, got "
                                      f"{type(ec2_config).__name__}.")
        if not isinstance(num_hosts, int) or isinstance(num_hosts, bool) or num_hosts < 1:
            raise InvalidArgument(f"num_hosts must be a positive int, got {num_hosts!r}.")
        if not isinstance(idle_shutdown_timeout, (int, float)) or isinstance(
                idle_shutdown_timeout, bool):
            raise InvalidArgumentType("idle_shutdown_timeout must be a number of seconds "
                                      "(negative: never).")
        self.ec2_config = ec2_config
        self.num_hosts = num_hosts
        self.additional_packages = additional_packages
        self.idle_shutdown_timeout = idle_shutdown_timeout
        self._state = None
        self._hostset = None

    # -- GraphLab attributes ----------------------------------------------------------------
    @property
    def s3_state_path(self):
        return self.s3_path

    @property
    def additional_packages(self):
        return self._additional_packages

    @additional_packages.setter
    def additional_packages(self, value):
        self._additional_packages = _packages(value)

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self):
        return {"type": self.type_name, "name": self.name, "s3_path": self.s3_path,
                "ec2_config": self.ec2_config.to_dict(), "num_hosts": self.num_hosts,
                "additional_packages": self.additional_packages,
                "idle_shutdown_timeout": self.idle_shutdown_timeout}

    @classmethod
    def from_dict(cls, data):
        return cls(data["name"], data["s3_path"], Ec2Config.from_dict(data["ec2_config"]),
                   data.get("num_hosts", 1), data.get("additional_packages") or [],
                   data.get("idle_shutdown_timeout", 1800))

    def __hash__(self):
        return hash((self.type_name, self.name, self.s3_path))

    def _state_store(self):
        return Store(self.s3_path)

    def _load_state(self, refresh=False):
        if self._state is None or refresh:
            self._state = _read_state(self.s3_path)
        return self._state

    def _save_state(self, state):
        state = dict(state, updated=time.time())
        self._state_store().write_json(STATE_FILE, state)
        self._state = state

    @property
    def hosts(self):
        """The hosts (head first) as last recorded, or [] when the cluster never ran."""
        state = self._load_state() or {}
        return [Host.from_dict(h) for h in state.get("hosts", [])]

    def _hosts(self):
        if self._hostset is None:
            state = self._load_state() or {}
            key_file = (state.get("resources") or {}).get("key_file") or self.ec2_config.key_file
            self._hostset = HostSet(self.hosts, user=self.ec2_config.ssh_user,
                                    port=self.ec2_config.ssh_port, key_file=key_file,
                                    loopback_only=provision.endpoint_is_local(self.ec2_config))
        return self._hostset

    def close(self):
        if self._hostset is not None:
            self._hostset.close()
            self._hostset = None

    # -- GraphLab members -------------------------------------------------------------------
    def is_running(self):
        """True when the recorded hosts all run (asks EC2: idle shutdown ends them)."""
        state = self._load_state(refresh=True)
        if not state or state.get("status") != "Running" or not state.get("hosts"):
            return False
        ids = [h["instance_id"] for h in state["hosts"]]
        return all(d["state"] == "running" for d in provision.describe(self.ec2_config, ids))

    def _status(self):
        try:
            return "Running" if self.is_running() else "Stopped"
        except (DatoDistError, OSError) as e:
            log.warning("Cannot tell whether cluster '%s' runs: %s", self.name, e)
            return "Unknown"

    def __str__(self):
        return (f"S3 State Path: {self.s3_path}\n"
                f"EC2 Config   : {self.ec2_config}\n"
                f"Num Hosts    : {self.num_hosts}\n"
                f"Status       : {self._status()}")

    def __repr__(self):
        return f"Ec2Cluster<name={self.name}, s3_path={self.s3_path}>"

    def get_num_workers(self):
        """Task runners the cluster's jobs get (one per CPU per host by default)."""
        per = self.ec2_config.runners_per_host
        hosts = self.hosts
        if not hosts:
            return self.num_hosts * (per or 1)
        return sum(per or h.cpus or 1 for h in hosts)

    def get_credentials(self):
        return self.ec2_config.get_credentials()

    def packages(self):
        """The Python packages on the head host (``pip freeze``), or the requested ones
        when the cluster is not running."""
        if not self.is_running():
            return list(self.additional_packages)
        head = self._hosts().hosts[0]
        r = self._hosts().run(head, f"{shlex.quote(bootstrap.host_python(self.ec2_config, head))}"
                                    " -m pip freeze", timeout=120)
        if not r.ok:
            raise HostsFailed(step="pip freeze", results={head: r})
        return [line for line in r.stdout.splitlines() if line and not line.startswith("#")]

    def start(self):
        """Start the cluster (GraphLab: ``start()``; a warning when it runs already). The
        instances of an earlier launch that are left (some stopped, some gone) are
        terminated first, then new ones are launched and bootstrapped."""
        if self.is_running():
            log.warning("Cluster '%s' is already running.", self.name)
            return
        state = self._load_state() or {}
        if state.get("status") == "Running" and state.get("hosts"):
            # Some of its instances ended or were stopped (idle shutdown, an EC2 stop): end
            # the rest, and what their launch created, before launching new ones, so that
            # nothing of the old cluster is left behind (stopped instances keep their disks).
            log.info("Cluster '%s' is not running whole: ending its old instances first.",
                     self.name)
            self.stop()
        self._launch()
        environments.register(self)

    def stop(self):
        """Terminate the cluster's hosts (GraphLab: ``stop()``)."""
        state = self._load_state(refresh=True)
        if not state or not state.get("hosts"):
            log.warning("Cluster '%s' has no hosts to stop.", self.name)
            return
        ids = [h["instance_id"] for h in state["hosts"]]
        running = {d["id"] for d in provision.describe(self.ec2_config, ids)
                   if d["state"] in ("pending", "running")}
        hs = self._hosts()
        # Stop the jobs and the watchdog first (their logs get copied; on EC2 the
        # instances' end would kill them anyway, but not on every provider).
        hs.run_all(lambda h: self._agent_cmd(h, "stop-all", "--grace", "3"), check=False,
                   hosts=[h for h in hs.hosts if h.instance_id in running], timeout=30,
                   step="stop processes")
        self.close()
        log.info("Terminating %s", ", ".join(ids))
        provision.terminate(self.ec2_config, ids, wait=True)
        provision.delete_resources(self.ec2_config, state.get("resources") or {})
        self._save_state(dict(state, status="Stopped"))

    # -- launch -----------------------------------------------------------------------------
    def _base_expr(self, instance_id):
        base = self.ec2_config.remote_dir.rstrip("/")
        if base.startswith("~"):
            base = "$HOME" + base[1:]
        return f"{base}/{instance_id}"

    def _aws_env(self, *, with_credentials=True):
        """What the hosts' processes need to reach S3/EC2: passed in the SSH command's
        environment, held only in memory there."""
        c = self.ec2_config
        env = {"AWS_DEFAULT_REGION": c.region, "AWS_REGION": c.region}
        endpoint = c.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            env["AWS_ENDPOINT_URL"] = endpoint
        if os.environ.get("AWS_EC2_METADATA_DISABLED"):
            env["AWS_EC2_METADATA_DISABLED"] = os.environ["AWS_EC2_METADATA_DISABLED"]
        if with_credentials and not c.iam_instance_profile:
            creds = c.get_credentials()
            for key, var in (("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
                             ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
                             ("aws_session_token", "AWS_SESSION_TOKEN")):
                if creds.get(key):
                    env[var] = creds[key]
        return env

    def _agent_cmd(self, host, action, *args):
        py = bootstrap.host_python(self.ec2_config, host)
        return (f"cd {shlex.quote(host.base)} && {shlex.quote(py)} -m dato_dist.ec2.agent {action} "
                f"--base {shlex.quote(host.base)} " + " ".join(shlex.quote(str(a)) for a in args))

    def _launch(self):
        c = self.ec2_config
        t0 = time.monotonic()
        bootstrap.module_dirs(c.modules, c.extra_modules)  # before anything is launched
        provision.ensure_bucket(c, self.s3_path)
        found, created = provision.launch(c, cluster_name=self.name, num_hosts=self.num_hosts,
                                          state_path=self.s3_path)
        ids = [h["id"] for h in found]
        hs = None
        try:
            hosts = []
            for i, h in enumerate(found):
                address = h["private_ip"] if c.use_private_ips else h["public_ip"]
                if not address:
                    raise LaunchFailed(f"Instance {h['id']} has no "
                                       f"{'private' if c.use_private_ips else 'public'} IP "
                                       "address: set Ec2Config(use_private_ips=...) to match "
                                       "how this machine reaches the subnet.")
                hosts.append(Host(instance_id=h["id"], address=address,
                                  private_ip=h["private_ip"], role=h["role"] or
                                  ("head" if i == 0 else "worker"), index=i))
            self._state = {"resources": created}
            self._hostset = hs = HostSet(hosts, user=c.ssh_user, port=c.ssh_port,
                                         key_file=created.get("key_file"),
                                         loopback_only=provision.endpoint_is_local(c))
            log.info("Waiting for SSH on %s", ", ".join(map(str, hosts)))
            ready = hs.wait_ready(c.ssh_timeout, command=lambda h: (
                f'echo ready; nproc; mkdir -p "{self._base_expr(h.instance_id)}" && '
                f'cd "{self._base_expr(h.instance_id)}" && pwd'))
            for h, r in ready.items():
                lines = r.stdout.split()
                h.cpus, h.base = int(lines[1]), lines[2]
            t_ssh = time.monotonic() - t0
            bootstrap.run(c, hs, cluster_name=self.name,
                          additional_packages=self.additional_packages)
            self._start_watchdog(hs, ids)
            self._save_state({
                "name": self.name, "s3_path": self.s3_path, "ec2_config": c.to_dict(),
                "num_hosts": self.num_hosts, "additional_packages": self.additional_packages,
                "idle_shutdown_timeout": self.idle_shutdown_timeout, "status": "Running",
                "hosts": [h.to_dict() for h in hosts], "resources": created,
                "created": time.time(), "launch_seconds": {
                    "ssh": round(t_ssh, 2), "total": round(time.monotonic() - t0, 2)}})
            log.info("Cluster '%s' running on %d host(s) after %.1f s", self.name,
                     len(hosts), time.monotonic() - t0)
        except BaseException as e:
            if hs is not None:
                hs.run_all(lambda h: self._agent_cmd(h, "stop-all", "--grace", "1")
                           if h.base else "true", check=False, timeout=20)
                hs.close()
            self._hostset = None
            self._state = None
            provision.rollback(c, ids, created)
            if isinstance(e, HostsFailed):
                raise LaunchFailed(f"Launching cluster '{self.name}' failed at step '{e.step}'; "
                                   f"its instances were terminated.\n{e}") from None
            raise

    def _start_watchdog(self, hs, ids):
        timeout = self.idle_shutdown_timeout
        if timeout is None or timeout < 0:
            return
        c = self.ec2_config
        poll = min(10.0, max(0.5, timeout / 10))
        targets = hs.hosts[:1] if c.idle_action == "terminate" else hs.hosts
        env = self._aws_env(with_credentials=c.idle_action == "terminate")

        def cmd(h):
            py = bootstrap.host_python(c, h)
            args = ["--detach", "--base", h.base, "--timeout", str(timeout), "--poll", str(poll),
                    "--action", c.idle_action, "--region", c.region, "--instances", ",".join(ids)]
            if env.get("AWS_ENDPOINT_URL"):
                args += ["--endpoint-url", env["AWS_ENDPOINT_URL"]]
            return f"cd {shlex.quote(h.base)} && {shlex.quote(py)} -m dato_dist.ec2.idle " + " ".join(
                shlex.quote(a) for a in args)

        hs.run_all(cmd, hosts=targets, env=env, timeout=60, step="start idle watchdog")

    # -- jobs (the Environment contract) ----------------------------------------------------
    def check(self):
        if not self.is_running():
            raise ClusterNotRunning(
                f"EC2 cluster '{self.name}' is not running (stopped, or shut down after "
                f"{self.idle_shutdown_timeout} s idle). Start it again: "
                f"gl.deploy.ec2_cluster.load('{self.s3_path}').start().")

    def store_uri(self, config):
        return f"{self.s3_path}/jobs"

    def start_job(self, files, spec, config, prepared=None):
        try:
            self._start_job(files, spec)
        except KeyboardInterrupt:
            record_start_failure(files, "The client was interrupted while it started the "
                                         "job on the cluster.")
            raise
        except Exception as e:
            record_start_failure(files, f"The job could not be started on EC2 cluster "
                                         f"'{self.name}': {e}")
            raise

    def _start_job(self, files, spec):
        c = self.ec2_config
        hs = self._hosts()
        hosts = hs.hosts
        env = self._aws_env()
        env[AUTHKEY_ENV] = secrets.token_bytes(32).hex()  # never written anywhere
        # The job's store key, on the same channel: the agents read the signed spec with it
        # and hand it to the head's driver; runners never get it.
        env[JOB_KEY_ENV] = files.key.hex()
        # Runner settings are not passed: the driver sends them from the spec in SETUP.
        common = ["--job", files.job_id, "--store", files.store.uri,
                  "--runners", c.runners_per_host or 0, "--log-interval", c.log_sync_interval]
        self._install_required(hs, spec.get("required_packages") or [])
        head = hosts[0]
        r = hs.run(head, self._agent_cmd(head, "launch", *common, "--host-name",
                                         head.instance_id, "--head", "--bind", head.private_ip,
                                         "--ports", "%d-%d" % c.port_range), env=env, timeout=60)
        info = _agent_answer(r) if r.ok else None
        if info is None:
            if r.ok:  # the agent may run, but did not say where its driver is
                self.stop_job(files, {"agents": {head.instance_id: {}}})
            raise HostsFailed(step="start the job's driver", results={head: r})
        agents = {head.instance_id: dict(info, address=head.address)}
        driver = agents[head.instance_id]["driver"]
        try:
            results = hs.run_all(
                lambda h: self._agent_cmd(h, "launch", *common, "--host-name", h.instance_id,
                                          "--driver", driver),
                hosts=hosts[1:], env=env,
                timeout=60, check=False)
            for h, res in results.items():
                info = _agent_answer(res) if res.ok else None
                if info is not None:
                    agents[h.instance_id] = dict(info, address=h.address)
                else:
                    log.warning("Could not start runners on %s (%s); the job runs on the "
                                "other hosts.", h, res.error or res.stderr.strip()[-200:])
            files.write_launch({"cluster": self.name, "s3_path": self.s3_path,
                                "driver": driver, "agents": agents,
                                "log_dir": self.log_location(files)})
        except BaseException:
            self.stop_job(files, {"agents": agents})
            raise
        return None

    def _install_required(self, hs, packages):
        """``@required_packages`` of the job's function, pip-installed on every host."""
        packages = [p for p in packages if p not in self.additional_packages]
        if not packages:
            return
        log.info("Installing %s on %d host(s)", ", ".join(packages), len(hs.hosts))
        hs.run_all(lambda h: f"{shlex.quote(bootstrap.host_python(self.ec2_config, h))} -m pip "
                             "install -q " + " ".join(shlex.quote(p) for p in packages),
                   timeout=900, step="install required packages")

    #: Seconds an answer of :meth:`is_alive` is reused (it costs an EC2 call).
    ALIVE_CHECK_INTERVAL = 10.0

    def is_alive(self, files, launch, state):
        """False once the head host is no longer running (terminated, idle-shut-down,
        lost); otherwise None: the store's state is trusted. (A driver that dies on a
        running head is recorded as Failed by its host agent.) Asked at most every
        ALIVE_CHECK_INTERVAL seconds."""
        agents = (launch or {}).get("agents") or {}
        head = next(iter(agents), None)
        if head is None:
            return None
        cached = getattr(self, "_alive_cache", None)
        now = time.monotonic()
        if cached and cached[0] == head and now - cached[1] < self.ALIVE_CHECK_INTERVAL:
            return cached[2]
        try:
            found = provision.describe(self.ec2_config, [head])[0]["state"]
        except (DatoDistError, OSError):
            answer = None
        else:
            answer = False if found not in ("pending", "running") else None
            self._head_state = found
        self._alive_cache = (head, now, answer)
        return answer

    def lost_job_status(self, files, launch):
        head = next(iter((launch or {}).get("agents") or {}), "?")
        return "Failed", (f"The cluster's head host {head}, which ran the job's driver, is "
                          f"{getattr(self, '_head_state', 'gone')}: the job cannot finish. "
                          f"Logs copied so far: {self.log_location(files)}")

    def stop_job(self, files, launch):
        agents = (launch or {}).get("agents") or {}
        hs = self._hosts()
        targets = [h for h in hs.hosts if h.instance_id in agents] or hs.hosts
        results = hs.run_all(lambda h: self._agent_cmd(h, "stop", "--job", files.job_id),
                             hosts=targets, check=False, timeout=30)
        for h, r in results.items():
            if not r.ok:
                log.warning("Could not stop job %s on %s: %s", files.job_id, h,
                            r.error or r.stderr.strip()[-200:])

    def log_location(self, files):
        return files.store.display_path(files.log_rel())

    def describe(self, files, launch):
        return [("EC2 Cluster", self.name), ("S3 State Path", self.s3_path),
                ("Driver", (launch or {}).get("driver")),
                ("Log path", self.log_location(files))]


def _agent_answer(result):
    """The JSON line an agent's ``launch`` ends its output with, or None."""
    lines = result.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return answer if isinstance(answer, dict) and answer.get("driver") else None


# -- gl.deploy.ec2_cluster --------------------------------------------------------------------

def create(name, s3_path, ec2_config, num_hosts=1, additional_packages=[],  # noqa: B006 - GraphLab's signature
           idle_shutdown_timeout=1800):
    """Launch an EC2 cluster and return it, running.

    Parameters
    ----------
    name : str
        The cluster's name (``Name`` tag of its instances; ``gl.deploy.environments[name]``).
    s3_path : str
        ``s3://bucket/folder`` for the cluster's state, its jobs and their logs.
    ec2_config : Ec2Config
    num_hosts : int
    additional_packages : str or list of str
        pip requirements installed on every host.
    idle_shutdown_timeout : int
        Seconds without a job before the hosts end themselves; negative: never.

    Examples
    --------
    >>> ec2 = gl.deploy.ec2_cluster.create('dato-kaggle', 's3://gl-dato-kaggle',
    ...                                    gl.deploy.Ec2Config(), 4)   # doctest: +SKIP
    """
    cluster = Ec2Cluster(name, s3_path, ec2_config, num_hosts, additional_packages,
                         idle_shutdown_timeout)
    existing = _read_state(cluster.s3_path)
    if existing and existing.get("status") == "Running":
        other = Ec2Cluster._from_state(existing)
        if other.is_running():
            raise InvalidArgument(
                f"EC2 cluster '{other.name}' already runs with its state at {cluster.s3_path}: "
                f"use gl.deploy.ec2_cluster.load('{cluster.s3_path}'), or stop it first.")
    cluster._launch()
    environments.register(cluster)
    return cluster


def _from_state(state):
    cluster = Ec2Cluster(state["name"], state["s3_path"],
                         Ec2Config.from_dict(state["ec2_config"]), state["num_hosts"],
                         state.get("additional_packages") or [],
                         state.get("idle_shutdown_timeout", 1800))
    cluster._state = state
    return cluster


Ec2Cluster._from_state = staticmethod(_from_state)


def load(s3_path):
    """The cluster whose state is under ``s3_path`` (registered by name on this machine).

    Examples
    --------
    >>> c = gl.deploy.ec2_cluster.load('s3://gl-dato-kaggle')   # doctest: +SKIP
    """
    s3_path = _check_s3_path(s3_path)
    state = _read_state(s3_path)
    if not state:
        raise ClusterNotFound(f"No EC2 cluster state at {s3_path}/{STATE_FILE}. Check the "
                              "path (and AWS_ENDPOINT_URL / credentials for S3).")
    cluster = _from_state(state)
    environments.register(cluster)
    return cluster


def from_legacy(name, s3_folder_path, region=None, instance_type=None,
                aws_access_key=None, aws_secret_key=None, num_hosts=1, security_group=None,
                tags=None, cidr_ip=None, subnet_id=None, security_group_id=None,
                additional_packages=(), idle_shutdown_timeout=1800, **ec2_config_kwargs):
    """GraphLab's ``environment.EC2(name, s3_folder_path, ...)``: an ``Ec2Config`` and a
    cluster created (launched) from it."""
    config = Ec2Config(region, instance_type, aws_access_key, aws_secret_key, security_group,
                       tags, cidr_ip, subnet_id, security_group_id, **ec2_config_kwargs)
    return create(name, s3_folder_path, config, num_hosts, list(additional_packages),
                  idle_shutdown_timeout)
