"""Local-only failure behaviour, and the failure classes of local jobs (issue 10 item 5);
what every environment must do when runners, drivers or clients are lost, or a job is
canceled, is the job contract suite (tests/contract)."""

import os
import socket
import sys
import textwrap

import pytest

import dato_dist as gl
from dato_dist.metrics import COLUMNS
from tests import tasks


@pytest.mark.slow
def test_task_that_kills_its_runner_fails_alone(env2):
    """Local runners are replaced, so a task that ends its process each time it runs is
    recorded Failed (RunnerLost, class 'lost') after MAX_TASK_LOSSES runs, each counted
    in ``attempts``, instead of stalling the job."""
    job = gl.deploy.map_job.create(
        lambda i: tasks.suicide() if i == 1 else i, [{"i": i} for i in range(3)],
        environment=env2)
    assert job.wait(timeout=120) == "Completed"
    assert job.get_map_results() == [0, None, 2]
    row = job.get_metrics()[1]
    assert row["exception"] == "RunnerLost" and row["failure_class"] == "lost"
    assert row["attempts"] == 3
    assert row["worker"].startswith(f"{socket.gethostname()}:")  # hostname:pid locally
    assert job.get_metrics()[0]["failure_class"] is None  # completed: no class
    assert job.get_failure_class() is None  # a map job with failed tasks is not Failed


def test_failure_class_column_comes_after_graphlabs_seven():
    assert COLUMNS[:7] == ("task_name", "status", "start_time", "run_time", "exception",
                           "exception_message", "exception_traceback")
    assert COLUMNS[-1] == "failure_class"


def test_a_task_that_raises_is_a_user_failure(env2):
    job = gl.deploy.map_job.create(tasks.add, [{"x": 1, "y": 2}, {"x": None, "y": 2}],
                                   environment=env2)
    assert job.wait(timeout=60) == "Completed"
    metrics = job.get_metrics()
    assert [r["failure_class"] for r in metrics] == [None, "user"]
    assert metrics[1]["exception"] == "TypeError"


def test_a_failed_job_carries_its_class_in_state_error_and_accessor(env2):
    """The job's class is in state.json, leads get_error()'s text, and is what
    get_failure_class() returns; the CLI shows the same text."""
    import subprocess

    job = gl.deploy.job.create(tasks.add, environment=env2, x=None, y=1)
    assert job.wait(timeout=60) == "Failed"
    assert job._files.read_state()["failure_class"] == "user"
    assert job.get_failure_class() == "user"
    assert job.get_error().startswith("[user] The job's function raised TypeError")
    assert "[user] The job's function raised TypeError" in str(job)
    out = subprocess.run([sys.executable, "-m", "dato_dist.cli", "job", "wait", job.name],
                         capture_output=True, text=True, timeout=60)
    assert "[user] The job's function raised TypeError" in out.stdout + out.stderr


def test_a_combiner_that_raises_is_a_user_failure(env2):
    job = gl.deploy.map_job.create(tasks.add, [{"x": 1, "y": 2}], environment=env2,
                                   combiner_function=tasks.failing_combiner)
    assert job.wait(timeout=60) == "Failed"
    assert job.get_failure_class() == "user"


def test_a_module_missing_on_the_runner_is_an_environment_failure(env2, tmp_path,
                                                                   monkeypatch):
    """The function comes from a module that imports on the client but not on the
    runners (as if a package it needs were missing on the node): the runners cannot
    unpickle it, and every task fails with class 'environment' saying so. A task that
    raises ImportError itself is 'environment' too."""
    (tmp_path / "ddt_client_only.py").write_text(textwrap.dedent(f"""\
        import os
        if os.getpid() != {os.getpid()}:  # not the client: the node lacks a dependency
            raise ModuleNotFoundError("No module named 'ddt_dep'", name="ddt_dep")

        def double(x):
            return 2 * x
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import ddt_client_only

    job = gl.deploy.map_job.create(ddt_client_only.double, [{"x": 1}, {"x": 2}],
                                   environment=env2)
    assert job.wait(timeout=60) == "Completed"
    rows = job.get_metrics()
    assert [r["failure_class"] for r in rows] == ["environment", "environment"]
    assert rows[0]["exception"] == "FunctionNotLoadable"
    assert "ddt_dep" in rows[0]["exception_message"]
    assert "could not be loaded on this runner" in rows[0]["exception_message"]

    plain = gl.deploy.job.create(tasks.import_missing, environment=env2)
    assert plain.wait(timeout=60) == "Failed"
    assert plain.get_failure_class() == "environment"
    assert plain.get_error().startswith("[environment] ")
    assert "ddt_no_such_module" in plain.get_error()


def test_errors_classify_yarn_diagnostics():
    from dato_dist import errors

    hadoop3 = ("Container [pid=4242,containerID=container_1_0001_01_000002] is running "
               "812646400B beyond the 'PHYSICAL' memory limit. Current usage: 1.0 GB of "
               "256 MB physical memory used. Killing container.")
    hadoop2 = "is running beyond physical memory limits. Current usage: 2.1 GB of 2 GB"
    assert errors.failure_class_of_diagnostics(hadoop3) == "memory"
    assert errors.failure_class_of_diagnostics(hadoop2) == "memory"
    assert errors.failure_class_of_diagnostics("Container preempted by scheduler") == \
        "preempted"
    assert errors.failure_class_of_diagnostics("Exit code is 137") == "lost"
    assert errors.failure_class_of(ModuleNotFoundError("x")) == "environment"
    assert errors.failure_class_of(ValueError("x")) == "user"
    assert errors.with_failure_class("boom", "lost") == "[lost] boom"
    assert errors.with_failure_class("[lost] boom", "lost") == "[lost] boom"


def test_a_task_that_kills_its_runner_mid_batch_is_the_one_blamed(tmp_path):
    """A runner holds finished records until it sends them, so when it dies mid-batch the
    driver cannot tell which of its tasks ended it: those tasks run alone until done, and
    only the task that ends its process is recorded lost; every other task completes."""
    env = gl.deploy.environment.LocalAsync("one", num_workers=1)
    n, culprit = 12, 6
    job = gl.deploy.map_job.create(
        lambda i: tasks.suicide() if i == culprit else i, [{"i": i} for i in range(n)],
        environment=env)
    assert job.wait(timeout=120) == "Completed"
    results = job.get_map_results()
    assert results == [None if i == culprit else i for i in range(n)]
    metrics = job.get_metrics()
    assert metrics[culprit]["exception"] == "RunnerLost"
    assert metrics[culprit]["failure_class"] == "lost"
    assert [r["status"] for r in metrics].count("Failed") == 1
