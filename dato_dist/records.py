"""Finished-task records, in batches of columns.

A runner sends what it finished as one *batch*, the driver writes batches to the store as
they come, and clients read them back. The common case, a task that completed, costs a few
list entries instead of a dict of ten keys, so 10,000 tiny tasks travel and are stored as a
handful of lists. A batch is a plain dict:

``index``, ``start``, ``run_time``, ``attempts``
    one entry per completed task (lists; ``array`` objects in the store, see
    :func:`compact`; the driver stores a run of consecutive indices as a ``range``)
``values``
    their results: the values themselves when every one is plain data (numbers, strings,
    bytes and containers of them), else each one pickled on its own (``pickled`` is True):
    the driver never unpickles a user's object
``worker``
    ``host:pid`` of the runner that ran them
``other``
    full records (the keys of :data:`~dato_dist.protocol.RECORD_KEYS`) of failed tasks and
    of the combiner; their ``result`` is pickled bytes or None, and a failed one's
    ``failure_class`` says why it failed (one of :data:`dato_dist.errors.FAILURE_CLASSES`)
"""

import collections.abc
import itertools
import operator
from array import array

from . import protocol as P
from . import serialize
from .errors import USER


def new_batch(worker):
    return {"worker": worker, "index": [], "start": [], "run_time": [], "attempts": [],
            "values": [], "pickled": False, "other": []}


def of_records(records, worker=None):
    """A batch holding only full ``records`` (made by the driver: lost tasks, tests)."""
    batch = new_batch(worker)
    batch["other"] = list(records)
    return batch


#: Types whose values are plain data by themselves (checked at C speed, no pickling).
_SCALARS = {int, float, str, bool, type(None), bytes}


def seal(batch):
    """Make ``batch`` safe to send: values that are not plain data are pickled one by one;
    a value that cannot be pickled turns its task into a failure. Returns ``batch``."""
    values = batch["values"]
    if batch["pickled"] or not values or set(map(type, values)) <= _SCALARS or (
            serialize.is_plain(values)):
        return batch
    keep = {k: [] for k in ("index", "start", "run_time", "attempts", "values")}
    for pos, value in enumerate(batch["values"]):
        try:
            pickled = serialize.dumps(value)
        except Exception as e:  # the task ran, but its result cannot travel back
            batch["other"].append(failure(
                batch["index"][pos], batch["start"][pos], batch["attempts"][pos],
                batch["worker"], "PicklingError",
                f"the task's result could not be serialized: {type(e).__name__}: {e}", None,
                USER))
            continue
        for key in ("index", "start", "run_time", "attempts"):
            keep[key].append(batch[key][pos])
        keep["values"].append(pickled)
    batch.update(keep, pickled=True)
    return batch


def success(index, start, run_time, result, attempts, worker):
    """The full record of a completed task; ``result`` is pickled bytes."""
    return {"index": index, "status": "Completed", "start": start, "run_time": run_time,
            "exception": None, "exception_message": None, "exception_traceback": None,
            "result": result, "attempts": attempts, "worker": worker}


def failure(index, start, attempts, worker, exc_type, message, tb, failure_class=USER):
    """The full record of a failed task; ``failure_class`` says why (see
    :data:`dato_dist.errors.FAILURE_CLASSES`)."""
    return {"index": index, "status": "Failed", "start": start, "run_time": None,
            "exception": exc_type, "exception_message": message, "exception_traceback": tb,
            "result": None, "attempts": attempts, "worker": worker,
            "failure_class": failure_class}


#: The numeric columns of a batch as the driver stores them: arrays of 8-byte entries.
ARRAY_COLUMNS = {"index": "q", "start": "d", "run_time": "d", "attempts": "q"}


def compact(batch):
    """``batch`` as it travels and is stored: its numeric columns as ``array`` objects,
    which pickle as raw bytes and cost 8 bytes an entry once read back (a list of floats
    costs 32); indices that are a run ``a, a+1, .., b`` as ``range(a, b + 1)``."""
    if not batch["index"] or not any(type(batch[key]) is list for key in ARRAY_COLUMNS):
        return batch
    out = dict(batch)
    index = batch["index"]
    if type(index) is list:
        run = range(index[0], index[-1] + 1)
        out["index"] = run if len(run) == len(index) and index == list(run) else array(
            "q", index)  # the usual batch is a run: stored as a range
    for key in ("start", "run_time"):
        if type(batch[key]) is list:
            out[key] = array(ARRAY_COLUMNS[key], batch[key])
    attempts = batch["attempts"]
    if type(attempts) is list and attempts.count(1) == len(attempts):  # the usual column
        out["attempts"] = array("q", [1]) * len(attempts)
    elif type(attempts) is list:
        out["attempts"] = array("q", attempts)
    return out


def size(batch):
    return len(batch["index"]) + len(batch["other"])


def indices(batch):
    """Every task index of ``batch``, as a list."""
    index = batch["index"]
    return (index.tolist() if type(index) is array else list(index)) + [
        r["index"] for r in batch["other"]]


def pack(batch):
    """What a runner sends: ``batch`` sealed (:func:`seal`) and compact (:func:`compact`)."""
    return compact(seal(batch))


def without(batch, drop):
    """``batch`` without the tasks whose index is in ``drop`` (a set)."""
    if not drop:
        return batch
    out = new_batch(batch["worker"])
    out["pickled"] = batch["pickled"]
    for pos, index in enumerate(batch["index"]):
        if index not in drop:
            for key in ("index", "start", "run_time", "attempts", "values"):
                out[key].append(batch[key][pos])
    out["other"] = [r for r in batch["other"] if r["index"] not in drop]
    return out


def _contiguous(ix, n):
    """True if the indices ``ix`` are ``a, a+1, .., b`` within ``0..n-1`` (checked at C
    speed)."""
    if type(ix) is range:  # how the driver stores a run of consecutive tasks
        return bool(ix) and ix.step == 1 and 0 <= ix[0] and ix[-1] < n
    return bool(ix) and 0 <= ix[0] and ix[-1] < n and ix[-1] - ix[0] + 1 == len(ix) and all(
        map(operator.lt, ix, itertools.islice(ix, 1, None)))


_UNRECORDED = object()  # a task with no record, in map_values (None is a result)


class Records(collections.abc.Mapping):
    """Every record of a job's batches, by task index; a later batch wins (a re-run task).

    As a mapping it gives full record dicts (``result`` pickled or None), built on demand;
    :meth:`completed`, :meth:`value` and :meth:`values` read the columns directly.
    """

    def __init__(self, batches=()):
        self._batches = []
        self._where = None  # index -> (batch, position) or (record, None), built on demand
        self._scans = 0  # membership questions answered by scanning the columns
        for batch in batches:
            self.add(batch)

    def add(self, batch):
        self._batches.append(batch)
        self._where = None

    def _index(self):
        if self._where is None:
            where = {}
            for batch in self._batches:
                for pos, index in enumerate(batch["index"]):
                    where[index] = (batch, pos)
                for record in batch["other"]:
                    where[record["index"]] = (record, None)
            self._where = where
        return self._where

    def __getitem__(self, index):
        item, pos = self._index()[index]
        if pos is None:
            return item
        value = item["values"][pos]
        return success(index, item["start"][pos], item["run_time"][pos],
                       value if item["pickled"] else serialize.dumps(value),
                       item["attempts"][pos], item["worker"])

    def __iter__(self):
        return iter(self._index())

    def __contains__(self, index):
        self._scans += 1
        if self._where is not None or self._scans > 2:
            return index in self._index()
        # No index of a million entries for a question or two (the combiner's record).
        return any(index in batch["index"] or any(r["index"] == index for r in batch["other"])
                   for batch in self._batches)

    def __len__(self):
        return len(self._index())

    def locate(self, n):
        """Where the record of each task ``0..n-1`` is, for columnar readers (metrics):
        ``(batch_of, pos_of, batches, other)``. ``batch_of[i]`` is the number of the batch
        holding task ``i`` in its columns (at ``pos_of[i]``), ``-2`` when its record is the
        full dict ``other[i]``, ``-1`` when it has none. A later batch wins. Contiguous
        runs of indices (the usual batch) are filled by slice, at C speed."""
        batch_of, pos_of = array("l", [-1]) * n, array("l", [0]) * n
        other = {}
        for number, batch in enumerate(self._batches):
            ix = batch["index"]
            if _contiguous(ix, n):
                batch_of[ix[0]:ix[-1] + 1] = array("l", [number]) * len(ix)
                pos_of[ix[0]:ix[-1] + 1] = array("l", range(len(ix)))
            else:
                for pos, index in enumerate(ix):
                    if 0 <= index < n:
                        batch_of[index], pos_of[index] = number, pos
            for record in batch["other"]:
                if 0 <= record["index"] < n:
                    batch_of[record["index"]] = -2
                    other[record["index"]] = record
        return batch_of, pos_of, self._batches, other

    def completed(self, index):
        found = self._index().get(index)
        return found is not None and (found[1] is not None
                                      or found[0]["status"] == "Completed")

    def not_completed(self, n):
        """Indices in ``0..n-1`` of the tasks that did not complete (failed or not run)."""
        done = set()
        for batch in self._batches:  # in order: a later batch wins
            done.update(batch["index"])
            for record in batch["other"]:
                if record["status"] == "Completed":
                    done.add(record["index"])
                else:
                    done.discard(record["index"])
        return [i for i in range(n) if i not in done]

    def attempts(self):
        """``{index: attempts}`` of each task's latest record, read from the columns."""
        out = {}
        for batch in self._batches:  # in order: a later batch wins
            out.update(zip(batch["index"], batch["attempts"]))
            out.update((r["index"], r["attempts"] or 0) for r in batch["other"])
        out.pop(P.COMBINER_INDEX, None)
        return out

    def missing(self, n):
        """Indices in ``0..n-1`` with no record at all (neither completed nor failed); one
        C-speed pass over the columns, no per-task dict."""
        seen = set()
        for batch in self._batches:
            seen.update(batch["index"])
            seen.update(r["index"] for r in batch["other"])
        seen.discard(P.COMBINER_INDEX)
        if len(seen) == n and (not seen or (min(seen) == 0 and max(seen) == n - 1)):
            return []  # n distinct indices within 0..n-1: all of them
        return [i for i in range(n) if i not in seen]

    def value(self, index):
        """The result of task ``index`` (unpickled); KeyError if it has no record."""
        item, pos = self._index()[index]
        if pos is None:
            raw = item["result"]
            return None if raw is None else serialize.loads(raw)
        value = item["values"][pos]
        return serialize.loads(value) if item["pickled"] else value

    def map_values(self, n, *, missing=None):
        """The results of tasks ``0..n-1`` in order, None for a task not completed;
        ``missing``, a list, receives the indices that have no record at all."""
        out = [_UNRECORDED] * n
        for batch in self._batches:  # in order: a later batch wins
            if batch["pickled"]:
                for index, value in zip(batch["index"], batch["values"]):
                    if 0 <= index < n:
                        out[index] = serialize.loads(value)
            elif _contiguous(batch["index"], n):  # the usual batch: one slice
                out[batch["index"][0]:batch["index"][-1] + 1] = batch["values"]
            elif batch["index"] and 0 <= min(batch["index"]) and max(batch["index"]) < n:
                for index, value in zip(batch["index"], batch["values"]):
                    out[index] = value
            else:
                for index, value in zip(batch["index"], batch["values"]):
                    if 0 <= index < n:
                        out[index] = value
            for record in batch["other"]:
                if 0 <= record["index"] < n:
                    out[record["index"]] = (
                        serialize.loads(record["result"]) if record["status"] == "Completed"
                        and record["result"] is not None else None)
        if any(map(operator.is_, out, itertools.repeat(_UNRECORDED))):  # at C speed
            gaps = [i for i, v in enumerate(out) if v is _UNRECORDED]
            for i in gaps:
                out[i] = None
            if missing is not None:
                missing.extend(gaps)
        return out
