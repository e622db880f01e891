"""The built wheel without extras: every backend entry point says which extra to install.

One venv (this interpreter, no extras) for the session; every command runs from a folder
outside the checkout, so the installed ``dato_dist`` is the one tested.
"""

import json
import sys
from pathlib import Path

import pytest

from .conftest import clean_env, run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the first test waits for the venv

BASE_PYTHON = Path(getattr(sys, "_base_executable", sys.executable))
HINT = {"ec2": "pip install 'dato-dist[ec2]'", "yarn": "pip install 'dato-dist[yarn]'"}

# Runs in the bare venv: each entry point, and what it raised.
ENTRY_POINTS = r'''
import json, sys
import dato_dist as gl
from dato_dist.errors import BackendUnavailable

def outcome(call):
    try:
        call()
    except BackendUnavailable as e:
        return ["BackendUnavailable", str(e)]
    except BaseException as e:
        return [type(e).__name__, repr(e)]
    return ["no error", ""]

checks = {
    "gl.aws": lambda: gl.aws,
    "gl.deploy.Ec2Config": lambda: gl.deploy.Ec2Config,
    "gl.deploy.ec2_cluster": lambda: gl.deploy.ec2_cluster,
    "gl.deploy.Ec2Cluster": lambda: gl.deploy.Ec2Cluster,
    "gl.deploy.hadoop_cluster": lambda: gl.deploy.hadoop_cluster,
    "gl.deploy.HadoopCluster": lambda: gl.deploy.HadoopCluster,
    "environment.EC2": lambda: gl.deploy.environment.EC2("legacy-ec2", "s3://bucket/path"),
    "environment.Hadoop": lambda: gl.deploy.environment.Hadoop("legacy-hadoop"),
}
results = {name: outcome(call) for name, call in checks.items()}
results["dato_dist"] = gl.__file__
print(json.dumps(results))
'''

# Runs two real local jobs, then makes their specs say they ran on EC2 / YARN (what a job
# created there records: only "type" is read before the backend is needed).
TWO_JOBS = r'''
import json, sys
import dato_dist as gl
from dato_dist.demo_functions import add
env = gl.deploy.environment.LocalAsync("here", num_workers=1)
for name, env_type in [("ran-on-ec2", "Ec2Cluster"), ("ran-on-yarn", "HadoopCluster")]:
    job = gl.deploy.job.create(add, name=name, environment=env, x=1, y=2)
    assert job.get_results() == 3
    # As if it had run on that cluster: its owner rewrites the (signed) spec.
    spec = job._files.read_spec()
    spec["environment"] = {"type": env_type, "name": "a-cluster"}
    job._files.write_spec(spec)
    print(job.uri)
'''

LOAD_JOBS = r'''
import json, sys
import dato_dist as gl
from dato_dist.errors import BackendUnavailable
results = {}
for name in ("ran-on-ec2", "ran-on-yarn"):
    job = gl.deploy.job.load(name)  # reading the store needs no backend
    for what, call in [("environment", lambda: job.environment), ("print", lambda: str(job))]:
        try:
            call()
            results[f"{name} {what}"] = ["no error", ""]
        except BackendUnavailable as e:
            results[f"{name} {what}"] = ["BackendUnavailable", str(e)]
        except BaseException as e:
            results[f"{name} {what}"] = [type(e).__name__, repr(e)]
print(json.dumps(results))
'''


@pytest.fixture(scope="module")
def bare(venvs):
    """The venv with the wheel and no extras (none of their modules installed)."""
    venv = venvs.get(BASE_PYTHON)
    out = run([venv / "bin" / "python", "-c",
               "import importlib.util as u; print([m for m in ('boto3', 'botocore', 'fabric', "
               "'paramiko', 'invoke', 'skein', 'hdfs_native', 'venv_pack', 'grpc') "
               "if u.find_spec(m)])"], cwd=venv, timeout=60, env=clean_env(venv))
    assert out.stdout.strip() == "[]", f"the bare venv has extra modules: {out.stdout}"
    return venv


@pytest.fixture
def bare_env(bare, outside):
    env = clean_env(bare)
    env["DATO_DIST_HOME"] = str(outside / "home")
    env["DATO_DIST_LOCAL_START_METHOD"] = "spawn"  # no launcher left running after the test
    env.pop("DATO_DIST_CONFIG", None)
    return env


def _python(bare, code, outside, env):
    out = run([bare / "bin" / "python", "-c", code], cwd=outside, timeout=120, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _expect_unavailable(outcome, extra):
    kind, message = outcome
    assert kind == "BackendUnavailable", outcome
    assert HINT[extra] in message, message
    assert "\n" not in message


def test_api_entry_points_name_the_extra(bare, bare_env, outside):
    results = _python(bare, ENTRY_POINTS, outside, bare_env)
    assert results.pop("dato_dist").startswith(str(bare))  # the wheel, not the checkout
    for name, outcome in results.items():
        _expect_unavailable(outcome, "ec2" if "ec2" in name.lower() or name == "gl.aws" else "yarn")


def test_loading_a_job_of_a_missing_backend(bare, bare_env, outside):
    out = run([bare / "bin" / "python", "-c", TWO_JOBS], cwd=outside, timeout=180,
              env=bare_env)
    uris = out.stdout.split()
    assert len(uris) == 2, out.stdout
    results = _python(bare, LOAD_JOBS, outside, bare_env)
    assert len(results) == 4
    for name, outcome in results.items():
        _expect_unavailable(outcome, "ec2" if "ec2" in name else "yarn")
    out = run([bare / "bin" / "dato-dist", "job", "show", "ran-on-ec2"], cwd=outside,
              timeout=60, env=bare_env, check=False)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stderr.strip().splitlines() == [
        "dato-dist: error: The EC2 backend needs packages that are not installed "
        "(No module named 'boto3'). Install them with: pip install 'dato-dist[ec2]'"]


@pytest.mark.parametrize("argv, extra", [
    (["ec2", "list"], "ec2"),
    (["ec2", "terminate", "a-cluster", "--yes"], "ec2"),
    (["hadoop", "install", "hdfs://127.0.0.1:9/dato-dist"], "yarn"),
    (["hadoop", "show", "hdfs://127.0.0.1:9/dato-dist"], "yarn"),
])
def test_cli_backend_commands_are_one_line_errors(bare, bare_env, outside, argv, extra):
    out = run([bare / "bin" / "dato-dist", *argv], cwd=outside, timeout=60, env=bare_env,
              check=False)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("dato-dist: error: The ") and line.endswith(HINT[extra]), line


def test_cli_without_extras_runs_the_demo_and_has_a_version(bare, bare_env, outside):
    out = run([bare / "bin" / "dato-dist", "--version"], cwd=outside, timeout=60, env=bare_env)
    from dato_dist import __version__

    assert out.stdout.strip() == f"dato-dist {__version__}"
    out = run([bare / "bin" / "dato-dist", "demo", "--workers", "1"], cwd=outside,
              timeout=180, env=bare_env)
    assert "[40, 20, 10]" in out.stdout
