"""Messages between a job's driver and its runners.

Runners connect to the driver over ``multiprocessing.connection`` (TCP, HMAC-authenticated
with a per-job key that is passed in memory or in the environment, never written to the
store). Every message is a tuple whose first item is its kind:

runner -> driver
    ``(HELLO, runner_id, pid, host, worker)``  first message on a connection
    ``(WANT, records)``                        finished records (a batch, see records.py);
                                               asks for more work (replied)
    ``(RESULTS, records)``                     finished records mid-batch (not replied)
    ``(BEAT, current)``                        heartbeat; ``current`` is ``(index, start)`` or None
driver -> runner
    ``(SETUP, function_bytes, combiner_bytes, settings, name_prefix)``   reply to HELLO;
                                           ``settings``: :func:`runner_settings`
    ``(TASKS, indices, kwargs)``           reply to WANT: a batch; ``indices`` is a range or
                                           a list (task i is named ``<name_prefix><i>``);
                                           each kwargs a dict or its pickle
    ``(COMBINE, [(name, result_bytes or None), ...])``         reply to WANT: run the combiner
    ``(STOP,)``                                                reply to WANT: no more work

A record is a dict with the keys of :data:`RECORD_KEYS`.
"""

import os
import socket

HELLO, WANT, RESULTS, BEAT = "hello", "want", "results", "beat"
SETUP, TASKS, COMBINE, STOP = "setup", "tasks", "combine", "stop"

#: Index given to the combiner's record.
COMBINER_INDEX = -1

RECORD_KEYS = (
    "index",  # position in the parameter set (COMBINER_INDEX for the combiner)
    "status",  # 'Completed' or 'Failed'
    "start",  # epoch seconds
    "run_time",  # seconds, None when failed
    "exception",  # class name or None
    "exception_message",
    "exception_traceback",
    "result",  # cloudpickle bytes or None
    "attempts",
    "worker",  # who ran it: 'host:pid', a YARN container, an EC2 host and runner
    "failure_class",  # why a failed task failed (dato_dist.errors.FAILURE_CLASSES), else absent
)

AUTHKEY_ENV = "DATO_DIST_AUTHKEY"
#: How a runner names itself in its records (see :func:`dato_dist.runner.worker_name`).
WORKER_ENV = "DATO_DIST_WORKER"

#: A runner's exit codes: no driver at the address; the driver went away mid-job.
EXIT_NO_DRIVER, EXIT_DRIVER_GONE = 3, 4
#: Exit codes of a runner that is done (told to stop, or its driver is gone): a node does
#: not replace it.
EXIT_DONE = (0, EXIT_NO_DRIVER, EXIT_DRIVER_GONE)

#: The job settings a runner uses; they reach it only in SETUP, from the job's spec.
RUNNER_SETTINGS = ("max_retries", "heartbeat_interval", "result_flush_interval", "max_task_output")


def runner_settings(settings):
    """The runner's part of a job's ``spec["settings"]`` (resolved from the config at create)."""
    return {k: settings[k] for k in RUNNER_SETTINGS}


def set_nodelay(conn):
    """Small request/answer messages must not wait for Nagle's algorithm (~40 ms each)."""
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    finally:
        sock.close()
