"""The small base every environment implements."""

import abc


class Environment(abc.ABC):
    """Where jobs run: something that can start a job's driver and runners, and stop them.

    An implementer provides the abstract methods below. Environments are registered by
    type name in :data:`dato_dist.backends.BACKENDS` and persisted with ``to_dict``.
    """

    #: Registry name of the type (``Local``, ``LocalAsync``, ``HadoopCluster``, ...).
    type_name = None
    #: True when ``job.create`` returns only after the job ended.
    synchronous = False
    #: True when jobs run on other machines: the user's own modules are shipped by value.
    remote = False

    def __init__(self, name):
        self.name = name

    # -- identity and persistence -----------------------------------------------------------
    def to_dict(self):
        """Everything needed to rebuild this environment in another process (no secrets)."""
        return {"type": self.type_name, "name": self.name}

    @classmethod
    def from_dict(cls, data):
        return cls(data["name"])

    def __eq__(self, other):
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __hash__(self):
        return hash((self.type_name, self.name))

    # -- what an implementer provides -------------------------------------------------------
    def check(self):
        """Preflight at ``create``: raise a clear error if jobs cannot run here now."""

    @abc.abstractmethod
    def store_uri(self, config):
        """The job store URI jobs of this environment live in."""

    def prepare(self, files, settings, config):
        """Optionally begin starting the job's driver before the job is written; return a
        handle for :meth:`start_job` (or :meth:`abandon` if the job is not created after all)."""
        return None

    def abandon(self, prepared):
        """Undo :meth:`prepare`: the job will not be created."""

    @abc.abstractmethod
    def start_job(self, files, spec, config, prepared=None):
        """Start the job's driver (and runners) for the job in ``files``; do not wait.

        Must record in the store what :meth:`is_alive` and :meth:`stop_job` need (``launch.json``).
        On failure, stop whatever was started, then raise.
        """

    @abc.abstractmethod
    def is_alive(self, files, launch, state):
        """True/False when the job's driver is known to run or not; None when unknown."""

    @abc.abstractmethod
    def stop_job(self, files, launch):
        """End the job's driver and runners within seconds; leave nothing running."""

    @abc.abstractmethod
    def log_location(self, files):
        """Where the job's logs are, as a user would open them (path or URI)."""

    def lost_job_status(self, files, launch):
        """``(status, error)`` of a job whose driver is gone without writing a final status."""
        pid = (launch or {}).get("pid")
        return "Failed", (f"The job's driver (pid {pid}) exited without finishing the job. "
                          f"Its log: {self.log_location(files)}")

    def wait_for_change(self, files, timeout):
        """Block up to ``timeout`` s, returning early if the job may have changed state."""
        import time

        time.sleep(timeout)

    def read_logs(self, files, launch):
        """``{log name: text}``: the files under :meth:`log_location` if it is a local folder,
        else the job's ``logs/`` in the store."""
        import os

        location = self.log_location(files)
        out = {}
        if os.path.isdir(location):
            for name in sorted(os.listdir(location)):
                with open(os.path.join(location, name), "rb") as f:
                    out[name] = f.read().decode(errors="replace")
            return out
        for name in files.log_names():
            out[name] = files.read_log(name).decode(errors="replace")
        return out

    def describe(self, files, launch):
        """Extra ``(label, value)`` lines for ``print(job)``."""
        return []

    def close(self):
        """Release client-side resources (connections); the environment stays usable."""


def record_start_failure(files, error):
    """Mark a job whose start failed (``start_job`` raised) Failed with ``error``, unless
    it already ended: it is never left Pending forever. Best effort: logs what it cannot do.
    The state is written by :func:`dato_dist.node.record_driver_death`, the one writer of a
    Failed state that no driver wrote."""
    import logging

    from .. import node
    from ..errors import DatoDistError

    try:
        node.record_driver_death(files, error)
    except (DatoDistError, OSError) as e:
        logging.getLogger(__name__).warning(
            "Could not record that job %s failed to start: %s", files.job_id, e)
