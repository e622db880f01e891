"""The dato-dist command, run as a user runs it (a real subprocess)."""

import os
import re
import subprocess
import sys

import pytest

import dato_dist as gl
from tests import tasks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "dato_dist.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_demo_prints_the_seed_outputs():
    out = cli("demo", "--workers", "2")
    assert out.returncode == 0, out.stderr
    assert "[40, None, 10]" in out.stdout
    assert "[40, 20, 10]" in out.stdout
    assert re.search(r"^70$", out.stdout, re.M)
    assert "|  add-0-1  |   Failed  |" in out.stdout
    assert "unsupported operand type(s..." in out.stdout
    assert "Validation complete" in out.stderr
    assert "[####" not in out.stderr  # no progress bar when not on a terminal
    assert "`dato-dist launcher stop` stops it" in out.stdout  # what stays up, and how to stop it


def test_jobs_and_job_subcommands(env2):
    job = gl.deploy.map_job.create(tasks.chatty, [{"i": 1}, {"i": 2}], environment=env2,
                                   name="cli-job")
    job.wait(timeout=60)
    out = cli("jobs")
    assert out.returncode == 0 and "cli-job" in out.stdout and "Job(s):" in out.stdout
    out = cli("job", "wait", "cli-job", "--timeout", "60")
    assert out.returncode == 0 and "Completed" in out.stdout
    out = cli("job", "show", "cli-job")
    assert "Status             : Completed" in out.stdout
    out = cli("job", "metrics", "cli-job")
    assert "chatty-0-1" in out.stdout and "[2 rows x 10 columns]" in out.stdout
    out = cli("job", "logs", "cli-job")
    assert "hello from task 2" in out.stdout and "==> driver.log <==" in out.stdout
    out = cli("job", "cancel", "cli-job")
    assert out.returncode == 0 and "Completed" in out.stdout  # nothing to cancel


def test_cancel_and_wait_exit_codes(env2):
    job = gl.deploy.job.create(tasks.sleepy, environment=env2, name="cli-cancel", i=1,
                               seconds=60)
    out = cli("job", "wait", job.name, "--timeout", "0.5")
    assert out.returncode == 6 and "still" in out.stderr  # Timeout
    out = cli("job", "cancel", job.name)
    assert out.returncode == 0 and "Canceled" in out.stdout
    out = cli("job", "wait", job.name)
    assert out.returncode == 5 and "Canceled" in out.stdout


def test_version():
    out = cli("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"dato-dist {gl.__version__}\n"


def test_backend_subcommands_come_from_the_registry():
    out = cli("--help")
    assert "hadoop" in out.stdout and "ec2" in out.stdout
    out = cli("hadoop", "install", "--help")
    assert out.returncode == 0 and "--num-containers" in out.stdout


def test_unknown_job_is_a_clear_error():
    out = cli("job", "show", "no-such-job")
    assert out.returncode == 3
    assert "No job 'no-such-job'" in out.stderr and "Traceback" not in out.stderr


def test_progress_bar_on_a_terminal():
    import io

    from dato_dist.progress import ProgressBar

    class Tty(io.StringIO):
        def isatty(self):
            return True

    class FakeJob:  # a progress source, not our code under test
        def progress(self):
            return 3, 1, 10

    stream = Tty()
    bar = ProgressBar(stream=stream)
    bar.update(FakeJob())
    bar.close()
    assert "[#########.....................] 3/10 done, 1 failed" in stream.getvalue()
    quiet = io.StringIO()
    ProgressBar(stream=quiet).update(FakeJob())
    assert quiet.getvalue() == ""


@pytest.mark.slow
def test_console_script_is_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "dato-dist")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "demo" in out.stdout
