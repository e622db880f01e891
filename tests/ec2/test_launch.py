"""Launch, rollback, idle shutdown and AWS errors of the EC2 backend (moto + sshd hosts)."""

from __future__ import annotations

import os
import stat
import time

import pytest

from tests.ec2.ec2_support import wait_until

pytestmark = [pytest.mark.ec2, pytest.mark.timeout(120)]


def _groups(sandbox, name):
    return sandbox.ec2.describe_security_groups(Filters=[
        {"Name": "group-name", "Values": [name]}])["SecurityGroups"]


def test_test_phase_failing_on_one_host_rolls_everything_back(sandbox, tmp_path):
    import dato_dist as gl
    from dato_dist.errors import LaunchFailed

    module = tmp_path / "diskcheck"
    module.mkdir()
    (module / "test.sh").write_text(
        'if [ "$DATO_HOST_INDEX" = 1 ]; then echo "disk check failed on $DATO_HOST_IP" >&2; '
        "exit 3; fi\necho disk ok\n")
    config = sandbox.config(extra_modules=[str(module)])
    with pytest.raises(LaunchFailed) as e:
        gl.deploy.ec2_cluster.create("broken", f"s3://{sandbox.bucket}/broken", config, 3)
    message = str(e.value)
    assert "bootstrap test" in message and "disk check failed on 127.0.0.5" in message
    assert "1 of 3 host(s)" in message
    states = sandbox.instances("broken")
    assert len(states) == 3 and set(states.values()) == {"terminated"}
    assert _groups(sandbox, "dato-dist-broken") == []  # the group it created is gone
    assert "broken" not in gl.deploy.environments
    # nothing of the launch keeps running on the hosts
    wait_until(lambda: not sandbox.host_processes(sandbox.remote_dir), 10, "no host processes")


def test_idle_cluster_terminates_itself(sandbox):
    import dato_dist as gl

    t0 = time.monotonic()
    c = gl.deploy.ec2_cluster.create("idle", f"s3://{sandbox.bucket}/idle",
                                     sandbox.config(), num_hosts=2, idle_shutdown_timeout=3)
    assert c.is_running()
    # a job longer than the timeout keeps the cluster busy (and resets the clock)
    job = gl.deploy.job.create(_sleep, environment=c, seconds=5)
    assert job.wait(timeout=60) == "Completed", job.get_error()
    assert job.get_results() == 5
    assert set(sandbox.instances("idle").values()) == {"running"}

    def all_terminated():
        states = sandbox.instances("idle")
        return len(states) == 2 and set(states.values()) == {"terminated"}

    wait_until(all_terminated, 40, "the idle watchdog to terminate every instance")
    assert time.monotonic() - t0 >= 8
    assert not c.is_running()
    assert "Status       : Stopped" in str(c)
    head = c.hosts[0]
    wait_until(lambda: not sandbox.host_processes(f"--base {head.base}"), 15,
               "the watchdog to exit")
    # start() launches it again (moto gives the next addresses: .6 and .7)
    sandbox.ssh_hosts(["127.0.0.7"])
    c.idle_shutdown_timeout = -1
    c.start()
    try:
        assert c.is_running() and [h.private_ip for h in c.hosts] == ["127.0.0.6", "127.0.0.7"]
        job = gl.deploy.job.create(pow, environment=c, base=3, exp=2)
        assert job.wait(timeout=60) == "Completed" and job.get_results() == 9
    finally:
        c.stop()
    assert not c.is_running()


def test_created_key_pair_is_saved_0600_and_removed_on_rollback(sandbox):
    """No key_name: a key pair is made and kept locally (0600); a failed launch, Ctrl-C
    included, terminates its instances and deletes the key pair, its file and the group."""
    from dato_dist.ec2 import provision

    config = sandbox.config(key_name=None, key_file=None, ami="ami-00000000deadbeef")
    with pytest.raises(Exception) as e:  # missing AMI: fails after nothing was created
        provision.launch(config, cluster_name="keys", num_hosts=1)
    assert getattr(e.value, "setting", None) == "ami" and "ami=" in str(e.value)

    ec2 = sandbox.ec2
    before = {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]}
    config = sandbox.config(key_name=None, key_file=None)
    created = {}
    real_key, real_wait = provision.ensure_key_pair, provision._wait

    def spy(*args, **kwargs):
        name, path = real_key(*args, **kwargs)
        created.update(name=name, path=path, mode=stat.S_IMODE(os.stat(path).st_mode),
                       text=open(path).read())
        return name, path

    def interrupted(config, ec2, waiter, ids, timeout):
        if waiter == "instance_running":
            raise KeyboardInterrupt  # the user pressed Ctrl-C while instances started
        return real_wait(config, ec2, waiter, ids, timeout)

    provision.ensure_key_pair, provision._wait = spy, interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            provision.launch(config, cluster_name="keys", num_hosts=2)
    finally:
        provision.ensure_key_pair, provision._wait = real_key, real_wait
    assert created["mode"] == 0o600 and "PRIVATE KEY" in created["text"]
    assert not os.path.exists(created["path"])
    after = {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]}
    assert after == before
    states = sandbox.instances("keys")
    assert len(states) == 2 and set(states.values()) == {"terminated"}
    assert _groups(sandbox, "dato-dist-keys") == []


def test_created_key_pair_launch_and_terminate(sandbox):
    """A key pair made by the launch is kept (0600) while the cluster lives."""
    from dato_dist.ec2 import provision

    config = sandbox.config(key_name=None, key_file=None)
    hosts, created = provision.launch(config, cluster_name="keys2", num_hosts=2)
    try:
        assert [h["private_ip"] for h in hosts][:1] and all(h["state"] == "running"
                                                             for h in hosts)
        assert created["created_key_pair"] and created["created_security_group"]
        path = created["key_file"]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert "PRIVATE KEY" in open(path).read()
        perms = sandbox.ec2.describe_security_groups(
            GroupIds=[created["security_group_id"]])["SecurityGroups"][0]["IpPermissions"]
        ssh = [p for p in perms if p.get("FromPort") == sandbox.ssh_hosts.port]
        assert [r["CidrIp"] for r in ssh[0]["IpRanges"]] == ["127.0.0.1/32"]
        assert all(r["CidrIp"] != "0.0.0.0/0" for p in perms for r in p.get("IpRanges", []))
        tags = sandbox.ec2.describe_instances(InstanceIds=[hosts[0]["id"]])[
            "Reservations"][0]["Instances"][0]["Tags"]
        tags = {t["Key"]: t["Value"] for t in tags}
        assert tags["Name"] == "keys2" and tags["dato-dist:cluster"] == "keys2"
        assert "@" in tags["dato-dist:owner"] and tags["dato-dist:role"] == "head"
    finally:
        provision.terminate(config, [h["id"] for h in hosts])
        provision.delete_resources(config, created)
    assert not os.path.exists(path)
    assert created["key_name"] not in {k["KeyName"] for k in
                                       sandbox.ec2.describe_key_pairs()["KeyPairs"]}


def test_spot_bid_prices(sandbox):
    from dato_dist.ec2 import provision

    config = sandbox.config(head_bid_price="0.42", worker_bid_price="0.10")
    hosts, created = provision.launch(config, cluster_name="spot", num_hosts=2)
    try:
        assert [h["lifecycle"] for h in hosts] == ["spot", "spot"]
    finally:
        provision.rollback(config, [h["id"] for h in hosts], created)
    assert set(sandbox.instances("spot").values()) == {"terminated"}


@pytest.mark.parametrize("kwargs, setting", [
    ({"subnet_id": "subnet-00000000"}, "subnet_id"),
    ({"key_name": "no-such-key", "key_file": None}, "key_name"),
    ({"security_group_id": "sg-00000000"}, "security_group_id"),
])
def test_aws_errors_name_the_setting(sandbox, kwargs, setting):
    from dato_dist.ec2 import provision
    from dato_dist.errors import Ec2SettingError

    config = sandbox.config(**kwargs)
    with pytest.raises(Ec2SettingError) as e:
        provision.launch(config, cluster_name="errs", num_hosts=1)
    assert e.value.setting == setting, str(e.value)
    assert set(sandbox.instances("errs").values()) <= {"terminated"}


def test_unreachable_endpoint_is_a_clear_error(sandbox):
    from dato_dist.ec2 import provision
    from dato_dist.errors import Ec2SettingError

    config = sandbox.config(endpoint_url="http://127.0.0.1:9")
    with pytest.raises(Ec2SettingError) as e:
        provision.launch(config, cluster_name="dead", num_hosts=1)
    assert e.value.setting == "endpoint_url" and "cannot reach AWS" in str(e.value)


def test_load_of_a_path_without_a_cluster(sandbox):
    import dato_dist as gl
    from dato_dist.errors import ClusterNotFound

    with pytest.raises(KeyError):
        gl.deploy.ec2_cluster.load(f"s3://{sandbox.bucket}/nothing-here")
    with pytest.raises(ClusterNotFound):
        gl.deploy.ec2_cluster.load(f"s3://{sandbox.bucket}/nothing-here")


def test_cli_terminate_by_name(sandbox, capsys):
    import argparse

    import dato_dist as gl
    from dato_dist.ec2 import cli

    c = gl.deploy.ec2_cluster.create("doomed", f"s3://{sandbox.bucket}/doomed",
                                     sandbox.config(), 1, [], -1)
    assert c.is_running()
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ec2", "terminate", "doomed", "-y",
                              "--endpoint-url", sandbox.endpoint])
    assert args.func(args) == 0
    assert "terminated" in capsys.readouterr().out
    assert set(sandbox.instances("doomed").values()) == {"terminated"}
    assert "Status       : Stopped" in str(gl.deploy.ec2_cluster.load(c.s3_path))


def test_wrong_credentials_are_a_clear_error(ec2_workdir):
    """A moto server that checks keys: EC2's AuthFailure names the setting to fix."""
    from dato_dist.ec2 import provision
    from dato_dist.ec2.config import Ec2Config
    from dato_dist.errors import AwsCredentialsError
    from tests.infra.moto_server import MotoServer

    with MotoServer.start(log_dir=ec2_workdir / "moto-auth-backend",
                          extra_env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"}) as m:
        key = m.allowed_user_keys()
        good = Ec2Config(aws_access_key_id=key["AccessKeyId"],
                         aws_secret_access_key=key["SecretAccessKey"], endpoint_url=m.endpoint_url)
        assert provision.find_clusters(good) == {}
        bad = Ec2Config(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key="wrong",
                        endpoint_url=m.endpoint_url, ami="ami-1")
        with pytest.raises(AwsCredentialsError) as e:
            provision.launch(bad, cluster_name="creds", num_hosts=1)
        assert e.value.setting == "aws_access_key_id" and "AuthFailure" in str(e.value)
        assert "wrong" not in str(e.value)  # the secret is never shown


def test_legacy_environment_ec2(sandbox):
    """GraphLab's environment.EC2(name, s3_folder_path, ...) is a config plus a cluster."""
    import dato_dist as gl
    from tests.ec2.ec2_support import ACCESS_KEY, SECRET_KEY

    env = gl.deploy.environment.EC2(
        "legacy", f"s3://{sandbox.bucket}/legacy", region="us-west-2",
        instance_type="t3.micro", aws_access_key=ACCESS_KEY, aws_secret_key=SECRET_KEY,
        num_hosts=1, subnet_id=sandbox.subnet(), key_name=sandbox.key_name,
        key_file=str(sandbox.key_file), use_private_ips=True, ssh_user="root",
        ssh_port=sandbox.ssh_hosts.port, endpoint_url=sandbox.endpoint,
        host_python=__import__("sys").executable, runners_per_host=1,
        remote_dir=sandbox.remote_dir, idle_shutdown_timeout=-1)
    try:
        assert env.is_running() and env.ec2_config.instance_type == "t3.micro"
        job = gl.deploy.job.create(pow, environment="legacy", base=2, exp=3)
        assert job.wait(timeout=60) == "Completed" and job.get_results() == 8
    finally:
        env.stop()
    assert set(sandbox.instances("legacy").values()) == {"terminated"}


def test_job_fails_when_the_head_host_is_gone(sandbox, monkeypatch):
    """A head terminated behind the client's back: the job reads Failed, saying why."""
    import dato_dist as gl
    from dato_dist.ec2 import provision
    from dato_dist.ec2.cluster import Ec2Cluster

    monkeypatch.setattr(Ec2Cluster, "ALIVE_CHECK_INTERVAL", 0.5)
    c = gl.deploy.ec2_cluster.create("headless", f"s3://{sandbox.bucket}/headless",
                                     sandbox.config(), 1, [], -1)
    try:
        job = gl.deploy.map_job.create(_sleep, [{"seconds": 60}], environment=c)
        wait_until(lambda: job.get_status() == "Running", 20, "the job to run")
        provision.terminate(c.ec2_config, [c.hosts[0].instance_id])
        assert job.wait(timeout=20) == "Failed"
        assert "head host" in job.get_error() and "terminated" in job.get_error()
    finally:
        # moto's "terminated" host still runs its processes here: stop them, then the rest
        c._hosts().run_all(lambda h: c._agent_cmd(h, "stop-all", "--grace", "1"), check=False,
                           timeout=30)
        c.stop()


#: The tiny package of test_bootstrap_python_packages (a name nothing else uses).
PROBE_DIST, PROBE_MODULE = "dd-ec2-probe-pkg", "dd_ec2_probe_pkg"


@pytest.fixture
def probe_wheels(tmp_path):
    """A tiny wheel (next to a file the glob must skip); the package is
    uninstalled from the hosts' python (here this venv) afterwards, whatever happens."""
    import sys

    from tests.ec2.ec2_support import importable, pip_uninstall
    from tests.wheels import make_wheel

    pip_uninstall(sys.executable, PROBE_DIST)  # a leftover of an interrupted run
    assert not importable(sys.executable, PROBE_MODULE)
    folder = tmp_path / "wheels"
    make_wheel(folder, PROBE_MODULE, "1.0",
               {f"{PROBE_MODULE}/__init__.py": "VALUE = 'probe 1.0'\n"})
    (folder / "notes.txt").write_text("not a package\n")
    try:
        yield folder
    finally:
        r = pip_uninstall(sys.executable, PROBE_DIST)
        assert not importable(sys.executable, PROBE_MODULE), r.stdout + r.stderr


def _probe():
    import sys

    import dd_ec2_probe_pkg

    return {"value": dd_ec2_probe_pkg.VALUE, "file": dd_ec2_probe_pkg.__file__,
            "python": sys.executable}


def test_bootstrap_python_packages_installed_on_the_hosts(sandbox, probe_wheels):
    """seed 004: local package files, globs allowed, installed on every host at launch.

    One host: the hosts here share one python (this venv), and concurrent pip installs
    into one site-packages would race."""
    import sys

    import dato_dist as gl

    config = sandbox.config(bootstrap_python_packages=[str(probe_wheels / "dd_ec2_probe*.whl")])
    c = gl.deploy.ec2_cluster.create("pkgs", f"s3://{sandbox.bucket}/pkgs", config, 1, [], -1)
    try:
        head = c.hosts[0]
        shipped = os.listdir(os.path.join(head.base, "bundle", "packages"))
        assert shipped == [f"{PROBE_MODULE}-1.0-py3-none-any.whl"]  # the glob's match only
        job = gl.deploy.job.create(_probe, environment=c)
        assert job.wait(timeout=60) == "Completed", job.get_error()
        got = job.get_results()
        assert got["value"] == "probe 1.0" and got["python"] == sys.executable
        assert "site-packages" in got["file"]
    finally:
        c.stop()
    assert set(sandbox.instances("pkgs").values()) == {"terminated"}


def test_bootstrap_python_packages_glob_without_match_is_an_error(sandbox, tmp_path):
    import dato_dist as gl

    config = sandbox.config(bootstrap_python_packages=[str(tmp_path / "none-*.whl")])
    with pytest.raises(Exception) as e:
        gl.deploy.ec2_cluster.create("nopkgs", f"s3://{sandbox.bucket}/nopkgs", config, 1, [],
                                     -1)
    assert "none-*.whl" in str(e.value) and "matches no file" in str(e.value)
    assert set(sandbox.instances("nopkgs").values()) <= {"terminated"}


def _add(x, y):
    return x + y


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_hosts_without_host_python_get_a_venv_with_the_clients_dato_dist(sandbox, tmp_path):
    """The real-EC2 path: no ``host_python``, so the ``python`` module makes a venv in the
    host's folder (from this client's base interpreter, named by ``DATO_BASE_PYTHON`` in
    ``variables_file``), installs a wheel of the client's source with its dependencies from
    PyPI, and jobs run in it."""
    import shlex
    import sys

    import dato_dist as gl

    base_python = os.path.join(sys.base_prefix, "bin", "python3")
    variables = tmp_path / "vars.sh"
    variables.write_text(f"DATO_BASE_PYTHON={shlex.quote(base_python)}\n")
    config = sandbox.config(host_python=None, variables_file=str(variables))
    t0 = time.monotonic()
    c = gl.deploy.ec2_cluster.create("venv", f"s3://{sandbox.bucket}/venv", config, 1, [], -1)
    print(f"create with a host venv: {time.monotonic() - t0:.1f} s")
    try:
        head = c.hosts[0]
        venv = f"{head.base}/venv"
        r = c._hosts().run(head, f"{shlex.quote(venv)}/bin/python -c 'import sys, dato_dist, "
                                 "cloudpickle; print(dato_dist.__version__, sys.prefix, "
                                 "dato_dist.__file__, cloudpickle.__version__)'", timeout=60)
        assert r.ok, (r.stdout, r.stderr, r.error)
        version, prefix, module, pickler = r.stdout.split()
        assert version == gl.__version__
        assert os.path.realpath(prefix) == os.path.realpath(venv) != os.path.realpath(sys.prefix)
        # installed from the client's wheel into the venv, not this source tree
        assert os.path.realpath(module).startswith(os.path.realpath(venv) + "/")
        assert pickler == __import__("cloudpickle").__version__  # the client's version
        job = gl.deploy.map_job.create(_add, [{"x": 20, "y": 20}, {"x": None, "y": 10},
                                              {"x": 5, "y": 5}], environment=c)
        assert job.wait(timeout=60) == "Completed", job.get_error()
        assert job.get_map_results() == [40, None, 10]
    finally:
        c.stop()
    assert set(sandbox.instances("venv").values()) == {"terminated"}


def _sleep(seconds):
    import time as _t

    _t.sleep(seconds)
    return seconds


def test_missing_module_folder_fails_before_any_instance_launches(sandbox, tmp_path):
    """A config reloaded from its dict (a cluster's state, made elsewhere) whose module
    folder is not on this machine: the launch stops before EC2 is asked for anything."""
    import dato_dist as gl
    from dato_dist.ec2.config import Ec2Config
    from dato_dist.errors import InvalidArgument

    module = tmp_path / "gone"
    module.mkdir()
    data = sandbox.config(extra_modules=[str(module)]).to_dict()
    module.rmdir()
    config = Ec2Config.from_dict(data)
    with pytest.raises(InvalidArgument, match="extra module folder .*gone.* does not exist"):
        gl.deploy.ec2_cluster.create("no-module", f"s3://{sandbox.bucket}/no-module", config, 1)
    assert sandbox.instances("no-module") == {}
    assert _groups(sandbox, "dato-dist-no-module") == []
