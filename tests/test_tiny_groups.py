"""Tiny tasks run in groups at C speed (runner._run_grouped), yet each keeps its own
record, output and timing; the driver's finished set is a byte per task (IndexSet)."""

import io
import sys
import threading
import time
from array import array

import pytest

from dato_dist import records, runner
from dato_dist.output import MarkedStream
from dato_dist.tasklist import IndexSet, TaskColumns
from tests import tasks


class _Sink:
    """Stands in for the driver connection: keeps what the runner sends."""

    def __init__(self):
        self.sent = []

    def send(self, msg):
        self.sent.append(msg)


def _run(fn, names, columns, indices=None, *, heartbeat=False, flush_interval=30.0):
    """Run one batch through the runner's real loop; returns every record it made."""
    n = len(columns[0])
    indices = range(n) if indices is None else indices
    state, sink = {"current": None}, _Sink()
    stop = threading.Event()
    beat = None
    if heartbeat:  # the real heartbeat thread: it watches groups timed as a whole
        beat = threading.Thread(target=runner._heartbeat,
                                args=(sink, state, 60.0, stop), daemon=True)
        beat.start()
    out, real = io.StringIO(), sys.stdout
    sys.stdout = MarkedStream(out, runner._marker)  # as runner.serve sets it up
    try:
        done = runner._run_batch(fn, indices, TaskColumns(names, columns, n), "t-", 0, "h:1",
                                 state, records.new_batch("h:1"), sink, flush_interval)
    finally:
        sys.stdout = real
        stop.set()
        if beat is not None:
            beat.join(5)
    batches = [m[1] for m in sink.sent if m[0] == "results"] + [records.pack(done)]
    return records.Records(batches), out.getvalue()


def test_every_tiny_task_gets_its_own_record_in_order():
    n = 50_000
    recs, log = _run(tasks.add, ("x", "y"), [list(range(n)), list(range(n))],
                     indices=range(100, 100 + n))
    assert len(recs) == n
    assert recs.map_values(100 + n)[100:] == [2 * i for i in range(n)]
    first, last = recs[100], recs[100 + n - 1]
    assert first["attempts"] == last["attempts"] == 1 and last["worker"] == "h:1"
    starts = [recs[100 + i]["start"] for i in range(0, n, 997)]
    assert starts == sorted(starts)
    assert all(recs[100 + i]["run_time"] >= 0 for i in range(0, n, 101))
    assert log.count("[dato-dist] task") < 20, log[:300]  # silent tiny tasks: no markers


def test_a_failing_task_inside_a_group_fails_alone():
    n = 10_000
    ys = list(range(n))
    ys[7_777] = "s"  # add(7777, "s") raises TypeError
    recs, _ = _run(tasks.add, ("x", "y"), [list(range(n)), ys])
    assert len(recs) == n
    failed = recs[7_777]
    assert failed["status"] == "Failed" and failed["exception"] == "TypeError"
    assert failed["failure_class"] == "user" and failed["attempts"] == 1
    values = recs.map_values(n)
    assert values[7_776] == 2 * 7_776 and values[7_778] == 2 * 7_778  # still in step
    assert values[7_777] is None


def test_a_speaking_task_in_a_group_gets_its_own_marker():
    n, every = 20_000, 4_999
    recs, log = _run(tasks.speaks_every, ("i", "every"), [list(range(n)), [every] * n])
    assert recs.map_values(n) == list(range(n))
    for i in range(every, n, every):
        assert f"[dato-dist] task t-{i} started\ntask {i} says hi\n" in log


def _tiny_but_one(i, slow_at, seconds):
    if i == slow_at:
        time.sleep(seconds)
    return i


@pytest.mark.parametrize("shared", [False, True])
def test_a_slow_task_among_tiny_ones_is_timed_as_itself(monkeypatch, shared):
    """Timed one by one, or in groups timed as a whole (where the heartbeat thread, which
    sees a task of 50 ms or more running, gets it its own time)."""
    if shared:  # on a loaded machine a tiny task may measure over 50 us: share anyway
        monkeypatch.setattr(runner, "SHARE_BELOW", runner.TINY_TASK)
    else:
        monkeypatch.setattr(runner, "SHARE_BELOW", 0.0)
    n, slow, seconds = 60_000, 50_000, 0.3
    recs, _ = _run(_tiny_but_one, ("i", "slow_at", "seconds"),
                   [list(range(n)), [slow] * n, [seconds] * n], heartbeat=True)
    assert recs.map_values(n) == list(range(n))
    assert seconds <= recs[slow]["run_time"] < seconds + 0.2, recs[slow]
    assert recs[slow + 1]["start"] >= recs[slow]["start"] + seconds
    assert recs[slow - 1]["run_time"] < 0.05


def test_records_go_out_while_a_batch_runs():
    n = 200_000
    recs, _ = _run(tasks.add, ("x", "y"), [list(range(n)), list(range(n))],
                   flush_interval=0.0)
    assert len(recs) == n and len(recs._batches) > 1


def test_index_set_marks_runs_by_slice_and_anything_else_one_by_one():
    s = IndexSet(100, {0, 99})
    s.update(array("q", range(10, 30)))
    s.update(range(25, 40))
    s.update([50, 52, 51, 52])
    assert len(s) == 2 + 30 + 3
    assert 10 in s and 39 in s and 40 not in s and -1 not in s and 100 not in s
    assert s.isdisjoint(array("q", range(40, 50))) and not s.isdisjoint(array("q", [49, 50]))
    assert s.isdisjoint([-1, 41]) and not s.isdisjoint([41, 0])
    s.add(-1)
    s.update(array("q", [98, 99, 100]))  # not a run within 0..99: one by one
    assert len(s) == 36 and 98 in s


def test_the_driver_stores_runs_of_tasks_as_ranges_and_they_read_back(env2):
    import dato_dist as gl

    n = 30_000
    params = [{"x": i, "y": "s" if i == 12_345 else i} for i in range(n)]
    job = gl.deploy.map_job.create(tasks.add, params, environment=env2)
    results = job.get_map_results()
    assert results[12_345] is None and results[:3] == [0, 2, 4] and results[-1] == 2 * n - 2
    batches = job._files.read_results()._batches
    assert any(type(b["index"]) is range for b in batches), [type(b["index"]) for b in batches]
    fresh = gl.deploy.job.load(job.uri)
    metrics = fresh.get_metrics()
    assert len(metrics) == n and metrics[12_345]["status"] == "Failed"
    assert metrics[n - 1]["task_name"] == f"add-0-{n - 1}" and metrics[0]["attempts"] == 1
    assert fresh.get_map_results() == results
