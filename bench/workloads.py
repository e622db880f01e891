"""The benchmark's task functions.

They live in an importable module (not in ``bench_local.py``'s ``__main__``) so that
``pickle`` / ``cloudpickle`` serialize them *by reference* (module + name) for every side:
dato-dist, ``concurrent.futures.ProcessPoolExecutor`` and ``multiprocessing.Pool`` all ship
the same few bytes for the function and import this module in their workers.
"""

import time

#: W2's per-call sleep, seconds.
SLEEP_SECONDS = 0.05


def add(x, y):
    """W1 and W3: the smallest useful task."""
    return x + y


def sleep_task(i):
    """W2: a task that takes ``SLEEP_SECONDS`` and uses no CPU; returns its input."""
    time.sleep(SLEEP_SECONDS)
    return i


def blob_len(data):
    """W4: receives a large ``bytes`` argument and returns its length."""
    return len(data)


def release_home(home, keep):
    """End of a benchmark: keep its temporary DATO_DIST_HOME (every job's store and logs)
    and say where, or remove it."""
    import shutil

    if keep:
        print(f"kept DATO_DIST_HOME={home}")
    else:
        shutil.rmtree(home, ignore_errors=True)
