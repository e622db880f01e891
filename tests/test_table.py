import pathlib

import pytest

from dato_dist.metrics import COLUMNS, metrics_table
from dato_dist.table import Table

SEED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "seeds"


def seed_rows():
    tb = "Traceback (most recent call last):\n  File \"x.py\", line 1"
    return [
        dict(task_name="add-0-0", status="Completed", start_time="2015-05-07 12:46:53",
             run_time=6.60419464111e-05),
        dict(task_name="add-0-1", status="Failed", start_time="2015-05-07 12:46:53",
             run_time=None, exception="TypeError",
             exception_message="unsupported operand type(s) for +: 'NoneType' and 'int'",
             exception_traceback=tb),
        dict(task_name="add-0-2", status="Completed", start_time="2015-05-07 12:46:53",
             run_time=1.50203704834e-05),
    ]


EXPECTED = """\
+-----------+-----------+---------------------+-------------------+-----------+
| task_name |   status  |      start_time     |      run_time     | exception |
+-----------+-----------+---------------------+-------------------+-----------+
|  add-0-0  | Completed | 2015-05-07 12:46:53 | 6.60419464111e-05 |    None   |
|  add-0-1  |   Failed  | 2015-05-07 12:46:53 |        None       | TypeError |
|  add-0-2  | Completed | 2015-05-07 12:46:53 | 1.50203704834e-05 |    None   |
+-----------+-----------+---------------------+-------------------+-----------+
+-------------------------------+-------------------------------+
|       exception_message       |      exception_traceback      |
+-------------------------------+-------------------------------+
|              None             |              None             |
| unsupported operand type(s... | Traceback (most recent cal... |
|              None             |              None             |
+-------------------------------+-------------------------------+
[3 rows x 7 columns]"""


def test_seed_metrics_print_exactly():
    table = Table(COLUMNS[:7], seed_rows())
    assert str(table) == EXPECTED


def test_expected_matches_the_seed_document():
    seeds = list(SEED.glob("002_*.txt"))
    if not seeds:
        pytest.skip("shared/seeds not beside the repo")
    assert EXPECTED in seeds[0].read_text()


def test_access_by_row_column_and_iteration():
    table = Table(COLUMNS[:7], seed_rows())
    assert len(table) == table.num_rows == 3
    assert table.num_columns == 7
    assert table[1]["exception"] == "TypeError"
    assert table["task_name"] == ["add-0-0", "add-0-1", "add-0-2"]
    assert [r["status"] for r in table] == ["Completed", "Failed", "Completed"]
    assert table.to_pylist()[2]["run_time"] == 1.50203704834e-05
    with pytest.raises(KeyError, match="nope"):
        table["nope"]


def test_to_arrow_and_pandas():
    table = Table(COLUMNS[:7], seed_rows())
    arrow = table.to_arrow()
    assert arrow.num_rows == 3 and arrow.column_names == list(COLUMNS[:7])
    pd = pytest.importorskip("pandas")
    frame = table.to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame["status"]) == ["Completed", "Failed", "Completed"]


def test_only_the_head_is_printed():
    table = Table(["index"], [{"index": i} for i in range(25)])
    text = str(table)
    assert "[25 rows x 1 columns]" in text
    assert "|   9   |" in text and "|   10  |" not in text
    assert "print_rows" in text
    assert "|   24  |" in table.format(num_rows=30)


def test_metrics_table_orders_tasks_and_shows_running():
    records = {1: {"status": "Completed", "start": 0.0, "run_time": 0.5, "exception": None,
                   "exception_message": None, "exception_traceback": None, "attempts": 1,
                   "worker": "h:1"}}
    table = metrics_table(["f-0-0", "f-0-1", "f-0-2"], records, [[0, 1.0, "h:2"]])
    assert table["task_name"] == ["f-0-0", "f-0-1"]
    assert table["status"] == ["Running", "Completed"]
    assert table.column_names[:7] == ["task_name", "status", "start_time", "run_time",
                                      "exception", "exception_message", "exception_traceback"]
    assert metrics_table(["f-0-0"], {}, []) is None


def test_a_million_rows_print_only_the_head():
    # One shared row dict a million times: cheap to build; str() must format only the head.
    table = Table(["task_name", "status"], [{"task_name": "f-0-0", "status": "Completed"}]
                  * 1_000_000)
    lines = str(table).splitlines()
    assert sum(1 for line in lines if line.startswith("|   f-0-0   |")) == 10
    assert lines[-3:] == [
        "[1000000 rows x 2 columns]",
        "Note: Only the head of the table is printed.",
        "You can use print_rows(num_rows=m, num_columns=n) to print more rows and columns."]
    assert len(table) == 1_000_000 and table[999_999]["status"] == "Completed"


def test_print_rows_shows_more_rows_and_fewer_columns(capsys):
    table = Table(["a", "b"], [{"a": i, "b": -i} for i in range(12)])
    table.print_rows(num_rows=12, num_columns=1)
    out = capsys.readouterr().out
    assert "| 11 |" in out and "b" not in out.split("[")[0]
    assert "[12 rows x 2 columns]" in out and "print_rows(num_rows=m, num_columns=n)" in out
    table.print_rows(num_rows=12)
    assert "Note" not in capsys.readouterr().out


def test_ten_rows_print_whole_with_no_note():
    table = Table(["a"], [{"a": i} for i in range(10)])
    text = str(table)
    assert text.endswith("| 9 |\n+---+\n[10 rows x 1 columns]")
    assert text == table.format(num_rows=100)


def test_a_lazy_table_makes_only_the_rows_asked_for():
    from dato_dist.table import LazyTable

    made = []

    def row(i):
        made.append(i)
        return {"i": i, "name": f"t-{i}"}

    table = LazyTable(["i", "name"], 1_000_000, row)
    assert len(table) == table.num_rows == 1_000_000 and table.num_columns == 2
    text = str(table)
    assert "[1000000 rows x 2 columns]" in text and "print_rows" in text
    assert "t-9 " in text and "t-10 " not in text
    assert sorted(made) == list(range(10))  # the printed head only
    assert table[-1] == {"i": 999_999, "name": "t-999999"} and table[5]["name"] == "t-5"
    with pytest.raises(IndexError):
        table[1_000_000]
    it = iter(table)
    assert [next(it)["i"] for _ in range(3)] == [0, 1, 2]
    assert len(made) < 20
    assert table[2:4] == [{"i": 2, "name": "t-2"}, {"i": 3, "name": "t-3"}]
    small = LazyTable(["i", "name"], 3, row)
    assert small["name"] == ["t-0", "t-1", "t-2"] and small.to_pylist()[2]["i"] == 2
    assert str(small) == str(Table(["i", "name"], [row(i) for i in range(3)]))


def test_metrics_table_from_record_batches_is_what_full_records_give():
    from dato_dist import records

    done = records.new_batch("h:1")
    done.update(index=list(range(0, 6)), start=[100.0 + i for i in range(6)],
                run_time=[0.5] * 6, attempts=[1] * 6, values=list(range(6)))
    rerun = records.new_batch("h:2")
    rerun.update(index=[3], start=[200.0], run_time=[0.25], attempts=[2], values=[33])
    failed = records.of_records([records.failure(6, 300.0, 1, "h:3", "E", "msg", "tb")])
    batches = [records.compact(done), rerun, failed]
    names = [f"f-0-{i}" for i in range(9)]
    lazy = metrics_table(names, records.Records(batches), [[8, 400.0, "h:4"]])
    full = records.Records(batches)
    eager = metrics_table(names, {i: full[i] for i in full}, [[8, 400.0, "h:4"]])
    assert len(lazy) == 8 and lazy.to_pylist() == eager.to_pylist()
    assert lazy["task_name"] == [f"f-0-{i}" for i in (0, 1, 2, 3, 4, 5, 6, 8)]
    assert lazy[3]["attempts"] == 2 and lazy[3]["worker"] == "h:2"  # the later batch wins
    assert lazy[6]["status"] == "Failed" and lazy[-1]["status"] == "Running"
    assert str(lazy) == str(eager) and "[8 rows x 10 columns]" in str(lazy)
