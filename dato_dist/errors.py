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


class JobError(DatoDistError, RuntimeError):
    """A job did not produce the result asked for (failed, canceled or with failed tasks)."""

    exit_code = 5


class JobFailed(JobError):
    """The job itself could not run (its driver died, its combiner raised, ...)."""


class JobCanceled(JobError):
    """The job was canceled before it finished."""


class TasksFailed(JobError):
    """Some tasks of a map job raised; partial results are in ``get_map_results()``."""


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


class UnsupportedApi(DatoDistError, NotImplementedError):
    """A GraphLab API that dato-dist deliberately does not support."""

    exit_code = 2


class NothingToDo(DatoDistError, RuntimeError):
    """A job was asked for with no work in it (an empty parameter_set)."""

    exit_code = 2
