"""The one task runner every backend starts: ``python -m dato_dist.runner``.

A runner connects to its job's driver, receives the function, then asks for batches of
tasks until told to stop. For every task it records the result (or the exception's type,
message and traceback), the start time and the run time, and sends the records back in
groups. Task output goes to the runner's stdout/stderr, which every environment captures
into the job's logs, with a marker line before each task.
"""

import argparse
import os
import socket
import sys
import threading
import time
import traceback

import cloudpickle
from multiprocessing.connection import Client

from . import protocol as P
from . import serialize

_RESULT_NOT_PICKLABLE = "PicklingError"
#: A task running this long is reported to the driver right away.
REPORT_AFTER = 0.2


class _Channel:
    """A driver connection shared by the task loop and the heartbeat thread."""

    def __init__(self, conn):
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, msg):
        with self.lock:
            self.conn.send(msg)

    def recv(self):
        return self.conn.recv()


def _run_one(fn, kwargs_bytes, max_retries, worker, channel_state):
    """Run one task with retries; return its record (the result pickled)."""
    attempts = 0
    while True:
        attempts += 1
        start = time.time()
        channel_state["current"] = (channel_state["index"], start)
        t0 = time.perf_counter()
        try:
            kwargs = serialize.loads(kwargs_bytes)
            value = fn(**kwargs)
            run_time = time.perf_counter() - t0
            try:
                result = serialize.dumps(value)
            except Exception as e:  # the task ran, but its result cannot travel back
                return _failure(start, attempts, worker, _RESULT_NOT_PICKLABLE,
                                f"the task's result could not be serialized: {e}",
                                traceback.format_exc())
            return {"status": "Completed", "start": start, "run_time": run_time,
                    "exception": None, "exception_message": None, "exception_traceback": None,
                    "result": result, "attempts": attempts, "worker": worker}
        except BaseException as e:  # a task's SystemExit must not end the runner either
            if isinstance(e, KeyboardInterrupt):
                raise
            if attempts <= max_retries:
                print(f"[dato-dist] attempt {attempts} raised {type(e).__name__}: {e}; retrying",
                      file=sys.stderr)
                continue
            return _failure(start, attempts, worker, type(e).__name__, str(e),
                            traceback.format_exc())


def _failure(start, attempts, worker, exc_type, message, tb):
    return {"status": "Failed", "start": start, "run_time": None, "exception": exc_type,
            "exception_message": message, "exception_traceback": tb, "result": None,
            "attempts": attempts, "worker": worker}


def _heartbeat(channel, state, interval, stop):
    """Beat every ``interval`` s, and at once when a task has run for REPORT_AFTER s, so the
    driver's metrics show it Running without a message per (tiny) task."""
    last_sent, reported = time.monotonic(), None
    while not stop.wait(0.05):
        current = state["current"]
        now = time.monotonic()
        fresh = (current is not None and current != reported
                 and time.time() - current[1] >= REPORT_AFTER)
        if not fresh and now - last_sent < interval:
            continue
        try:
            channel.send((P.BEAT, current))
        except (OSError, EOFError, ValueError):
            # The driver is gone: nobody wants this runner's work any more.
            os._exit(4)
        last_sent, reported = now, current


def serve(address, authkey, runner_id, *, heartbeat_interval=1.0, flush_interval=0.2):
    """Work for the driver at ``address`` until it says stop (or goes away)."""
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        conn = Client(tuple(address), authkey=authkey)
    except (OSError, EOFError) as e:
        print(f"[dato-dist] runner {runner_id}: cannot reach the driver at {address}: {e}",
              file=sys.stderr)
        return 3
    P.set_nodelay(conn)
    channel = _Channel(conn)
    channel.send((P.HELLO, runner_id, os.getpid(), socket.gethostname()))
    kind, function_bytes, combiner_bytes, max_retries = channel.recv()
    assert kind == P.SETUP, kind
    try:
        fn = cloudpickle.loads(function_bytes)
    except Exception as e:  # e.g. the function's module is not importable here
        error = e

        def fn(**kwargs):
            raise RuntimeError(
                f"The job's function could not be loaded on this runner: "
                f"{type(error).__name__}: {error}") from error
    state = {"current": None, "index": None}
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(channel, state, heartbeat_interval, stop),
                            daemon=True)
    beat.start()
    done = []
    try:
        while True:
            channel.send((P.WANT, done))
            done = []
            msg = channel.recv()
            if msg[0] == P.STOP:
                return 0
            if msg[0] == P.COMBINE:
                combiner = cloudpickle.loads(combiner_bytes)
                pairs = msg[1]
                state["index"] = P.COMBINER_INDEX
                print("[dato-dist] combiner started", flush=True)
                payload = cloudpickle.dumps(
                    {name: (cloudpickle.loads(r) if r is not None else None) for name, r in pairs})
                record = _run_one(lambda **kw: combiner(**kw), payload, 0, worker, state)
                record["index"] = P.COMBINER_INDEX
                done.append(record)
                state["current"] = None
                continue
            last_flush = time.monotonic()
            for index, name, kwargs_bytes in msg[1]:
                state["index"] = index
                sys.stdout.write(f"[dato-dist] task {name} started\n")
                sys.stdout.flush()  # the marker is on disk if the task kills the process
                record = _run_one(fn, kwargs_bytes, max_retries, worker, state)
                state["current"] = None
                record["index"] = index
                done.append(record)
                sys.stdout.flush()
                sys.stderr.flush()
                if time.monotonic() - last_flush > flush_interval:
                    channel.send((P.RESULTS, done))
                    done = []
                    last_flush = time.monotonic()
    except (EOFError, OSError):
        return 0  # the driver went away: nothing left to do for it
    finally:
        stop.set()
        try:
            conn.close()
        except OSError:
            pass


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dato_dist.runner",
                                     description="Run tasks for a dato-dist driver.")
    parser.add_argument("--driver", required=True, help="HOST:PORT of the job's driver")
    parser.add_argument("--id", required=True, help="this runner's id")
    parser.add_argument("--heartbeat-interval", type=float, default=1.0)
    parser.add_argument("--flush-interval", type=float, default=0.2)
    args = parser.parse_args(argv)
    authkey = os.environ.get(P.AUTHKEY_ENV)
    if not authkey:
        parser.error(f"the job's key must be in the environment variable {P.AUTHKEY_ENV}")
    host, _, port = args.driver.rpartition(":")
    return serve((host, int(port)), bytes.fromhex(authkey), args.id,
                 heartbeat_interval=args.heartbeat_interval, flush_interval=args.flush_interval)


if __name__ == "__main__":
    sys.exit(main())
