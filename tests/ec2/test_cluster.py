"""What is specific to EC2 clusters: moto's EC2/S3 on 127.0.0.1 and real sshd hosts.

One 3-host cluster serves the module (created once: launch, SSH, bootstrap); the tests
check the bootstrap, host keys, state and secrets, load the cluster from a second process,
cancel a job (the hosts stay), and at the end take a host away mid-job. What every
environment must do with a job (seed job, combiner, lost runner and driver, client exit,
cancel leaving nothing running, logs) is the contract suite, tests/contract. The functions
below are shipped by value (the core does that for the user's own modules on remote
environments): the hosts have only the installed dato_dist, not this test tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from tests.ec2.ec2_support import ACCESS_KEY, HOST_IPS, SECRET_KEY, wait_until

pytestmark = [pytest.mark.ec2, pytest.mark.timeout(150)]
pytest.importorskip("fabric")

def add(x, y):
    return x + y


def slow_square(i, seconds):
    import time as _t

    print(f"task-marker-{i} started", flush=True)
    _t.sleep(seconds)
    return i * i


@pytest.fixture(scope="module")
def deploy_files(tmp_path_factory):
    """A user module, a deploy root dir and a variables override file (seed 003)."""
    d = tmp_path_factory.mktemp("deploy")
    (d / "hello").mkdir()
    (d / "hello" / "setup.sh").write_text(
        'echo "$GREETING from $DATO_HOST_INDEX of [$DATO_HOSTS] head=$DATO_HEAD" '
        '> "$DATO_BASE/hello.txt"\n'
        'cp "$DATO_DEPLOY_ROOT/data/input.txt" "$DATO_BASE/copied.txt"\n')
    (d / "hello" / "run.sh").write_text('echo ran >> "$DATO_BASE/hello.txt"\n')
    (d / "root" / "data").mkdir(parents=True)
    (d / "root" / "data" / "input.txt").write_text("deployed file\n")
    (d / "vars.sh").write_text("GREETING=bonjour\n")
    return d


@pytest.fixture(scope="module")
def cluster(sandbox, deploy_files):
    import dato_dist as gl

    config = sandbox.config(
        extra_modules=[str(deploy_files / "hello")], deploy_root_dir=str(deploy_files / "root"),
        variables_file=str(deploy_files / "vars.sh"),
        bootstrap_cmds=['echo "cmd on $DATO_HOST_ID" > "$DATO_BASE/cmds.txt"'])
    t0 = time.monotonic()
    ec2 = gl.deploy.ec2_cluster.create("add_ec2", f"s3://{sandbox.bucket}/add_test",
                                       config, 3, "six", idle_shutdown_timeout=-1)
    ec2.timings = {"create": time.monotonic() - t0}
    try:
        yield ec2
    finally:
        for ip in HOST_IPS:  # a test may have taken a host away
            sandbox.ssh_hosts([ip])
        ec2.stop()
        assert set(sandbox.instances("add_ec2").values()) == {"terminated"}


def test_create_prints_like_the_seed(cluster, sandbox):
    assert str(cluster) == (
        f"S3 State Path: s3://{sandbox.bucket}/add_test\n"
        "EC2 Config   : [instance_type: t3.micro, region: us-west-2, aws_access_key: AKID...]\n"
        "Num Hosts    : 3\n"
        "Status       : Running")
    assert [h.private_ip for h in cluster.hosts] == HOST_IPS
    assert cluster.is_running() and cluster.get_num_workers() == 3
    states = sandbox.instances("add_ec2")
    assert len(states) == 3 and set(states.values()) == {"running"}
    import dato_dist as gl

    assert gl.deploy.environments["add_ec2"].s3_state_path == cluster.s3_state_path
    print(f"\n[timing] bootstrapped 3-host cluster in {cluster.timings['create']:.2f} s")


def test_bootstrap_ran_modules_commands_and_deploy_files(cluster):
    for h in cluster.hosts:
        with open(os.path.join(h.base, "hello.txt")) as f:
            assert f.read() == (f"bonjour from {h.index} of [127.0.0.4 127.0.0.5 127.0.0.6] "
                                "head=127.0.0.4\nran\n")
        with open(os.path.join(h.base, "copied.txt")) as f:
            assert f.read() == "deployed file\n"
        with open(os.path.join(h.base, "cmds.txt")) as f:
            assert f.read() == f"cmd on {h.instance_id}\n"
        with open(os.path.join(h.base, "bootstrap.log")) as f:
            log = f.read()
        assert "python/test.sh" in log and "hello/setup.sh" in log and "ok on" in log
        assert "packages/init.sh" in log
    assert cluster.additional_packages == ["six"]


def test_host_keys_are_checked_after_first_contact(cluster, sandbox):
    from dato_dist.ec2.cluster import load

    other = load(cluster.s3_path)
    hs = other._hosts()
    head = hs.hosts[0]
    assert hs.run(head, "echo hi").stdout == "hi\n"
    hs.drop(head)
    head.host_key = sandbox.ssh_hosts.hosts["127.0.0.5"].host_public_key  # not this host's
    r = hs.run(head, "echo hi")
    assert not r.ok and "host key" in r.error
    other.close()


def test_packages_lists_the_head_hosts_packages(cluster):
    pkgs = cluster.packages()
    assert any(p.lower().startswith(("dato-dist", "dato_dist", "-e")) for p in pkgs)
    assert any(p.lower().startswith("pyarrow==") for p in pkgs)


def test_state_in_s3_has_no_secrets(cluster, sandbox):
    state = json.loads(sandbox.s3.get_object(Bucket=sandbox.bucket,
                                             Key="add_test/cluster.json")["Body"].read())
    assert state["status"] == "Running" and len(state["hosts"]) == 3
    assert all(h["host_key"].startswith("ssh-ed25519 ") for h in state["hosts"])
    assert SECRET_KEY not in json.dumps(state) and ACCESS_KEY not in json.dumps(state)


def test_required_packages_are_installed_on_the_hosts(cluster):
    import dato_dist as gl

    @gl.deploy.required_packages(["six"])  # already there: pip is satisfied offline
    def uses_six(n):
        import six

        return [six.text_type(n)]

    job = gl.deploy.job.create(uses_six, environment=cluster, n=7)
    assert job.wait(timeout=90) == "Completed"
    assert job.get_results() == ["7"]


def test_cli_ec2_list(cluster, sandbox, capsys):
    import argparse

    from dato_dist.ec2 import cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ec2", "list", "--endpoint-url", sandbox.endpoint])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    line = [ln for ln in out.splitlines() if ln.startswith("add_ec2 ")]
    assert line and " 3 " in line[0] and "running" in line[0]
    assert f"s3://{sandbox.bucket}/add_test" in line[0]


def test_load_from_a_second_process(cluster, sandbox):
    script = textwrap.dedent(f"""
        import dato_dist as gl
        gl.aws.set_credentials('{ACCESS_KEY}', '{SECRET_KEY}')  # never stored with the state
        c = gl.deploy.ec2_cluster.load('s3://{sandbox.bucket}/add_test')
        print(c)
        def add(x, y):
            return x + y
        job = gl.deploy.map_job.create(add, [{{'x': 20, 'y': 20}}, {{'x': 10, 'y': 10}},
                                             {{'x': 5, 'y': 5}}], environment=c)
        print(job.get_map_results())
        print(gl.deploy.environments['add_ec2'].name)
    """)
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=120, env=env, cwd="/")
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[:4] == str(cluster).splitlines()
    assert lines[4] == "[40, 20, 10]" and lines[5] == "add_ec2"


def test_cancel_keeps_the_hosts(cluster, sandbox):
    """On EC2 a cancel stops the job, not the cluster: the hosts keep running and take the
    next job (that nothing of the job is left running is in the contract suite)."""
    import dato_dist as gl

    job = gl.deploy.map_job.create(slow_square, [{"i": i, "seconds": 30} for i in range(3)],
                                   environment=cluster)
    wait_until(lambda: job.get_status() == "Running", 20, "the job to run")
    job.cancel()
    assert job.get_status() == "Canceled"
    assert cluster.is_running()
    assert set(sandbox.instances("add_ec2").values()) == {"running"}
    job2 = gl.deploy.job.create(add, environment=cluster, x=2, y=3)
    assert job2.wait(timeout=60) == "Completed"
    assert job2.get_results() == 5
    assert job2.get_log_file_path() == f"{job2.uri}/logs"
    assert job2.uri.startswith(f"s3://{sandbox.bucket}/add_test/jobs/")


def _store_keys(sandbox):
    """The user's key and every job key of the jobs in the sandbox's bucket, hex and raw."""
    from dato_dist import keys

    user = keys.user_key()
    found = [user]
    for page in sandbox.s3.get_paginator("list_objects_v2").paginate(Bucket=sandbox.bucket):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/spec.json") and "/jobs/" in obj["Key"]:
                spec = json.loads(sandbox.s3.get_object(Bucket=sandbox.bucket,
                                                        Key=obj["Key"])["Body"].read())
                found.append(keys.job_key(user, spec["id"], spec["nonce"]))
    return [k for key in found for k in (key, key.hex().encode())]


def test_no_secret_written_anywhere(cluster, sandbox):
    """Credentials and keys travel in SSH command environments only: not in S3, not on
    disk (the hosts' files and logs), not in the printed cluster or job."""
    import dato_dist as gl

    job = gl.deploy.map_job.create(add, [{"x": 1, "y": 2}], environment=cluster)
    assert job.wait(timeout=60) == "Completed"
    forbidden = [SECRET_KEY.encode()] + _store_keys(sandbox)
    assert len(forbidden) >= 5  # the secret, the user's key, at least one job's key
    for page in sandbox.s3.get_paginator("list_objects_v2").paginate(Bucket=sandbox.bucket):
        for obj in page.get("Contents", []):
            body = sandbox.s3.get_object(Bucket=sandbox.bucket, Key=obj["Key"])["Body"].read()
            assert not [k for k in forbidden if k in body], obj["Key"]
    for root, _, names in os.walk(sandbox.remote_dir):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                data = f.read()
            assert not [k for k in forbidden if k in data], os.path.join(root, name)
    printed = (str(cluster) + repr(cluster) + str(job) + repr(job._files)).encode()
    assert not [k for k in forbidden if k in printed]


def test_no_secret_on_the_hosts_command_lines(cluster):
    """The credentials and the job's key reach the hosts on the SSH channel's stdin, not
    in the remote command: no process shows them in ``ps -eo args`` while jobs start and
    run (the hosts' processes are this machine's), and the commands still get them."""
    import threading

    import dato_dist as gl
    from dato_dist.keys import JOB_KEY_ENV
    from dato_dist.protocol import AUTHKEY_ENV

    forbidden = [SECRET_KEY, "AWS_SECRET_ACCESS_KEY=", f"{AUTHKEY_ENV}=", f"{JOB_KEY_ENV}="]
    hs, head = cluster._hosts(), cluster.hosts[0]
    # One command, deterministically: its shell's command line has no value; its env has.
    r = hs.run(head, "tr '\\0' ' ' </proc/$$/cmdline; echo; "
                     'printf "%s\\n" "$AWS_SECRET_ACCESS_KEY"; read -r x || echo stdin-empty',
               env=cluster._aws_env(), timeout=30)
    assert r.ok, r
    shell_args, value, stdin_state = r.stdout.splitlines()[:3]
    assert "read -r __dd_env" in shell_args
    assert not [f for f in forbidden if f in shell_args], shell_args
    assert value == SECRET_KEY and stdin_state == "stdin-empty"

    seen, leaks, done = set(), [], threading.Event()

    def sample():
        while not done.is_set():
            out = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True,
                                 timeout=10).stdout
            for line in out.splitlines():
                if any(f in line for f in forbidden):
                    leaks.append(line)
                if "read -r __dd_env" in line:
                    seen.add("remote shell")
                if "-m dato_dist.ec2.agent" in line:
                    seen.add("agent")
                if "dato_dist.runner" in line:
                    seen.add("runner")
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        for _ in range(2):  # two jobs: two rounds of launches over SSH
            job = gl.deploy.map_job.create(slow_square, [{"i": i, "seconds": 0.5}
                                                         for i in range(3)],
                                           environment=cluster)
            assert job.wait(timeout=60) == "Completed", job.get_error()
    finally:
        done.set()
        sampler.join(15)
    assert not leaks, leaks[:3]
    # the sampler did see the hosts' processes of the jobs (and an SSH command's shell)
    assert {"remote shell", "agent", "runner"} <= seen, seen


@pytest.mark.skipif(os.geteuid() != 0, reason="acts as the user nobody")
def test_bad_connections_do_not_stall_an_ec2_job(cluster, sandbox, attack_dir):
    """1 silent and 100 garbage connections to the head's driver (its port is in the
    store) while a job runs: it takes about as long as without them."""
    import pathlib

    import dato_dist as gl
    from tests.test_trust import _attack, _driver_address

    tmp_path = pathlib.Path(attack_dir)
    params = [{"i": i, "seconds": 0.3} for i in range(12)]
    timings = []
    for attacked in (False, True):
        t0 = time.monotonic()
        job = gl.deploy.map_job.create(slow_square, params, environment=cluster)
        attacker = None
        try:
            if attacked:
                address = wait_until(lambda job=job: _driver_address(job), 30, "the driver's address")
                attacker = _attack(address, str(tmp_path / "stop"))
            assert job.wait(timeout=90) == "Completed", job.get_error()
        finally:
            if attacker is not None:
                (tmp_path / "stop").write_text("")
                attacker.wait(10)
        timings.append(time.monotonic() - t0)
        assert job.get_map_results() == [i * i for i in range(12)]
    print(f"EC2 job: {timings[0]:.1f} s alone, {timings[1]:.1f} s under attack")
    assert timings[1] < 2 * timings[0] + 10, timings


def test_runner_killed_on_a_host_is_replaced_by_its_agent(cluster, sandbox):
    """The host's node (its agent) replaces a lost runner, bounded by the job's
    driver.max_runner_restarts; the runner's tasks re-run and the job completes."""
    import signal

    import dato_dist as gl

    job = gl.deploy.map_job.create(slow_square, [{"i": i, "seconds": 1.0} for i in range(8)],
                                   environment=cluster)
    worker = cluster.hosts[1].instance_id
    victim = wait_until(lambda: sandbox.host_processes(f"--id {worker}-0"), 30,
                        "the runner on the second host")
    wait_until(lambda: (job._files.read_state() or {}).get("running"), 30, "running tasks")
    os.kill(victim[0], signal.SIGKILL)
    assert job.wait(timeout=90) == "Completed", job.get_error()
    assert job.get_map_results() == [i * i for i in range(8)]
    # records name the instance and the runner that ran each task: <instance>-<slot>:<pid>
    workers = job.get_metrics()["worker"]
    hosts = {h.instance_id for h in cluster.hosts}
    assert all(w.rsplit("-", 1)[0] in hosts and w.rsplit(":", 1)[1].isdigit()
               for w in workers), workers

    def agent_log():
        text = job.read_logs().get(f"agent-{worker}.log", "")
        return "[agent] done" in text and text

    text = wait_until(agent_log, 20, "the agent's log in S3")
    assert f"starting a replacement for runner {worker}-0 (1 of 3)" in text


def test_host_lost_mid_job_the_job_completes(cluster, sandbox, monkeypatch):
    """Stop a worker host's sshd and kill its processes: its tasks re-run elsewhere."""
    import dato_dist as gl

    monkeypatch.setenv("DATO_DIST_RUNNER_HEARTBEAT_TIMEOUT", "3")
    job = gl.deploy.map_job.create(slow_square, [{"i": i, "seconds": 1.0} for i in range(9)],
                                   environment=cluster)
    lost = sandbox.ssh_hosts.hosts["127.0.0.5"]

    def someone_on_lost_host_runs():
        state = job._files.read_state() or {}
        return state.get("runners") == 3 and state.get("running")

    wait_until(someone_on_lost_host_runs, 30, "three runners at work")
    lost.stop()  # sshd and every process of that host: the runner and its agent
    assert not lost.is_running()
    assert job.wait(timeout=60) == "Completed"
    assert job.get_map_results() == [i * i for i in range(9)]
    metrics = job.get_metrics()
    assert all(r["status"] == "Completed" for r in metrics)
    sandbox.ssh_hosts(["127.0.0.5"])  # power it back on for the fixture's teardown


def test_a_driver_that_cannot_start_leaves_the_job_failed(cluster, monkeypatch):
    """The head's agent finds no free port for the driver: job.create raises, and the job
    is Failed with the reason, not Pending forever."""
    import socket

    import dato_dist as gl
    from dato_dist.errors import Ec2Error, HostsFailed

    head_ip = cluster.hosts[0].private_ip
    taken = socket.socket()  # the range's only port is taken
    taken.bind((head_ip, 0))
    taken.listen()
    port = taken.getsockname()[1]
    monkeypatch.setattr(cluster.ec2_config, "port_range", (port, port))
    try:
        with pytest.raises(HostsFailed) as e:
            gl.deploy.job.create(add, name="no-port-job", environment=cluster, x=1, y=2)
    finally:
        taken.close()
    assert isinstance(e.value, Ec2Error) and e.value.exit_code == 7
    assert "no free port" in str(e.value)
    job = gl.deploy.jobs["no-port-job"]
    assert job.get_status() == "Failed"
    assert "no free port" in job.get_error() and "start the job's driver" in job.get_error()
