"""The per-task metrics table of a job (GraphLab's seven columns, then ours).

The table is lazy and reads the records' columns directly (:meth:`Records.locate
<dato_dist.records.Records.locate>`): a job of a million tasks gets its table in the time
of one pass over the records, and a row (or a column) is made only when asked for.
"""

import functools
import itertools
import time

from .records import Records, of_records
from .table import LazyTable

#: GraphLab's columns, in its order, then the ones dato-dist adds.
COLUMNS = ("task_name", "status", "start_time", "run_time", "exception", "exception_message",
           "exception_traceback", "attempts", "worker", "failure_class")


def format_time(epoch):
    """``YYYY-MM-DD HH:MM:SS`` in local time, as GraphLab printed start times."""
    return None if epoch is None else _format_second(int(epoch // 1))


@functools.lru_cache(maxsize=4096)
def _format_second(second):  # tasks started in the same second share one string
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))


def metrics_table(task_names, records, running):
    """The metrics of every task that has started, in task order; None if none has.

    ``task_names`` is a sequence of the task names (``names[i]``), ``records`` a
    :class:`~dato_dist.records.Records`; ``running`` lists ``[index, start, worker]`` of
    tasks running now. The combiner is reported through the job's status and error.
    """
    if not hasattr(records, "locate"):  # a plain mapping of full records (tests)
        records = Records([of_records(dict(r, index=i) for i, r in records.items())])
    n = len(task_names)
    batch_of, pos_of, batches, other = records.locate(n)
    running = {index: (start, worker) for index, start, worker in running or ()
               if 0 <= index < n and batch_of[index] == -1}
    unrecorded = batch_of.count(-1)
    if unrecorded == n and not running:
        return None
    if not unrecorded:
        order = range(n)
    else:
        order = sorted(itertools.chain(
            itertools.compress(range(n), map((-1).__ne__, batch_of)), running))

    def cells(i):
        """Task ``i``'s row as a tuple in COLUMNS' order."""
        where = batch_of[i]
        if where >= 0:
            batch, pos = batches[where], pos_of[i]
            return (task_names[i], "Completed", format_time(batch["start"][pos]),
                    batch["run_time"][pos], None, None, None, batch["attempts"][pos],
                    batch["worker"], None)
        if where == -2:
            rec = other[i]
            return (task_names[i], rec["status"], format_time(rec["start"]), rec["run_time"],
                    rec["exception"], rec["exception_message"], rec["exception_traceback"],
                    rec["attempts"], rec["worker"],
                    rec.get("failure_class") if rec["status"] == "Failed" else None)
        start, worker = running[i]
        return (task_names[i], "Running", format_time(start), None, None, None, None, None,
                worker, None)

    def row(r):
        return dict(zip(COLUMNS, cells(order[r])))

    def column(name):
        k = COLUMNS.index(name)
        return [cells(i)[k] for i in order]

    return LazyTable(COLUMNS, len(order), row, column)
