"""Nothing left behind: no process a task started outlives its job (completed or canceled)."""

import itertools

import dato_dist as gl
from dato_dist.procs import descendants, is_alive
from tests import tasks
from tests.conftest import kill_quietly, wait_for
from tests.contract.chaos import running_tasks


def test_no_process_a_task_started_survives_a_completed_job(env2):
    job = gl.deploy.map_job.create(tasks.leave_processes, [{"seconds": 0}] * 2,
                                   environment=env2)
    pids = list(itertools.chain.from_iterable(job.get_results()))
    try:
        assert len(pids) == 6
        wait_for(lambda: not any(is_alive(p) for p in pids), timeout=20,
                 what="the tasks' processes to be stopped")
    finally:
        for pid in pids:
            kill_quietly(pid)


def test_no_process_a_task_started_survives_a_canceled_job(env2):
    job = gl.deploy.map_job.create(tasks.leave_processes, [{"seconds": 60}] * 2,
                                   environment=env2)
    pids = []
    try:
        runners = wait_for(lambda: (lambda r: r if len(r) == 2 else None)(list(running_tasks(job).values())),
                           timeout=30, what="both tasks running")
        pids = wait_for(lambda: (lambda d: d if len(d) >= 6 else None)(
            [p for r in runners for p in descendants(r)]), timeout=30,
            what="the tasks' processes")
        job.cancel()
        assert job.get_status() == "Canceled"
        wait_for(lambda: not any(is_alive(p) for p in pids), timeout=20,
                 what="the tasks' processes to be stopped")
    finally:
        for pid in pids:
            kill_quietly(pid)


def test_task_output_beyond_the_cap_is_cut_with_a_marker(monkeypatch):
    monkeypatch.setenv("DATO_DIST_RUNNER_MAX_TASK_OUTPUT", "65536")
    env = gl.deploy.environment.LocalAsync("one", num_workers=1)
    job = gl.deploy.map_job.create(tasks.loud, [{"i": 0, "nbytes": 4_000_000},
                                                {"i": 1, "nbytes": 1000}], environment=env)
    assert job.get_results() == [0, 1]
    log = job.read_logs()["runner-0.log"]
    first, second = log.split("[dato-dist] task loud-0-1 started\n")
    assert "[dato-dist] task loud-0-0 started\n" in first
    assert len(first) < 65536 + 1000  # the cap, its marker lines
    python_bytes = 4_000_000 - 4_000_000 % len("task 0 says " + "x" * 60 + "\n")
    dropped = python_bytes + 4_000_000 + len("\n") + len("task 0 done\n") - 65536
    assert (f"\n[dato-dist] output cut: {dropped} bytes of this task's output were dropped "
            "(over 65536 bytes, config key runner.max_task_output)\n") in first, first[-300:]
    # a new task, a new budget
    assert "\n" + "y" * 1000 + "\n" in second and "task 1 done" in second
    assert "output cut" not in second


def test_markers_split_across_reads_start_a_new_budget(tmp_path):
    from dato_dist.output import OutputCap

    log = open(tmp_path / "log", "w+b")
    cap = OutputCap(10, log.fileno(), None)
    stream = (b"[dato-dist] task a started\n" + b"1234567890abcdef\n"
              + b"[dato-dist] task b started\nshort\n")
    for i in range(0, len(stream), 7):  # reads that cut the markers anywhere
        cap._feed(stream[i:i + 7])
    cap._content(cap.carry)
    cap._end_task()
    log.seek(0)
    assert log.read().decode() == (
        "[dato-dist] task a started\n1234567890\n[dato-dist] output cut: 7 bytes of this "
        "task's output were dropped (over 10 bytes, config key runner.max_task_output)\n"
        "[dato-dist] task b started\nshort\n")
