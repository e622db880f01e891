"""Every bad input is a clear error at create, before anything runs."""

import os
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


def test_async_and_generator_functions_are_refused(env2, no_new_jobs):
    import functools

    async def fetch(x):
        return x

    async def stream(x):
        yield x

    def numbers(x):
        yield x

    class AsyncCallable:
        async def __call__(self, x):
            return x

    for fn, kind in [(fetch, "async"), (stream, "async"), (numbers, "generator"),
                     (functools.partial(numbers, x=1), "generator"),
                     (AsyncCallable(), "async")]:
        with pytest.raises(TypeError, match=f"is an? {kind} function"):
            gl.deploy.job.create(fn, environment=env2, x=1)
    with pytest.raises(TypeError, match="combiner_function .* generator function"):
        gl.deploy.map_job.create(tasks.add, [{"x": 1, "y": 1}], environment=env2,
                                 combiner_function=numbers)


@pytest.mark.parametrize("name, why", [
    ("abc\n", "letters, digits"), ("../up", "letters, digits"), ("a/b", "letters, digits"),
    ("", "letters, digits"), ("x" * 201, "at most 200"), ("tab\tname", "letters, digits"),
])
def test_bad_job_names_are_refused(env2, no_new_jobs, name, why):
    with pytest.raises(ValueError, match=why):
        gl.deploy.job.create(tasks.add, name=name, environment=env2, x=1, y=2)


def test_a_function_name_cannot_leave_the_store_root(env2, tmp_path, monkeypatch):
    store_root = tmp_path / "store" / "jobs"
    monkeypatch.setenv("DATO_DIST_STORE_URI", str(store_root))

    def escape(x):
        return x + 1

    escape.__name__ = escape.__qualname__ = "../../outside\nname" + "y" * 300
    job = gl.deploy.job.create(escape, environment=env2, x=1)
    assert job.get_results() == 2
    assert "/" not in job.name and "\n" not in job.name and len(job.name) < 100
    assert job.name.startswith("_outside_name")
    assert os.path.dirname(job.uri) == str(store_root)
    assert sorted(os.listdir(tmp_path)) == ["store"]
    assert os.listdir(tmp_path / "store") == ["jobs"]


def test_a_parameter_named_like_a_create_keyword_says_how_to_pass_it(env2, no_new_jobs):
    def greet(name, times=1):
        return name * times

    def place(environment):
        return environment

    with pytest.raises(TypeError, match=r"parameter named 'name', which gl.deploy.job.create "
                                        r"takes for itself.*functools.partial\(greet, "
                                        r"name=...\)"):
        gl.deploy.job.create(greet, environment=env2, times=2)
    with pytest.raises(TypeError, match=r"parameter named 'environment'.*map_job.create\("
                                        r"place, \[\{'environment': ...\}\]\)"):
        gl.deploy.job.create(place, environment=env2)


def test_the_ways_given_to_pass_such_a_parameter_work(env2):
    import functools

    def greet(name, times=1):
        return name * times

    job = gl.deploy.job.create(functools.partial(greet, name="ab"), environment=env2, times=2)
    assert job.get_results() == "abab"
    assert gl.deploy.map_job.create(greet, [{"name": "c", "times": 3}],
                                    environment=env2).get_results() == ["ccc"]


def test_a_failed_create_leaves_nothing_in_the_store(env2, no_new_jobs):
    from dato_dist.config import load

    lock = threading.Lock()
    store_root = load().store_uri
    with pytest.raises(errors.SerializationError):
        gl.deploy.map_job.create(tasks.add, [{"x": 1, "y": lock}], name="leaves-nothing",
                                 environment=env2)
    assert not os.path.exists(os.path.join(store_root, "leaves-nothing"))
