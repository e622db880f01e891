"""Local-only failure behaviour; what every environment must do when runners, drivers or
clients are lost, or a job is canceled, is the job contract suite (tests/contract)."""

import pytest

import dato_dist as gl
from tests import tasks


@pytest.mark.slow
def test_task_that_kills_its_runner_fails_alone(env2):
    """Local runners are replaced, so a task that ends its process each time it runs is
    recorded Failed (RunnerLost) after MAX_TASK_LOSSES tries instead of stalling the job."""
    job = gl.deploy.map_job.create(
        lambda i: tasks.suicide() if i == 1 else i, [{"i": i} for i in range(3)],
        environment=env2)
    assert job.wait(timeout=120) == "Completed"
    assert job.get_map_results() == [0, None, 2]
    assert job.get_metrics()[1]["exception"] == "RunnerLost"
    assert job.get_metrics()[1]["attempts"] == 3
