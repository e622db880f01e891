"""What the contract suite knows of an environment: the object jobs run in, the capabilities
that make a behaviour testable there, and how long its jobs may take."""

from __future__ import annotations

import dataclasses

import pytest


@dataclasses.dataclass
class Environment:
    """One environment of the contract suite.

    ``synchronous``: ``job.create`` returns after the job ended (``Local``), so nothing can
    be done to a job while it runs. ``logs_while_running``: a task's output reaches
    ``read_logs()`` before the job ends. ``timeout``: the bound on one small job;
    ``start_timeout``: until its first task runs; ``log_delay``: until the logs of an ended
    job are all in the store (remote environments copy them every few seconds).
    """

    name: str
    env: object
    chaos: object
    synchronous: bool = False
    logs_while_running: bool = True
    timeout: float = 60
    start_timeout: float = 30
    log_delay: float = 5
    #: What ``get_error()`` says once the driver was killed: that it is gone, and where to look.
    lost_driver_error: str = r"driver \(pid \d+\) exited without finishing the job\. Its log: "

    def require(self, *capabilities):
        """Skip the calling test unless this environment has every named capability."""
        for capability in capabilities:
            if capability == "asynchronous":
                if self.synchronous:
                    pytest.skip(f"{self.name} is synchronous: a job cannot be reached "
                                "while it runs")
            elif not getattr(self, capability):
                pytest.skip(f"{self.name} has no {capability}")

    def __str__(self):
        return self.name
