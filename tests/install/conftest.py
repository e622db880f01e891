"""dato-dist installed as users install it: a wheel built by pip from this checkout, in a
fresh virtualenv (non-editable), run from a folder outside the checkout.

- ``built_wheel`` (session): ``pip wheel --no-deps`` of a clean copy of the checkout.
- ``installed`` (session): an :class:`Installed` virtualenv holding that wheel with the
  ``[yarn,ec2]`` extras; one per session, reused by every test here.
- ``outside`` (function): a temp folder outside the checkout, the working directory of
  every command these tests run.

Every command runs with a private ``DATO_DIST_HOME``; the local launchers started there are
stopped (by pid) at the end of the session. The EC2 fixtures come from tests/ec2/conftest.py.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.ec2.conftest import (  # noqa: F401  (the EC2 test's fixtures, and host logs on failure)
    aws_sandbox,
    pytest_runtest_makereport,
    sandbox,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: What a clean copy of the checkout leaves out (what an sdist would not carry).
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info",
                                     "__pycache__", "*.pyc", ".ci", "bench")
PIP = ["-m", "pip", "install", "-q", "--disable-pip-version-check"]


def pip_cache_dir():
    """pip's cache of this user, kept when a test moves HOME (no re-downloads)."""
    out = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True,
                         text=True, timeout=60)
    return out.stdout.strip() if out.returncode == 0 else None


class Installed:
    """An interpreter with dato-dist installed, run from outside the checkout."""

    def __init__(self, python, bin_dir, homes, base_env=None):
        self.python = str(python)
        self.bin = str(bin_dir)
        self.homes = homes
        self.base_env = dict(base_env or {})

    def env(self, home, **extra):
        """The environment of a command: this process's, without anything that could put
        the checkout (or the test virtualenv) on the path."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP",
                            "PYTHONSAFEPATH", "PYTHONUSERBASE")}
        path = [p for p in env.get("PATH", os.defpath).split(os.pathsep)
                if p and not os.path.realpath(p).startswith(REPO + os.sep)]
        env["PATH"] = os.pathsep.join([self.bin] + path)
        env["DATO_DIST_HOME"] = str(home)
        env["DATO_DIST_CONFIG"] = os.path.join(str(home), "config.toml")
        env.update(self.base_env)
        env.update(extra)
        return env

    def run(self, argv, *, cwd, timeout, home=None, check=True, **extra_env):
        """Run ``argv`` (a list; ``python`` and ``dato-dist`` are this install's)."""
        home = home or os.path.join(str(cwd), "dato_home")
        os.makedirs(home, exist_ok=True)
        self.homes.append(home)
        exe = {"python": self.python, "dato-dist": os.path.join(self.bin, "dato-dist")}
        argv = [exe.get(argv[0], argv[0]), *argv[1:]]
        out = subprocess.run(argv, cwd=str(cwd), env=self.env(home, **extra_env),
                             capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
        if check:
            assert out.returncode == 0, (
                f"{argv} exited {out.returncode}\n--- stdout\n{out.stdout[-4000:]}\n"
                f"--- stderr\n{out.stderr[-8000:]}")
        return out

    def script(self, code, *, cwd, timeout, **kwargs):
        """Run ``code`` with this interpreter; its last stdout line is parsed as JSON. The
        code starts by checking that dato_dist comes from the install, not the checkout."""
        path = os.path.join(str(cwd), "client.py")
        with open(path, "w") as f:
            f.write(textwrap.dedent(PROLOGUE) + textwrap.dedent(code))
        out = self.run(["python", path], cwd=cwd, timeout=timeout, **kwargs)
        return json.loads(out.stdout.strip().splitlines()[-1])


PROLOGUE = f"""\
import json, os, sys
import dato_dist
_repo = {REPO!r} + os.sep
assert not os.path.realpath(dato_dist.__file__).startswith(_repo), dato_dist.__file__
assert not [p for p in sys.path if os.path.realpath(p or os.getcwd()).startswith(_repo)], sys.path
"""


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory):
    """The wheel users get: ``pip wheel --no-deps`` of a clean copy of this checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)
    argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
            "--disable-pip-version-check", "-w", str(tmp / "out"), str(source)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    wheels = sorted((tmp / "out").glob("dato_dist-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="session")
def launcher_homes():
    """Homes used by installed commands; their local launchers are stopped at the end."""
    homes = []
    yield homes
    from dato_dist import launcher

    for home in set(homes):
        launcher.stop(home)


@pytest.fixture(scope="session")
def installed(built_wheel, tmp_path_factory, launcher_homes):
    """A fresh virtualenv with the built wheel installed non-editable, ``[yarn,ec2]``."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300,
                   capture_output=True)
    python = venv / "bin" / "python"
    out = subprocess.run([str(python), *PIP, f"{built_wheel}[yarn,ec2]"], capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    return Installed(python, venv / "bin", launcher_homes)


@pytest.fixture
def outside(tmp_path):
    """A working directory outside the checkout."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    assert not str(folder.resolve()).startswith(REPO + os.sep)
    return folder
