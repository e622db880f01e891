"""The built wheel in fresh virtualenvs, one per (interpreter, extras) and test session.

Every venv is outside the checkout and every command runs with a cwd outside it, so what is
tested is the installed ``dato_dist``, never the checkout's. The venvs of one session are
built concurrently (pip mostly waits on the network and the disk).
"""

import concurrent.futures
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
#: What the core and local tests need beside dato-dist itself.
TEST_DEPS = ("pytest>=7", "pytest-timeout>=2.1", "pandas>=1.5")
VENV_TIMEOUT = 900
#: What took how long, printed at the end of the session ("venv 3.12.1-yarn-test": 71.0).
TIMINGS = {}
_IGNORE = shutil.ignore_patterns(".venv*", ".git", "build", "dist", "*.egg-info",
                                 "__pycache__", ".pytest_cache", "results")


def interpreter(minor):
    """The newest ``~/.pyenv/versions/<minor>.*/bin/python``, or None."""
    found = [p for p in PYENV.glob(f"{minor}.*/bin/python") if p.exists()]
    found.sort(key=lambda p: [int(x) for x in p.parent.parent.name.split(".") if x.isdigit()])
    return found[-1] if found else None


def need_interpreter(minor):
    """The interpreter for ``minor`` ("3.12"), or skip the test saying which is missing."""
    python = interpreter(minor)
    if python is None:
        pytest.skip(f"Python {minor} is not installed (looked for {PYENV}/{minor}.*/bin/python)")
    return python


def run(argv, *, cwd, timeout, env=None, check=True):
    """Run ``argv``; on failure (with ``check``) fail the test with its output."""
    out = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                         timeout=timeout, stdin=subprocess.DEVNULL, env=env)
    if check and out.returncode != 0:
        pytest.fail(f"{' '.join(map(str, argv))} exited {out.returncode}:\n"
                    f"{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return out


def clean_env(venv=None):
    """This environment without our virtualenv's traces or a PYTHONPATH to the checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV")}
    if venv is not None:
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(venv)
    return env


class Venvs:
    """Creates venvs with the built wheel on demand, concurrently, at most once each."""

    def __init__(self, root, wheel_future):
        self.root = root
        self._wheel = wheel_future
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=3)
        self._futures = {}
        self.seconds = {}

    def start(self, python, extras="", deps=()):
        """Begin creating the venv (python, extras, deps); returns its key."""
        key = (str(python), extras, tuple(deps))
        if key not in self._futures:
            self._futures[key] = self._pool.submit(self._create, python, extras, deps)
        return key

    def get(self, python, extras="", deps=()):
        """The venv's folder (waits for it)."""
        return self._futures[self.start(python, extras, deps)].result(timeout=VENV_TIMEOUT)

    def _create(self, python, extras, deps):
        started = time.monotonic()
        name = f"{Path(python).parent.parent.name}-{extras.replace(',', '_') or 'bare'}" \
               f"{'-test' if deps else ''}"
        venv = self.root / name
        wheel = self._wheel.result(timeout=VENV_TIMEOUT)
        env = clean_env()
        subprocess.run([str(python), "-m", "venv", str(venv)], check=True, env=env,
                       cwd=self.root, timeout=VENV_TIMEOUT, capture_output=True)
        spec = f"{wheel}[{extras}]" if extras else str(wheel)
        out = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                              "--disable-pip-version-check", spec, *deps], env=env,
                             cwd=self.root, timeout=VENV_TIMEOUT, capture_output=True,
                             text=True)
        if out.returncode != 0:
            raise RuntimeError(f"pip install {spec} into {venv} failed:\n{out.stderr[-4000:]}")
        self.seconds[name] = TIMINGS[f"venv {name}"] = time.monotonic() - started
        return venv

    def close(self):
        for future in self._futures.values():
            future.cancel()
        self._pool.shutdown(wait=True)


def _build_wheel(tmp):
    """``pip wheel --no-deps`` of a copy of the checkout (no stale ``build/`` leaks in)."""
    started = time.monotonic()
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=_IGNORE)
    out = tmp / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--disable-pip-version-check", "-w", str(out), str(src)], check=True,
                   cwd=tmp, timeout=VENV_TIMEOUT, capture_output=True, env=clean_env())
    (wheel,) = out.glob("dato_dist-*.whl")
    TIMINGS["wheel build"] = time.monotonic() - started
    return wheel


@pytest.fixture(scope="session")
def venvs(tmp_path_factory):
    """The session's :class:`Venvs` (the wheel is built once, in the background)."""
    root = tmp_path_factory.mktemp("pythons")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    made = Venvs(root, pool.submit(_build_wheel, root))
    try:
        yield made
    finally:
        made.close()
        pool.shutdown(wait=True)


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_line("tests/pythons seconds: " + ", ".join(
            f"{k} {v:.0f}" for k, v in sorted(TIMINGS.items())))


@pytest.fixture
def outside(tmp_path):
    """A working folder outside the checkout."""
    assert REPO not in tmp_path.parents
    return tmp_path
