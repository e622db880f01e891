"""The one exception hierarchy of dato-dist.

Every error the library raises on purpose is a :class:`DatoDistError`. Where a builtin
exception fits, the class derives from it too, so GraphLab-era code that catches
``RuntimeError``, ``ValueError``, ``TypeError`` or ``KeyError`` keeps working.
Messages say what happened and what to do next.
"""


class DatoDistError(Exception):
    """Base class of every error raised by dato-dist on purpose."""

    #: The CLI's exit code for this kind of error (see :mod:`dato_dist.cli`).
    exit_code = 1


class ConfigError(DatoDistError, ValueError):
    """A configuration value (file, environment variable or argument) is invalid."""

    exit_code = 2


class InvalidArgument(DatoDistError, ValueError):
    """An argument to a public call has a bad value."""

    exit_code = 2


class InvalidArgumentType(DatoDistError, TypeError):
    """An argument to a public call has the wrong type or does not fit a signature."""

    exit_code = 2


class SerializationError(DatoDistError, TypeError):
    """A function or an argument could not be serialized for shipping to a runner."""

    exit_code = 2

    def __init__(self, *, what, cause):
        self.what = what
        self.cause = cause
        super().__init__(
            f"Could not serialize {what}: {type(cause).__name__}: {cause}. "
            "Functions and arguments are shipped with cloudpickle; pass plain data, or "
            "create the object inside the function."
        )


class EnvironmentNotFound(DatoDistError, KeyError):
    """No environment of that name is registered on this machine."""

    exit_code = 3

    def __str__(self):
        return self.args[0] if self.args else "environment not found"


class JobNotFound(DatoDistError, KeyError):
    """No job of that name, index or URI is known."""

    exit_code = 3

    def __str__(self):
        return self.args[0] if self.args else "job not found"


class StoreError(DatoDistError, OSError):
    """The job store could not be read or written."""

    exit_code = 4


class StoreUnreachable(StoreError):
    """The job store's filesystem cannot be reached (bad URI, missing bucket, no route)."""

    def __init__(self, *, uri, cause):
        self.uri = uri
        super().__init__(
            f"The job store at '{uri}' cannot be reached: {cause}. Check the URI "
            "(config key store.uri or DATO_DIST_HOME) and that its filesystem is up."
        )


class CorruptStoreFile(StoreError):
    """A file in the job store is truncated, half-written or not ours."""

    def __init__(self, *, path, reason):
        self.path = path
        super().__init__(
            f"The job store file '{path}' is corrupt ({reason}). It was not written "
            "completely; re-run the job, or delete the file if the job is finished."
        )


class StateUnreadable(StoreError):
    """A job's ``state.json`` could not be read for longer than ``store.read_retry_timeout``."""

    def __init__(self, *, path, seconds, cause):
        self.path = path
        self.cause = cause
        super().__init__(
            f"The state of the job, '{path}', could not be read for {seconds:.1f} s "
            f"(config key store.read_retry_timeout): {cause}. The job may still be running: "
            "check that the store is reachable, then wait again or cancel the job."
        )


class ResultsMissing(StoreError):
    """A results file the job recorded as written is missing from the store, or a job that
    Completed has no record of some task."""

    def __init__(self, *, path, detail=""):
        self.path = path
        super().__init__(
            f"Results of the job are missing: '{path}'{detail}. Those tasks' results are "
            "lost (not None): re-run the job, and check what deletes files in the store."
        )


class UntrustedStoreFile(StoreError):
    """A job store file does not carry its job's signature: not written by this job's owner
    (or its job key), or altered since. Nothing of it was loaded."""

    def __init__(self, *, path, reason):
        self.path = path
        super().__init__(
            f"The job store file '{path}' cannot be trusted ({reason}): it was not written "
            "with this job's key, so it was not loaded. Someone else may have written it, or "
            "the job comes from another machine: copy your key file (~/.dato_dist/key, or "
            "DATO_DIST_KEY) from the machine that created the job."
        )


class StoreNotOwned(StoreError):
    """A local store folder belongs to another user: it is not used."""

    def __init__(self, *, path, owner):
        self.path = path
        super().__init__(
            f"The job store folder '{path}' belongs to {owner}, not to you, so it is not "
            "used: whoever owns it can read and replace your jobs. Use a store of your own "
            "(config key store.uri or DATO_DIST_HOME).")


class KeyFileError(ConfigError):
    """The user's job-signing key cannot be used."""

    def __init__(self, *, where, reason):
        super().__init__(
            f"The dato-dist key in {where} cannot be used: {reason}. Remove it to have a new "
            "one made (jobs signed with the old one will no longer load), or fix it.")


class JobError(DatoDistError, RuntimeError):
    """A job did not produce the result asked for (failed, canceled or with failed tasks)."""

    exit_code = 5


class JobFailed(JobError):
    """The job itself could not run (its driver died, its combiner raised, ...)."""


class JobCanceled(JobError):
    """The job was canceled before it finished."""


class TasksFailed(JobError):
    """Some tasks of a map job raised; partial results are in ``get_map_results()``."""


class RerunRefused(DatoDistError, RuntimeError):
    """A rerun that cannot start: the job still runs, another rerun of it started, or this
    user has not the job's key."""

    exit_code = 5


class Timeout(DatoDistError, TimeoutError):
    """A bounded wait ran out of time."""

    exit_code = 6


class BackendUnavailable(DatoDistError, ImportError):
    """A backend's optional dependencies are not installed."""

    exit_code = 2

    def __init__(self, *, backend, extra, cause):
        super().__init__(
            f"The {backend} backend needs packages that are not installed ({cause}). "
            f"Install them with: pip install 'dato-dist[{extra}]'"
        )


class FunctionNotLoadable(DatoDistError, ImportError):
    """A runner could not load (unpickle) the job's function or combiner: a module it
    needs is missing on that node, or differs from the client's. Failure class
    ``environment``."""

    def __init__(self, *, what, cause):
        self.cause = cause
        super().__init__(
            f"The job's {what} could not be loaded on this runner: {type(cause).__name__}: "
            f"{cause}. Install the modules it needs on the cluster's nodes (for Hadoop: "
            "additional_packages), or define it in a module that is installed there.")


class UnsupportedApi(DatoDistError, NotImplementedError):
    """A GraphLab API that dato-dist deliberately does not support."""

    exit_code = 2


class NothingToDo(DatoDistError, RuntimeError):
    """A job was asked for with no work in it (an empty parameter_set)."""

    exit_code = 2


class PackagingError(DatoDistError, RuntimeError):
    """The running dato-dist could not be packed into a wheel for a cluster."""


# -- the backends' errors ---------------------------------------------------------------


class BackendError(DatoDistError, RuntimeError):
    """A cluster backend (YARN, EC2) did not do what was asked; the message says where to
    look (``yarn logs -applicationId ...``, the host's output). Exit code 7."""

    exit_code = 7


class YarnError(BackendError):
    """YARN or Skein failed: the client could not start, an application could not be
    submitted, started or reached. Raised at one choke point, ``yarn_app.cluster._yarn``."""

    def __init__(self, message, *, app_id=None):
        self.app_id = app_id
        if app_id and "yarn logs -applicationId" not in message:
            message = f"{message.rstrip()} Logs: yarn logs -applicationId {app_id}"
        super().__init__(message)


# -- the EC2 backend's errors (raised by ec2/; botocore, paramiko and invoke errors become
# these at one choke point each: ec2.provision._aws and ec2.hosts._ssh_errors) -------------


class Ec2Error(BackendError):
    """Something on EC2 or on the hosts did not work."""


class Ec2SettingError(ConfigError):
    """AWS refused a request because of a setting the user can fix; names the setting."""

    def __init__(self, message, *, setting=None, code=None):
        self.setting = setting
        self.code = code
        super().__init__(message)


class AwsCredentialsError(Ec2SettingError):
    """No AWS credentials, or AWS refused them. ``source`` says where the credentials
    came from (an ``Ec2Config`` argument, ``gl.aws``, environment variables, a profile of
    boto3's chain); the message never holds the secret."""

    def __init__(self, message, *, setting="aws_access_key_id", code=None, source=None):
        self.source = source
        super().__init__(message, setting=setting, code=code)


#: The name issue 9 uses; the same class.
Ec2CredentialsError = AwsCredentialsError


class CapacityError(Ec2Error):
    """EC2 has no capacity for, or a quota forbids, the requested instances."""


class HostsFailed(Ec2Error):
    """A command failed on some hosts; ``results`` maps every host to its outcome.

    Like ``fabric.exceptions.GroupException``: one exception carrying each host's result.
    """

    def __init__(self, *, step, results):
        self.step = step
        self.results = results
        failed = {h: r for h, r in results.items() if not r.ok}
        parts = []
        for host, r in failed.items():
            tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
            parts.append(f"- host {host}: {r.error or f'exit status {r.exited}'}\n{tail}")
        super().__init__(f"Step '{step}' failed on {len(failed)} of {len(results)} host(s):\n"
                         + "\n".join(parts))


class LaunchFailed(Ec2Error):
    """A cluster launch failed; everything it created was terminated."""


class ClusterNotFound(DatoDistError, KeyError):
    """No cluster state at that S3 path."""

    exit_code = 3

    def __str__(self):
        return self.args[0] if self.args else "cluster not found"


class ClusterNotRunning(Ec2Error):
    """A job was submitted to a cluster whose hosts are not running."""


# -- failure classes: why a task or a job failed (on records, in metrics and state.json) ------

#: The task or the combiner raised.
USER = "user"
#: The runner, its container or its host went away while running the task.
LOST = "lost"
#: The task was killed for exceeding its memory (on YARN: the NodeManager's memory check).
MEMORY = "memory"
#: YARN preempted the task's container (ContainerExitStatus.PREEMPTED).
PREEMPTED = "preempted"
#: The node could not import or install what the task needs (a module missing where the
#: function is unpickled, a worker's pip install of additional packages failed).
ENVIRONMENT = "environment"
#: The platform failed: the store is unreachable, no capacity or allocation for runners.
INFRASTRUCTURE = "infrastructure"
#: Every failure class, in the order of the list above.
FAILURE_CLASSES = (USER, LOST, MEMORY, PREEMPTED, ENVIRONMENT, INFRASTRUCTURE)


def failure_class_of(exc):
    """The failure class of an exception raised by a task: ``environment`` for an import
    failure (the node lacks a module the task needs), ``infrastructure`` for our store
    errors, else ``user``."""
    if isinstance(exc, ImportError) and not isinstance(exc, BackendUnavailable):
        return ENVIRONMENT
    if isinstance(exc, StoreError):
        return INFRASTRUCTURE
    return USER


def with_failure_class(message, failure_class):
    """``message`` led by its failure class, as ``get_error()`` shows it:
    ``[memory] The job's task failed ...``."""
    if not message or not failure_class or message.startswith(f"[{failure_class}] "):
        return message
    return f"[{failure_class}] {message}"


# Skein's container report keeps only the "Current usage" part of the NodeManager's text:
# "271.4 MB of 256 MB physical memory used".
_MEMORY_WORDS = ("beyond physical memory", "beyond the 'physical' memory", "exceeded_pmem",
                 "physical memory used", "exit code is -104", "exit status: -104")
_PREEMPTED_WORDS = ("preempted", "exit code is -102", "exit status: -102")


def failure_class_of_diagnostics(text, default=LOST):
    """The failure class YARN's diagnostics of an ended container or application say:
    ``memory`` (the NodeManager killed it for exceeding its physical memory, exit status
    -104), ``preempted`` (exit status -102), else ``default``."""
    low = (text or "").lower()
    if any(w in low for w in _MEMORY_WORDS):
        return MEMORY
    if any(w in low for w in _PREEMPTED_WORDS):
        return PREEMPTED
    return default
