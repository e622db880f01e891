"""Poll a running job as fast as a user's loop can, checking every answer on the way."""

import time

ORDER = {"Pending": 0, "Running": 1, "Completed": 2}


def poll_until_completed(job, n, timeout):
    """``get_status()``, ``get_metrics()`` and ``get_map_results(wait=False)`` of ``job``
    (``n`` tasks) in a tight loop until it is Completed: never 'Unknown' (nor Failed or
    Canceled), never an error, statuses only move forward, a result once read never
    changes. Returns ``(polls, results)``; fails if ``timeout`` seconds pass first."""
    statuses, polls, results = [], 0, [None] * n
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = job.get_status()
        assert status in ORDER, (status, job.get_error())
        statuses.append(status)
        job.get_metrics()
        now = job.get_map_results(wait=False)
        if now is not None:
            for i, (before, value) in enumerate(zip(results, now)):
                if before is not None:
                    assert value == before, f"task {i}: {before} then {value}"
            results = now
        polls += 1
        if status == "Completed":
            break
    ranks = [ORDER[s] for s in statuses]
    assert ranks == sorted(ranks), "a status went back"
    assert statuses[-1] == "Completed", f"not Completed after {timeout} s: {statuses[-1]}"
    assert "Running" in statuses
    return polls, results
