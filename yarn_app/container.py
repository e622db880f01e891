"""What runs inside the YARN containers: ``python -m dato_dist.yarn_app.container driver|worker``.

This is only how :mod:`dato_dist.node` gets onto a YARN node. Both roles take the job's key
from the node's key source, here Skein's key-value store (held in the application master's
memory, never written to disk or HDFS). The driver binds inside the cluster's port range on
its NodeManager's host and publishes its address in the key-value store; workers wait for
it and run the ordinary task runner in the container's process: one runner per container,
and YARN (the worker service's ``max_restarts``) replaces a lost container, so the node's
restarts are YARN's. Each container copies its YARN log files into the job store every few
seconds through :class:`dato_dist.node.LogShipper`, so the logs can be read from HDFS while
the job runs (YARN aggregates the same files after the application ends). Runner settings
come from the driver in ``SETUP``.
"""

import argparse
import os
import socket
import subprocess
import sys

JOBKEY = "dato-dist.jobkey"  # the job's store key (dato_dist.keys): the driver's only
DRIVER_ADDRESS = "dato-dist.driver"
#: A worker that could not set itself up (pip install failed) says why under this prefix.
WORKER_ERROR = "dato-dist.worker-error."
#: Seconds the driver waits for YARN to report a lost runner's container as ended (the
#: application master hears of it on its next heartbeat with the ResourceManager).
EXPLAIN_TIMEOUT = 8.0
_ENDED = ("SUCCEEDED", "FAILED", "KILLED")


def _container_id():
    return os.environ.get("CONTAINER_ID") or os.environ.get("SKEIN_CONTAINER_ID") or \
        f"{socket.gethostname()}-{os.getpid()}"


def _log_dirs():
    """This container's YARN log folders (``LOG_DIRS``)."""
    return [d for d in (os.environ.get("LOG_DIRS") or "").split(",") if d]


def _job_files(store_uri, job_id):
    from dato_dist.jobfiles import JobFiles
    from dato_dist.store import Store

    return JobFiles(Store(store_uri), job_id)


def _log_prefix(files):
    """``run<N>.`` for a rerun's logs (see :func:`dato_dist.rerun.log_prefix`): the client
    wrote the run in the state before it submitted this application."""
    from dato_dist import rerun

    try:
        return rerun.log_prefix(rerun.run_of_state(files.read_state()))
    except Exception as e:  # noqa: BLE001 - logs still ship, under the first run's names
        print(f"[dato-dist] could not read the job's run from its state: {e}", flush=True)
        return ""


def _install_packages(files, packages):
    """pip-install ``packages`` into ./deps, finding them in the dist folder's user packages."""
    if not packages:
        return
    dist = files.store.uri.rstrip("/").rsplit("/", 1)[0]  # <dist folder>/jobs -> <dist folder>
    from dato_dist.store import Store
    from dato_dist.yarn_app import dist as distmod

    store = Store(dist)
    os.makedirs("user_packages", exist_ok=True)
    for name in store.list(distmod.PACKAGES_DIR):
        with open(os.path.join("user_packages", name), "wb") as f:
            f.write(store.read_bytes(f"{distmod.PACKAGES_DIR}/{name}", framed=False))
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
           "--target", "deps", "--find-links", "user_packages", *packages]
    print(f"[dato-dist] installing {' '.join(packages)}", flush=True)
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, timeout=900)
    sys.path.insert(0, os.path.abspath("deps"))


class ContainerExplainer:
    """Why a worker container ended, from YARN through Skein's application master: the
    driver's ``explain`` (see :class:`dato_dist.driver.Driver`). A runner's id is its
    container's id; the container's ``exit_message`` holds YARN's diagnostics (for a
    memory kill: "... is running ... beyond the 'PHYSICAL' memory limit ...")."""

    def __init__(self, app, timeout=EXPLAIN_TIMEOUT):
        self.app, self.timeout = app, timeout

    def __call__(self, runner_id):
        import time

        from dato_dist import errors

        deadline = time.monotonic() + self.timeout
        while True:
            for c in self.app.get_containers(services=["worker"], states=_ENDED):
                if c.yarn_container_id == runner_id:
                    text = " ".join((c.exit_message or "").split())
                    return errors.failure_class_of_diagnostics(text), (
                        f"YARN's diagnostics: container {runner_id} ended {c.state}"
                        + (f": {text}" if text else ""))
            if time.monotonic() > deadline:
                return None  # still running as far as YARN knows: the runner alone was lost
            time.sleep(0.25)

    def node_error(self):
        """``(failure class, why)`` when workers failed to set up (``environment``) and none
        is running or about to; else None."""
        from dato_dist import errors

        found = {k: v for k, v in self.app.kv.get_prefix(WORKER_ERROR).items()}
        if not found or self.app.get_containers(services=["worker"]):
            return None  # a worker may still come up
        cid, why = sorted(found.items())[-1]
        return errors.ENVIRONMENT, (f"{len(found)} worker container(s) could not set up; "
                                    f"the last, {cid[len(WORKER_ERROR):]}: {why.decode()}")


def driver(args):
    import skein

    from dato_dist import driver as drv
    from dato_dist import node
    from dato_dist.listener import bind_listener

    app = skein.ApplicationClient.from_current()
    authkey = node.job_keys(app.kv)["authkey"]
    host = os.environ.get("NM_HOST") or socket.gethostname()
    listener = bind_listener(host, (args.start_port, args.end_port), authkey)
    app.kv[DRIVER_ADDRESS] = f"{host}:{listener.address[1]}".encode()
    files = _job_files(args.store, args.job)
    with node.LogShipper(files, _log_dirs(), prefix=_log_prefix(files) + "driver-"):
        status = drv.run(args.store, args.job, listener, authkey,
                         job_key=bytes.fromhex(app.kv.wait(JOBKEY).decode()),
                         explain=ContainerExplainer(app))
    return 0 if status in ("Completed", "Canceled") else 1


def worker(args):
    import skein

    from dato_dist import node, runner

    app = skein.ApplicationClient.from_current()
    authkey = node.job_keys(app.kv)["authkey"]
    host, _, port = app.kv.wait(DRIVER_ADDRESS).decode().rpartition(":")
    files = _job_files(args.store, args.job)
    cid = _container_id()
    from dato_dist.protocol import WORKER_ENV

    # records name the container, its host and the runner: "container_..._000002@host:pid"
    os.environ[WORKER_ENV] = cid + "@" + (os.environ.get("NM_HOST") or socket.gethostname()) \
        + ":{pid}"
    with node.LogShipper(files, _log_dirs(), prefix=f"{_log_prefix(files)}worker-{cid}-"):
        try:
            _install_packages(files, args.packages)
        except Exception as e:  # the driver reports it (class 'environment')
            why = f"pip install {' '.join(args.packages)} failed: {type(e).__name__}: {e}"
            app.kv[WORKER_ERROR + cid] = why.encode()
            raise
        return runner.serve((host, int(port)), authkey, cid)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dato_dist.yarn_app.container")
    sub = parser.add_subparsers(dest="role", required=True)
    d = sub.add_parser("driver")
    d.add_argument("--start-port", type=int, required=True)
    d.add_argument("--end-port", type=int, required=True)
    w = sub.add_parser("worker")
    w.add_argument("--packages", nargs="*", default=[])
    for p in (d, w):
        p.add_argument("--store", required=True)
        p.add_argument("--job", required=True)
    args = parser.parse_args(argv)
    return driver(args) if args.role == "driver" else worker(args)


if __name__ == "__main__":
    sys.exit(main())
