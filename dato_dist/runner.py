"""The one task runner every backend starts: ``python -m dato_dist.runner``.

A runner connects to its job's driver, receives the function, then asks for batches of
tasks until told to stop. For every task it records the result (or the exception's type,
message and traceback), the start time and the run time, and sends the records back in
groups. Task output goes to the runner's stdout/stderr, which every environment captures
into the job's logs, with a marker line before each task's output (deferred after a tiny
task: see :mod:`dato_dist.output`).
"""

import argparse
import copy
import inspect
import itertools
import operator
import os
import signal
import socket
import sys
import threading
import time
import traceback
import types
from multiprocessing.connection import Client

import cloudpickle

from . import procs, records, serialize
from . import protocol as P
from .errors import USER, FunctionNotLoadable, failure_class_of
from .largeargs import LargeArgs
from .output import MarkedStream, OutputCap, TaskMarker
from .tasklist import TaskColumns

#: A batch of at least this many tasks (tiny ones: see driver._batch_size) makes the
#: runner ask for the next batch before it runs this one.
PREFETCH_FROM = 64
#: A task running this long is reported to the driver right away.
REPORT_AFTER = 0.2
#: After a task shorter than this, the next one's marker line is deferred: written only if
#: that task writes output (see :mod:`dato_dist.output`), so 1,000,000 silent tiny tasks
#: cost no log line and no write.
TINY_TASK = 0.001
#: A task still running after this long gets its deferred marker from the heartbeat thread.
MARKER_AFTER = 0.05
#: Tiny tasks called by position run in groups (:func:`_run_grouped`) of this many to
#: start with, doubling while a group takes under GROUP_SECONDS, up to GROUP_MAX.
GROUP_MIN, GROUP_MAX, GROUP_SECONDS = 16, 4096, 0.002
#: After a group whose tasks each took under SHARE_BELOW, groups are timed as a whole
#: (each task gets an equal share) until one takes over SHARE_UNTIL.
SHARE_BELOW, SHARE_UNTIL = 0.00005, 0.005
EXIT_NO_DRIVER, EXIT_DRIVER_GONE = P.EXIT_NO_DRIVER, P.EXIT_DRIVER_GONE
_cap = None  # this runner's OutputCap, once the job's setting is known


class _RunMarker(TaskMarker):
    """A :class:`TaskMarker` that also follows a group of tasks run at C speed
    (:func:`_run_grouped`), where no code runs between two tasks to set :attr:`pending`:
    while :attr:`group` is set, the running task is the group's next one without a
    result, and its marker line is given once."""

    def __init__(self):
        super().__init__()
        self.group = None  # (indices, list, stride) while a group runs: see _run_grouped
        self.written = None  # the group's task whose marker line was given last

    def take(self):
        group = self.group
        if group is None:
            return super().take()
        index = _running_in_group(*group)
        if index is None:
            return None  # between two tasks (only the heartbeat thread sees this)
        with self._lock:
            if index == self.written:
                return None
            self.written = index
        # The previous task's buffered output goes out before this task's marker.
        _flush_output()
        return self.line(index)


def _running_in_group(indices, flat, stride):
    """The index of the task a group (:func:`_run_grouped`) is running, from the length of
    its growing ``flat`` list; None between two tasks or once the group is done."""
    done = len(flat)
    if done % stride or done // stride >= len(indices):
        return None
    return indices[done // stride]


_marker = _RunMarker()  # the running task's marker line (see dato_dist.output)


def _cleanup():
    """Before the runner exits: no process of its tasks is left, its output is in the log."""
    procs.kill_descendants()
    if _cap is not None:
        _cap.close(timeout=1.0)


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


def _run_one(fn, payload, max_retries, index, state):
    """Run one task, retrying it when it raises.

    ``payload`` is the task's kwargs: a dict (plain data) or its pickle. Returns
    ``(start, attempts, run_time, value, None)``, or ``(start, attempts, None, None,
    (exception name, message, traceback, failure class))`` when the last attempt raised.
    """
    attempts = 0
    while True:
        attempts += 1
        start = time.time()
        state["current"] = (index, start)
        t0 = time.perf_counter()
        try:
            if type(payload) is dict:  # a retry must not see what an attempt changed
                kwargs = copy.deepcopy(payload) if max_retries else payload
            elif type(payload) is LargeArgs:  # reads and checks its large values itself
                kwargs = payload.load()
            else:
                kwargs = serialize.loads(payload)
            value = fn(**kwargs)
            return start, attempts, time.perf_counter() - t0, value, None
        except BaseException as e:  # a task's SystemExit must not end the runner either
            if isinstance(e, KeyboardInterrupt):
                raise
            if attempts <= max_retries:
                print(f"[dato-dist] attempt {attempts} raised {type(e).__name__}: {e}; retrying",
                      file=sys.stderr)
                continue
            return start, attempts, None, None, _error(e)


def _error(exc):
    """What a record keeps of ``exc``, raised by a task: name, message, traceback, class."""
    return type(exc).__name__, str(exc), traceback.format_exc(), failure_class_of(exc)


def _flush_output():
    sys.stdout.flush()
    sys.stderr.flush()


def _heartbeat(channel, state, interval, stop):
    """Beat every ``interval`` s, and at once when a task has run for REPORT_AFTER s, so the
    driver's metrics show it Running without a message per (tiny) task."""
    last_sent, reported = time.monotonic(), None
    while not stop.wait(0.05):
        current = _current(state)
        now = time.monotonic()
        if (_marker.pending is not None and current is not None
                and time.time() - current[1] >= MARKER_AFTER):
            line = _marker.take()  # a slow task's output (even C-level) follows its marker
            if line is not None:
                sys.stdout.write(line)
                _flush_output()
        fresh = (current is not None and current != reported
                 and time.time() - current[1] >= REPORT_AFTER)
        if not fresh and now - last_sent < interval:
            continue
        try:
            channel.send((P.BEAT, current))
        except (OSError, EOFError, ValueError):
            # The driver is gone: nobody wants this runner's work any more.
            _cleanup()
            os._exit(EXIT_DRIVER_GONE)
        last_sent, reported = now, current


def _current(state):
    """``(index, start)`` of the task running now, or None."""
    group = state.get("group")
    if group is not None:
        indices, flat, start, stride, seen = group  # _run_grouped's, growing as it runs
        index = _running_in_group(indices, flat, stride)
        if index is None:
            return None
        done = len(flat)
        if seen is not None:  # a group timed as a whole: when this task was seen running
            seen.setdefault(index, time.time())
        return (index, flat[done - 1] if done and stride == 2 else start)
    run = state.get("tiny")
    if run is None:
        return state["current"]
    indices, t0s, t1s, offset = run  # _run_tiny's columns, growing as it runs
    k = len(t0s)
    if k > len(t1s) and k <= len(indices):  # between the task's two clock reads
        return (indices[k - 1], offset + t0s[k - 1])
    return None


def _positional_order(fn, names):
    """For a plain Python function whose first parameters are exactly ``names`` (any
    order), each positional parameter's position in ``names``; else None. Calling it with
    the values in that order binds exactly as ``fn(**dict(zip(names, values)))`` does,
    without making a dict per task (a third of a tiny task's cost)."""
    if not names or type(fn) is not types.FunctionType:
        return None
    key = (fn, names)
    if key not in _ORDERS:
        try:
            params = list(inspect.signature(fn, follow_wrapped=False).parameters.values())
        except (TypeError, ValueError):
            params = []
        first = params[:len(names)]
        ok = len(first) == len(names) and all(
            p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in first) and (
            sorted(p.name for p in first) == sorted(names))
        _ORDERS.clear()  # one job's function at a time
        _ORDERS[key] = [names.index(p.name) for p in first] if ok else None
    return _ORDERS[key]


_ORDERS = {}


def _run_tiny(fn, tasks, marker, state, done, send_at):
    """Run ``tasks`` (an iterator of ``(index, kwargs dict)``) in the tightest loop there
    is, while each task takes under TINY_TASK and until ``perf_counter()`` passes
    ``send_at``; add their records to ``done``. Returns whether the last task was tiny.

    Per task: its (deferred) marker, two clock reads, the call, three appends; the
    columns of ``done`` are made once at the end, and the heartbeat learns the running
    task from the growing lists (:func:`_current`), not from a store per task. A task's
    arguments are a dict (``fn(**kwargs)``) or a tuple in parameter order (``fn(*args)``,
    see :func:`_positional_order`).
    """
    perf = time.perf_counter
    offset = time.time() - perf()  # a perf_counter reading plus this is wall time
    indices, t0s, t1s, values = [], [], [], []
    add_index, add_t0, add_t1, add_value = indices.append, t0s.append, t1s.append, values.append
    flush = _flush_output
    state["tiny"] = (indices, t0s, t1s, offset)
    tiny = True
    try:
        for index, kwargs in tasks:
            marker.pending = index
            add_index(index)
            t0 = perf()
            add_t0(t0)
            try:
                value = fn(*kwargs) if type(kwargs) is tuple else fn(**kwargs)
            except BaseException as e:  # a task's SystemExit must not end the runner either
                if isinstance(e, KeyboardInterrupt):
                    raise
                indices.pop()
                t0s.pop()
                done["other"].append(records.failure(
                    index, offset + t0, 1, done["worker"], *_error(e)))
                tiny = False
                break
            t1 = perf()
            add_t1(t1)
            add_value(value)
            if marker.pending is None:
                flush()  # the task wrote output (its marker is out): it goes out in order
            if t1 - t0 >= TINY_TASK:
                tiny = False
                break
            if t1 > send_at:
                break
    finally:
        state["tiny"] = None
        n = len(values)
        done["index"] += indices[:n]
        done["start"] += [offset + t for t in t0s[:n]]
        done["run_time"] += map(operator.sub, t1s[:n], t0s[:n])
        done["attempts"] += [1] * n
        done["values"] += values
    return tiny


def _run_grouped(fn, index_iter, arg_iters, state, done, send_at):
    """Run tasks in groups at C speed while each task takes under TINY_TASK and until
    ``time.time()`` passes ``send_at``; add their records to ``done``. A task is called
    ``fn(*[next(a) for a in arg_iters])`` and its index is ``next(index_iter)``; the
    iterators are left in step. Returns whether the group's tasks were all tiny.

    A group is ``map(fn, *columns)``, with no Python code between two tasks, timed one of
    two ways:

    - *one by one*: zipped with ``iter(time.time, None)`` into one flat list ``[value,
      end, value, end, ...]``, one clock read per task (a task starts when the one before
      it ends);
    - *shared*, once tasks timed one by one all took under SHARE_BELOW: no clock read per
      task; each task of the group gets the group's start and an equal share of its time.
      A shared group is sized to take about GROUP_SECONDS; one that took over SHARE_UNTIL
      (a slower task in it, or the runner was descheduled) is followed by groups timed
      one by one, which find a task of TINY_TASK or more and end the run.

    Every task still gets its own record (result or error, attempts, worker); its marker
    line is deferred (:class:`_RunMarker`), and the heartbeat finds the running task from
    the length of the group's list (:func:`_current`).
    """
    clock, islice, sub, chain = time.time, itertools.islice, operator.sub, itertools.chain
    worker, marker = done["worker"], _marker
    size, left, tiny, shared, rate = GROUP_MIN, [], True, False, 0.0
    marker.pending = True  # not None: the streams ask take() before a task's first write
    marker.written = None
    try:
        while True:
            indices = left or list(islice(index_iter, size))
            if not indices:
                break
            k, flat, error, stride = len(indices), [], None, 1 if shared else 2
            seen = {} if shared else None  # filled by the heartbeat thread (_current)
            marker.group = (indices, flat, stride)
            t0 = clock()
            state["group"] = (indices, flat, t0, stride, seen)
            calls = map(fn, *[islice(a, k) for a in arg_iters])
            try:
                flat.extend(calls if shared else chain.from_iterable(
                    zip(calls, iter(clock, None))))
            except BaseException as e:  # a task's SystemExit must not end the runner either
                if isinstance(e, KeyboardInterrupt):
                    raise
                error = _error(e)
            state["group"] = None
            if shared:
                last = clock()
                n = len(flat)
                share = max(last - t0, 0.0) / (n + (error is not None))
                times, starts = [share] * n, [t0] * n
                if last - t0 > SHARE_UNTIL:  # something in it was slow
                    _attribute(indices, n, seen, rate, last - t0, t0, times, starts)
                done["start"] += starts
                done["values"] += flat
            else:
                ends = flat[1::2]
                n = len(ends)
                times = list(map(sub, ends, chain((t0,), ends)))
                if times and min(times) < 0:  # the wall clock was set back
                    times = [max(t, 0.0) for t in times]
                if n:
                    done["start"].append(t0)
                    done["start"] += ends[:-1]
                done["values"] += flat[0::2]
                last = ends[-1] if n else t0
            done["index"] += indices[:n]
            done["run_time"] += times
            done["attempts"] += [1] * n
            left = indices[n + 1:]
            if error is not None:
                done["other"].append(records.failure(
                    indices[n], t0 if shared else last, 1, worker, *error))
                last = clock()
            slow = bool(times) and max(times) >= TINY_TASK
            if not slow and times:
                rate = times[-1] if shared else sum(times) / len(times)
            if slow or last > send_at:
                if left:
                    continue  # the rest of this group first: the iterators stay in step
                tiny = not slow
                break
            if shared:
                shared = last - t0 <= SHARE_UNTIL
            else:
                shared = bool(times) and max(times) < SHARE_BELOW
            if last - t0 < GROUP_SECONDS and size < GROUP_MAX:
                size *= 2
    finally:
        state["group"] = None
        if marker.written is not None:
            _flush_output()  # a task wrote output: it goes out before what follows
        marker.group = marker.pending = marker.written = None
    return tiny


def _attribute(indices, n, seen, rate, elapsed, t0, times, starts):
    """A group of ``n`` finished tasks timed as a whole took ``elapsed`` s from ``t0``:
    give the tasks the heartbeat saw running (``seen``; it looks every 50 ms) what the
    others, at ``rate`` s each, leave of it, and each task the start that follows. Changes
    ``times`` and ``starts``; does nothing when no task was seen."""
    done = indices[:n]
    slow = {done.index(i) for i in seen if i in done}
    if not slow:
        return  # each task keeps its share
    rest = max(elapsed - rate * (n - len(slow)), 0.0) / len(slow)
    start = t0
    for pos in range(n):
        times[pos] = rest if pos in slow else rate
        starts[pos] = start
        start += times[pos]


def _run_batch(fn, indices, payloads, name_prefix, max_retries, worker, state, done, channel,
               flush_interval):
    """Run the tasks ``indices`` (task i is named ``<name_prefix><i>``, its kwargs are in
    ``payloads``) in order, adding their records to ``done``; finished records
    go to the driver every ``flush_interval`` s. Returns the batch of records not sent.

    This loop is the whole cost of a tiny task, so it is written for speed: a task with
    plain kwargs and no retries runs inline; the others go through :func:`_run_one`.
    After a tiny task the next one's marker line is deferred (see :mod:`dato_dist.output`):
    a silent tiny task writes nothing to the log.
    """
    marker = _marker
    marker.name_prefix = name_prefix
    flush = _flush_output
    monotonic, clock, perf = time.monotonic, time.time, time.perf_counter
    add_index, add_start = done["index"].append, done["start"].append
    add_time, add_attempts = done["run_time"].append, done["attempts"].append
    add_value = done["values"].append
    inline = not max_retries
    next_send = monotonic() + flush_interval
    tiny = False  # the previous task took under TINY_TASK seconds
    index_iter, arg_iters = iter(indices), None
    if inline and isinstance(payloads, TaskColumns):
        order = _positional_order(fn, payloads.names)
        if order is not None:  # each task's values as a tuple, in parameter order
            arg_iters = [iter(payloads.columns[k]) for k in order]
            payloads = zip(*arg_iters)
    tasks = zip(index_iter, payloads)
    for index, payload in tasks:
        if tiny:
            marker.pending = index  # written if the task writes output
        else:
            marker.pending = None
            sys.stdout.write(marker.line(index))
            flush()  # the marker is on disk if the task kills the process
        if inline and type(payload) in (dict, tuple):
            start = clock()
            state["current"] = (index, start)
            t0 = perf()
            try:
                value = fn(*payload) if type(payload) is tuple else fn(**payload)
                run_time = perf() - t0
                attempts, error = 1, None
            except BaseException as e:  # a task's SystemExit must not end the runner either
                if isinstance(e, KeyboardInterrupt):
                    raise
                attempts, error = 1, _error(e)
        else:
            start, attempts, run_time, value, error = _run_one(
                fn, payload, max_retries, index, state)
        state["current"] = None
        if error is None:
            add_index(index)
            add_start(start)
            add_time(run_time)
            add_attempts(attempts)
            add_value(value)
            tiny = run_time < TINY_TASK
        else:
            done["other"].append(records.failure(index, start, attempts, worker, *error))
            tiny = False
        if not tiny or marker.pending is None:
            flush()  # the task wrote output (its marker is out): it goes out in order
        if tiny and arg_iters is not None and monotonic() < next_send:
            # Tiny tasks called by position: in groups, at C speed.
            tiny = _run_grouped(fn, index_iter, arg_iters, state, done,
                                clock() + (next_send - monotonic()))
        elif tiny and inline and type(payload) in (dict, tuple) and monotonic() < next_send:
            # A run of tiny tasks (the job's kwargs are all dicts or all pickles).
            tiny = _run_tiny(fn, tasks, marker, state, done,
                             perf() + (next_send - monotonic()))
        if monotonic() > next_send:
            marker.pending = None
            channel.send((P.RESULTS, records.pack(done)))
            done = records.new_batch(worker)
            add_index, add_start = done["index"].append, done["start"].append
            add_time, add_attempts = done["run_time"].append, done["attempts"].append
            add_value = done["values"].append
            next_send = monotonic() + flush_interval
    marker.pending = None
    flush()
    return done


def _combine(combiner_bytes, pairs, worker, state, done):
    """Run the combiner on the map results; add its record to the batch ``done``."""
    print("[dato-dist] combiner started", flush=True)

    def combine():
        try:
            combiner = cloudpickle.loads(combiner_bytes)
        except Exception as e:  # a module it needs is missing here
            raise FunctionNotLoadable(what="combiner", cause=e) from e
        kwargs = {name: (serialize.loads(r) if r is not None else None) for name, r in pairs}
        return combiner(**kwargs)

    start, attempts, run_time, value, error = _run_one(combine, {}, 0, P.COMBINER_INDEX, state)
    state["current"] = None
    if error is None:
        try:
            record = records.success(P.COMBINER_INDEX, start, run_time, serialize.dumps(value),
                                     attempts, worker)
        except Exception as e:
            error = ("PicklingError", f"the combiner's result could not be serialized: {e}",
                     traceback.format_exc(), USER)
    if error is not None:
        record = records.failure(P.COMBINER_INDEX, start, attempts, worker, *error)
    done["other"].append(record)
    _flush_output()


def worker_name(runner_id):
    """How this runner's records name it (the metrics' ``worker``): ``host:pid``, or the
    template in :data:`~dato_dist.protocol.WORKER_ENV` (``{id}``, ``{host}`` and ``{pid}``
    in it are replaced), which a cluster backend sets to name its container or instance;
    the name always ends with ``:pid``."""
    template = os.environ.get(P.WORKER_ENV) or "{host}:{pid}"
    return template.format(id=runner_id, host=socket.gethostname(), pid=os.getpid())


def serve(address, authkey, runner_id):
    """Work for the driver at ``address`` until it says stop (or goes away).

    The job's runner settings (:data:`~dato_dist.protocol.RUNNER_SETTINGS`) come from the
    driver in ``SETUP``; this runner's log shows them. No process a task started outlives
    the runner: the runner is its tasks' subreaper and kills what is left of them when it
    ends (stop, driver gone, SIGTERM).
    """
    procs.become_subreaper()

    def on_sigterm(signum, frame):
        _cleanup()
        os._exit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return _serve(address, authkey, runner_id)
    finally:
        _cleanup()


def _serve(address, authkey, runner_id):
    worker = worker_name(runner_id)
    try:
        conn = Client(tuple(address), authkey=authkey)
    except (OSError, EOFError) as e:
        print(f"[dato-dist] runner {runner_id}: cannot reach the driver at {address}: {e}",
              file=sys.stderr)
        return EXIT_NO_DRIVER
    P.set_nodelay(conn)
    channel = _Channel(conn)
    channel.send((P.HELLO, runner_id, os.getpid(), socket.gethostname(), worker))
    kind, function_bytes, combiner_bytes, settings, name_prefix = channel.recv()
    assert kind == P.SETUP, kind
    max_retries = settings["max_retries"]
    heartbeat_interval = settings["heartbeat_interval"]
    flush_interval = settings["result_flush_interval"]
    print(f"[dato-dist] runner {runner_id} set up: " + ", ".join(
        f"{k}={settings[k]}" for k in P.RUNNER_SETTINGS), flush=True)
    global _cap
    if _cap is None:
        _cap = OutputCap.install(settings["max_task_output"])
    if not isinstance(sys.stdout, MarkedStream):
        sys.stdout = MarkedStream(sys.stdout, _marker)
        sys.stderr = MarkedStream(sys.stderr, _marker)
    try:
        fn = cloudpickle.loads(function_bytes)
    except Exception as e:  # e.g. the function's module is not importable here
        error = e

        def fn(**kwargs):  # each task fails with it, as class 'environment'
            raise FunctionNotLoadable(what="function", cause=error) from error
    state = {"current": None}
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(channel, state, heartbeat_interval, stop),
                            daemon=True)
    beat.start()
    done = records.new_batch(worker)
    asked = 0  # 1 while a WANT is out unanswered (sent early for a big batch)
    try:
        while True:
            if not asked:
                channel.send((P.WANT, records.pack(done)))
                done, asked = records.new_batch(worker), 1
            elif records.size(done):  # the next WANT is out already: the records go now
                channel.send((P.RESULTS, records.pack(done)))
                done = records.new_batch(worker)
            msg = channel.recv()
            asked -= 1
            if msg[0] == P.STOP:
                return 0
            if msg[0] == P.COMBINE:
                _combine(combiner_bytes, msg[1], worker, state, done)
                continue
            if len(msg[1]) >= PREFETCH_FROM and not asked:
                # Ask for the next batch now: the driver answers while this one runs, so a
                # runner of tiny tasks never waits for a round trip.
                channel.send((P.WANT, records.new_batch(worker)))
                asked = 1
            done = _run_batch(fn, msg[1], msg[2], name_prefix, max_retries, worker, state,
                              done, channel, flush_interval)
    except (EOFError, OSError):
        return 0  # the driver went away: nothing left to do for it
    finally:
        stop.set()
        # Before the connection closes: the driver kills a runner whose connection closed.
        _cleanup()
        try:
            conn.close()
        except OSError:
            pass


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dato_dist.runner",
                                     description="Run tasks for a dato-dist driver.")
    parser.add_argument("--driver", required=True, help="HOST:PORT of the job's driver")
    parser.add_argument("--id", required=True, help="this runner's id")
    args = parser.parse_args(argv)
    authkey = os.environ.get(P.AUTHKEY_ENV)
    if not authkey:
        parser.error(f"the job's key must be in the environment variable {P.AUTHKEY_ENV}")
    host, _, port = args.driver.rpartition(":")
    return serve((host, int(port)), bytes.fromhex(authkey), args.id)


if __name__ == "__main__":
    sys.exit(main())
