"""Results of every kind travel intact: plain data in columns, other objects pickled one by
one, unpicklable ones reported as failures; arguments too."""

import fractions

import pytest

import dato_dist as gl
from dato_dist import records, serialize
from tests import tasks


def test_plain_data_is_recognised_exactly():
    assert serialize.is_plain([1, 2.5, "s", b"b", None, True, (1, 2), {"k": [1, {2}]},
                               frozenset([1]), bytearray(b"x")])
    for other in (fractions.Fraction(1, 2), tasks.add, lambda: 1, {"k": object()},
                  [1, [2, [complex(1, 2)]]], type):
        assert not serialize.is_plain(other), other


def test_seal_pickles_objects_and_fails_the_unpicklable():
    import threading

    batch = records.new_batch("h:1")
    batch.update(index=[0, 1, 2], start=[1.0, 2.0, 3.0], run_time=[0.1, 0.2, 0.3],
                 attempts=[1, 1, 2], values=[7, fractions.Fraction(1, 3), threading.Lock()])
    sealed = records.seal(batch)
    assert sealed["pickled"] and sealed["index"] == [0, 1]
    assert serialize.is_plain(sealed)  # safe for the driver to unpickle
    [failed] = sealed["other"]
    assert failed["index"] == 2 and failed["status"] == "Failed"
    assert failed["exception"] == "PicklingError" and "lock" in failed["exception_message"]
    got = records.Records([sealed])
    assert got.map_values(3) == [7, fractions.Fraction(1, 3), None]
    assert got[1]["status"] == "Completed" and serialize.loads(got[1]["result"]) == (
        fractions.Fraction(1, 3))


def test_without_drops_finished_twice():
    batch = records.new_batch("h:1")
    batch.update(index=[4, 5], start=[1.0, 2.0], run_time=[0.1, 0.2], attempts=[1, 1],
                 values=["a", "b"])
    batch["other"].append(records.failure(6, 3.0, 1, "h:1", "ValueError", "no", "tb"))
    kept = records.without(batch, {4, 6})
    assert kept["index"] == [5] and kept["values"] == ["b"] and kept["other"] == []
    assert records.indices(batch) == [4, 5, 6]


def test_object_arguments_travel_pickled(env2):
    params = [{"x": fractions.Fraction(1, 2), "y": fractions.Fraction(1, 2)},
              {"x": 1, "y": 2}]
    job = gl.deploy.map_job.create(tasks.add, params, environment=env2)
    assert job.get_map_results() == [1, 3]
    assert job.get_parameters()["add-0-0"] == params[0]


def test_a_retry_gets_the_original_arguments(env2, tmp_path):
    job = gl.deploy.map_job.create(tasks.grows_then_succeeds,
                                   [{"items": [], "path": str(tmp_path / "flag")}],
                                   environment=env2, max_retries=1)
    assert job.get_map_results() == [1]
    assert job.get_metrics()[0]["attempts"] == 2


@pytest.mark.parametrize("max_retries", [0, 1])
def test_a_task_calling_sys_exit_fails_alone(env2, max_retries):
    job = gl.deploy.map_job.create(tasks.exits, [{"i": i} for i in range(3)],
                                   environment=env2, max_retries=max_retries)
    assert job.get_map_results() == [0, None, 2]
    row = job.get_metrics()[1]
    assert row["exception"] == "SystemExit" and row["attempts"] == 1 + max_retries
