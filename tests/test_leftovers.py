"""Nothing left behind: no process a task started outlives its job (completed or canceled)."""

import itertools

import dato_dist as gl
from dato_dist.procs import descendants, is_alive
from tests import tasks
from tests.conftest import kill_quietly, wait_for
from tests.test_failures import runner_pids


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
        runners = wait_for(lambda: (lambda r: r if len(r) == 2 else None)(runner_pids(job)),
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
