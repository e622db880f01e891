"""The per-task metrics table of a job (GraphLab's seven columns, then ours)."""

import time

from .table import Table

#: GraphLab's columns, in its order, then the ones dato-dist adds.
COLUMNS = ("task_name", "status", "start_time", "run_time", "exception", "exception_message",
           "exception_traceback", "attempts", "worker", "failure_class")


def format_time(epoch):
    """``YYYY-MM-DD HH:MM:SS`` in local time, as GraphLab printed start times."""
    return None if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def metrics_table(task_names, records, running):
    """The metrics of every task that has started, in task order; None if none has.

    ``records`` maps task index to a finished record; ``running`` lists
    ``[index, start, worker]`` of tasks running now.
    """
    rows = {}
    for index, start, worker in running or ():
        if index not in records and 0 <= index < len(task_names):
            rows[index] = {"task_name": task_names[index], "status": "Running",
                           "start_time": format_time(start), "run_time": None,
                           "exception": None, "exception_message": None,
                           "exception_traceback": None, "attempts": None, "worker": worker,
                           "failure_class": None}
    for index, rec in records.items():
        if index < 0:
            continue  # the combiner is reported through the job's status and error
        rows[index] = {"task_name": task_names[index], "status": rec["status"],
                       "start_time": format_time(rec["start"]), "run_time": rec["run_time"],
                       "exception": rec["exception"],
                       "exception_message": rec["exception_message"],
                       "exception_traceback": rec["exception_traceback"],
                       "attempts": rec["attempts"], "worker": rec["worker"],
                       "failure_class": rec.get("failure_class") if rec["status"] == "Failed"
                       else None}
    if not rows:
        return None
    return Table(COLUMNS, [rows[i] for i in sorted(rows)])
