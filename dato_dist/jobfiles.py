"""The files of one job in the store, and the only code that knows their names.

Layout under ``<store>/<job id>/``::

    spec.json          what was asked: name, kind, task count and name prefix, environment,
                       code, packages
    function.pkl       the function and the combiner (cloudpickle, framed)
    tasks.pkl          every task's kwargs: as plain data in one pickle when they all are
                       (numbers, strings, containers), else each pickled on its own (framed);
                       with large ``bytes`` arguments, the other kwargs and where each
                       large value is (see :mod:`dato_dist.largeargs`)
    args/NNNNNN.bin    large ``bytes`` arguments, raw, one after the other (a chunk)
    args/NNNNNN.pkl    the SHA-256 of each value of that chunk (framed, signed)
    launch.json        who started the driver: host, pid, process start time
    state.json         the driver's view: status, times, error, counts, running tasks
    results/NNNNNNNN.pkl   finished task records, in batches of columns (see records.py),
                       written by the driver every flush (framed)
    cancel             present when a cancel was requested
    reruns/NNNNNN.json a rerun's request (run number, failed_only, results files kept),
                       created exclusively by the client that claimed that run (signed)
    logs/              driver.log and one log per runner

Every pickled file, ``spec.json`` and ``launch.json`` are signed with the job's key (see
:mod:`dato_dist.keys`) and checked before they are used: a file someone else wrote raises
:class:`~dato_dist.errors.UntrustedStoreFile` and never reaches ``pickle``.
"""

import pickle

from . import keys, largeargs, records, serialize
from . import protocol as P
from .errors import UntrustedStoreFile
from .tasklist import TaskColumns


def plain_tasks(task_kwargs, *, columns=None):
    """The tasks file's content when every kwargs dict is plain data, else None: in
    columns (:mod:`dato_dist.tasklist`) when every task has the same argument names
    (``columns``: ``TaskColumns.of(task_kwargs)``, when the caller has it already)."""
    columns = TaskColumns.of(task_kwargs) if columns is None else columns
    if columns is not None:
        return serialize.dumps_plain(columns.to_plain())
    return serialize.dumps_plain(("plain", task_kwargs))


def num_tasks(spec):
    """How many map tasks the job has."""
    return spec["num_tasks"] if "num_tasks" in spec else len(spec["task_names"])


def task_names(spec):
    """Every task's name, in order: ``<task_name_prefix><i>`` (jobs written before the prefix
    was stored list their names)."""
    if "task_names" in spec:
        return spec["task_names"]
    prefix = spec["task_name_prefix"]
    return [f"{prefix}{i}" for i in range(spec["num_tasks"])]


def tasks_of(data, files=None):
    """The tasks of a loaded tasks file: :class:`TaskColumns`, the list it holds, or for
    large arguments :class:`~dato_dist.largeargs.LargeTasks` (``files``, the job's
    :class:`JobFiles`, says where their values are)."""
    if data[0] == largeargs.KIND:
        return files.large_tasks(data)
    return TaskColumns.from_plain(data) if data[0] == "columns" else data[1]


def pickled_tasks(task_kwargs_bytes):
    """The tasks file's content from each task's pickled kwargs."""
    return pickle.dumps(("pickled", task_kwargs_bytes), protocol=5)

SPEC, FUNCTION, TASKS, LAUNCH, STATE = (
    "spec.json", "function.pkl", "tasks.pkl", "launch.json", "state.json")
ARGS_DIR = "args"
RESULTS_DIR, CANCEL, LOGS_DIR, RERUNS_DIR = "results", "cancel", "logs", "reruns"


class JobFiles:
    """Read and write one job's files in a :class:`~dato_dist.store.Store`.

    ``key`` is the job's key; without one it is derived, at the first signed read or write,
    from this user's key and the nonce in ``spec.json`` (see :mod:`dato_dist.keys`).
    """

    def __init__(self, store, job_id, key=None):
        self.store = store
        self.job_id = job_id
        self._key = key
        self._results_cache = {}
        #: Seconds to wait for a chunk of large arguments not written yet (a driver's).
        self.args_wait = 0.0

    def __repr__(self):  # never shows the key
        return f"JobFiles<{self.uri}>"

    @property
    def key(self):
        """The job's key (derived from this user's key and the spec's nonce if not given)."""
        if self._key is None:
            self._derive_key(self.store.read_json(self._rel(SPEC)))
        return self._key

    def _derive_key(self, spec):
        nonce = spec.get("nonce") if isinstance(spec, dict) else None
        if not isinstance(nonce, str):
            raise UntrustedStoreFile(path=self.store.display_path(self._rel(SPEC)),
                                     reason="it has no job nonce (not written by this "
                                            "version of dato-dist, or not by you)")
        self._key = keys.job_key(keys.user_key(), self.job_id, nonce)

    def _write_signed(self, name, obj):
        self.store.write_json(self._rel(name), keys.sign_json(self.key, name, obj))

    def _read_signed(self, name, default=FileNotFoundError):
        obj = self.store.read_json(self._rel(name), default=default)
        if obj is default and default is not FileNotFoundError:
            return obj
        return keys.verify_json(self.key, name, obj, self.store.display_path(self._rel(name)))

    def _write_pickle(self, name, data):
        self.store.write_bytes(self._rel(name), data, key=self.key)

    def _read_pickle(self, name):
        return pickle.loads(self.store.read_bytes(self._rel(name), key=self.key))

    def _rel(self, name):
        return f"{self.job_id}/{name}"

    @property
    def uri(self):
        return self.store.display_path(self.job_id)

    def exists(self):
        return self.store.exists(self._rel(SPEC))

    def create(self, nonce):
        """Claim this job's folder for a new job; False if anything is there already."""
        return self.store.create_job_dir(self.job_id, nonce)

    def check_owner(self):
        """:class:`~dato_dist.errors.StoreNotOwned` if the local job folder is another user's."""
        self.store.check_owner()
        self.store.check_owner(self.job_id)

    # -- written by the client at create --------------------------------------------------
    def write_payload(self, *, function_bytes, combiner_bytes, tasks_blob):
        """``tasks_blob`` from :func:`plain_tasks`, :func:`pickled_tasks` or
        :meth:`~dato_dist.largeargs.Plan.tasks_content` (then :meth:`write_args` writes
        the values)."""
        self._write_pickle(FUNCTION, pickle.dumps(
            {"function": function_bytes, "combiner": combiner_bytes}, protocol=5))
        self._write_pickle(TASKS, tasks_blob)

    # -- large arguments (see dato_dist.largeargs) --------------------------------------
    def _args_rel(self, k, ext):
        return self._rel(f"{ARGS_DIR}/{k:06d}.{ext}")

    def write_args(self, plan):
        """Write each chunk of ``plan`` (a :class:`~dato_dist.largeargs.Plan`), then its
        signed index of digests (computed in a thread while the chunk is written): a
        chunk whose index is in the store is whole."""
        for k, values in enumerate(plan.chunks):
            digests = largeargs.digests_in_background(values)
            try:
                self.store.write_bytes(self._args_rel(k, "bin"), values, framed=False)
            finally:
                found = digests()
            self.store.write_bytes(self._args_rel(k, "pkl"), pickle.dumps(found, protocol=5),
                                   key=self.key)

    def read_args_index(self, k):
        """The digests of chunk ``k``'s values, once its signature verified;
        ``FileNotFoundError`` while it is not written."""
        return self._read_pickle(f"{ARGS_DIR}/{k:06d}.pkl")

    def read_args_chunk(self, k):
        """Chunk ``k``'s bytes (unchecked: each value is checked against its digest)."""
        return self.store.read_bytes(self._args_rel(k, "bin"), framed=False)

    def args_local_path(self, k):
        """Chunk ``k``'s OS path on a local store, else None."""
        return self.store.local_path(self._args_rel(k, "bin"))

    def args_display(self, k, ext):
        return self.store.display_path(self._args_rel(k, ext))

    def large_tasks(self, data):
        """:class:`~dato_dist.largeargs.LargeTasks` of a loaded tasks file of large
        arguments."""
        return largeargs.LargeTasks(self, data, wait=self.args_wait)

    def write_spec(self, spec):
        """Write ``spec`` (it holds the job's ``nonce``), signed."""
        self._write_signed(SPEC, spec)

    def read_spec(self):
        """The job's spec, once its signature verified."""
        spec = self.store.read_json(self._rel(SPEC))
        if self._key is None:
            self._derive_key(spec)
        return keys.verify_json(self._key, SPEC, spec, self.store.display_path(self._rel(SPEC)))

    def read_payload(self, tasks=True):
        """``(function_bytes, combiner_bytes, tasks)``: a sequence of each task's kwargs as a
        dict of plain data (a list, or :class:`~dato_dist.tasklist.TaskColumns`), as its
        pickle (bytes), or as :class:`~dato_dist.largeargs.LargeArgs` (``load()`` gives
        the dict); none needs the user's code to load here. With ``tasks=False`` the
        tasks file is not read (``tasks`` is None)."""
        fn = self._read_pickle(FUNCTION)
        if not tasks:
            return fn["function"], fn["combiner"], None
        tasks = tasks_of(self._read_pickle(TASKS), self)
        return fn["function"], fn["combiner"], tasks

    def write_launch(self, info):
        self._write_signed(LAUNCH, info)

    def read_launch(self):
        """Who started the driver (signed: the client acts on its pid), or None."""
        return self._read_signed(LAUNCH, default=None)

    def remove_launch(self):
        """Forget who started the previous run's driver (a rerun starts a new one)."""
        self.store.delete(self._rel(LAUNCH))

    # -- reruns ----------------------------------------------------------------------------
    def claim_rerun(self, run, request):
        """Create run ``run``'s request, signed, only if no client claimed that run yet;
        True if this call did."""
        import json

        name = f"{RERUNS_DIR}/{run:06d}.json"
        data = json.dumps(keys.sign_json(self.key, name, request), sort_keys=True).encode()
        return self.store.create_exclusive(self._rel(name), data)

    def rerun_numbers(self):
        """The run numbers claimed so far, ascending."""
        names = self.store.list(self._rel(RERUNS_DIR))  # retries HDFS's listing race
        return [int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit()]

    def results_names(self):
        """The names of the results files written so far (``00000000.pkl``, ...), sorted."""
        return self.store.list(self._rel(RESULTS_DIR))

    def read_rerun(self, run):
        """Run ``run``'s request, once its signature verified."""
        return self._read_signed(f"{RERUNS_DIR}/{run:06d}.json")

    # -- written by the driver ------------------------------------------------------------
    def write_state(self, state):
        self.store.write_json(self._rel(STATE), state)

    def read_state(self):
        return self.store.read_json(self._rel(STATE), default=None)

    def write_results(self, batch_no, batches):
        """One results file holding record ``batches`` (see :mod:`dato_dist.records`)."""
        self._write_pickle(f"{RESULTS_DIR}/{batch_no:08d}.pkl",
                           pickle.dumps(batches, protocol=5))

    def read_results(self, expected_files=None):
        """Every record written so far: a :class:`~dato_dist.records.Records`, by task index
        (the combiner's under COMBINER_INDEX). Files are immutable once written, so each
        is read once per JobFiles. ``expected_files`` (the state's ``results_files``): files
        ``0..N-1`` must be there, else :class:`~dato_dist.errors.ResultsMissing` names one.
        """
        out = records.Records()
        names = self.results_names()
        if expected_files:
            present = set(names)
            for batch_no in range(expected_files):
                if f"{batch_no:08d}.pkl" not in present:
                    from .errors import ResultsMissing

                    raise ResultsMissing(path=self.store.display_path(
                        f"{self._rel(RESULTS_DIR)}/{batch_no:08d}.pkl"),
                        detail=f" (one of the {expected_files} results files the job recorded)")
        for name in names:
            if not name.endswith(".pkl"):
                continue
            batches = self._results_cache.get(name)
            if batches is None:
                batches = self._read_pickle(f"{RESULTS_DIR}/{name}")
                self._results_cache[name] = batches
            for batch in batches:
                out.add(batch)
        return out

    # -- cancel and logs -----------------------------------------------------------------
    def request_cancel(self):
        self.store.write_bytes(self._rel(CANCEL), b"cancel", framed=False)

    def withdraw_cancel(self):
        """Remove a cancel request (an earlier run's: a rerun must not end on it)."""
        self.store.delete(self._rel(CANCEL))

    def cancel_requested(self):
        return self.store.exists(self._rel(CANCEL))

    def log_rel(self, name=""):
        return self._rel(f"{LOGS_DIR}/{name}" if name else LOGS_DIR)

    def log_names(self):
        return self.store.list(self.log_rel())

    def read_log(self, name):
        return self.store.read_bytes(self.log_rel(name), framed=False)


COMBINER_INDEX = P.COMBINER_INDEX
