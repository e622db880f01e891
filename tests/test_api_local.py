"""The GraphLab API on the local environments (real driver and runner processes): what is
local-only or independent of where jobs run (naming, collections, log lines, validation).
What every environment must do with a job is the contract suite (tests/contract)."""

import logging
import os
import re
import subprocess
import sys

import pytest

import dato_dist as gl
from tests import tasks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD_PARAMS = [{"x": 20, "y": 20}, {"x": 10, "y": 10}, {"x": 5, "y": 5}]


def test_job_create_default_environment_and_log_lines(caplog):
    with caplog.at_level(logging.INFO, logger="dato_dist"):
        job = gl.deploy.job.create(tasks.add, x=1, y=2)
    assert job.get_results() == 3
    assert job.environment.name == "async" and str(job.environment) == \
        'LocalAsync: ["name": async]'
    messages = [r.getMessage() for r in caplog.records if r.name == "dato_dist.deploy.job"]
    assert messages[0] == "Validating job."
    assert f"Validation complete. Job: '{job.name}' ready for execution." in messages
    assert messages[-1] == f"Job: '{job.name}' scheduled."
    assert re.match(r"^add-[A-Z][a-z]{2}-\d\d-\d{4}-\d\d-\d\d-\d\d(-[0-9a-f]{5})?$", job.name)
    assert gl.deploy.environments["async"].name == "async"
    with pytest.raises(TypeError, match="not a map job"):
        job.get_map_results()


def test_keyword_order(env2):
    job = gl.deploy.job.create(tasks.add, y=2, environment=env2, x=40)
    assert job.get_results() == 42


def test_generator_parameter_set_and_get_parameters(env2):
    job = gl.deploy.map_job.create(tasks.add, ({"x": i, "y": i} for i in range(5)),
                                   environment=env2)
    assert job.get_map_results() == [0, 2, 4, 6, 8]
    assert job.get_parameters()["add-0-3"] == {"x": 3, "y": 3}
    assert "def add(x, y)" in job.get_code()


def test_local_environment_is_synchronous(caplog):
    env = gl.deploy.environment.Local("sync", num_workers=1)
    assert str(env) == 'Local: ["name": sync]'
    with caplog.at_level(logging.INFO, logger="dato_dist"):
        job = gl.deploy.job.create(tasks.add, environment="sync", x=1, y=1)
    assert job.get_status() == "Completed"  # already, without waiting
    assert f"Job: '{job.name}' finished." in caplog.text
    assert job.get_results() == 2


def test_names_validated_and_renamed(env2, caplog):
    with pytest.raises(ValueError, match="Invalid job name"):
        gl.deploy.job.create(tasks.add, name="bad name!", environment=env2, x=1, y=1)
    first = gl.deploy.job.create(tasks.add, name="my-job", environment=env2, x=1, y=1)
    assert first.name == "my-job"
    with caplog.at_level(logging.INFO, logger="dato_dist"):
        second = gl.deploy.job.create(tasks.add, name="my-job", environment=env2, x=1, y=1)
    assert re.match(r"^my-job-[0-9a-f]{5}$", second.name)
    assert f"Renaming the job to '{second.name}'" in caplog.text
    assert first.get_results() == second.get_results() == 2


def test_concurrent_clients_never_share_a_job(tmp_path):
    """Two processes creating jobs of the same function at the same time (same default
    name, to the second) each get their own job."""
    code = ("import sys\n"
            "import dato_dist as gl\n"
            "from tests import tasks\n"
            "env = gl.deploy.environment.LocalAsync('race', num_workers=1)\n"
            "k = int(sys.argv[1])\n"
            "for rep in range(15):\n"
            "    job = gl.deploy.map_job.create(tasks.add, [{'x': k, 'y': rep}], "
            "environment=env)\n"
            "    assert job.get_map_results() == [k + rep], (job.name, job.get_map_results())\n"
            "    print(job.name, flush=True)\n")
    clients = [subprocess.Popen([sys.executable, "-c", code, str(k * 100)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for k in (1, 2)]
    names = []
    for proc in clients:
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        names += out.split()
    assert len(names) == 30 and len(set(names)) == 30
    assert all(n in gl.deploy.jobs for n in names)


def test_jobs_collection(env2):
    gl.deploy.job.create(tasks.add, name="coll-a", environment=env2, x=1, y=1)
    b = gl.deploy.job.create(tasks.add, name="coll-b", environment=env2, x=2, y=2)
    assert gl.deploy.jobs[0].name == "coll-b"  # newest first
    assert gl.deploy.jobs["coll-a"].get_results() == 2
    table = gl.deploy.jobs.list()
    assert table.column_names == ["Index", "Environment", "Name", "Creation date"]
    frame = table.to_dataframe()
    assert list(frame["Name"][:2]) == ["coll-b", "coll-a"]
    assert str(gl.deploy.jobs).startswith("Job(s):\n+")
    with pytest.raises(KeyError, match="no-such-job"):
        gl.deploy.jobs["no-such-job"]
    with pytest.raises(IndexError):
        gl.deploy.jobs[10_000]
    del gl.deploy.jobs["coll-a"]
    assert "coll-a" not in gl.deploy.jobs.names()
    assert b.get_results() == 4
    gl.deploy.jobs.delete(pattern="coll-*")
    assert not [n for n in gl.deploy.jobs.names() if n.startswith("coll-")]
    # deleting the reference never touches the job itself
    assert gl.deploy.job.load(b.uri).get_results() == 4


def test_environments_collection():
    gl.deploy.environment.LocalAsync("envs-a")
    gl.deploy.environment.Local("envs-b")
    envs = gl.deploy.environments
    assert envs["envs-a"].type_name == "LocalAsync"
    assert envs[0].name == "envs-b"
    assert envs.list().column_names == ["Index", "Name", "Type", "Unsaved changes?",
                                        "Creation date"]
    assert "Environment(s):" in str(envs)
    envs.delete("envs-b")
    with pytest.raises(KeyError):
        envs["envs-b"]
    with pytest.raises(ValueError):
        gl.deploy.environment.LocalAsync("bad name")


def test_status_values_and_partial_results(env2):
    job = gl.deploy.map_job.create(tasks.sleepy, [{"i": i, "seconds": 0.3} for i in range(6)],
                                   environment=env2)
    assert job.get_status() in ("Pending", "Running")
    partial = job.get_map_results(wait=False)
    assert partial is None or len(partial) == 6
    assert job.get_map_results() == [i * i for i in range(6)]
    assert job.get_status() == "Completed"
    assert job.get_start_time() <= job.get_end_time()
    text = str(job)
    for section in ("Info", "Help", "Environment", "Metrics", "Execution Information"):
        assert f"\n{section}\n" in f"\n{text}"
    assert "Status             : Completed" in text and "Process pid" in text


def test_required_packages_recorded(env2):
    @gl.deploy.required_packages(["names==0.3.0"])
    def greet(who):
        return f"hi {who}"

    job = gl.deploy.job.create(greet, environment=env2, who="you")
    assert job.get_results() == "hi you"
    assert job.get_required_packages() == ["names==0.3.0"]


def test_jobs_whose_spec_lists_task_names_still_load(env2):
    """Specs written before the name prefix list every task's name."""
    job = gl.deploy.map_job.create(tasks.add, GOOD_PARAMS, environment=env2)
    assert job.get_map_results() == [40, 20, 10]
    files = job._files
    spec = files.read_spec()
    assert spec["num_tasks"] == 3 and spec["task_name_prefix"] == "add-0-"
    del spec["num_tasks"], spec["task_name_prefix"]
    spec["task_names"] = ["add-0-0", "add-0-1", "add-0-2"]
    files.write_spec(spec)
    old = gl.deploy.job.load(job.uri)
    assert old.get_map_results() == [40, 20, 10]
    assert [row["task_name"] for row in old.get_metrics()] == spec["task_names"]


def _marked_sections(job):
    """``{task name: the log text after its marker line, up to the next marker}``."""
    out = {}
    for text in job.read_logs().values():
        parts = re.split(r"^\[dato-dist\] task (\S+) started\n", text, flags=re.M)
        for name, body in zip(parts[1::2], parts[2::2]):
            out.setdefault(name, "")
            out[name] += body
    return out


def test_silent_tiny_tasks_cost_no_log_line_and_a_speaking_one_keeps_its_marker(env2):
    n, every = 4000, 1000
    job = gl.deploy.map_job.create(tasks.speaks_every, [{"i": i, "every": every}
                                                        for i in range(n)], environment=env2)
    assert job.get_map_results() == list(range(n))
    sections = _marked_sections(job)
    for i in range(0, n, every):  # its output follows its own marker, both kinds of it
        body = sections[f"speaks_every-0-{i}"]
        assert f"task {i} says hi\n" in body and f"task {i} fd-level\n" in body, body
    # Markers only for the tasks that spoke and the first of each batch (after a runner
    # has measured nothing yet): far fewer than one per task.
    assert len(sections) < n // 10, len(sections)
    silent = [name for name, body in sections.items() if body.strip() and "says hi" not in body
              and "[dato-dist]" not in body]
    assert not silent, silent[:3]


def test_metrics_of_many_tasks_keep_the_table_contract(env2):
    from dato_dist.metrics import COLUMNS

    n = 20_000
    params = [{"x": i, "y": "s" if i == 7 else i} for i in range(n)]  # task 7 raises
    job = gl.deploy.map_job.create(tasks.add, params, environment=env2)
    results = job.get_map_results()
    assert results[7] is None and results[8] == 16 and len(results) == n
    metrics = job.get_metrics()
    assert len(metrics) == metrics.num_rows == n and metrics.column_names == list(COLUMNS)
    first, failed, last = metrics[0], metrics[7], metrics[-1]
    assert first["task_name"] == "add-0-0" and first["status"] == "Completed"
    assert failed["status"] == "Failed" and failed["exception"] == "TypeError"
    assert "unsupported operand" in failed["exception_message"]
    assert last["task_name"] == f"add-0-{n - 1}" and last == metrics[n - 1]
    with pytest.raises(IndexError):
        metrics[n]
    head = [row for _, row in zip(range(12), metrics)]
    assert head == [metrics[i] for i in range(12)]
    assert metrics["status"].count("Failed") == 1 and len(metrics["run_time"]) == n
    assert metrics.to_arrow().num_rows == n
    # The lazy rows are what the full records (the Mapping view) always gave.
    from dato_dist.metrics import format_time

    records = job._read_records()
    for i in (0, 7, 4321, n - 1):
        rec = records[i]
        assert metrics[i] == {
            "task_name": f"add-0-{i}", "status": rec["status"],
            "start_time": format_time(rec["start"]), "run_time": rec["run_time"],
            "exception": rec["exception"], "exception_message": rec["exception_message"],
            "exception_traceback": rec["exception_traceback"], "attempts": rec["attempts"],
            "worker": rec["worker"],
            "failure_class": rec["failure_class"] if rec["status"] == "Failed" else None}
    text = str(metrics)
    assert f"[{n} rows x {len(COLUMNS)} columns]" in text and "print_rows" in text
    assert "add-0-9 " in text and "add-0-10 " not in text  # the head only: 10 rows
    shown = str(job)
    assert f"[{n} rows x {len(COLUMNS)} columns]" in shown and "add-0-10 " not in shown


def test_a_slow_task_after_tiny_ones_shows_running_and_gets_its_marker(env2):
    import time

    n = 400
    params = [{"i": i, "seconds": 0} for i in range(n)] + [{"i": n, "seconds": 3}]
    job = gl.deploy.map_job.create(tasks.sleepy, params, environment=env2)
    deadline, running = time.monotonic() + 20, None
    while time.monotonic() < deadline and running is None:
        metrics = job.get_metrics()
        rows = [] if metrics is None else [r for r in metrics if r["status"] == "Running"]
        running = next((r for r in rows if r["task_name"] == f"sleepy-0-{n}"), None)
        time.sleep(0.05)
    assert running is not None, "the slow task never showed Running"
    assert job.get_map_results() == [i * i for i in range(n + 1)]
    assert f"[dato-dist] task sleepy-0-{n} started\n" in "".join(job.read_logs().values())
