"""Task functions for the tests, importable by the runners (pickled by reference)."""

import os
import sys
import time


def add(x, y):
    return x + y


def add_combiner(**kwargs):
    return sum(v for v in kwargs.values() if v is not None)


def record_combiner(**kwargs):
    return dict(kwargs)


def failing_combiner(**kwargs):
    raise ValueError("combiner says no")


def sleepy(i, seconds):
    time.sleep(seconds)
    return i * i


def chatty(i):
    print(f"hello from task {i}")
    print(f"warning from task {i}", file=sys.stderr)
    return i


def flaky(path):
    """Fails on its first call (per path), succeeds on the second."""
    if not os.path.exists(path):
        open(path, "w").close()
        raise RuntimeError("first attempt fails")
    return "ok"


def suicide():
    os._exit(7)


def pid_of_runner():
    return os.getpid()


def answer_from_package():
    import ddtinypkg

    return ddtinypkg.ANSWER


def mixed_result(i):
    """Plain data for even i, an object only cloudpickle/pickle by reference for odd i."""
    import fractions

    return i if i % 2 == 0 else fractions.Fraction(i, 2)


def unpicklable_result(i):
    """An unpicklable result (a lock) for i == 1, plain data otherwise."""
    import threading

    return threading.Lock() if i == 1 else i


def grows_then_succeeds(items, path):
    """Appends to its argument, then fails on its first call: a retry must get the
    original argument, not the one the failed attempt changed."""
    items.append("x")
    if not os.path.exists(path):
        open(path, "w").close()
        raise RuntimeError("first attempt fails")
    return len(items)


def exits(i):
    """Calls sys.exit for i == 1: a task's SystemExit must fail that task only."""
    if i == 1:
        sys.exit(3)
    return i


def leave_processes(seconds=0):
    """Starts a child, a child in its own session and a double-forked grandchild, each
    sleeping 300 s; returns their pids (then sleeps ``seconds``)."""
    import subprocess

    plain = subprocess.Popen(["sleep", "300"])
    detached = subprocess.Popen(["sleep", "300"], start_new_session=True)
    out = subprocess.run(["sh", "-c", "setsid sleep 300 >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True)
    time.sleep(seconds)
    return [plain.pid, detached.pid, int(out.stdout.strip())]


def loud(i, nbytes):
    """Prints ``nbytes`` of output from Python and as many from a subprocess; returns i."""
    import subprocess

    line = f"task {i} says " + "x" * 60 + "\n"
    sys.stdout.write(line * (nbytes // len(line)))
    sys.stdout.flush()
    subprocess.run(["sh", "-c", f"head -c {nbytes} /dev/zero | tr '\\0' y; echo"], check=True)
    print(f"task {i} done", file=sys.stderr)
    return i


def announce_then_sleep(i, seconds):
    print(f"announcing task {i}", flush=True)
    time.sleep(seconds)
    return i


def speaks_every(i, every):
    """Tiny; prints (Python-level and straight to fd 1) only when ``i % every == 0``."""
    if i % every == 0:
        print(f"task {i} says hi")
        sys.stdout.flush()
        os.write(1, f"task {i} fd-level\n".encode())
    return i


def minus(x, y, *, scale=1):
    """Not symmetric: a positional call in the wrong order would show."""
    return (x - y) * scale


def import_missing():
    import ddt_no_such_module  # noqa: F401  (a package missing on the node)


def hog(mb, seconds):
    """Hold ``mb`` MiB (written, so resident) for ``seconds``."""
    import time

    data = b"\x01" * (mb << 20)
    time.sleep(seconds)
    return len(data)


def dies_first(i):
    """Task 0 ends its runner's process (and so its YARN container) each time it runs."""
    if i == 0:
        os._exit(7)
    return i
