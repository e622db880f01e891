"""The built wheel on Python 3.11, 3.12 and 3.13 (pyenv's interpreters).

Per interpreter, one venv with the wheel, its ``[yarn]`` extra and the test dependencies;
then the core and local tests, copied out of the checkout and run from that copy, so they
import the installed ``dato_dist``. The three interpreters run concurrently (the tests
mostly wait on their jobs), which keeps this under a few minutes.
"""

import concurrent.futures
import configparser
import shutil
import time
from pathlib import Path

import pytest

from .conftest import (
    REPO,
    TEST_DEPS,
    TIMINGS,
    VENV_TIMEOUT,
    clean_env,
    interpreter,
    need_interpreter,
    run,
)

pytestmark = pytest.mark.slow

VERSIONS = ["3.11", "3.12", "3.13"]
#: The core and local tests (no cluster, no AWS).
CORE_TESTS = ["test_api_local.py", "test_bad_input.py", "test_cli.py", "test_config.py",
              "test_failures.py", "test_launcher.py", "test_records.py", "test_store.py",
              "test_table.py", "contract"]
NOT_REMOTE = "not s3 and not hdfs and not yarn and not ec2"
DESELECT = [
    # Uses the moto server, which the [test] extra brings and these venvs do not install.
    "tests/test_store.py::test_s3_store_missing_bucket_is_unreachable",
]


def _copy_tests(dest):
    """The checkout's tests and pytest settings, in ``dest`` (no dato_dist beside them)."""
    shutil.copytree(REPO / "tests", dest / "tests",
                    ignore=shutil.ignore_patterns("pythons", "__pycache__"))
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    ini = configparser.ConfigParser()
    ini["pytest"] = {k: v for k, v in setup["tool:pytest"].items() if k != "testpaths"}
    with open(dest / "pytest.ini", "w") as f:
        ini.write(f)


def _run_suite(venvs, python, folder):
    venv = venvs.get(python, "yarn", TEST_DEPS)
    _copy_tests(folder)
    started = time.monotonic()
    env = clean_env(venv)
    env.pop("DATO_DIST_HOME", None)  # tests/conftest.py makes its own
    out = run([venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "-m", NOT_REMOTE, *[f"--deselect={d}" for d in DESELECT],
               *[f"tests/{t}" for t in CORE_TESTS]],
              cwd=folder, timeout=VENV_TIMEOUT, env=env, check=False)
    (folder / "pytest.log").write_text(out.stdout + out.stderr)
    TIMINGS[f"suite {Path(python).parent.parent.name}"] = time.monotonic() - started
    where = run([venv / "bin" / "python", "-c", "import dato_dist; print(dato_dist.__file__)"],
                cwd=folder, timeout=60, env=env)
    return out, where.stdout.strip(), time.monotonic() - started


@pytest.fixture(scope="module")
def suites(venvs, tmp_path_factory):
    """minor -> future of (pytest's output, where dato_dist was imported from, seconds)."""
    # The venvs build in parallel, but the suites run one at a time: three test suites at
    # once on 2 cores turn their timing-sensitive tests (concurrent clients, lost runners)
    # into a test of the machine.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    futures = {}
    for minor in VERSIONS:
        python = interpreter(minor)
        if python is not None:
            venvs.start(python, "yarn", TEST_DEPS)
            futures[minor] = pool.submit(_run_suite, venvs, python,
                                         tmp_path_factory.mktemp(f"suite-{minor}"))
    yield futures
    for future in futures.values():
        future.cancel()
    pool.shutdown(wait=True)


@pytest.mark.timeout(2 * VENV_TIMEOUT)  # waits for its venv and its suite (in the background)
@pytest.mark.parametrize("minor", VERSIONS)
def test_core_and_local_tests_pass_on(minor, suites):
    python = need_interpreter(minor)
    out, where, seconds = suites[minor].result(timeout=VENV_TIMEOUT)
    print(f"Python {minor} ({python}): core and local tests in {seconds:.0f} s")
    assert "site-packages" in where and str(REPO) not in where, where
    assert out.returncode == 0, f"{out.stdout[-6000:]}\n{out.stderr[-3000:]}"
    assert " passed" in out.stdout


SKEIN_CHECK = r'''
import configparser, sys
from importlib.metadata import version
from packaging.requirements import Requirement
import google.protobuf, grpc, skein  # skein needs distutils (setuptools' shim on 3.12+)
setup = configparser.ConfigParser()
setup.read(sys.argv[1])
for line in setup["options.extras_require"]["yarn"].strip().splitlines():
    req = Requirement(line)
    if req.name in ("protobuf", "grpcio"):
        installed = version(req.name)
        assert req.specifier.contains(installed), (req, installed)
        assert any(s.operator == "<" for s in req.specifier), f"{req}: no upper bound"
        print(req.name, installed, req.specifier)
print("skein", skein.__version__)
'''


@pytest.mark.timeout(VENV_TIMEOUT)
@pytest.mark.parametrize("minor", VERSIONS)
def test_skein_imports_with_the_yarn_extra_on(minor, venvs, suites, outside):
    """``import skein`` works with what the [yarn] extra installs, and the protobuf and grpcio
    pins hold (the 3.11 submit to the test cluster is tests/yarn/)."""
    python = need_interpreter(minor)
    venv = venvs.get(python, "yarn", TEST_DEPS)
    out = run([venv / "bin" / "python", "-c", SKEIN_CHECK, REPO / "setup.cfg"], cwd=outside,
              timeout=120, env=clean_env(venv))
    names = [line.split()[0] for line in out.stdout.splitlines()]
    assert names == ["protobuf", "grpcio", "skein"], out.stdout
