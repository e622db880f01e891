"""Task marker lines and a cap on each task's output in a runner's log.

**Markers.** A line ``[dato-dist] task NAME started`` precedes a task's output in its
runner's log. It is written before the task runs when the task before it took
``runner.TINY_TASK`` (1 ms) or more (so the log says which task ran when a runner died);
after a run of tiny tasks it is *deferred*: written only if the task writes output, just
before the first text it writes to ``sys.stdout`` or ``sys.stderr`` (:class:`TaskMarker`,
:class:`MarkedStream`), or by the runner's heartbeat thread once the task has run
``runner.MARKER_AFTER`` (50 ms). A million silent tiny tasks thus add nothing to the log,
and a task's output follows its own marker; the one exception is output that a task
shorter than 50 ms, run right after a tiny one, writes straight to file descriptors 1 and
2 (C code, a subprocess) without printing: it follows the previous marker.

**Cap.** The runner's stdout and stderr (file descriptors 1 and 2, so C code and
subprocesses of a task are included) become a pipe; a thread copies it to the log as it
comes and counts the bytes after each task's marker line. Past the cap, a task's output
is dropped and, when the task ends, a line says how much was dropped.
"""

import os
import sys
import threading

#: The runner's marker before each task; a new marker starts a new task's budget.
MARKER = b"[dato-dist] task "
#: The longest marker line kept whole while waiting for its end of line.
MAX_MARKER_LINE = 4096


class TaskMarker:
    """The marker of the running task, written only when the task writes output.

    The runner sets :attr:`pending` to the task's index (a deferred marker) or None (no
    task, or its marker is written already); :meth:`take` returns the marker line once and
    clears :attr:`pending`: the task's first write (:class:`MarkedStream`) or the cap's
    thread calls it.
    """

    def __init__(self, name_prefix=""):
        self.name_prefix = name_prefix
        self.pending = None
        self._lock = threading.Lock()

    def line(self, index):
        return f"[dato-dist] task {self.name_prefix}{index} started\n"

    def take(self):
        """The pending marker line (then no longer pending), or None."""
        if self.pending is None:
            return None
        with self._lock:
            index, self.pending = self.pending, None
        return None if index is None else self.line(index)


class MarkedStream:
    """``sys.stdout`` / ``sys.stderr`` of a runner: writes the pending marker (if any)
    before the first text a task writes, else passes everything to ``stream``."""

    def __init__(self, stream, marker):
        self._stream, self._marker = stream, marker

    def write(self, text):
        if self._marker.pending is not None and text:
            line = self._marker.take()
            if line is not None:
                self._stream.write(line)
        return self._stream.write(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __getattr__(self, name):  # flush, fileno, buffer, encoding, isatty, ...
        return getattr(self._stream, name)


class OutputCap:
    """Copy fds 1 and 2 through a pipe into the log they pointed to, ``limit`` bytes per task.

    Examples
    --------
    >>> cap = OutputCap.install(10 * 2**20)   # doctest: +SKIP
    >>> cap.close()                           # doctest: +SKIP
    """

    def __init__(self, limit, log_fd, read_fd):
        self.limit, self.log_fd, self.read_fd = limit, log_fd, read_fd
        self.used = self.dropped = 0
        self.carry = b""
        self.at_line_start = True
        self.thread = threading.Thread(target=self._loop, name="output-cap", daemon=True)

    @classmethod
    def install(cls, limit):
        """Put the cap in place for this process; returns it, or None when ``limit`` is 0."""
        if not limit:
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        log_fd = os.dup(1)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        cap = cls(limit, log_fd, read_fd)
        cap.thread.start()
        return cap

    def close(self, timeout=2.0):
        """Restore fds 1 and 2, copy what is left in the pipe, and stop the thread."""
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError, RuntimeError):  # RuntimeError: in a signal handler
            pass
        os.dup2(self.log_fd, 1)  # closes this process's write ends: the thread sees EOF
        os.dup2(self.log_fd, 2)
        self.thread.join(timeout)

    # -- the copying thread ------------------------------------------------------------
    def _write(self, data):
        if data:
            self.at_line_start = data.endswith(b"\n")
        while data:
            try:
                data = data[os.write(self.log_fd, data):]
            except OSError:
                return  # the log is gone: nothing to keep the output in

    def _content(self, data):
        room = max(0, self.limit - self.used)
        if room:
            self._write(data[:room])
            self.used += min(room, len(data))
        self.dropped += max(0, len(data) - room)

    def _end_task(self):
        if self.dropped:
            self._write(f"{'' if self.at_line_start else chr(10)}[dato-dist] output cut: {self.dropped} bytes of this task's output "
                        f"were dropped (over {self.limit} bytes, config key "
                        "runner.max_task_output)\n".encode())
        self.used = self.dropped = 0

    def _feed(self, data):
        data, self.carry = self.carry + data, b""
        pos = 0
        while True:
            start = data.find(MARKER, pos)
            if start < 0:
                break
            self._content(data[pos:start])
            end = data.find(b"\n", start)
            if end < 0:
                if len(data) - start < MAX_MARKER_LINE:
                    self.carry = data[start:]  # the marker's line ends in the next read
                    return
                end = len(data) - 1
            self._end_task()
            self._write(data[start:end + 1])  # the marker itself is never cut
            pos = end + 1
        tail = data[pos:]
        # A marker may begin at the end of this read: keep its start for the next one.
        for k in range(min(len(MARKER) - 1, len(tail)), 0, -1):
            if MARKER.startswith(tail[-k:]):
                self.carry, tail = tail[-k:], tail[:-k]
                break
        self._content(tail)

    def _loop(self):
        try:
            while True:
                chunk = os.read(self.read_fd, 1 << 16)
                if not chunk:
                    break
                self._feed(chunk)
        except OSError:
            pass
        finally:
            if self.carry:
                carry, self.carry = self.carry, b""
                self._content(carry)
            self._end_task()
            os.close(self.read_fd)
