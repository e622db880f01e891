"""Every bad input is a clear error at create, before anything runs."""

import threading

import pytest

import dato_dist as gl
from dato_dist import errors
from tests import tasks


@pytest.fixture
def no_new_jobs():
    before = set(gl.deploy.jobs.names())
    yield
    assert set(gl.deploy.jobs.names()) == before, "a rejected job was registered"


def test_kwargs_that_do_not_match_the_signature(env2, no_new_jobs):
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        gl.deploy.job.create(tasks.add, environment=env2, x=1, y=2, z=3)
    with pytest.raises(TypeError, match="missing a required argument: 'y'"):
        gl.deploy.job.create(tasks.add, environment=env2, x=1)
    with pytest.raises(TypeError, match=r"parameter_set\[1\] \(add-0-1\).*'y'"):
        gl.deploy.map_job.create(tasks.add, [{"x": 1, "y": 2}, {"x": 1}], environment=env2)


def test_parameter_set_shape(env2, no_new_jobs):
    with pytest.raises(TypeError, match="list .* of dicts"):
        gl.deploy.map_job.create(tasks.add, {"x": 1, "y": 2}, environment=env2)
    with pytest.raises(TypeError, match="list .* of dicts"):
        gl.deploy.map_job.create(tasks.add, 5, environment=env2)
    with pytest.raises(TypeError, match=r"parameter_set\[1\] must be a dict"):
        gl.deploy.map_job.create(tasks.add, [{"x": 1, "y": 2}, (1, 2)], environment=env2)
    with pytest.raises(RuntimeError, match="An empty parameter_set was given. Nothing to do."):
        gl.deploy.map_job.create(tasks.add, [], environment=env2)


def test_unpicklable_function_and_argument(env2, no_new_jobs):
    lock = threading.Lock()

    def uses_lock():
        return lock.locked()

    with pytest.raises(errors.SerializationError, match="function 'uses_lock'"):
        gl.deploy.job.create(uses_lock, environment=env2)
    with pytest.raises(TypeError, match="argument 'y' of task add-0-1"):
        gl.deploy.map_job.create(tasks.add, [{"x": 1, "y": 2}, {"x": 1, "y": lock}],
                                 environment=env2)


def test_unknown_environment(no_new_jobs):
    with pytest.raises(KeyError, match="No environment named 'nowhere'"):
        gl.deploy.job.create(tasks.add, environment="nowhere", x=1, y=2)
    with pytest.raises(TypeError, match="environment must be"):
        gl.deploy.job.create(tasks.add, environment=42, x=1, y=2)


def test_unreachable_store(env2, monkeypatch, no_new_jobs):
    monkeypatch.setenv("DATO_DIST_STORE_URI", "/proc/no-such-dir/jobs")
    with pytest.raises(errors.StoreUnreachable, match="/proc/no-such-dir/jobs"):
        gl.deploy.job.create(tasks.add, environment=env2, x=1, y=2)


def test_not_a_function(env2, no_new_jobs):
    class Thing:
        def method(self, x):
            return x

    with pytest.raises(TypeError, match="instance method"):
        gl.deploy.job.create(Thing().method, environment=env2, x=1)
    with pytest.raises(TypeError, match="must be callable"):
        gl.deploy.job.create("add", environment=env2)
    with pytest.raises(TypeError, match="combiner_function must be callable"):
        gl.deploy.map_job.create(tasks.add, [{"x": 1, "y": 1}], environment=env2,
                                 combiner_function=3)
    with pytest.raises(ValueError, match="max_retries"):
        gl.deploy.job.create(tasks.add, environment=env2, max_retries=-1, x=1, y=1)


def test_legacy_task_api_is_refused():
    with pytest.raises(NotImplementedError, match="Task API is not supported"):
        gl.deploy.environment.Task("t")


def test_bad_num_workers():
    with pytest.raises(ValueError, match="num_workers"):
        gl.deploy.environment.LocalAsync("w", num_workers=0)
