"""The client's handle on a job: status, results, metrics, logs, cancel.

A :class:`Job` holds no state of its own beyond where the job lives: everything is read
from the job store, so a job loaded in another process (``Job.load``) is the same job.
"""

import datetime
import logging
import time

from . import errors, jobfiles, serialize
from .environments import environment_from_dict
from .errors import (
    CorruptStoreFile,
    InvalidArgument,
    InvalidArgumentType,
    JobCanceled,
    JobFailed,
    JobNotFound,
    ResultsMissing,
    StateUnreadable,
    TasksFailed,
    Timeout,
)
from .jobfiles import COMBINER_INDEX, JobFiles
from .largeargs import LargeArgs
from .metrics import format_time, metrics_table
from .records import Records
from .store import Store
from .tasklist import TaskNames

log = logging.getLogger(__name__)

FINAL = ("Completed", "Failed", "Canceled")
POLL_MIN = 0.002
#: Longest pause between two reads of a job's state: a local file is cheap to read, a
#: remote store (HDFS, S3) is not.
POLL_MAX_LOCAL, POLL_MAX_REMOTE = 0.02, 0.5
#: Pauses before the quick re-reads of a state.json that could not be read (a read that
#: raced the driver's replace); past them, ``wait`` retries until store.read_retry_timeout.
QUICK_REREADS = (0.01, 0.05)


def _split_uri(uri):
    base, _, job_id = uri.rstrip("/").rpartition("/")
    return base or "/", job_id


class Job:
    """A job or map job, wherever it runs.

    Created by ``gl.deploy.job.create`` / ``map_job.create``; re-attached with
    :meth:`load`. ``get_status()`` never waits; ``get_results()`` and
    ``get_map_results()`` wait for the end.
    """

    def __init__(self, files, spec=None):
        self._files = files
        self._spec = spec or files.read_spec()
        self._env = None
        self._records = Records()
        self._records_complete = False
        self._names = None
        self._final_state = None
        self._last_state = None  # the last state read from the store (for results_files)
        self._launch = None
        self._config = None

    # -- loading --------------------------------------------------------------------------
    @classmethod
    def load(cls, id_or_uri):
        """The job at that store URI or path, or named ``id_or_uri`` in the default store.

        ``gl.deploy.job.load`` (``session.jobs.load``) also finds, by name, the jobs this
        machine created in other stores (a cluster's).

        Examples
        --------
        >>> job = Job.load('add-May-07-2015-11-13-06')          # doctest: +SKIP
        >>> job = Job.load('s3://bucket/jobs/add-May-07-2015')   # doctest: +SKIP
        """
        from .config import load as load_config

        if not isinstance(id_or_uri, str) or not id_or_uri:
            raise InvalidArgumentType(f"job.load takes a job id or URI, got {id_or_uri!r}.")
        if "/" in id_or_uri:
            uri = id_or_uri
        else:
            uri = f"{load_config().store_uri.rstrip('/')}/{id_or_uri}"
        base, job_id = _split_uri(uri)
        files = JobFiles(Store(base), job_id)
        files.check_owner()  # a local job folder of another user is never read
        try:
            spec = files.read_spec()  # signed with the job's key, or UntrustedStoreFile
        except FileNotFoundError:
            raise JobNotFound(f"No job '{id_or_uri}': nothing at {files.uri}. See "
                              "gl.deploy.jobs for the jobs of this machine.") from None
        return cls(files, spec)

    # -- identity --------------------------------------------------------------------------
    @property
    def id(self):
        """The job's id (its name, unique in its store)."""
        return self._spec["id"]

    @property
    def name(self):
        return self._spec["name"]

    @property
    def uri(self):
        """Where the job lives in its store (path or URI); ``job.load(uri)`` re-attaches."""
        return self._files.uri

    @property
    def environment(self):
        """The environment object the job runs in."""
        if self._env is None:
            self._env = environment_from_dict(self._spec["environment"])
        return self._env

    def _read_launch(self):
        """``launch.json`` (written once, when the driver starts), read once it exists."""
        if self._launch is None:
            self._launch = self._files.read_launch()
        return self._launch

    @property
    def app_id(self):
        """The YARN application id of a job on Hadoop (None elsewhere)."""
        return (self._read_launch() or {}).get("app_id")

    def flush_logs(self):
        """Where the job's logs are now (runners upload theirs as they run)."""
        return self.get_log_file_path()

    @property
    def _num_tasks(self):
        return jobfiles.num_tasks(self._spec)

    @property
    def _task_names(self):
        if self._names is None:
            self._names = jobfiles.task_names(self._spec)
        return self._names

    @property
    def is_map_job(self):
        return self._spec["kind"] == "map_job"

    def __repr__(self):
        return f"Job<id={self.id}, status={self.get_status(_silent=True)}>"

    # -- state -----------------------------------------------------------------------------
    @property
    def _state_path(self):
        return self._files.store.display_path(f"{self._files.job_id}/{jobfiles.STATE}")

    def _read_state(self):
        """``state.json`` (None before the driver wrote it), re-read at once when a read
        fails; raises the last ``OSError``. A state that was read before and is missing
        now is such a failure, never "not written yet": a status never goes back."""
        for pause in QUICK_REREADS + (None,):
            try:
                state = self._files.read_state()
                if state is None and self._last_state is not None:
                    raise FileNotFoundError(f"{self._state_path} was there and is gone")
                if state is not None and not isinstance(state, dict):
                    raise CorruptStoreFile(path=self._state_path, reason="not a JSON object")
                if state is not None:
                    self._last_state = state
                return state
            except OSError:
                if pause is None:
                    raise
                time.sleep(pause)

    def _state(self):
        """The store's state, corrected when the driver is known to be gone or its
        heartbeat in the store is older than ``driver.heartbeat_timeout``."""
        if self._final_state is not None:
            return self._final_state
        state = self._read_state()
        status = (state or {}).get("status", "Pending")
        if status in FINAL:
            self._final_state = state
            return state
        launch = self._read_launch()
        if launch is None and state is None:
            return {"status": "Pending"}
        alive = self.environment.is_alive(self._files, launch, state)
        if alive is False:
            state = self._read_state()  # it may have finished just now
            if (state or {}).get("status") in FINAL:
                self._final_state = state
                return state
            status, error = self.environment.lost_job_status(self._files, launch)
            if status not in FINAL:  # the driver is gone: the job cannot end by itself
                status = "Failed"
            return dict(state or {}, status=status, error=error, failure_class=(
                errors.failure_class_of_diagnostics(error) if status == "Failed" else None))
        lost = self._heartbeat_lost(state)
        if lost:
            return dict(state, status="Failed", error=lost, failure_class=errors.LOST)
        return state or {"status": "Pending"}

    def _heartbeat_lost(self, state):
        """Why the job's driver is lost when its heartbeat in the store (``updated``, the
        driver host's clock) is too old, else None."""
        updated = (state or {}).get("updated")
        # Drivers of jobs created before the setting existed refresh "updated" only when
        # something changes: a long task would read as a lost driver.
        timeout = (self._spec.get("settings") or {}).get("driver_heartbeat_timeout")
        if not isinstance(updated, (int, float)) or timeout is None:
            return None
        age = time.time() - updated
        if age <= timeout:
            return None
        try:
            logs = f" Its logs: {self.get_log_file_path()}"
        except Exception:  # noqa: BLE001 (the reason matters more than where the logs are)
            logs = ""
        return (f"The job's driver is lost: its heartbeat in the store ('updated' in "
                f"{self._state_path}) is {age:.0f} s old, more than driver.heartbeat_timeout "
                f"({timeout:g} s). Its process or host died, or it cannot write to the "
                f"store.{logs}")

    def get_status(self, _silent=False):
        """``'Pending'``, ``'Running'``, ``'Completed'``, ``'Failed'``, ``'Canceled'`` or
        ``'Unknown'`` (the state could not be read, even after quick re-reads); never waits
        beyond those re-reads."""
        try:
            state = self._state()
        except OSError as e:
            if not _silent:
                log.warning("Cannot read the state of job '%s': %s", self.name, e)
            return "Unknown"
        return state.get("status", "Unknown")

    def get_error(self):
        """The job-level error (driver died, combiner raised, environment failed) or None;
        led by the job's failure class when it has one (``[lost] The job's driver ...``)."""
        state = self._state()
        return errors.with_failure_class(state.get("error"), state.get("failure_class"))

    def get_failure_class(self):
        """Why the job failed, or None if it did not (or failed before it ran, e.g. YARN
        refused it): one of :data:`dato_dist.errors.FAILURE_CLASSES`.

        ``'user'``: its function or combiner raised; ``'lost'``: its driver, a runner, a
        container or a host went away; ``'memory'``: killed for exceeding its memory;
        ``'preempted'``: YARN preempted its container; ``'environment'``: a module or
        package it needs is missing on the node; ``'infrastructure'``: the store was
        unreachable, or no runner could be had. Each failed task has its own in the
        metrics' ``failure_class`` column.

        Examples
        --------
        >>> job = gl.deploy.job.create(lambda: 1 / 0)
        >>> job.wait(), job.get_failure_class()
        ('Failed', 'user')
        """
        state = self._state()
        return state.get("failure_class") if state.get("status") == "Failed" else None

    def get_start_time(self):
        started = self._state().get("started")
        return None if started is None else datetime.datetime.fromtimestamp(started)

    def get_end_time(self):
        ended = self._state().get("ended")
        return None if ended is None else datetime.datetime.fromtimestamp(ended)

    def progress(self):
        """``(done, failed, total)`` task counts so far."""
        state = self._state()
        counts = state.get("counts") or {}
        total = self._num_tasks
        return (counts.get("completed", 0) + counts.get("failed", 0), counts.get("failed", 0),
                total)

    def wait(self, timeout=None, *, on_progress=None):
        """Wait until the job ends; return its status. ``Timeout`` after ``timeout`` s.

        Always ends: a job whose driver is lost reads as Failed (see :meth:`get_status`),
        and a state that stays unreadable for ``store.read_retry_timeout`` seconds raises
        :class:`~dato_dist.errors.StateUnreadable` naming the file.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = POLL_MIN
        poll_max = POLL_MAX_LOCAL if self._files.store.local_path("") else POLL_MAX_REMOTE
        unreadable_since = None
        while True:
            try:
                status = self._state().get("status", "Unknown")
                unreadable_since = None
            except OSError as e:
                now = time.monotonic()
                if unreadable_since is None:
                    unreadable_since = now
                    log.warning("Cannot read the state of job '%s' (retrying for %g s): %s",
                                self.name, self._setting_read_timeout(), e)
                elif now - unreadable_since >= self._setting_read_timeout():
                    raise StateUnreadable(path=self._state_path,
                                          seconds=now - unreadable_since, cause=e) from e
                status = "Unknown"
            if on_progress is not None and status != "Unknown":
                try:
                    on_progress(self)
                except OSError:
                    pass  # a read that failed while drawing: the next poll reads again
            if status in FINAL:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout(f"Job '{self.name}' still {status} after {timeout} s; "
                              "it goes on running (job.cancel() stops it).")
            self.environment.wait_for_change(self._files, delay)
            delay = min(delay * 1.5, poll_max)

    def _setting_read_timeout(self):
        """``store.read_retry_timeout`` of this machine's config (read once per Job)."""
        if self._config is None:
            from .config import load

            self._config = load()
        return self._config["store.read_retry_timeout"]

    # -- results ---------------------------------------------------------------------------
    def _read_records(self):
        if not self._records_complete:
            # The driver writes its last results before the final state: records read
            # after the final state was seen are all there will be.
            complete = self._final_state is not None
            # The state, read before the listing, counts the results files written by then.
            expected = (self._final_state or self._last_state or {}).get("results_files")
            self._records = self._files.read_results(expected_files=expected)
            self._records_complete = complete
        return self._records

    def _check_all_recorded(self, records, missing=None):
        """A Completed job has a record of every task (and of its combiner): one missing is
        a lost results file, never a None result. ``missing``: the tasks without a record,
        when known already (from ``map_values``)."""
        missing = records.missing(self._num_tasks) if missing is None else list(missing)
        if self._spec["has_combiner"] and COMBINER_INDEX not in records:
            missing.append(COMBINER_INDEX)
        if missing:
            names = [("the combiner" if i == COMBINER_INDEX else self._task_names[i])
                     for i in missing[:3]]
            raise ResultsMissing(
                path=self._files.store.display_path(f"{self._files.job_id}/results"),
                detail=f" holds no record of {len(missing)} task(s) ({', '.join(names)}"
                       f"{', ...' if len(missing) > 3 else ''}) although the job Completed")


    def _wait_logged(self):
        if self.get_status(_silent=True) not in FINAL:
            log.info("Waiting for job to finish, this may take quite a while.")
            log.info("You may CTRL-C to stop this command and it will not cancel your job.")
        return self.wait()

    def get_results(self):
        """Wait for the end; the function's result, the combiner's, or the list of map results.

        Raises a ``RuntimeError`` (:class:`JobCanceled`, :class:`JobFailed` or
        :class:`TasksFailed`) when the job was canceled or failed, or when tasks failed.
        """
        status = self._wait_logged()
        if status == "Canceled":
            raise JobCanceled(f"Job '{self.name}' was canceled; it has no results. "
                              "Partial results: job.get_map_results().")
        if status == "Failed":
            raise JobFailed(f"Job '{self.name}' failed: {self.get_error()}")
        records = self._read_records()
        if self._spec["has_combiner"]:
            self._check_all_recorded(records)
            return records.value(COMBINER_INDEX)
        failed = records.not_completed(self._num_tasks)
        if failed:
            self._check_all_recorded(records, [i for i in failed if i not in records])
            first = records.get(failed[0], {})
            raise TasksFailed(
                f"{len(failed)} of {self._num_tasks} task(s) of job '{self.name}' "
                f"failed; the first, {self._task_names[failed[0]]}, raised "
                f"{first.get('exception')}: {first.get('exception_message')}. Call "
                "job.get_map_results() for the partial results and job.get_metrics() for "
                "every error.")
        missing = []
        values = records.map_values(self._num_tasks, missing=missing)
        self._check_all_recorded(records, missing)
        return values if self.is_map_job else values[0]

    def get_map_results(self, wait=True):
        """The map results in task order, ``None`` for a failed task.

        Waits for the job to end by default; ``wait=False`` returns at once: ``None`` while
        pending, a partial list (``None`` for unfinished tasks) while running.
        """
        if not self.is_map_job:
            raise InvalidArgumentType(
                f"Job '{self.name}' is not a map job: use job.get_results().")
        if wait:
            status = self._wait_logged()
        else:
            status = self.get_status(_silent=True)
            if status == "Pending":
                return None
        records = self._read_records()
        missing = []
        values = records.map_values(self._num_tasks, missing=missing)
        if status == "Completed" and self._final_state is not None:
            self._check_all_recorded(records, missing)
        return values

    def get_metrics(self):
        """The per-task metrics table so far (None before any task started); never waits.

        The table is lazy (:class:`~dato_dist.table.LazyTable`): a row is made when asked
        for (``metrics[i]``, iteration, the printed head, a column, ``to_dataframe()``), so
        a million tasks' table costs about what ``get_map_results()`` does.
        """
        state = self._state()
        if self._names is None and "task_names" not in self._spec:
            names = TaskNames(self._spec["task_name_prefix"], self._num_tasks)  # lazy
        else:
            names = self._task_names
        return metrics_table(names, self._read_records(),
                             state.get("running"))

    def get_parameters(self):
        """``{task_name: kwargs}`` of every task."""
        _, _, tasks = self._files.read_payload()
        return {name: kw if isinstance(kw, dict) else kw.load() if isinstance(kw, LargeArgs)
                else serialize.loads(kw) for name, kw in zip(self._task_names, tasks)}

    def get_code(self):
        """The source of the job's function (and combiner), as captured at create."""
        return self._spec.get("code")

    def get_required_packages(self):
        return list(self._spec.get("required_packages") or [])

    def get_log_file_path(self):
        """Where the job's logs are: a local folder, ``hdfs://...`` or ``s3://.../logs``."""
        return self.environment.log_location(self._files)

    def read_logs(self, run=None):
        """``{log name: text}`` of the job's logs that can be read from here: those of its
        latest run, or of run ``run`` (1 is the first; see :meth:`rerun`), or of every run
        with ``run='all'``. A rerun's own log files are named ``run<N>.<name>``."""
        from . import rerun as rerunmod

        state = self._files.read_state() or {}
        latest = rerunmod.run_of_state(state)
        launch = self._read_launch()
        if run == "all":
            logs = {}
            for earlier in range(1, latest):
                logs.update(self.read_logs(earlier))
            logs.update(self.environment.read_logs(self._files, launch))
            return logs
        run = latest if run is None else run
        if not isinstance(run, int) or isinstance(run, bool) or not 1 <= run <= latest:
            raise InvalidArgument(f"run must be 'all' or a run of job '{self.name}' from 1 "
                                  f"to {latest}, got {run!r}.")
        if run != latest:  # an earlier run's YARN application has its own aggregated logs
            earlier = [p for p in state.get("previous_runs") or [] if p.get("run") == run]
            app_id = earlier[0].get("app_id") if earlier else None
            launch = {"app_id": app_id} if app_id else None
        return rerunmod.logs_of_run(self.environment.read_logs(self._files, launch), run)

    # -- control ---------------------------------------------------------------------------
    def cancel(self):
        """Stop the job (status ``Canceled``); a no-op on a job that already ended.

        On a cluster only the job stops: the hosts or the YARN cluster keep running.
        """
        status = self.get_status(_silent=True)
        if status in FINAL:
            if self._final_state is None:
                # Read as ended (its driver is gone or lost), though the store does not say
                # so: stop whatever of it may still run, e.g. a driver that hangs.
                self.environment.stop_job(self._files, self._read_launch())
            log.info("Job '%s' already ended (%s); nothing to cancel.", self.name, status)
            return
        self._files.request_cancel()
        launch = self._read_launch()
        self.environment.stop_job(self._files, launch)
        state = self._files.read_state() or {}
        if state.get("status") not in FINAL:
            state.update(status="Canceled", ended=time.time(), error=None)
            self._files.write_state(state)
        log.info("Job '%s' canceled.", self.name)

    def rerun(self, failed_only=False):
        """Run the job again under the same id; return the job (it runs in the background,
        except on ``Local``, where this returns once it ended).

        With ``failed_only=True`` only the tasks that failed or never finished (a driver
        that died leaves some) run again, and every completed result is kept; otherwise
        every task runs again. A combiner runs again over the final results. The metrics
        show each task's last run, and ``attempts`` counts its runs over all runs of the job.

        Raises :class:`~dato_dist.errors.RerunRefused` while the job is Pending or Running,
        when another rerun of it just started, or without the job's key;
        :class:`~dato_dist.errors.NothingToDo` when ``failed_only`` finds nothing to run.

        Examples
        --------
        >>> job.rerun(failed_only=True).get_map_results()    # doctest: +SKIP
        """
        from . import rerun

        proc = rerun.start(self, failed_only)
        log.info("Job '%s' is running again (%s).", self.name,
                 "failed tasks only" if failed_only else "every task")
        if self.environment.synchronous:
            try:
                proc.wait()
            except KeyboardInterrupt:
                self.cancel()
                raise
            self.wait()
        return self

    def _forget(self):
        """Drop what was read of the store (a rerun makes the job live again)."""
        self._final_state = self._last_state = self._launch = None
        self._records, self._records_complete = Records(), False

    def show(self):
        """Print the job's summary (GraphLab opened Canvas here)."""
        print(self)

    def __str__(self):
        state = self._state()
        fn = self._spec["function_name"]
        if self._spec.get("combiner_name"):
            fn += f", {self._spec['combiner_name']} (combiner)"
        lines = ["Info", "------",
                 f"Job                : {self.name}",
                 f"Function(s)        : {fn}",
                 f"Status             : {state.get('status')}"]
        if state.get("error"):
            lines.append("Error              : "
                         + errors.with_failure_class(state["error"], state.get("failure_class")))
        lines += ["", "Help", "------",
                  "Visualize progress : self.show()",
                  "Query status       : self.get_status()",
                  "Get results        : self.get_results()",
                  "", "Environment", "----------", str(self.environment),
                  "", "Metrics", "-------",
                  f"Start time         : {format_time(state.get('started'))}",
                  f"End time           : {format_time(state.get('ended'))}"]
        metrics = self.get_metrics()
        if metrics is not None:
            lines.append(str(metrics))
        lines += ["", "Execution Information", "---------------------"]
        for label, value in self.environment.describe(self._files, self._read_launch()):
            lines.append(f"{label:<19}: {value}")
        return "\n".join(lines)


