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


def test_task_columns_hold_uniform_kwargs_and_give_them_back():
    import pickle

    from dato_dist.tasklist import TaskColumns, TaskNames

    kwargs = [{"x": i, "y": str(i)} for i in range(10)]
    cols = TaskColumns.of(kwargs)
    assert cols.names == ("x", "y") and len(cols) == 10
    assert list(cols) == kwargs and cols[3] == kwargs[3] and cols[-1] == kwargs[-1]
    assert list(cols[2:5]) == kwargs[2:5] and list(cols.take([7, 1])) == [kwargs[7], kwargs[1]]
    assert list(pickle.loads(pickle.dumps(cols[4:6]))) == kwargs[4:6]
    assert list(TaskColumns.from_plain(cols.to_plain())) == kwargs
    assert serialize.is_plain(cols.to_plain())  # the tasks file needs no class to load
    # the names in another order are the same names; kwargs are passed by name
    assert list(TaskColumns.of([{"x": 1, "y": 2}, {"y": 4, "x": 3}])) == [
        {"x": 1, "y": 2}, {"x": 3, "y": 4}]
    for mixed in ([{"x": 1}, {"y": 2}], [{"x": 1}, {"x": 2, "y": 3}], [{"x": 1}, 5]):
        assert TaskColumns.of(mixed) is None  # not uniform: tasks travel as dicts
    assert list(TaskColumns.of([{}, {}])) == [{}, {}]
    names = TaskNames("f-0-", 1_000_000)
    assert len(names) == 1_000_000 and names[12] == "f-0-12" and names[-1] == "f-0-999999"
    assert list(TaskNames("g-", 3)) == ["g-0", "g-1", "g-2"]
    with pytest.raises(IndexError):
        names[1_000_000]


def test_compact_batches_read_back_the_same():
    batch = records.new_batch("h:1")
    batch.update(index=[0, 1, 2], start=[1.5, 2.5, 3.5], run_time=[0.1, 0.2, 0.3],
                 attempts=[1, 1, 2], values=[7, "x", None])
    batch["other"] = [records.failure(3, 4.0, 1, "h:1", "ValueError", "bad", "tb")]
    plain, compact = records.Records([batch]), records.Records([records.compact(batch)])
    assert compact.map_values(4) == plain.map_values(4) == [7, "x", None, None]
    assert [compact[i] for i in range(4)] == [plain[i] for i in range(4)]
    assert compact.missing(5) == plain.missing(5) == [4]
    assert compact.not_completed(4) == plain.not_completed(4) == [3]
    import pickle

    assert len(pickle.dumps(records.compact(dict(batch, index=list(range(1000)),
                                                 start=[0.5] * 1000, run_time=[0.5] * 1000,
                                                 attempts=[1] * 1000, values=[1] * 1000)))
               ) < 40 * 1000  # 8 bytes an entry per numeric column, values as ints


def test_locate_finds_each_task_and_a_later_batch_wins():
    first = records.new_batch("h:1")
    first.update(index=list(range(0, 5)), start=[1.0] * 5, run_time=[0.1] * 5,
                 attempts=[1] * 5, values=list(range(5)))
    second = records.new_batch("h:2")  # a re-run of task 2 and a scattered batch
    second.update(index=[8, 2, 6], start=[2.0] * 3, run_time=[0.2] * 3, attempts=[2] * 3,
                  values=[80, 20, 60])
    third = records.of_records([records.failure(4, 3.0, 1, "h:3", "E", "m", None)])
    got = records.Records([records.compact(first), second, third])
    batch_of, pos_of, batches, other = got.locate(10)
    assert list(batch_of) == [0, 0, 1, 0, -2, -1, 1, -1, 1, -1]
    assert batches[batch_of[2]]["values"][pos_of[2]] == 20 and other[4]["exception"] == "E"


def test_tiny_tasks_called_by_position_bind_as_by_name(env2):
    import functools

    from dato_dist.runner import _positional_order

    def f(x, y, z=0):
        return x, y, z

    def kw_only(x, *, y):
        return x, y

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(**kwargs)  # takes keywords only: must be called by name

    assert _positional_order(f, ("y", "x")) == [1, 0]  # columns reordered to (x, y)
    assert _positional_order(f, ("x", "y", "z")) == [0, 1, 2]
    for fn, names in ((f, ("x", "z")), (kw_only, ("x", "y")), (wrapper, ("x", "y")),
                      (functools.partial(f, 1), ("y",)), (max, ("x",)), (f, ())):
        assert _positional_order(fn, names) is None, (fn, names)
    # A whole job: keys in another order than the parameters, a keyword-only one too.
    job = gl.deploy.map_job.create(tasks.minus, [{"y": 1, "x": 10 + i} for i in range(500)],
                                   environment=env2)
    assert job.get_map_results() == [9 + i for i in range(500)]
    job = gl.deploy.map_job.create(tasks.minus, [{"y": 1, "scale": 2, "x": 10 + i}
                                                 for i in range(500)], environment=env2)
    assert job.get_map_results() == [2 * (9 + i) for i in range(500)]
