"""What runs inside the YARN containers: ``python -m dato_dist.yarn_app.container driver|worker``.

Both read the job's key from Skein's key-value store (held in the application master's
memory, never written to disk or HDFS). The driver binds inside the cluster's port range on
its NodeManager's host and publishes its address in the key-value store; workers wait for
it and run the ordinary task runner. Each container also copies its YARN log files into the
job store every few seconds, so the logs can be read from HDFS while the job runs (YARN
aggregates the same files after the application ends).
"""

import argparse
import glob
import os
import socket
import subprocess
import sys
import threading

AUTHKEY = "dato-dist.authkey"
JOBKEY = "dato-dist.jobkey"  # the job's store key (dato_dist.keys): the driver's only
DRIVER_ADDRESS = "dato-dist.driver"
LOG_UPLOAD_INTERVAL = 5.0


def _container_id():
    return os.environ.get("CONTAINER_ID") or os.environ.get("SKEIN_CONTAINER_ID") or \
        f"{socket.gethostname()}-{os.getpid()}"


class LogShipper:
    """Copies this container's YARN log files to ``<job>/logs/`` in the store, periodically."""

    def __init__(self, files, prefix, interval=LOG_UPLOAD_INTERVAL):
        self.files, self.prefix, self.interval = files, prefix, interval
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _log_files(self):
        out = []
        for d in (os.environ.get("LOG_DIRS") or "").split(","):
            out.extend(p for p in glob.glob(os.path.join(d, "*")) if os.path.isfile(p))
        return out

    def ship(self):
        for path in self._log_files():
            try:
                with open(path, "rb") as f:
                    data = f.read()
                name = f"{self.prefix}-{os.path.basename(path)}"
                self.files.store.write_bytes(self.files.log_rel(name), data, framed=False)
            except OSError as e:
                print(f"[dato-dist] could not upload {path}: {e}", file=sys.stderr)

    def _loop(self):
        while not self.stop_event.wait(self.interval):
            self.ship()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        sys.stdout.flush()
        sys.stderr.flush()
        self.ship()


def _job_files(store_uri, job_id):
    from dato_dist.jobfiles import JobFiles
    from dato_dist.store import Store

    return JobFiles(Store(store_uri), job_id)


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


def driver(args):
    import skein

    from dato_dist import driver as drv

    app = skein.ApplicationClient.from_current()
    authkey = bytes.fromhex(app.kv.wait(AUTHKEY).decode())
    host = os.environ.get("NM_HOST") or socket.gethostname()
    listener = drv.bind_listener(host, (args.start_port, args.end_port), authkey)
    app.kv[DRIVER_ADDRESS] = f"{host}:{listener.address[1]}".encode()
    files = _job_files(args.store, args.job)
    with LogShipper(files, "driver"):
        status = drv.run(args.store, args.job, listener, authkey,
                         job_key=bytes.fromhex(app.kv.wait(JOBKEY).decode()))
    return 0 if status in ("Completed", "Canceled") else 1


def worker(args):
    import skein

    from dato_dist import runner

    app = skein.ApplicationClient.from_current()
    authkey = bytes.fromhex(app.kv.wait(AUTHKEY).decode())
    host, _, port = app.kv.wait(DRIVER_ADDRESS).decode().rpartition(":")
    files = _job_files(args.store, args.job)
    cid = _container_id()
    with LogShipper(files, f"worker-{cid}"):
        _install_packages(files, args.packages)
        return runner.serve((host, int(port)), authkey, cid,
                            heartbeat_interval=args.heartbeat_interval)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dato_dist.yarn_app.container")
    sub = parser.add_subparsers(dest="role", required=True)
    d = sub.add_parser("driver")
    d.add_argument("--start-port", type=int, required=True)
    d.add_argument("--end-port", type=int, required=True)
    w = sub.add_parser("worker")
    w.add_argument("--packages", nargs="*", default=[])
    w.add_argument("--heartbeat-interval", type=float, default=1.0)
    for p in (d, w):
        p.add_argument("--store", required=True)
        p.add_argument("--job", required=True)
    args = parser.parse_args(argv)
    return driver(args) if args.role == "driver" else worker(args)


if __name__ == "__main__":
    sys.exit(main())
