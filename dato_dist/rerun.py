"""Running a job again under the same id: :func:`start` (the client's ``Job.rerun``) and
:func:`resume_point` (what a driver reads at startup to go on from the earlier runs).

A rerun is claimed by creating ``reruns/<run>.json`` exclusively in the store (signed with
the job's key), so of two clients racing only one starts it. The new run's driver reads that
request, keeps every completed record of the earlier runs when only failed tasks run again,
and writes its results files after the ones recorded: nothing completed is lost, and a
task's later record wins over its earlier one (:class:`~dato_dist.records.Records`).
"""

import collections
import os
import re
import socket
import time

from . import jobfiles
from .errors import ClusterNotRunning, NothingToDo, RerunRefused, UntrustedStoreFile

FINAL = ("Completed", "Failed", "Canceled")
#: Seconds after which a claimed run that never started (its client died between the claim
#: and the start) no longer blocks the next rerun. Racing clients claim within this.
STALE_CLAIM = 60.0


_RUN_TAG = re.compile(r"run(\d+)\.")


def log_prefix(run):
    """What the log files of run ``run`` are named with in ``<job>/logs/``: nothing for the
    first run, ``run<N>.`` for a rerun, so no run's copy replaces an earlier one's."""
    return f"run{run}." if isinstance(run, int) and run > 1 else ""


def run_of_state(state):
    """The run a job's ``state.json`` is at (1 for a job never run again)."""
    run = (state or {}).get("run")
    return run if isinstance(run, int) and run > 0 else 1


def logs_of_run(logs, run):
    """The entries of ``logs`` (``{log name: text}``) that run ``run`` wrote: names led by
    ``run<N>.`` are run N's, the others the first run's. YARN's own aggregated logs (``yarn
    logs -applicationId``, one application per run) are kept whole. When no name is tagged
    at all, the environment does not name its logs by run: everything is returned."""
    tags = {name: _RUN_TAG.match(name) for name in logs}
    if run > 1 and not any(tags.values()):
        return dict(logs)
    return {name: text for name, text in logs.items() if name.startswith("yarn logs ") or
            (int(tags[name].group(1)) if tags[name] else 1) == run}


def start(job, failed_only):
    """Start run N+1 of ``job``; see :meth:`dato_dist.job.Job.rerun`."""
    from .config import Config
    from .environments.base import record_start_failure
    from .jobfiles import JobFiles

    files, name = job._files, job.name
    try:  # the job's files verify with this user's key, or the rerun is not theirs to start
        spec = JobFiles(files.store, files.job_id).read_spec()
    except UntrustedStoreFile as e:
        raise RerunRefused(
            f"Cannot rerun job '{name}': {e} Only its owner can run it again: use the key "
            "it was created with (copy the key file, 0600, or set DATO_DIST_KEY).") from e
    job._forget()
    status = job.get_status(_silent=True)
    abandoned = status == "Pending" and _abandoned(files, job._last_state)
    if abandoned:
        status = "Failed"  # a rerun whose client died before it started the driver
    if status not in FINAL:
        what = ("its state cannot be read now" if status == "Unknown"
                else f"it is still {status}")
        raise RerunRefused(
            f"Cannot rerun job '{name}': {what}. Only a job that ended can run again: wait "
            f"for it (dato-dist job wait {name}) or cancel it (dato-dist job cancel {name}).")
    # The state that status came from (not a new read: a racer may have written since).
    state = job._last_state or {}
    env = job.environment
    try:
        env.check()  # a cluster that is gone says so before anything changes
    except ClusterNotRunning as e:
        # A job reruns only where it ran: its files live in that environment's store.
        raise ClusterNotRunning(
            f"Cannot rerun job '{name}': {e} Then run it again (job.rerun(), or dato-dist "
            f"job rerun {name}); nothing of the job was changed.") from None
    launch = job._read_launch() or {}
    recorded = state.get("results_files")
    records = files.read_results(expected_files=recorded)  # ResultsMissing names a lost file
    results_files = _results_files(files, recorded)
    n = jobfiles.num_tasks(spec)
    todo = records.not_completed(n) if failed_only else range(n)
    if failed_only and not todo and status == "Completed":
        raise NothingToDo(
            f"Every task of job '{name}' completed: nothing to run again. "
            f"job.rerun() (dato-dist job rerun {name}) runs every task again.")
    run = _next_run(files, name, state.get("run") or 1)
    error = ("it was claimed but never started: its client died first" if abandoned
             else job.get_error())
    previous = {"run": state.get("run") or 1, "status": status, "error": error,
                "started": state.get("started"), "ended": state.get("ended")}
    if launch.get("app_id"):
        previous["app_id"] = launch["app_id"]
    running = {r[0] for r in state.get("running") or [] if isinstance(r, list) and r}
    request = {
        "run": run, "failed_only": bool(failed_only), "results_files": results_files,
        "claimed": time.time(), "client": f"{socket.gethostname()}:{os.getpid()}",
        # Tasks the previous run was running when it ended: a run that counts in attempts.
        "interrupted": sorted(i for i in running if not records.completed(i)),
        "previous_runs": list(state.get("previous_runs") or []) + [previous],
    }
    if not files.claim_rerun(run, request):
        raise RerunRefused(_raced(name, run, "just now"))
    if state.get("status") not in FINAL:
        env.stop_job(files, launch)  # read as lost: whatever of it may still run stops
    files.remove_launch()  # until the new driver's launch is written, nothing is "dead"
    files.withdraw_cancel()  # an earlier run's cancel must not end this one
    # No "updated": like a new job's, this state is no driver's heartbeat (a driver that
    # takes minutes to get a container is not lost); the driver's first state is.
    files.write_state({"status": "Pending", "run": run, "results_files": results_files,
                       "previous_runs": request["previous_runs"]})
    config = Config.load()
    try:
        # The run goes with the settings, so this run's driver log gets a name of its own.
        prepared = env.prepare(files, dict(spec["settings"], run=run), config)
        proc = env.start_job(files, spec, config, prepared)
    except BaseException as e:
        # YARN and EC2 record their own start failures; this covers the rest.
        record_start_failure(files, f"Run {run} of job '{name}' could not start: "
                                    f"{type(e).__name__}: {e}")
        raise
    job._forget()
    return proc


def _abandoned(files, state):
    """True for the Pending state of a rerun whose client claimed it more than
    :data:`STALE_CLAIM` ago and never started a driver (no ``launch.json``)."""
    state = state or {}
    run = state.get("run")
    if state.get("status") != "Pending" or not isinstance(run, int) or \
            files.read_launch() is not None:
        return False
    try:
        claimed = float(files.read_rerun(run).get("claimed") or 0)
    except (UntrustedStoreFile, FileNotFoundError):
        return False
    return time.time() - claimed > STALE_CLAIM


def _results_files(files, recorded):
    """How many results files (``0..N-1``) the earlier runs left: those recorded, and any
    a killed driver wrote after its last state."""
    names = set(files.results_names())
    count = recorded or 0
    while f"{count:08d}.pkl" in names:
        count += 1
    return count


def _raced(name, run, when):
    return (f"Cannot rerun job '{name}': another rerun of it (run {run}) was started "
            f"{when}. Only one runs at a time: wait for it (dato-dist job wait {name}); if "
            f"its client died before it started, rerun again after {STALE_CLAIM:.0f} s.")


def _next_run(files, name, current):
    """The number of the run to claim after run ``current``; :class:`RerunRefused` when
    another client claimed the next run moments ago."""
    run = current + 1
    for claimed in files.rerun_numbers():
        if claimed < run:
            continue
        try:
            request = files.read_rerun(claimed)
        except UntrustedStoreFile:  # not the owner's (planted): it claims nothing
            run = claimed + 1
            continue
        age = time.time() - float(request.get("claimed") or 0)
        if age < STALE_CLAIM:
            raise RerunRefused(_raced(name, claimed, f"{age:.0f} s ago by "
                                                     f"{request.get('client')}"))
        run = claimed + 1
    return run


class ResumePoint:
    """What a rerun's driver starts from: ``done`` (task indices kept from earlier runs),
    ``todo`` (the indices to run, ascending), ``results_files`` (its first results file's
    number), ``attempts`` (runs of each task so far) and ``state`` (keys for its state)."""

    def __init__(self, request, records, n):
        self.run = request["run"]
        self.failed_only = bool(request.get("failed_only"))
        self.results_files = int(request.get("results_files") or 0)
        self.todo = records.not_completed(n) if self.failed_only else list(range(n))
        self.done = set(range(n)).difference(self.todo) if self.failed_only else set()
        self.attempts = collections.Counter(
            {i: a for i, a in records.attempts().items() if 0 <= i < n and a})
        for i in request.get("interrupted") or ():
            if isinstance(i, int) and 0 <= i < n:
                self.attempts[i] += 1
        self.state = {"run": self.run, "previous_runs": request.get("previous_runs") or []}

    def describe(self, job_id):
        mode = "the tasks that failed or never finished" if self.failed_only else "every task"
        return (f"[dato-dist] job {job_id} run {self.run}: running {mode} again "
                f"({len(self.todo)} task(s); {len(self.done)} completed earlier are kept); "
                f"the previous run: {_previous(self.state['previous_runs'])}")


def _previous(runs):
    last = runs[-1] if runs else {}
    text = f"run {last.get('run')} {last.get('status')}"
    if last.get("app_id"):
        text += f", YARN application {last['app_id']} (yarn logs -applicationId " \
                f"{last['app_id']})"
    if last.get("error"):
        text += f": {str(last['error']).splitlines()[0][:300]}"
    return text


def resume_point(files, n):
    """The :class:`ResumePoint` of a rerun's driver, or None for a job's first run."""
    runs = files.rerun_numbers()
    if not runs:
        return None
    request = None
    for run in reversed(runs):  # the latest the job's owner signed (others are planted)
        try:
            request = files.read_rerun(run)
            break
        except UntrustedStoreFile as e:
            print(f"[dato-dist] ignored a rerun request nobody with the job's key wrote: {e}",
                  flush=True)
    if request is None:
        return None
    records = files.read_results(expected_files=request.get("results_files"))
    return ResumePoint(request, records, n)
