"""The driver: one per job. ``python -m dato_dist.driver --store URI --job ID``.

It hands out tasks to runners in batches, notices lost runners (closed connection, missed
heartbeats, a reaped process) and re-queues their unfinished tasks, has the combiner run
once every map task is done, and writes results, progress and the final status to the job
store. With ``--local-runners N`` it also starts N runners on this machine (forked before
any store I/O, so they start in milliseconds) and replaces those that die, through
:class:`dato_dist.node.Runners`. Runners get the job's runner settings in ``SETUP``.

Batches follow guided self-scheduling, capped so a batch takes about
:data:`TARGET_BATCH_SECONDS` at the measured task time, and at least
:data:`MIN_BATCH_SECONDS` of it (up to an even share of what is left): 10,000 tiny tasks
travel in a few messages, while slow tasks go out one or a few at a time.
"""

import argparse
import collections
import concurrent.futures
import math
import os
import secrets
import signal
import sys
import time
from multiprocessing.connection import wait

from . import errors as E
from . import jobfiles, node, procs, records
from . import protocol as P
from .listener import Acceptor, bind_listener
from .tasklist import IndexSet, TaskColumns

TARGET_BATCH_SECONDS = 0.25
MIN_BATCH_SECONDS = 0.005
#: A batch carries at most this many bytes of pickled arguments (and at least one task):
#: a 4 MiB argument each, 64 tasks would otherwise go out as two 128 MiB messages, one per
#: runner, each copied whole before its runner starts.
MAX_BATCH_BYTES = 8 * 1024 * 1024
#: A task whose runner died this many times while running it is recorded as Failed.
MAX_TASK_LOSSES = 3
#: Exception name recorded for such a task.
RUNNER_LOST = "RunnerLost"
#: A task whose container YARN preempted this many times is recorded as Failed
#: (``preempted``), unless the job's ``driver.max_task_preemptions`` says otherwise.
#: Preemption is the scheduler taking capacity back, not the task's fault, so it has its
#: own, larger budget and never uses up the MAX_TASK_LOSSES one.
MAX_TASK_PREEMPTIONS = 10
#: Exception name recorded for such a task.
PREEMPTED = "Preempted"
#: Seconds the driver waits for the backend to say why a runner ended, beyond the
#: backend's own bound (``explain.timeout``), before it decides the runner was just lost.
EXPLAIN_GRACE = 5.0
#: Longest list of scattered task indices in the queue (a rerun of some failed tasks).
QUEUE_PIECE = 4096
#: Exception name recorded for a task whose container was killed for exceeding its memory
#: (not re-run: it would be killed again in a container of the same size).
MEMORY_EXCEEDED = "MemoryExceeded"


class _TaskQueue:
    """Indices of the tasks waiting to run, in order. They are kept as ranges (and short
    lists of re-queued tasks), so handing out a batch of thousands is a slice, not a loop."""

    def __init__(self, n):
        self._parts = collections.deque([range(n)] if n else [])
        self._len = n

    def __len__(self):
        return self._len

    def first(self):
        """The index at the front (the queue is not empty)."""
        return self._parts[0][0]

    def take(self, k):
        """Up to ``k`` indices from the front (fewer when the front part is shorter): a
        ``range`` or a list."""
        first = self._parts[0]
        if len(first) <= k:
            self._parts.popleft()
        else:
            first, self._parts[0] = first[:k], first[k:]
        self._len -= len(first)
        return first

    @classmethod
    def of(cls, indices):
        """A queue of ``indices`` (ascending): long runs of consecutive ones as ranges, the
        scattered ones as lists of up to :data:`QUEUE_PIECE` (a batch is one slice)."""
        queue, loose = cls(0), []

        def add(run):
            if len(run) < 64:
                loose.extend(run)
                if len(loose) < QUEUE_PIECE:
                    return
            if loose:
                queue._parts.append(loose[:])
                loose.clear()
            if len(run) >= 64:
                queue._parts.append(run)

        start = prev = None
        for i in indices:
            if prev is not None and i == prev + 1:
                prev = i
                continue
            if start is not None:
                add(range(start, prev + 1))
            start = prev = i
        if start is not None:
            add(range(start, prev + 1))
        if loose:
            queue._parts.append(loose)
        queue._len = sum(map(len, queue._parts))
        return queue

    def push_front(self, indices):
        if indices:
            self._parts.appendleft(list(indices))
            self._len += len(indices)


class _Runner:
    def __init__(self, conn, runner_id, pid, host, worker=None):
        self.conn, self.id, self.pid, self.host = conn, runner_id, pid, host
        self.worker = worker or f"{host}:{pid}"  # as its records name it
        self.inflight = []  # task indices handed out, in the order the runner runs them
        self.current = None  # (index, start) from heartbeats
        self.last_seen = time.monotonic()
        self.idle = False
        self.has_combiner = False


class Driver:
    """Schedules one job's tasks over its runners and records everything in the store."""

    def __init__(self, files, spec, acceptor, authkey, *, local_runners=None, done_fd=None,
                 explain=None):
        self.files, self.spec = files, spec
        # explain(runner_id) -> (failure class, diagnostics): why a lost runner ended, from
        # its backend (YARN's container report); None: it was lost, nothing more is known.
        self.explain = explain
        self.done_fd = done_fd  # a byte written here wakes a client waiting in this job
        self.settings = spec["settings"]
        self.acceptor, self.authkey = acceptor, authkey
        self.local = local_runners  # a node.Runners on this machine, or None
        if self.local is not None:
            self.local.max_restarts = self.settings["max_runner_restarts"]
        self.runner_settings = P.runner_settings(self.settings)
        self.n = jobfiles.num_tasks(spec)
        self.name_prefix = spec["task_name_prefix"]  # runners name task i <prefix><i>
        self.pending = _TaskQueue(self.n)
        self.max_batch_tasks = sys.maxsize  # set from the tasks' sizes when they are read
        self.done = IndexSet(self.n)  # tasks with a final record
        self.failed = 0
        self.losses = collections.Counter()  # runs of a task its lost runners did not finish
        self.preemptions = collections.Counter()  # ... of them, ended by preemption
        # Lost runners whose end the backend is being asked about, in a thread (YARN takes
        # seconds): [runner, why, unfinished, future, asked]. Their tasks wait, and the
        # loop serves everything else meanwhile (see _settle_losses).
        self.explaining = []
        self._explain_pool = None
        self.suspects = set()  # tasks of a lost runner that may have ended it (see _lose)
        self.earlier = None  # a rerun's runs of each task in the earlier runs (Counter)
        self.runners = {}  # conn -> _Runner
        self.unflushed = []
        self.batch_no = 0
        self.combiner_record = None
        self.first_failure = None  # a plain job's one task failing fails the job
        self.combiner_assigned = False
        self.avg_task_time = None
        self.cancel_requested = False
        self.error = None
        self.error_class = None  # the failure class of self.error
        self.state = {"status": "Running", "started": time.time(), "ended": None,
                      "error": None, "driver": procs.describe_self(),
                      "address": list(acceptor.listener.address)}
        self._state_dirty = True
        self.last_flush = 0.0
        self.last_cancel_check = 0.0
        self.no_runner_since = None
        self.last_node_check = 0.0

    # -- connections ---------------------------------------------------------------------
    def _lose(self, runner, why):
        """Forget ``runner``; its unfinished tasks go back to the front of the queue, except
        the one it was running when that one was lost :data:`MAX_TASK_LOSSES` times, its
        container was preempted ``driver.max_task_preemptions`` times or killed for exceeding
        its memory: that one is recorded Failed, with the failure class and the backend's
        diagnostics. When the backend can say why the runner ended, it is asked in a thread
        and the tasks' fate is decided when it answers (:meth:`_settle_losses`)."""
        self.runners.pop(runner.conn, None)
        try:
            runner.conn.close()
        except OSError:
            pass
        unfinished = [i for i in runner.inflight if i not in self.done]
        if unfinished and self.explain is not None:
            if self._explain_pool is None:
                self._explain_pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=4, thread_name_prefix="explain")
            print(f"[dato-dist] runner {runner.id} ({runner.worker}) lost ({why}); asking "
                  f"why it ended, {len(unfinished)} task(s) wait", flush=True)
            self.explaining.append([runner, why, unfinished,
                                    self._explain_pool.submit(self._explain, runner),
                                    time.monotonic()])
        else:
            self._settle(runner, why, unfinished, (E.LOST, None))
        self._state_dirty = True

    def _settle_losses(self):
        """Decide the fate of lost runners' tasks whose explanation came (or is overdue)."""
        if not self.explaining:
            return
        bound = getattr(self.explain, "timeout", 8.0) + EXPLAIN_GRACE
        now, waiting = time.monotonic(), []
        for loss in self.explaining:
            runner, why, unfinished, future, asked = loss
            if future.done():
                found = future.result()  # _explain never raises
            elif now - asked > bound:
                print(f"[dato-dist] no answer in {bound:.0f} s on why runner {runner.id} "
                      "ended", flush=True)
                found = (E.LOST, None)
            else:
                waiting.append(loss)
                continue
            self._settle(runner, why, [i for i in unfinished if i not in self.done], found)
        self.explaining = waiting

    def _settle(self, runner, why, unfinished, found):
        kind, diagnostics = found
        quarantined = False
        if unfinished:
            suspects = _suspects(unfinished, runner.current)
            print(f"[dato-dist] runner {runner.id} ({runner.worker}) lost ({why}; {kind}"
                  + (f": {diagnostics}" if diagnostics else "")
                  + f"); re-queuing {len(unfinished)} task(s)", flush=True)
            if kind == E.PREEMPTED:  # no task's fault: none is suspected, one was running
                running = runner.current[0] if runner.current else None
                if running in unfinished:
                    self.losses[running] += 1
                    self.preemptions[running] += 1
                    if self.preemptions[running] >= self.settings.get(
                            "max_task_preemptions", MAX_TASK_PREEMPTIONS):  # older specs
                        unfinished.remove(running)
                        self._add_records(records.of_records([self._lost_record(
                            running, runner, kind, diagnostics)]))
            elif len(suspects) == 1:  # it was running this task: the loss is this task's
                running = suspects[0]
                self.losses[running] += 1
                if kind == E.MEMORY or (self.losses[running] - self.preemptions[running]
                                        >= MAX_TASK_LOSSES):
                    unfinished.remove(running)
                    self._add_records(records.of_records([self._lost_record(
                        running, runner, kind, diagnostics)]))
            else:
                # A runner sends finished records in batches, so any of these may be the
                # task that ended it: each runs alone until it is done, and a loss then
                # names its task.
                self.suspects.update(suspects)
                quarantined = True
            self.pending.push_front(unfinished)
        if runner.has_combiner and self.combiner_record is None:
            self.combiner_assigned = False
        slot = None if self.local is None else self.local.slot_of(runner.id)
        if slot is not None:
            if quarantined:
                self.local.forgive(slot)
            self.local.kill(slot)
        self._state_dirty = True

    def _explain(self, runner):
        """``(failure class, diagnostics or None)`` of a lost runner."""
        if self.explain is None:
            return E.LOST, None
        try:
            found = self.explain(runner.id)
        except Exception as e:  # noqa: BLE001 (why it ended is a bonus; the loss is handled)
            print(f"[dato-dist] could not learn why runner {runner.id} ended: {e}", flush=True)
            found = None
        return found or (E.LOST, None)

    def _lost_record(self, index, runner, kind, diagnostics):
        losses = self.losses[index]
        if kind == E.MEMORY:
            exc, message = MEMORY_EXCEEDED, (
                "the task's container was killed for running beyond its physical memory "
                "limit; give it larger containers (container_size) or make the task use "
                "less")
        elif kind == E.PREEMPTED:
            times = self.preemptions[index]
            exc, message = PREEMPTED, (
                f"the task's container was preempted {times} time{'s' * (times != 1)} (the "
                "scheduler took the capacity back for another queue); run it when the "
                "cluster is less busy, or in a queue with a larger guarantee (hadoop.queue)")
        else:
            exc, message = RUNNER_LOST, (
                f"the runner died {losses} times while running this task (killed, out of "
                "memory, or the task ended its process)")
        if diagnostics:  # the backend's, saying whose ("YARN's diagnostics: ...")
            message += f". {diagnostics}"
        current = runner.current  # (index, start) from its heartbeats
        start = current[1] if current and current[0] == index else time.time()
        return records.failure(index, start, losses, runner.worker, exc, message, None, kind)

    # -- records and scheduling ----------------------------------------------------------
    def _add_records(self, batch, runner=None):
        """Take a batch of finished records (see :mod:`dato_dist.records`)."""
        finished = records.indices(batch)
        if not finished:
            return
        if self.suspects:
            self.suspects.difference_update(finished)
        run = self.done.run_of(batch["index"])
        if run is not None and type(batch["index"]) is not range:
            batch["index"] = range(*run)  # stored as a range too: no array to read back
        repeated = () if self.done.isdisjoint(batch["index"]) and all(
            r["index"] not in self.done for r in batch["other"]) else {
            i for i in finished if i in self.done}  # re-queued, finished twice
        if repeated:
            batch = records.without(batch, repeated)  # the first result stays
        if runner is not None and self.losses:
            _count_lost_attempts(batch, self.losses)
        if self.earlier:
            _count_lost_attempts(batch, self.earlier)
        for rec in batch["other"]:
            if rec["index"] == P.COMBINER_INDEX:
                self.combiner_record = rec
            else:
                self.done.add(rec["index"])
                if rec["status"] == "Failed":
                    self.failed += 1
                    if self.first_failure is None:
                        self.first_failure = rec
        self.done.update(batch["index"])
        times = batch["run_time"][-256:]  # a sample is enough to size batches
        if times:
            mean = sum(times) / len(times)
            self.avg_task_time = mean if self.avg_task_time is None else (
                0.8 * self.avg_task_time + 0.2 * mean)
        if records.size(batch):
            self.unflushed.append(batch)
        if runner is not None:
            k = len(finished)
            if runner.inflight[:k] == finished:  # the usual case: done in the order handed out
                del runner.inflight[:k]
            else:
                gone = set(finished)
                runner.inflight = [i for i in runner.inflight if i not in gone]
        self._state_dirty = True

    def _batch_size(self):
        active = max(1, len(self.runners))
        size = math.ceil(len(self.pending) / (2 * active))
        if self.avg_task_time is None:
            size = min(size, 1)
        elif self.avg_task_time > 0:
            size = min(size, max(1, int(TARGET_BATCH_SECONDS / self.avg_task_time)))
            # A round trip must buy enough work (GSS's tail of a few tiny tasks per batch
            # costs more in messages than in tasks), but every runner keeps a share.
            floor = int(MIN_BATCH_SECONDS / self.avg_task_time)
            size = max(size, min(floor, math.ceil(len(self.pending) / active)))
        return max(1, min(size, self.settings["max_batch_size"]))

    def _map_finished(self):
        return len(self.done) == self.n

    def finished(self):
        return self._map_finished() and (
            not self.spec["has_combiner"] or self.combiner_record is not None)

    def _serve(self, runner):
        """Answer a runner's WANT: tasks, the combiner, STOP, or park it until there is work."""
        if self.cancel_requested:
            return self._send(runner, (P.STOP,))
        if self.pending:
            size = min(self._batch_size(), self.max_batch_tasks)
            if self.suspects and self.pending.first() in self.suspects:
                size = 1  # a suspect of a lost runner runs alone (see _lose)
            batch = self.pending.take(size)
            runner.inflight.extend(batch)
            runner.idle = False
            if isinstance(batch, range):
                tasks = self.tasks[batch.start:batch.stop]
            elif isinstance(self.tasks, TaskColumns):
                tasks = self.tasks.take(batch)
            else:
                tasks = [self.tasks[i] for i in batch]
            return self._send(runner, (P.TASKS, batch, tasks))
        if self._map_finished() and self.spec["has_combiner"] and not self.combiner_assigned:
            done = self.files_records()
            pairs = [(name, done[i]["result"] if i in done else None)
                     for i, name in enumerate(jobfiles.task_names(self.spec))]
            self.combiner_assigned = runner.has_combiner = True
            runner.idle = False
            return self._send(runner, (P.COMBINE, pairs))
        if self.finished():
            return self._send(runner, (P.STOP,))
        runner.idle = True

    def files_records(self):
        """All records so far: flushed (from the store) and not yet flushed."""
        self.flush()
        return self.files.read_results()

    def _send(self, runner, msg):
        try:
            runner.conn.send(msg)
        except (OSError, ValueError) as e:
            self._lose(runner, f"send failed: {e}")

    def _handle(self, conn):
        runner = self.runners.get(conn)
        try:
            msg = conn.recv()
        except (EOFError, OSError) as e:
            if runner is not None:
                self._lose(runner, f"connection closed: {type(e).__name__}")
            else:
                conn.close()
            return
        kind = msg[0]
        if kind == P.HELLO:
            runner = _Runner(conn, *msg[1:5])
            self.runners[conn] = runner
            self._send(runner, (P.SETUP, self.function_bytes, self.combiner_bytes,
                                self.runner_settings, self.name_prefix))
            return
        if runner is None:
            conn.close()
            return
        runner.last_seen = time.monotonic()
        if kind == P.BEAT:
            if runner.current != msg[1]:
                runner.current = msg[1]
                self._state_dirty = True
        elif kind == P.RESULTS:
            self._add_records(msg[1], runner)
        elif kind == P.WANT:
            self._add_records(msg[1], runner)
            self._serve(runner)

    def _wake_idle(self):
        for runner in list(self.runners.values()):
            if runner.idle and (self.pending or self.finished() or self.cancel_requested or (
                    self._map_finished() and self.spec["has_combiner"]
                    and not self.combiner_assigned)):
                self._serve(runner)

    # -- periodic duties -----------------------------------------------------------------
    def flush(self):
        """Write new records as one results batch, and the state when it changed."""
        if self.unflushed:
            self.files.write_results(self.batch_no, list(map(records.compact, self.unflushed)))
            self.batch_no += 1
            self.unflushed = []
        # The state's "updated" is the driver's heartbeat in the store: clients report a job
        # whose heartbeat is older than driver.heartbeat_timeout lost (job.Job._state).
        if self._state_dirty or time.time() - self.state.get("updated", 0) > self.settings.get(
                "driver_heartbeat_interval", 5.0):
            self._write_state()
        self.last_flush = time.monotonic()

    def _write_state(self):
        running = []
        for r in self.runners.values():
            if r.current and r.current[0] is not None and r.current[0] not in self.done:
                running.append([r.current[0], r.current[1], r.worker])
        self.state.update(
            counts={"total": self.n, "completed": len(self.done) - self.failed,
                    "failed": self.failed, "running": len(running),
                    "pending": len(self.pending)},
            running=running, runners=len(self.runners), updated=time.time(),
            results_files=self.batch_no)  # results/0..N-1 are written: clients check them
        self.files.write_state(self.state)
        self._state_dirty = False

    def _check_runners(self):
        now = time.monotonic()
        timeout = self.settings["heartbeat_timeout"]
        for runner in list(self.runners.values()):
            if now - runner.last_seen > timeout:
                self._lose(runner, f"no heartbeat for {timeout:.0f} s")
        if self.runners:
            self.no_runner_since = None
        elif self.no_runner_since is None:
            self.no_runner_since = now
        elif now - self.last_node_check > 2.0 and self._explain_no_runner():
            pass  # the backend says why no runner can come (self.error is set)
        elif now - self.no_runner_since > self.settings["runner_wait_timeout"]:
            self.error = (f"No runner was connected for {now - self.no_runner_since:.0f} s "
                          "(config key driver.runner_wait_timeout) with work left; see the "
                          "runner logs.")
            self.error_class = E.INFRASTRUCTURE  # no capacity, or no runner could start
        if self.local is None:
            return
        for slot, _code in self.local.reap():
            for runner in list(self.runners.values()):
                if runner.id == self.local.runner_id(slot):
                    self._lose(runner, "its process exited")
            if not (self.finished() or self.cancel_requested):
                self.local.replace(slot)  # bounded: driver.max_runner_restarts
        if not self.local.procs and not self.runners and not self.finished():
            self.error = ("Every runner was lost and none could be replaced (config key "
                          "driver.max_runner_restarts); see the runner logs in "
                          f"{self.files.store.display_path(self.files.log_rel())}.")
            self.error_class = E.LOST

    def _explain_no_runner(self):
        """While no runner is connected: when the backend knows that none can start (every
        worker's package install failed: ``environment``), fail the job with that."""
        self.last_node_check = time.monotonic()
        node_error = getattr(self.explain, "node_error", None)
        try:
            found = node_error() if node_error is not None else None
        except Exception as e:  # noqa: BLE001 (the runner wait still bounds the job)
            print(f"[dato-dist] could not ask the backend about its workers: {e}", flush=True)
            found = None
        if found:
            self.error_class, why = found
            self.error = f"No runner could start: {why}"
        return bool(found)

    # -- the loop ------------------------------------------------------------------------
    def run(self):
        fn_bytes, comb_bytes, self.tasks = _read_payload(self.files)
        self.function_bytes, self.combiner_bytes = fn_bytes, comb_bytes
        self.max_batch_tasks = _max_batch_tasks(self.tasks)
        self._resume()
        self._write_state()
        flush_interval = self.settings["flush_interval"]
        while not (self.finished() or self.cancel_requested or self.error):
            wake_r, new = self.acceptor.wake_r, self.acceptor.conns
            ready = wait(list(self.runners) + [wake_r], timeout=0.1)
            for conn in ready:
                if conn is wake_r:
                    wake_r.recv(4096)
                    while new:
                        self._handle(new.popleft())
                else:
                    self._handle(conn)
            self._settle_losses()
            self._wake_idle()
            now = time.monotonic()
            if now - self.last_cancel_check > 1.0:
                self.last_cancel_check = now
                if self.files.cancel_requested():
                    self.cancel_requested = True
            self._check_runners()
            if now - self.last_flush > flush_interval:
                self.flush()
        if self._explain_pool is not None:  # a canceled job's questions go unanswered
            self._explain_pool.shutdown(wait=False, cancel_futures=True)
        return self._finish()

    def _resume(self):
        """A rerun (``Job.rerun``) goes on from the earlier runs: its results files follow
        theirs, and with ``failed_only`` their completed tasks are done already."""
        from . import rerun

        point = rerun.resume_point(self.files, self.n)
        if point is None:
            return
        self.batch_no = point.results_files
        self.earlier = point.attempts
        if point.failed_only:
            self.done = IndexSet(self.n, point.done)
            self.pending = _TaskQueue.of(point.todo)
        self.state.update(point.state)
        print(point.describe(self.files.job_id), flush=True)

    def _finish(self):
        if self.cancel_requested:
            status = "Canceled"
        elif self.error:
            status = "Failed"
        elif self.spec["has_combiner"] and self.combiner_record["status"] == "Failed":
            status = "Failed"
            rec = self.combiner_record
            self.error_class = rec.get("failure_class") or E.USER
            self.error = (f"The combiner raised {rec['exception']}: {rec['exception_message']}\n"
                          f"{rec['exception_traceback']}")
        elif self.spec["kind"] == "job" and self.first_failure is not None:
            # GraphLab's rule: a job whose last stage is one task fails with that task.
            status = "Failed"
            rec = self.first_failure
            self.error_class = rec.get("failure_class") or E.USER
            if self.error_class in (E.USER, E.ENVIRONMENT):
                self.error = (f"The job's function raised {rec['exception']}: "
                              f"{rec['exception_message']}\n{rec['exception_traceback'] or ''}")
            else:  # it did not raise: its runner or container ended under it
                self.error = (f"The job's task failed ({rec['exception']}): "
                              f"{rec['exception_message']}")
        else:
            status = "Completed"
        self.state.update(status=status, ended=time.time(), error=self.error,
                          failure_class=(self.error_class or E.INFRASTRUCTURE)
                          if status == "Failed" else None)
        self._state_dirty = True
        self.flush()
        if self.done_fd is not None:
            try:
                os.write(self.done_fd, b"x")
            except OSError:
                pass  # the client is gone: nobody to wake
        self._wake_idle()  # idle runners get STOP
        self.acceptor.closed = True
        for runner in list(self.runners.values()):
            self._send(runner, (P.STOP,))
        if self.local is not None:
            self.local.stop_all(first=signal.SIGTERM if status == "Canceled" else None)
        self.acceptor.close()
        print(f"[dato-dist] job {self.files.job_id} {status}", flush=True)
        return 0


def _read_payload(files):
    """The job's function, combiner and tasks (:meth:`JobFiles.read_payload`); a local
    tasks file is mapped, not read: its HMAC is checked and its pickle loaded from the
    page cache, with no copy of what may be hundreds of MB of arguments in between."""
    import mmap
    import pickle

    from .store import unframe

    rel = f"{files.job_id}/{jobfiles.TASKS}"
    path = files.store.local_path(rel)
    if path is None:
        return files.read_payload()
    fn_bytes, comb_bytes, _ = files.read_payload(tasks=False)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        payload = unframe(m, files.store.display_path(rel), files.key, rel)
        try:
            tasks = jobfiles.tasks_of(pickle.loads(payload), files)  # verified just above
        finally:
            payload.release()  # the map closes only once no view of it is left
    return fn_bytes, comb_bytes, tasks


def _max_batch_tasks(tasks):
    """Tasks per batch that keep a batch under MAX_BATCH_BYTES, from the largest task's
    pickle (tasks of plain data are small: the submit path pickles large ones)."""
    if not tasks or isinstance(tasks[0], dict):
        return sys.maxsize
    largest = tasks.largest() if hasattr(tasks, "largest") else max(map(len, tasks))
    return max(1, MAX_BATCH_BYTES // max(1, largest))


def _suspects(unfinished, current):
    """The tasks of a lost runner that may have ended it: from the one its last heartbeat
    said it was running (the ones before it finished) to the end of what it held."""
    if current and current[0] in unfinished:
        return unfinished[unfinished.index(current[0]):]
    return unfinished


def _count_lost_attempts(batch, losses):
    """Add to each task's ``attempts`` the runs its lost runners did not finish."""
    batch["attempts"] = [a + losses[i] if i in losses else a
                         for i, a in zip(batch["index"], batch["attempts"])]
    for rec in batch["other"]:
        if rec["index"] in losses:
            rec["attempts"] = (rec["attempts"] or 0) + losses[rec["index"]]


def run(store_uri, job_id, listener, authkey, *, local=None, cancel_signals=(signal.SIGTERM,),
        done_fd=None, acceptor=None, log_dirs=(), job_key=None, explain=None):
    """Run the job ``job_id`` of the store at ``store_uri`` to its end; return its status.

    ``listener`` is bound already (runners connect to it), and may be accepting already
    (``acceptor``); ``local``, if given, is the :class:`~dato_dist.node.Runners` of this
    machine. Any of ``cancel_signals`` cancels the job. The files in ``log_dirs`` are copied
    to the job's logs while it runs when the store is remote. ``job_key`` signs and checks
    the job's files (without it, it is derived from this user's key: see
    :mod:`dato_dist.keys`). ``explain``, given by a backend, says why a lost runner ended
    (see :class:`Driver`).
    """
    acceptor = acceptor or Acceptor(listener)
    from .jobfiles import JobFiles
    from .largeargs import CHUNK_WAIT
    from .store import Store

    pending_signals = []
    for sig in cancel_signals:
        signal.signal(sig, lambda *a: pending_signals.append(a[0]))
    files = JobFiles(Store(store_uri), job_id, key=job_key)
    files.args_wait = CHUNK_WAIT  # a local client may still be writing them
    spec = files.read_spec()
    driver = Driver(files, spec, acceptor, authkey, local_runners=local, done_fd=done_fd,
                    explain=explain)
    for sig in cancel_signals:  # a cancel ends the loop at its next turn
        signal.signal(sig, lambda *a: setattr(driver, "cancel_requested", True))
    if pending_signals:
        driver.cancel_requested = True
    shipper = node.LogShipper.if_remote(files, log_dirs) if log_dirs else None
    try:
        if shipper is not None:
            shipper.start()
        driver.run()
    except BaseException as e:
        driver.state.update(status="Failed", ended=time.time(),
                            error=f"The driver failed: {type(e).__name__}: {e}",
                            failure_class=E.INFRASTRUCTURE)
        try:
            driver._write_state()
        finally:
            if local is not None:
                local.stop_all(grace=0.5)
            if shipper is not None:
                shipper.stop()
        raise
    if shipper is not None:
        shipper.stop()
    return driver.state["status"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dato_dist.driver")
    parser.add_argument("--store", required=True, help="URI of the job store")
    parser.add_argument("--job", required=True, help="the job's id")
    parser.add_argument("--local-runners", type=int, default=0,
                        help="start this many runners on this machine")
    parser.add_argument("--local-log-dir", help="where local runners write their logs")
    parser.add_argument("--log-prefix", default="", help="the local runners' log names start "
                                                         "with this (a rerun's: run<N>.)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--ports", help="START-END port range to listen in")
    parser.add_argument("--done-fd", type=int, help="write a byte to this fd when the job ended")
    parser.add_argument("--wait-go", action="store_true",
                        help="after starting up, wait for the line 'go' on stdin (the job is "
                             "being written); exit quietly on anything else")
    args = parser.parse_args(argv)

    from .keys import JOB_KEY_ENV

    job_key_hex = os.environ.pop(JOB_KEY_ENV, None)  # a cluster host's (replacements never see it)
    authkey = node.job_keys()["authkey"] or secrets.token_bytes(32)
    ports = tuple(int(p) for p in args.ports.split("-")) if args.ports else None
    listener = bind_listener(args.host, ports, authkey)
    local = None
    if args.local_runners:
        # Fork the runners first: this process has no threads and has done no I/O yet.
        local = node.Runners(listener.address, authkey, log_dir=args.local_log_dir,
                             log_prefix=args.log_prefix)
        local.start(args.local_runners, fork=True, close=(listener,))
    acceptor = Acceptor(listener)  # runners get in while we wait and read the job
    if args.wait_go:
        import pyarrow.fs  # noqa: F401  (the slowest import, done while the client writes;
        #                    a driver forked by the launcher has it already)

        line = b""
        while not line.endswith(b"\n"):  # fd 0 directly: sys.stdin may not be ours (fork)
            chunk = os.read(0, 16)
            if not chunk:
                break
            line += chunk
        words = line.split()  # "go <job key hex>": the key comes on the private pipe
        if not words or words[0] != b"go":
            acceptor.close()
            if local is not None:
                local.stop_all(grace=0.5)
            return 0
        if len(words) > 1:
            job_key_hex = words[1].decode()
    status = run(args.store, args.job, listener, authkey, local=local, done_fd=args.done_fd,
                 acceptor=acceptor, log_dirs=[args.local_log_dir] if local is not None else (),
                 job_key=bytes.fromhex(job_key_hex) if job_key_hex else None)
    return 0 if status in ("Completed", "Canceled") else 1


if __name__ == "__main__":
    sys.exit(main())
