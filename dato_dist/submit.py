"""Validate, serialize, store and start a job: the common path of ``job.create`` and
``map_job.create``. Every mistake is an error here, before anything runs."""

import contextlib
import functools
import inspect
import itertools
import os
import re
import secrets
import socket
import sys
import threading
import time

import cloudpickle

from . import _version, jobfiles, keys, largeargs, procs, serialize
from .config import Config
from .environments import Environment
from .errors import (
    EnvironmentNotFound,
    InvalidArgument,
    InvalidArgumentType,
    NothingToDo,
    SerializationError,
    UnsupportedApi,
)
from .jobfiles import JobFiles
from .session import check_name, environments, jobs
from .store import Store
from .tasklist import TaskColumns

DEFAULT_ENVIRONMENT = "async"
#: Longest function name kept in job and task names (a job name is a store folder's name).
MAX_FUNCTION_NAME = 64
#: The keyword arguments of ``job.create`` itself: a function parameter of one of these
#: names cannot be passed through ``job.create(f, **kwargs)``.
CREATE_KEYWORDS = ("name", "environment", "max_retries")


def function_name(function):
    """A name for ``function`` usable in job and task names: only letters, digits, '-' and
    '_' (a ``__name__`` such as ``'../x'`` cannot leave the store root), at most
    :data:`MAX_FUNCTION_NAME` characters."""
    while isinstance(function, functools.partial):
        function = function.func
    name = getattr(function, "__name__", None)
    if not isinstance(name, str) or not name:
        name = type(function).__name__
    if name == "<lambda>":
        return "lambda"
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", name.replace("<", "").replace(">", ""))
    return name[:MAX_FUNCTION_NAME] or "function"


def _unwrapped(function):
    while isinstance(function, functools.partial):
        function = function.func
    return inspect.unwrap(function) if callable(function) else function


def check_function(function, what="function"):
    if isinstance(function, type) and function.__name__ == "Task":
        raise UnsupportedApi("The GraphLab 1.0-1.2 Task API is not supported: pass a plain "
                             "function to gl.deploy.job.create or map_job.create.")
    if getattr(type(function), "__module__", "").endswith("graphlab.deploy._task") or \
            type(function).__name__ == "Task":
        raise UnsupportedApi("The GraphLab 1.0-1.2 Task API is not supported: pass a plain "
                             "function to gl.deploy.job.create or map_job.create.")
    if not callable(function):
        raise InvalidArgumentType(f"The {what} must be callable, got {type(function).__name__}.")
    if inspect.ismethod(function) and not inspect.isclass(function.__self__):
        raise InvalidArgumentType(
            f"The {what} {function.__qualname__} is an instance method; pass a plain "
            "function, a lambda or a functools.partial.")
    inner = _unwrapped(function)
    call = getattr(type(inner), "__call__", None) if not inspect.isroutine(inner) else None  # noqa: B004 - the class's __call__ itself
    for target in (inner, call):
        if target is None:
            continue
        if inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target):
            raise InvalidArgumentType(
                f"The {what} {function_name(function)} is an async function: a task runs a "
                "plain function and keeps what it returns. Wrap it: def run(**kw): return "
                "asyncio.run(f(**kw)).")
        if inspect.isgeneratorfunction(target):
            raise InvalidArgumentType(
                f"The {what} {function_name(function)} is a generator function: its result "
                "would be a generator, which cannot travel back. Return a list instead "
                "(def run(**kw): return list(f(**kw))).")


def signature_of(function):
    """``function``'s signature, or None for builtins without one (checked when they run)."""
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):
        return None


def bind_kwargs(function, signature, kwargs, task_label, *, reserved=()):
    """Check ``kwargs`` against ``signature``; name the argument at fault. ``reserved``:
    the caller's own keywords, which cannot reach the function (said so when missing)."""
    if signature is None:
        return
    try:
        signature.bind(**kwargs)
    except TypeError as e:
        fname = function_name(function)
        taken = [p for p in reserved if p in signature.parameters and p not in kwargs]
        hint = ""
        if taken:
            first = taken[0]
            hint = (f" The function has a parameter named '{first}', which "
                    f"gl.deploy.job.create takes for itself (the job's {first}), so it "
                    "cannot be passed as a keyword there. Pass it with "
                    f"gl.deploy.map_job.create({fname}, [{{'{first}': ...}}]), or bind it: "
                    f"gl.deploy.job.create(functools.partial({fname}, {first}=...), ...).")
        raise InvalidArgumentType(
            f"{task_label} does not match {fname}{signature}: {e}. The "
            f"keyword arguments must be the function's parameter names.{hint}") from None


def _dumps(obj, what):
    try:
        return cloudpickle.dumps(obj)
    except Exception as e:
        raise SerializationError(what=what, cause=e) from None


def _dumps_kwargs(kwargs, task_label):
    try:
        return serialize.dumps(kwargs)
    except Exception:
        for key, value in kwargs.items():
            _dumps(value, f"argument '{key}' of {task_label}")
        raise


#: A ``bytes`` argument of this many bytes or more goes to a chunk file of the job and is
#: read by the runner itself (see :mod:`dato_dist.largeargs`).
LARGE_ARGUMENT = largeargs.LARGE_ARGUMENT
#: Tasks looked at for large arguments (spread over the parameter set).
_LARGE_SAMPLE = 16


def _has_large_arguments(task_kwargs):
    """True if a sample of the tasks has a ``bytes``/``str``-like argument of at least
    LARGE_ARGUMENT: cheap at a million tasks, and right for parameter sets of one shape.
    Such tasks are pickled one by one (the driver sends them in small batches), and their
    ``bytes`` values go to chunk files."""
    step = max(1, len(task_kwargs) // _LARGE_SAMPLE)
    for kwargs in task_kwargs[::step][:_LARGE_SAMPLE]:
        for value in kwargs.values():
            if isinstance(value, (bytes, bytearray, str, memoryview)) and \
                    len(value) >= LARGE_ARGUMENT:
                return True
    return False


def resolve_environment(environment, logger):
    """The environment object for ``None``, a name, or an environment."""
    from .environments.local import LocalAsync

    if environment is None:
        if DEFAULT_ENVIRONMENT in environments:
            return environments[DEFAULT_ENVIRONMENT]
        logger.info("Creating a LocalAsync environment called '%s'.", DEFAULT_ENVIRONMENT)
        env = LocalAsync(DEFAULT_ENVIRONMENT)
        environments.register(env)
        return env
    if isinstance(environment, str):
        try:
            return environments[environment]
        except KeyError:
            raise EnvironmentNotFound(
                f"No environment named '{environment}'. Known: "
                f"{', '.join(environments.names()) or 'none'}. Create one with "
                "gl.deploy.environment.LocalAsync(name), ec2_cluster.create(...) or "
                "hadoop_cluster.create(...).") from None
    if not isinstance(environment, Environment):
        raise InvalidArgumentType(
            f"environment must be None, a name or an environment object, got "
            f"{type(environment).__name__}.")
    return environment


def unique_name(name, store, environment_name, nonce):
    """``name``, or ``name-<5 hex>`` when a job of that name exists here or anything is at
    that name in the store; the name returned is reserved in this machine's session (see
    ``Jobs.reserve``) and its store folder was created by this call (never adopted: a
    folder someone else made, even without a spec, is another name's)."""
    candidate = name
    while True:
        if jobs.reserve(candidate, store.display_path(candidate), environment_name,
                        time.time()):
            if store.create_job_dir(candidate, nonce):
                return candidate
            jobs.release(candidate)
        candidate = f"{name}-{secrets.token_hex(3)[:5]}"


def _user_modules(*functions):
    """Modules of ``functions`` that are the user's own files, not installed packages."""
    import site
    import sysconfig

    installed = [p for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
                             sysconfig.get_paths()["platlib"], *site.getsitepackages()} if p]
    modules = []
    for fn in functions:
        while isinstance(fn, functools.partial):
            fn = fn.func
        module = sys.modules.get(getattr(fn, "__module__", None) or "")
        path = getattr(module, "__file__", None)
        if module is None or module.__name__ == "__main__" or not path:
            continue
        path = os.path.abspath(path)
        if not any(path.startswith(os.path.abspath(p) + os.sep) for p in installed):
            if module not in modules:
                modules.append(module)
    return modules


#: cloudpickle's by-value registry is one set for the process: two creates on threads
#: would unregister each other's modules (then pickle by reference, or raise ValueError).
_BY_VALUE_LOCK = threading.Lock()


@contextlib.contextmanager
def _by_value(env, *functions):
    """On remote environments, ship the user's own modules with the function (by value):
    the hosts have the installed packages, not the files next to the user's script."""
    modules = _user_modules(*functions) if env.remote else []
    if not modules:
        yield
        return
    with _BY_VALUE_LOCK:
        for module in modules:
            cloudpickle.register_pickle_by_value(module)
        try:
            yield
        finally:
            for module in modules:
                cloudpickle.unregister_pickle_by_value(module)


def _source(function):
    while isinstance(function, functools.partial):
        function = function.func
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return None


def create(function, *, kind, task_kwargs, name, environment, combiner_function=None,
           max_retries=None, logger, columns=None):
    """Validate and start a job; return its :class:`~dato_dist.job.Job`. ``columns``:
    ``TaskColumns.of(task_kwargs)`` when the caller has it already."""
    from .job import Job

    logger.info("Validating job.")
    check_function(function)
    if combiner_function is not None:
        check_function(combiner_function, "combiner_function")
    fname = function_name(function)
    prefix = f"{fname}-0-"  # task i is named <prefix><i>
    signature = signature_of(function)
    # Binding depends on the argument names only: bind each distinct set of names once.
    if columns is None:  # every task has the same names: one check
        columns = TaskColumns.of(task_kwargs)
    key_sets = ({frozenset(columns.names)} if columns is not None
                else set(map(frozenset, task_kwargs)))
    firsts = [0] if len(key_sets) == 1 else {
        keys: i for i, keys in reversed(list(enumerate(map(frozenset, task_kwargs))))}.values()
    for i in sorted(firsts):
        bind_kwargs(function, signature, task_kwargs[i], "The keyword arguments"
                    if kind == "job" else f"parameter_set[{i}] ({prefix}{i})",
                    reserved=CREATE_KEYWORDS if kind == "job" else ())
    if name is not None:
        check_name(name, "job name")
    if max_retries is not None and (not isinstance(max_retries, int) or max_retries < 0):
        raise InvalidArgument(f"max_retries must be an int >= 0, got {max_retries!r}.")

    env = resolve_environment(environment, logger)
    env.check()
    config = Config.load(overrides={"job.max_retries": max_retries})
    store = Store(env.store_uri(config), write_retries=config["store.write_retries"])
    store.check()
    name = name or f"{fname}-{time.strftime('%b-%d-%Y-%H-%M-%S')}"
    nonce = keys.new_nonce()
    final_name = unique_name(name, store, env.name, nonce)
    if final_name != name:
        logger.info("A job with name '%s' already exists. Renaming the job to '%s'.",
                    name, final_name)
    name = final_name
    # Every signed file of the job uses this key; drivers get it, never the user's key.
    files = JobFiles(store, name, key=keys.job_key(keys.user_key(config.home), name, nonce))
    settings = job_settings(config)
    try:
        # The driver starts up while the job is serialized and written.
        prepared = env.prepare(files, settings, config)
    except BaseException:
        _remove_failed(files)
        jobs.release(name)
        raise
    try:
        with _by_value(env, function, combiner_function):
            function_bytes = _dumps(function, f"the function '{fname}'")
            combiner_bytes = (_dumps(combiner_function, "the combiner_function")
                              if combiner_function is not None else None)
            large = tasks_blob = None
            if _has_large_arguments(task_kwargs):
                large = largeargs.split(task_kwargs, lambda kw, i: _dumps_kwargs(
                    kw, f"task {prefix}{i}"))
                tasks_blob = large.tasks_content()
            else:
                tasks_blob = jobfiles.plain_tasks(task_kwargs, columns=columns)
            if tasks_blob is None:
                tasks_blob = jobfiles.pickled_tasks([
                    _dumps_kwargs(kw, f"task {prefix}{i}")
                    for i, kw in enumerate(task_kwargs)])
        spec = {
            "id": name, "name": name, "kind": kind, "function_name": fname,
            "combiner_name": function_name(combiner_function) if combiner_function else None,
            "num_tasks": len(task_kwargs), "task_name_prefix": prefix,
            "has_combiner": combiner_function is not None,
            "created": time.time(), "environment": env.to_dict(),
            "code": _source(function), "dato_dist_version": _version.__version__,
            "required_packages": sorted(set(getattr(function, "required_packages", [])
                                            or [])),
            "client": {"host": socket.gethostname(), "pid": os.getpid(), "cwd": procs.current_dir(),
                       "python": sys.version.split()[0]},
            "settings": settings, "nonce": nonce,
        }
        files.write_payload(function_bytes=function_bytes, combiner_bytes=combiner_bytes,
                            tasks_blob=tasks_blob)
        # A local job's large arguments are written while its driver starts on them (see
        # dato_dist.largeargs); elsewhere before the job starts.
        stream = large is not None and not env.remote
        if large is not None and not stream:
            files.write_args(large)
        files.write_spec(spec)
    except BaseException:
        env.abandon(prepared)
        _remove_failed(files)
        jobs.release(name)
        raise
    jobs.register(name, files.uri, env.name, spec["created"])
    logger.info("Validation complete. Job: '%s' ready for execution.", name)
    try:
        proc = env.start_job(files, spec, config, prepared)
    except BaseException:
        # start_job stopped what it started. An environment that recorded why the start
        # failed (record_start_failure: a YARN application refused, an EC2 driver with no
        # port) keeps the job, Failed with that reason, for get_error() and the cluster's
        # logs; any other job that never ran would read Pending forever, so it goes.
        if _recorded_state(files) is None:
            _remove_failed(files)
            jobs.release(name)
        raise
    if stream:
        try:
            files.write_args(large)
        except BaseException:  # the job never was: its driver and its folder go
            env.abandon(prepared)
            _remove_failed(files)
            jobs.release(name)
            raise
    job = Job(files, spec)
    if env.synchronous:
        try:
            proc.wait()
        except KeyboardInterrupt:
            job.cancel()
            raise
        job.wait()
        logger.info("Job: '%s' finished.", name)
    else:
        logger.info("Job: '%s' scheduled.", name)
    return job


def _recorded_state(files):
    try:
        return files.read_state()
    except Exception:  # noqa: BLE001 - unreadable: as good as none
        return None


def _remove_failed(files):
    """A create that failed leaves nothing in the store (logs of a driver that started
    included); a failure to clean up is logged, the create's own error is what is raised."""
    try:
        files.store.delete(files.job_id)
    except OSError as e:
        import logging

        logging.getLogger(__name__).warning("Could not remove %s after a failed create: %s",
                                            files.uri, e)


def job_settings(config):
    """The settings a job's driver and runners use, resolved once at create."""
    return {
        "max_retries": config["job.max_retries"],
        "heartbeat_interval": config["runner.heartbeat_interval"],
        "heartbeat_timeout": config["runner.heartbeat_timeout"],
        "max_batch_size": config["runner.max_batch_size"],
        "max_task_output": config["runner.max_task_output"],
        "result_flush_interval": config["runner.result_flush_interval"],
        "flush_interval": config["driver.flush_interval"],
        "max_runner_restarts": config["driver.max_runner_restarts"],
        "max_task_preemptions": config["driver.max_task_preemptions"],
        "runner_wait_timeout": config["driver.runner_wait_timeout"],
        "driver_heartbeat_interval": config["driver.heartbeat_interval"],
        "driver_heartbeat_timeout": config["driver.heartbeat_timeout"],
    }


def expand_parameter_set(parameter_set):
    """The parameter set as a list of dicts; clear errors for anything else."""
    return parameter_columns(parameter_set)[0]


def parameter_columns(parameter_set):
    """:func:`expand_parameter_set`, and its :class:`TaskColumns` when every dict has the
    same argument names (else None): the columns prove every key is one of the names."""
    if isinstance(parameter_set, (dict, str, bytes)) or not hasattr(parameter_set, "__iter__"):
        raise InvalidArgumentType(
            f"parameter_set must be a list (or iterable) of dicts, got "
            f"{type(parameter_set).__name__}.")
    items = list(parameter_set)
    if not items:
        raise NothingToDo("An empty parameter_set was given. Nothing to do.")
    if set(map(type, items)) == {dict}:  # the common case, checked at C speed
        columns = TaskColumns.of(items)
        if columns is not None and set(map(type, columns.names)) <= {str}:
            return items, columns
        if set(map(type, itertools.chain.from_iterable(items))) <= {str}:
            return items, None
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidArgumentType(
                f"parameter_set[{i}] must be a dict of keyword arguments, got "
                f"{type(item).__name__}: {item!r:.60}")
        for key in item:
            if not isinstance(key, str):
                raise InvalidArgumentType(
                    f"parameter_set[{i}] has a non-string key {key!r}; keys are the "
                    "function's parameter names.")
    return items, None
