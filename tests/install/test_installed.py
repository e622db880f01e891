"""dato-dist from the built wheel, as users install it (see conftest.py): the demo, a
``--user`` and a ``--target`` install, ``hadoop install`` + the seed's Hadoop map job, and
the seed's EC2 map job on hosts that get the client's wheel. Plus the one-namespace checks."""

import json
import os
import subprocess
import sys
import uuid
import zipfile

import pytest

from tests.install.conftest import PIP, REPO, Installed, pip_cache_dir

pytestmark = [pytest.mark.install, pytest.mark.slow]

SEED_JOB = """\
import dato_dist as gl

def add(x, y):
    return x + y

def add_combiner(**kwargs):
    return sum(v for v in kwargs.values() if v is not None)
"""


def test_built_wheel_has_no_top_level_package_but_dato_dist(built_wheel):
    with zipfile.ZipFile(built_wheel) as zf:
        names = zf.namelist()
        info = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert len(info) == 1, info
        assert zf.read(info[0]).decode().split() == ["dato_dist"]
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"dato_dist"}
    assert "dato_dist/conf/defaults.toml" in names
    assert "dato_dist/ec2/modules/python/init.sh" in names


def test_wheel_of_this_install_has_the_files_of_the_pip_built_wheel(built_wheel):
    """dato_dist.wheel packs the package folders of this (editable) install: the same files,
    with the same bytes, as setup.cfg's packages and package_data give pip."""
    from dato_dist import wheel

    ours = {n: b for n, b in wheel.contents().items() if n.startswith("dato_dist/")}
    with zipfile.ZipFile(built_wheel) as zf:
        pips = {n: zf.read(n) for n in zf.namelist() if n.startswith("dato_dist/")}
    assert sorted(ours) == sorted(pips)
    assert [n for n in ours if ours[n] != pips[n]] == []


def test_repo_root_cannot_load_a_module_twice():
    """From the repo root the folders ec2/ and yarn_app/ are on sys.path, yet they import
    only as dato_dist.ec2 / dato_dist.yarn_app."""
    for name in ("ec2", "yarn_app", "ec2.cluster", "yarn_app.spec"):
        out = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and "ImportError: This folder is the package" in out.stderr, \
            (name, out.stderr[-2000:])
    code = """\
import sys
import dato_dist as gl
gl.deploy.ec2_cluster, gl.deploy.hadoop_cluster, gl.deploy.Ec2Config, gl.aws
import dato_dist.ec2.cluster, dato_dist.ec2.agent, dato_dist.ec2.bootstrap
import dato_dist.yarn_app.cluster, dato_dist.yarn_app.spec, dato_dist.yarn_app.dist
import dato_dist.cli
twice = [k for k in sys.modules if k.split(".")[0] in ("ec2", "yarn_app", "conf")]
assert not twice, twice
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_demo_from_the_installed_wheel(installed, outside):
    out = installed.run(["dato-dist", "demo"], cwd=outside, timeout=240)
    lines = out.stdout.splitlines()
    assert lines[lines.index(">>> print(job.get_map_results())") + 1] == "[40, None, 10]"
    assert ">>> print(job.get_results())" in lines
    assert lines[lines.index(">>> print(job.get_results())") + 1] == "70"
    assert "[40, 20, 10]" in lines
    rows = [line for line in lines if line.startswith("|  add-0-")]
    assert [r.split("|")[2].strip() for r in rows] == ["Completed", "Failed", "Completed"]
    assert "TypeError" in rows[1]
    where = installed.run(["python", "-c", "import dato_dist; print(dato_dist.__file__)"],
                          cwd=outside, timeout=60).stdout.strip()
    assert where.startswith(os.path.dirname(installed.bin) + os.sep), where
    assert "site-packages" in where


ONE_JOB = SEED_JOB + """\
job = gl.deploy.map_job.create(add, [{"x": 20, "y": 20}, {"x": 10, "y": 10}, {"x": 5, "y": 5}],
                               combiner_function=add_combiner)
print(json.dumps({"results": job.get_results(), "map": job.get_map_results(),
                  "file": dato_dist.__file__}))
"""


@pytest.fixture(scope="module")
def base_python():
    """An interpreter without a virtualenv (the one this test virtualenv was made from)."""
    python = os.path.join(sys.base_prefix, "bin", "python3")
    if not os.access(python, os.X_OK) or sys.base_prefix == sys.prefix:
        pytest.skip("no venv-less interpreter to install into")
    return python


def test_pip_install_user_runs_a_job(built_wheel, base_python, outside, launcher_homes):
    home, userbase = outside / "home", outside / "userbase"
    home.mkdir()
    cache = pip_cache_dir()
    user = Installed(base_python, userbase / "bin", launcher_homes,
                     dict(HOME=str(home), PYTHONUSERBASE=str(userbase),
                          **({"PIP_CACHE_DIR": cache} if cache else {})))
    user.run(["python", *PIP, "--user", str(built_wheel)], cwd=outside, timeout=600)
    out = user.script(ONE_JOB, cwd=outside, timeout=180)
    assert out["results"] == 70 and out["map"] == [40, 20, 10]
    assert out["file"].startswith(str(userbase) + os.sep)
    listed = user.run(["dato-dist", "jobs"], cwd=outside, timeout=120).stdout
    assert "add-" in listed  # the user's console script, on the user's store


def test_pip_install_target_runs_a_job(built_wheel, base_python, outside, launcher_homes):
    target = outside / "target"
    cache = pip_cache_dir()
    pip_env = {"PIP_CACHE_DIR": cache} if cache else {}
    Installed(base_python, outside, launcher_homes, pip_env).run(
        ["python", *PIP, "--target", str(target), str(built_wheel)], cwd=outside, timeout=600)
    user = Installed(base_python, target / "bin", launcher_homes,
                     dict(PYTHONPATH=str(target), PYTHONNOUSERSITE="1"))
    out = user.script(ONE_JOB, cwd=outside, timeout=180)
    assert out["results"] == 70 and out["map"] == [40, 20, 10]
    assert out["file"].startswith(str(target) + os.sep)


@pytest.mark.yarn
@pytest.mark.hdfs
@pytest.mark.timeout(1500)
def test_hadoop_install_and_the_seed_job_from_the_wheel(installed, minicluster, outside,
                                                        tmp_path_factory):
    """An admin's ``dato-dist hadoop install`` from a wheel install (the packed env holds
    that install's wheel), then the seed's map job with a combiner from the same venv."""
    dist = f"{minicluster.hdfs_uri}/user/root/dato-dist-from-wheel-{uuid.uuid4().hex[:6]}"
    cache = tmp_path_factory.mktemp("dato_cache")  # a fresh env, not one the checkout built
    out = installed.run(["dato-dist", "hadoop", "install", dist, "--num-containers", "2",
                         "--container-size", "256", "--num-vcores", "1"],
                        cwd=outside, timeout=1200, DATO_DIST_CACHE=str(cache))
    assert "containers          : 2 x 256 MB, 1 vcores" in out.stdout
    built = installed.run(["python", "-c", "from dato_dist import wheel; print(wheel.build())"],
                          cwd=outside, timeout=60, DATO_DIST_CACHE=str(cache)).stdout.strip()
    assert list((cache / "envs").glob(f"*-{os.path.basename(os.path.dirname(built))}.tar.gz"))
    code = SEED_JOB + f"""\
from dato_dist.yarn_app import dist
h = gl.deploy.hadoop_cluster.create("from-wheel", {dist!r},
                                    hadoop_conf_dir={minicluster.conf_dir!r})
job = gl.deploy.map_job.create(add, [{{"x": 20, "y": 20}}, {{"x": 10, "y": 10}},
                                     {{"x": 5, "y": 5}}], environment=h,
                               combiner_function=add_combiner)
print(json.dumps({{"results": job.get_results(), "map": job.get_map_results(),
                  "app_id": job.app_id, "config": dist.read_config({dist!r})}}))
"""
    try:
        res = installed.script(code, cwd=outside, timeout=600, DATO_DIST_CACHE=str(cache))
        assert res["results"] == 70 and res["map"] == [40, 20, 10]
        assert res["config"]["wheel_hash"] == os.path.basename(os.path.dirname(built))
    finally:
        from dato_dist.store import Store

        parent, folder = dist.rsplit("/", 1)
        Store(parent).delete(folder)


@pytest.mark.ec2
@pytest.mark.timeout(600)
def test_ec2_seed_job_hosts_get_the_clients_wheel(installed, sandbox, outside):
    """The seed's map job on moto + sshd hosts, launched from the wheel install, with
    ``host_python`` unset: each host makes a venv and installs the client's wheel from the
    bundle (there is no dato-dist on the package index to fall back to)."""
    from tests.ec2.ec2_support import ACCESS_KEY, REGION, SECRET_KEY

    variables = outside / "vars.sh"
    variables.write_text(f"DATO_BASE_PYTHON={os.path.join(sys.base_prefix, 'bin', 'python3')}\n")
    settings = dict(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                    subnet_id=sandbox.subnet(), key_name=sandbox.key_name,
                    key_file=str(sandbox.key_file), use_private_ips=True, ssh_user="root",
                    ssh_port=sandbox.ssh_hosts.port, endpoint_url=sandbox.endpoint,
                    host_python=None, runners_per_host=1, remote_dir=sandbox.remote_dir,
                    idle_action="terminate", ssh_timeout=30, log_sync_interval=1.0,
                    variables_file=str(variables))
    name = f"wheel-{uuid.uuid4().hex[:6]}"
    code = SEED_JOB + f"""\
import shlex
from dato_dist import wheel
config = gl.deploy.Ec2Config({REGION!r}, "t3.micro", **json.loads({json.dumps(settings)!r}))
c = gl.deploy.ec2_cluster.create({name!r}, "s3://{sandbox.bucket}/{name}", config, 1, [], -1)
try:
    head = c.hosts[0]
    probe = c._hosts().run(head, shlex.quote(head.base + "/venv/bin/python") + " -c "
                           + shlex.quote("import dato_dist, sys; from dato_dist import wheel; "
                                         "print(wheel.content_hash(), dato_dist.__file__)"),
                           timeout=60)
    job = gl.deploy.map_job.create(add, [{{"x": 20, "y": 20}}, {{"x": None, "y": 10}},
                                         {{"x": 5, "y": 5}}], environment=c)
    status = job.wait(timeout=120)
    print(json.dumps({{"status": status, "error": str(job.get_error()),
                      "map": job.get_map_results(), "host": probe.stdout.split(),
                      "venv": head.base + "/venv", "client_hash": wheel.content_hash()}}))
finally:
    c.stop()
"""
    res = installed.script(code, cwd=outside, timeout=500)
    assert res["status"] == "Completed", res["error"]
    assert res["map"] == [40, None, 10]
    host_hash, host_module = res["host"]
    assert host_hash == res["client_hash"]  # the client's build, file for file
    assert os.path.realpath(host_module).startswith(os.path.realpath(res["venv"]) + os.sep)
    assert set(sandbox.instances(name).values()) == {"terminated"}
