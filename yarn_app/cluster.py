"""``HadoopCluster``: jobs as Skein YARN applications, state on HDFS.

``gl.deploy.hadoop_cluster.create(name, dato_dist_path, ...)`` checks everything it can
before a job runs (the conf dir, the dist folder and its version, the cluster's maximum
allocation, the port range) and registers the cluster by name on this machine. Each job is
one YARN application (see :mod:`yarn_app.spec`); its store is ``<dist folder>/jobs``.
"""

import contextlib
import logging
import os
import re
import secrets
import socket
import threading
import time
import xml.etree.ElementTree as ET

from dato_dist.config import load as load_config
from dato_dist.environments.base import Environment, record_start_failure
from dato_dist.errors import DatoDistError, InvalidArgument, InvalidArgumentType, YarnError
from dato_dist.session import check_name, environments

from . import dist as distmod

log = logging.getLogger(__name__)

ALIVE_STATES = {"NEW", "NEW_SAVING", "SUBMITTED", "ACCEPTED", "RUNNING"}
#: YARN final states -> our statuses (GRAPHLAB_API.md).
FINAL_STATUS = {"SUCCEEDED": "Completed", "FAILED": "Failed", "KILLED": "Canceled",
                "UNDEFINED": "Pending", "UNKNOWN": "Unknown"}

_APP_ID = re.compile(r"application_\d+_\d+")
_clients = {}
_clients_lock = threading.Lock()


@contextlib.contextmanager
def _yarn(what, app_id=None, hint=""):
    """The one choke point for YARN and Skein errors: anything raised inside the block
    (Skein's errors, its wrapped KeyError/ValueError, gRPC, a Java driver that cannot start)
    becomes a :class:`YarnError` saying what was being done, ending with the
    ``yarn logs -applicationId`` command when the application is known."""
    try:
        yield
    except DatoDistError:
        raise
    except Exception as e:  # noqa: BLE001 - skein raises builtins and its own types alike
        detail = str(e).strip().rstrip(".") or type(e).__name__
        if app_id is None:  # YARN may name the application it refused (a failed submit)
            named = _APP_ID.search(detail)
            app_id = named.group(0) if named else None
        raise YarnError(f"{what}: {detail}." + (f" {hint}" if hint else ""),
                        app_id=app_id) from e


def _diagnostics(report):
    return (report.diagnostics or "").strip().rstrip(".") or "no diagnostics"


def _yarn_setting(conf_dir, key, default):
    """A value from ``yarn-site.xml`` in ``conf_dir`` (``default`` when absent)."""
    path = os.path.join(conf_dir, "yarn-site.xml")
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return default
    for prop in root.iter("property"):
        if prop.findtext("name") == key:
            return prop.findtext("value")
    return default


def skein_client(conf_dir):
    """One Skein client (and its Java driver) per Hadoop conf dir, for this process."""
    import skein

    with _clients_lock:
        client = _clients.get(conf_dir)
        if client is None:
            os.environ["HADOOP_CONF_DIR"] = conf_dir  # the Skein driver reads it
            with _yarn(f"Cannot start a YARN client for the Hadoop conf dir {conf_dir}",
                       hint="Is `yarn classpath --glob` on PATH and the ResourceManager up?"):
                client = skein.Client(log_level="WARN")
            _clients[conf_dir] = client
        return client


def _packages_list(value, label="additional_packages"):
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple, set)) and all(isinstance(p, str) for p in value):
        return list(value)
    raise InvalidArgumentType(f"{label} must be a str or a list of str, got {value!r}.")


class HadoopCluster(Environment):
    """A Hadoop YARN cluster with a deployed dato-dist folder; jobs run as YARN applications.

    Create it with :func:`create`; find it again with ``gl.deploy.environments['name']``.
    Attributes are settable (``hd.num_containers = 5``); call :meth:`save` to keep them.
    """

    type_name = "HadoopCluster"
    remote = True
    _FIELDS = ("dato_dist_path", "hadoop_conf_dir", "num_containers", "container_size",
               "num_vcores", "start_port", "end_port", "additional_packages")

    def __init__(self, name, dato_dist_path, hadoop_conf_dir, num_containers, container_size,
                 num_vcores, start_port, end_port, additional_packages=None):
        super().__init__(name)
        self.dato_dist_path = dato_dist_path
        self.hadoop_conf_dir = hadoop_conf_dir
        self.num_containers = num_containers
        self.container_size = container_size
        self.num_vcores = num_vcores
        self.start_port = start_port
        self.end_port = end_port
        self.additional_packages = _packages_list(additional_packages)

    # GraphLab 2.x called it turi_dist_path
    turi_dist_path = property(lambda self: self.dato_dist_path,
                              lambda self, v: setattr(self, "dato_dist_path", v))

    def to_dict(self):
        d = super().to_dict()
        d.update({f: getattr(self, f) for f in self._FIELDS})
        return d

    @classmethod
    def from_dict(cls, data):
        return cls(data["name"], **{f: data[f] for f in cls._FIELDS})

    def save(self):
        """Register (or update) this cluster under its name on this machine."""
        environments.register(self)

    def __str__(self):
        return "\n".join([
            "Hadoop Cluster:",
            f"\tName:                    : {self.name}",
            f"\tCluster path             : {self.dato_dist_path}",
            f"\tHadoop conf dir          : {self.hadoop_conf_dir}",
            "",
            f"\tNumber of Containers:    : {self.num_containers}",
            f"\tContainer Size (in mb)   : {self.container_size}",
            f"\tContainer num of vcores  : {self.num_vcores}",
            f"\tPort range               : {self.start_port} - {self.end_port}",
            "",
            f"\tAdditional packages      : {self.additional_packages}",
        ])

    __repr__ = __str__

    # -- preflight -----------------------------------------------------------------------
    def check(self):
        """Raise a clear error for anything that would stop a job from running here."""
        if not os.path.isdir(self.hadoop_conf_dir):
            raise InvalidArgument(f"hadoop_conf_dir '{self.hadoop_conf_dir}' is not a folder. "
                                  "Pass the folder holding yarn-site.xml (HADOOP_CONF_DIR).")
        for label in ("num_containers", "container_size", "num_vcores"):
            distmod.check_positive(label, getattr(self, label))
        distmod.check_ports(self.start_port, self.end_port)
        for label, key, default in (
                ("container_size", "yarn.scheduler.maximum-allocation-mb", 8192),
                ("num_vcores", "yarn.scheduler.maximum-allocation-vcores", 4)):
            maximum = int(_yarn_setting(self.hadoop_conf_dir, key, default))
            if getattr(self, label) > maximum:
                raise InvalidArgument(
                    f"{label} {getattr(self, label)} is above the cluster's maximum "
                    f"allocation of {maximum} ({key}).")
        self._dist_config()

    def _dist_config(self):
        config = distmod.read_config(self.dato_dist_path)
        distmod.check_version(self.dato_dist_path, config)
        return config

    # -- jobs ----------------------------------------------------------------------------
    def store_uri(self, config):
        return f"{self.dato_dist_path.rstrip('/')}/{distmod.JOBS_DIR}"

    def _client(self):
        return skein_client(self.hadoop_conf_dir)

    def start_job(self, files, spec, config, prepared=None):
        try:
            return self._start_job(files, spec, config)
        except Exception as e:
            record_start_failure(files, str(e))
            raise
        except BaseException:
            record_start_failure(files, "The client was interrupted while it submitted the job.")
            raise

    def _start_job(self, files, spec, config):
        from .spec import application_spec

        dist_config = self._dist_config()
        packages = sorted(set(self.additional_packages) | set(spec.get("required_packages")
                                                              or []))
        app_spec = application_spec(
            self, store_uri=files.store.uri, job_id=files.job_id, job_name=spec["name"],
            dist_config=dist_config, packages=packages,
            driver_memory=config["hadoop.driver_memory"], queue=config["hadoop.queue"])
        app_id = None
        try:
            client = self._client()
            with _yarn(f"Submitting job '{spec['name']}' to YARN (queue "
                       f"{config['hadoop.queue']})"):
                app_id = client.submit(app_spec)
            files.write_launch({"app_id": app_id, "host": socket.gethostname(),
                                "submitted": time.time()})
            log.info("Job '%s' submitted to YARN as %s.", spec["name"], app_id)
            app = self._connect(client, app_id, config["hadoop.start_timeout"])
            # The key lives only in the application master's memory.
            self._put_key(client, app, secrets.token_bytes(32).hex().encode())
            app.kv["dato-dist.jobkey"] = files.key.hex().encode()  # signs the job's files
        except BaseException:
            if app_id is not None:
                try:
                    client.kill_application(app_id)
                except Exception as e:  # noqa: BLE001 - it may have ended already
                    log.debug("kill_application(%s): %s", app_id, e)
            raise
        return app_id

    @staticmethod
    def _connect(client, app_id, timeout):
        deadline = time.monotonic() + timeout
        while True:
            with _yarn(f"Asking YARN for the state of {app_id}", app_id):
                report = client.application_report(app_id)
            state = str(report.state)
            if state == "RUNNING":
                with _yarn(f"Connecting to the application master of {app_id}", app_id):
                    return client.connect(app_id, wait=False)
            if state not in ALIVE_STATES:
                raise YarnError(f"YARN application {app_id} ended before it ran ({state}): "
                                f"{_diagnostics(report)}.", app_id=app_id)
            if time.monotonic() > deadline:
                raise YarnError(
                    f"YARN application {app_id} did not start within {timeout:.0f} s (state "
                    f"{state}); the cluster may be full. It was killed. Config key: "
                    "hadoop.start_timeout.", app_id=app_id)
            time.sleep(0.2)  # the driver waits for the key: notice RUNNING promptly

    @staticmethod
    def _put_key(client, app, value, timeout=60.0):
        """Put the job key in the AM's key-value store. YARN reports RUNNING once the AM has
        registered, which can be a moment before its server answers: retry, bounded."""
        import skein

        deadline = time.monotonic() + timeout
        while True:
            try:
                app.kv["dato-dist.authkey"] = value
                return
            except (skein.exceptions.ApplicationError, ConnectionError, TimeoutError) as e:
                with _yarn(f"Asking YARN for the state of {app.id}", app.id):
                    report = client.application_report(app.id)
                if str(report.state) not in ALIVE_STATES:
                    raise YarnError(
                        f"YARN application {app.id} ended ({report.state}) before it took the "
                        f"job key: {_diagnostics(report)}.", app_id=app.id) from None
                if time.monotonic() > deadline:
                    raise YarnError(
                        f"The application master of {app.id} did not accept the job key within "
                        f"{timeout:.0f} s ({type(e).__name__}: {e}).", app_id=app.id) from None
                time.sleep(0.2)

    def _report(self, launch):
        if not launch or not launch.get("app_id"):
            return None
        client = self._client()
        with _yarn(f"Asking YARN for the state of {launch['app_id']}", launch["app_id"]):
            return client.application_report(launch["app_id"])

    def is_alive(self, files, launch, state):
        report = self._report(launch)
        if report is None:
            return None
        return str(report.state) in ALIVE_STATES

    def lost_job_status(self, files, launch):
        report = self._report(launch)
        app_id = launch.get("app_id")
        final = str(report.final_status) if report is not None else "UNKNOWN"
        status = FINAL_STATUS.get(final, "Failed")
        if status in ("Completed", "Pending"):
            status = "Failed"  # the application ended but the job never wrote its end
        if status == "Canceled":
            return status, None
        diagnostics = (report.diagnostics or "").strip() if report is not None else ""
        return status, (f"YARN application {app_id} ended {final} before the job finished"
                        + (f": {diagnostics}" if diagnostics else ".")
                        + f" Logs: yarn logs -applicationId {app_id}")

    def stop_job(self, files, launch):
        if launch and launch.get("app_id"):
            try:
                self._client().kill_application(launch["app_id"])
            except Exception as e:  # already finished: nothing to stop
                log.debug("kill_application(%s): %s", launch["app_id"], e)

    def log_location(self, files):
        return files.store.display_path(files.log_rel())

    def read_logs(self, files, launch):
        """YARN's aggregated logs once the application ended (complete even for a killed
        container), else the copies the containers keep on HDFS while they run."""
        import shutil
        import subprocess

        app_id = (launch or {}).get("app_id")
        report = self._report(launch)
        if report is not None and str(report.state) not in ALIVE_STATES and shutil.which("yarn"):
            env = dict(os.environ, HADOOP_CONF_DIR=self.hadoop_conf_dir)
            try:
                out = subprocess.run(["yarn", "logs", "-applicationId", app_id], env=env,
                                     capture_output=True, text=True, timeout=120,
                                     stdin=subprocess.DEVNULL)
                if out.returncode == 0 and "LogType:" in out.stdout:
                    return {f"yarn logs -applicationId {app_id}": out.stdout}
            except (OSError, subprocess.TimeoutExpired) as e:
                log.debug("yarn logs failed (%s); reading the copies on HDFS", e)
        return super().read_logs(files, launch)

    def describe(self, files, launch):
        app_id = (launch or {}).get("app_id")
        return [("Application Id", app_id),
                ("Command to view yarn logs", f"yarn logs -applicationId {app_id}"),
                ("Logs on HDFS", self.log_location(files))]


# -- the module API: gl.deploy.hadoop_cluster ---------------------------------------------
def create(name, dato_dist_path=None, hadoop_conf_dir=None, num_containers=None,
           container_size=None, num_vcores=None, start_port=None, end_port=None,
           additional_packages=None, *, turi_dist_path=None):
    """Create (and register by name) a :class:`HadoopCluster` for a deployed dist folder.

    Values not given come from the dist folder's ``config.json``; ``hadoop_conf_dir``
    defaults to ``$HADOOP_CONF_DIR``. A cluster of the same name is replaced (warning).

    Examples
    --------
    >>> hd = create('hadoop-cluster', 'hdfs://nn:8020/user/me/dato-dist-folder')  # doctest: +SKIP
    >>> print(hd)                                                                 # doctest: +SKIP
    """
    check_name(name, "cluster name")
    if dato_dist_path is None:
        dato_dist_path = turi_dist_path
    if not isinstance(dato_dist_path, str) or not dato_dist_path:
        raise InvalidArgument("dato_dist_path (the deployed dist folder, e.g. "
                              "hdfs://namenode:8020/user/me/dato-dist-folder) is required.")
    if hadoop_conf_dir is None:
        hadoop_conf_dir = os.environ.get("HADOOP_CONF_DIR")
        if not hadoop_conf_dir:
            raise InvalidArgument("hadoop_conf_dir was not given and HADOOP_CONF_DIR is not "
                                  "set: pass the folder holding yarn-site.xml.")
    hadoop_conf_dir = os.path.abspath(os.path.expanduser(hadoop_conf_dir))
    if not os.path.isdir(hadoop_conf_dir):
        raise InvalidArgument(f"hadoop_conf_dir '{hadoop_conf_dir}' does not exist.")
    config = distmod.read_config(dato_dist_path)
    distmod.check_version(dato_dist_path, config)

    def pick(value, key):
        return config[key] if value is None else value

    cluster = HadoopCluster(
        name, dato_dist_path, hadoop_conf_dir,
        num_containers=pick(num_containers, "num_containers"),
        container_size=pick(container_size, "container_size"),
        num_vcores=pick(num_vcores, "num_vcores"),
        start_port=pick(start_port, "start_port"), end_port=pick(end_port, "end_port"),
        additional_packages=additional_packages)
    cluster.check()
    if name in environments:
        log.warning("An environment named '%s' exists already; replacing it.", name)
    environments.register(cluster)
    return cluster


def from_legacy(name, config_dir=None, memory_mb=None, virtual_cores=None, *,
                dato_dist_path=None, num_containers=None, **kwargs):
    """GraphLab's ``environment.Hadoop(name, config_dir, memory_mb, virtual_cores)``."""
    dist_path = dato_dist_path or load_config()["hadoop.dist_path"]
    if not dist_path:
        raise InvalidArgument("environment.Hadoop needs the deployed dist folder: pass "
                              "dato_dist_path=... or set config key hadoop.dist_path.")
    return create(name, dist_path, hadoop_conf_dir=config_dir, container_size=memory_mb,
                  num_vcores=virtual_cores, num_containers=num_containers, **kwargs)


def upload_packages(dato_dist_path, filename_or_dir, hadoop_conf_dir=None, force=False):
    """Add wheels/sdists to the dist folder's user packages (installed on demand)."""
    return distmod.upload_packages(dato_dist_path, filename_or_dir, force=force)


def remove_package(dato_dist_path, filename, hadoop_conf_dir=None):
    """Remove one user package from the dist folder."""
    distmod.remove_package(dato_dist_path, filename)


def show_available_packages(dato_dist_path, hadoop_conf_dir=None):
    """``{'default_packages': [...], 'user_packages': [...]}`` of the dist folder."""
    distmod.read_config(dato_dist_path)
    return {"default_packages": distmod.default_packages(),
            "user_packages": distmod.list_packages(dato_dist_path)}
