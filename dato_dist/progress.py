"""A one-line progress bar for waits on a terminal (none when output is not a terminal)."""

import sys
import time


class ProgressBar:
    """Draw ``[#####.....] done/total done, N failed, elapsed`` on one terminal line."""

    def __init__(self, stream=None, width=30, enabled=None):
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.start = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def update(self, job):
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1:
            return
        self._last = now
        done, failed, total = job.progress()
        filled = int(self.width * done / total) if total else self.width
        line = (f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} done, "
                f"{failed} failed, {now - self.start:.1f} s elapsed")
        self.stream.write(line)
        self.stream.flush()
        self._drawn = True

    def close(self):
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
