"""Tasks of the rerun contract tests. Each counts its runs in ``<folder>/runs-<i>`` (a line
per run), so a test can tell which tasks ran again; each returns ``[i, a random token]``, so
a result kept from an earlier run is provably that run's."""

import os
import time
import uuid


def _count_run(folder, i):
    with open(os.path.join(folder, f"runs-{i}"), "a") as f:
        f.write(f"{os.getpid()}\n")


def runs(folder, n):
    """``[runs of task 0, ..., runs of task n-1]``."""
    out = []
    for i in range(n):
        try:
            with open(os.path.join(folder, f"runs-{i}")) as f:
                out.append(len(f.read().split()))
        except FileNotFoundError:
            out.append(0)
    return out


def fails_until_fixed(i, folder):
    """Odd tasks raise until ``<folder>/fixed`` exists."""
    _count_run(folder, i)
    if i % 2 and not os.path.exists(os.path.join(folder, "fixed")):
        raise RuntimeError(f"task {i} fails until {folder}/fixed exists")
    return [i, uuid.uuid4().hex]


def slow_until_released(i, folder, fast):
    """Tasks from ``fast`` on wait (at most 120 s) until ``<folder>/release`` exists; the
    others take 0.3 s, longer than runner.result_flush_interval, so a runner sends each
    one's result as it ends (not with the next task's)."""
    _count_run(folder, i)
    if i < fast:
        time.sleep(0.3)
    deadline = time.monotonic() + 120
    while (i >= fast and not os.path.exists(os.path.join(folder, "release"))
           and time.monotonic() < deadline):
        time.sleep(0.05)
    return [i, uuid.uuid4().hex]


def completed_tasks(**results):
    """A combiner: how many tasks have a result (failed tasks give None)."""
    return sum(r is not None for r in results.values())
