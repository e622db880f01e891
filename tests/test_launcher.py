"""The local launcher: drivers forked from a warm per-user process, with the client's
context; restarted when killed; idle exit; the spawn fallback; its CLI."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest

import dato_dist as gl
from dato_dist import launcher, procs
from dato_dist.cli import main as cli_main
from tests import tasks
from tests.conftest import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parent_pid(pid):
    fields = procs._stat(pid)
    return int(fields[1]) if fields else None


def driver_pid(job):
    return job._read_launch()["pid"]


def the_launcher(home):
    running = launcher.running(home)
    assert len(running) == 1, running
    return running[0]["pid"]


def test_drivers_are_forked_by_one_launcher(dato_home, env2):
    launcher.stop(dato_home)
    os.chmod(launcher.run_dir(dato_home), 0o755)  # opened up by someone: made private again
    first = gl.deploy.map_job.create(tasks.add, [{"x": i, "y": 1} for i in range(5)],
                                     environment=env2)
    assert first.get_map_results() == [1, 2, 3, 4, 5]
    pid = the_launcher(dato_home)
    second = gl.deploy.map_job.create(tasks.sleepy, [{"i": 3, "seconds": 0.5}],
                                      environment=env2)
    assert parent_pid(driver_pid(second)) == pid
    assert second.get_map_results() == [9]
    assert the_launcher(dato_home) == pid
    sock = launcher.socket_path(dato_home)
    assert os.path.exists(sock) and oct(os.stat(sock).st_mode & 0o777) == "0o600"
    assert oct(os.stat(os.path.dirname(sock)).st_mode & 0o777) == "0o700"


def test_driver_takes_the_clients_env_cwd_and_path(dato_home, env2, tmp_path, monkeypatch):
    gl.deploy.map_job.create(tasks.add, [{"x": 1, "y": 1}], environment=env2).get_results()
    launcher_pid = the_launcher(dato_home)
    # Everything below changes after the launcher started: the driver must still see it.
    module_dir = tmp_path / "mods"
    module_dir.mkdir()
    (module_dir / "late_module.py").write_text(textwrap.dedent("""
        import os
        def where(i):
            return i, os.environ.get("DATO_DIST_TEST_MARK"), os.getcwd()
    """))
    monkeypatch.syspath_prepend(str(module_dir))
    monkeypatch.setenv("DATO_DIST_TEST_MARK", "from-the-client")
    monkeypatch.chdir(tmp_path)
    import late_module

    job = gl.deploy.map_job.create(late_module.where, [{"i": 0}, {"i": 1}], environment=env2)
    assert job.get_map_results() == [(0, "from-the-client", str(tmp_path)),
                                     (1, "from-the-client", str(tmp_path))]
    assert parent_pid(driver_pid(job)) == launcher_pid


def test_a_killed_launcher_is_replaced(dato_home, env2):
    gl.deploy.map_job.create(tasks.add, [{"x": 1, "y": 1}], environment=env2).get_results()
    old = the_launcher(dato_home)
    os.kill(old, signal.SIGKILL)  # leaves its socket file and pid file behind
    wait_for(lambda: not procs.is_alive(old), timeout=10, what="the launcher to die")
    job = gl.deploy.map_job.create(tasks.add, [{"x": 2, "y": 2}], environment=env2)
    assert job.get_map_results() == [4]
    new = the_launcher(dato_home)
    assert new != old and parent_pid(driver_pid(job)) == new


def test_jobs_outlive_a_stopped_launcher(dato_home, env2):
    job = gl.deploy.map_job.create(tasks.sleepy, [{"i": i, "seconds": 1.0} for i in range(2)],
                                   environment=env2)
    wait_for(lambda: job.get_status() == "Running", timeout=30, what="Running")
    assert launcher.stop(dato_home)
    assert launcher.running(dato_home) == []
    assert not os.path.exists(launcher.socket_path(dato_home))
    assert job.get_map_results() == [0, 1]
    assert job.get_status() == "Completed"


def test_spawn_start_method_skips_the_launcher(dato_home, env2, monkeypatch):
    launcher.stop(dato_home)
    monkeypatch.setenv("DATO_DIST_LOCAL_START_METHOD", "spawn")
    job = gl.deploy.map_job.create(tasks.add, [{"x": 1, "y": 2}], environment=env2)
    assert job.get_map_results() == [3]
    assert launcher.running(dato_home) == []


def _client(home, code, **env):
    environ = dict(os.environ, DATO_DIST_HOME=str(home),
                   DATO_DIST_CONFIG=str(home) + "/none.toml", **env)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env=environ)


JOB = ("import dato_dist as gl\n"
       "from tests import tasks\n"
       "env = gl.deploy.environment.LocalAsync('l', num_workers=1)\n"
       "print(gl.deploy.map_job.create(tasks.add, [{'x': 1, 'y': 2}], "
       "environment=env).get_map_results())\n")


def test_an_idle_launcher_exits(tmp_path):
    home = tmp_path / "home"
    # The client names the launcher as soon as its job started (under load, the job itself
    # can outlast a short idle timeout: looking after the client ended raced it).
    code = ("import dato_dist as gl\n"
            "from dato_dist import launcher\n"
            "from dato_dist.config import load\n"
            "from tests import tasks\n"
            "env = gl.deploy.environment.LocalAsync('l', num_workers=1)\n"
            "job = gl.deploy.map_job.create(tasks.add, [{'x': 1, 'y': 2}], environment=env)\n"
            "print(launcher.running(load().home)[0]['pid'])\n"
            "print(job.get_map_results())\n")
    try:
        out = _client(home, code, DATO_DIST_LOCAL_LAUNCHER_IDLE_TIMEOUT="3")
        assert out.returncode == 0 and out.stdout.split()[-1] == "[3]", out.stderr
        pid = int(out.stdout.split()[0])  # outlives the client that started it ...
        wait_for(lambda: not procs.is_alive(pid), timeout=30, what="the idle launcher to exit")
        assert not [n for n in os.listdir(home / "run") if n.endswith((".sock", ".pid"))]
    finally:
        launcher.stop(home)


def test_no_launcher_falls_back_to_spawning(tmp_path):
    # AF_UNIX paths are limited to about 100 bytes: this home's socket cannot be bound.
    home = tmp_path / ("h" * 120)
    try:
        out = _client(home, JOB)
        assert out.returncode == 0 and out.stdout.strip() == "[3]", out.stderr
        assert "Starting job drivers as new interpreters" in out.stderr
        assert "too long" in out.stderr
        assert launcher.running(home) == []
    finally:
        launcher.stop(home)


def test_cli_status_and_stop(dato_home, env2, capsys):
    gl.deploy.map_job.create(tasks.add, [{"x": 1, "y": 1}], environment=env2).get_results()
    pid = the_launcher(dato_home)
    assert cli_main(["launcher", "status"]) == 0
    assert f"Launcher pid {pid}" in capsys.readouterr().out
    assert cli_main(["launcher", "stop"]) == 0
    assert f"Stopped launcher pid {pid}" in capsys.readouterr().out
    assert not procs.is_alive(pid)
    assert cli_main(["launcher", "status"]) == 0
    assert "No launcher is running" in capsys.readouterr().out


def test_only_its_user_may_use_it(dato_home, env2, tmp_path_factory):
    """Another user's process is refused (checked through the peer's credentials)."""
    other_python = shutil.which("python3", path="/usr/bin:/bin")
    if os.getuid() != 0 or not other_python:
        pytest.skip("needs root and a system python3 to connect as another user")
    gl.deploy.map_job.create(tasks.add, [{"x": 1, "y": 1}], environment=env2).get_results()
    sock = launcher.socket_path(dato_home)
    # A hard link in a world-readable folder gets past the private folder; the socket's
    # mode is opened up for the test, so only the uid check stands in the way.
    public = os.path.join(tempfile.gettempdir(), f"dato-dist-test-{os.getpid()}.sock")
    try:
        os.link(sock, public)
    except OSError as e:  # the temp folder is on another filesystem than the test home
        pytest.skip(f"cannot link the socket into {tempfile.gettempdir()}: {e}")
    os.chmod(public, 0o666)
    try:
        code = ("import socket\n"
                "s = socket.socket(socket.AF_UNIX)\n"
                f"s.connect({public!r})\n"
                "s.settimeout(5)\n"
                "print(s.recv(100).decode())\n")
        out = subprocess.run([other_python, "-c", code], capture_output=True, text=True,
                             timeout=30, user=65534, group=65534, cwd="/")
        assert "not your launcher" in out.stdout, out.stderr
    finally:
        os.chmod(public, 0o600)
        os.unlink(public)
    assert gl.deploy.map_job.create(tasks.add, [{"x": 2, "y": 1}],
                                    environment=env2).get_map_results() == [3]


def test_files_of_gone_launchers_are_removed(dato_home, env2):
    import fcntl

    launcher.stop(dato_home)
    run = launcher.run_dir(dato_home)
    for name in ("launcher-0000000000000000.lock", "launcher-0000000000000000.log",
                 "launcher-1111111111111111.lock"):
        open(os.path.join(run, name), "w").close()
    with open(os.path.join(run, "launcher-1111111111111111.lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running launcher holds it
        job = gl.deploy.map_job.create(tasks.add, [{"x": 1, "y": 1}], environment=env2)
        assert job.get_map_results() == [2]
        left = sorted(os.listdir(run))
    assert "launcher-0000000000000000.lock" not in left
    assert "launcher-0000000000000000.log" not in left
    assert "launcher-1111111111111111.lock" in left


def test_a_launcher_that_cannot_start_is_not_waited_for(tmp_path):
    home = tmp_path / "home"
    os.makedirs(launcher.socket_path(home))  # a folder where its socket must go: bind fails
    two_jobs = JOB + ("print(gl.deploy.map_job.create(tasks.add, [{'x': 2, 'y': 2}], "
                      "environment=env).get_map_results())\n")
    try:
        out = _client(home, two_jobs)
        assert out.returncode == 0 and out.stdout.split() == ["[3]", "[4]"], out.stderr
        assert "the launcher exited with status 1 as it started" in out.stderr
        assert out.stderr.count("Starting job drivers as new interpreters") == 1
        assert launcher.running(home) == []
    finally:
        launcher.stop(home)


@pytest.mark.parametrize("method", ["launcher", "spawn"])
def test_a_client_in_a_deleted_folder_still_runs_jobs(env2, tmp_path, monkeypatch, method):
    monkeypatch.setenv("DATO_DIST_LOCAL_START_METHOD", method)
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    job = gl.deploy.map_job.create(tasks.add, [{"x": 5, "y": 5}], environment=env2)
    assert job.get_map_results() == [10]


class _Peer:
    """Something answering on a launcher's socket, one way per connection (``modes``):
    ``"close"`` closes before reading; ``"taken"`` reads the request, says it took it, then
    closes; ``"silent"`` takes it and never answers; ``"pid"`` answers ``{"pid": 4242}``."""

    def __init__(self, path, modes):
        import socket
        import threading

        self.modes, self.connections, self.requests = list(modes), 0, 0
        self.stopping = False
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(8)
        self.server.settimeout(3)
        self.held = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import socket

        for mode in self.modes:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            if self.stopping:  # woken by close()
                conn.close()
                return
            self.connections += 1
            if mode == "close":
                conn.close()
                continue
            conn.settimeout(10)
            data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
            for fd in fds:
                os.close(fd)
            while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
                data += conn.recv(65536)
            self.requests += 1
            if mode == "pid":
                conn.sendall(b'+{"pid": 4242}\n')
            elif mode == "taken":
                conn.sendall(b"+")
            else:
                conn.sendall(b"+")
                self.held.append(conn)
                continue
            conn.close()

    def close(self):
        import socket

        self.stopping = True
        if self.thread.is_alive():  # waiting in accept(): wake it
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as wake:
                try:
                    wake.connect(self.server.getsockname())
                except OSError:
                    pass
        self.thread.join(30)
        self.server.close()
        for conn in self.held:
            conn.close()


def _start_driver_against(tmp_path, modes, monkeypatch):
    home = tmp_path / "home"
    path = launcher.socket_path(home)
    peer = _Peer(path, modes)
    pipes = [os.pipe() for _ in range(3)]
    monkeypatch.setattr(launcher, "_ANSWER_TIMEOUT", 1.0, raising=False)
    try:
        return peer, launcher.start_driver(home, ["--job", "j"], [r for r, _ in pipes],
                                           idle_timeout=1, start_timeout=2)
    except launcher.LauncherUnavailable as e:
        return peer, e
    finally:
        peer.close()
        os.unlink(path)
        for r, w in pipes:
            os.close(r)
            os.close(w)


def test_a_request_the_launcher_did_not_take_is_sent_again(tmp_path, monkeypatch):
    peer, pid = _start_driver_against(tmp_path, ["close", "pid"], monkeypatch)
    assert pid == 4242 and peer.connections == 2 and peer.requests == 1


@pytest.mark.parametrize("mode", ["taken", "silent"])
def test_a_request_the_launcher_took_is_never_sent_twice(tmp_path, monkeypatch, mode):
    """A launcher that took a request may have forked its driver; sending it again would
    start a second driver of the job on the same pipes (seen under load: two drivers read
    halves of the "go" line, and the job failed with its spec "not signed with its key")."""
    peer, error = _start_driver_against(tmp_path, [mode, "pid"], monkeypatch)
    assert isinstance(error, launcher.LauncherUnavailable), error
    assert peer.connections == 1 and peer.requests == 1


def test_an_answered_request_is_sent_once(tmp_path, monkeypatch):
    """A launcher answers and closes at once: the client must not take a failed send after
    its whole request went out for "not taken" (an empty send raised EPIPE, and the request
    was sent again: two drivers for one job, under load)."""
    for attempt in range(20):
        peer, pid = _start_driver_against(tmp_path, ["pid", "pid"], monkeypatch)
        assert pid == 4242 and peer.connections == 1 and peer.requests == 1, (attempt, pid)
