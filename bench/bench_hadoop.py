#!/usr/bin/env python
"""dato-dist on YARN (the Hadoop MiniCluster) against the floor: a bare Skein application.

Run from the repository root, with a MiniCluster running (issue 3 item 8)::

    .venv/bin/python -m dato_dist.yarn_app.minicluster start --dir /tmp/hadoop     # if none runs
    .venv/bin/python bench/bench_hadoop.py                  # median of 2
    .venv/bin/python bench/bench_hadoop.py --quick          # 100 tasks, 1 repeat
    .venv/bin/python bench/bench_hadoop.py --repeat 3 --hadoop-dir /tmp/hadoop --out /tmp/h.json

Sides, in the same run and interleaved (dato-dist, floor, floor-all, then again, ...):

dato-dist  ``gl.deploy.map_job.create(add, [{'x': i, 'y': i}, ...1,000], environment=hd)``
           then ``job.get_map_results()``, with ``hd`` a ``hadoop_cluster`` of 2 containers of
           256 MB and 1 vcore (the driver is the application master's script, 512 MB).
floor      a bare Skein application with the same containers as ``yarn_app/spec.py`` builds:
           a master of 512 MB / 1 vcore and a ``worker`` service of 2 x 256 MB / 1 vcore;
           master and workers localize the SAME packed environment archive from the dist
           folder (``config.json`` ``env_archive``). Each worker's script is
           ``env/bin/python -c`` that prints ``time.time()``, writes a key to Skein's
           key-value store (as dato-dist's containers talk to their master) and exits; the
           master's script waits until ONE worker wrote its key, then exits, which ends the
           application.
           This is the floor of "a job that ran Python in a worker container": a dato-dist
           job also ends as soon as its tasks are done, on whichever containers are up.
floor-all  the same, but the master waits for BOTH workers to end (a job that needs every
           container; on a fresh node this includes localizing the archive there).

Milestones, each from just before ``map_job.create`` / ``client.submit``:

first   dato-dist: the first task's ``start`` (the records' epoch); floors: the first worker
        Python's printed start time (read from ``yarn logs`` after the application ended,
        so nothing is added while it runs)
end     dato-dist: ``get_map_results()`` returned; floors: the application seen FINISHED

Also reported (not in the ratio): the dist folder's deployment (``python -m dato_dist.cli
hadoop install``, run once before the measurements) and, per side, a breakdown of the
phases (submitted, application RUNNING, driver started, worker containers started, last
task ended, driver ended, application FINISHED) read from the job's launch/state/records
and from YARN (application reports and the master's container list, polled every 0.1 s
by a watcher thread that both sides get alike).

``DATO_DIST_HOME`` points at a fresh temporary directory. One Skein client is used for the
whole run (dato-dist's own, ``yarn_app.cluster.skein_client``) and closed at the end; any
application this script started and that is still alive when it stops (Ctrl-C, an
exception) is killed. Exit status: 0 when the benchmark ran, non-zero on an exception.
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
for path in (BENCH_DIR, REPO_DIR):
    if path not in sys.path:
        sys.path.insert(0, path)

import workloads  # noqa: E402
from bench_local import fmt, git_commit, isolate_dato_dist_home  # noqa: E402

DD, FLOOR, FLOOR_ALL = "dato-dist", "floor", "floor-all"
SIDES = (DD, FLOOR, FLOOR_ALL)
#: How many worker containers the floor's master waits for before it exits.
FLOOR_WAIT = {FLOOR: 1, FLOOR_ALL: 2}
CONTAINERS, CONTAINER_MB, VCORES, MASTER_MB = 2, 256, 1, 512
FULL_TASKS, QUICK_TASKS = 1000, 100
DIST_FOLDER = "bench-dist"
FINAL_APP_STATES = {"FINISHED", "FAILED", "KILLED"}
ALL_CONTAINER_STATES = ["WAITING", "REQUESTED", "RUNNING", "SUCCEEDED", "FAILED", "KILLED"]
WATCH_INTERVAL = 0.1
APP_TIMEOUT = 600.0

START_MARK = "dato-dist-bench python started"


DONE_PREFIX = "dato-dist-bench.done."


def floor_master_script(wait_for):
    """The floor's master: wait until ``wait_for`` workers have said (key-value store) that
    their Python ran, then exit, which ends the application (Skein ends it when the master's
    script exits). The key-value store is what dato-dist's own containers use; YARN's
    container-completion reports reach the master seconds later."""
    return ("env/bin/python -c \"import skein, time\n"
            "app = skein.ApplicationClient.from_current()\n"
            "while len(app.kv.get_prefix('%s')) < %d:\n"
            "    time.sleep(0.05)\"" % (DONE_PREFIX, wait_for))


# Start Python, print when it got to run (read back from the aggregated logs after the
# application ended), tell the master through the key-value store, exit.
FLOOR_WORKER_SCRIPT = (
    "env/bin/python -c \"import os, time; print('%s', repr(time.time()), flush=True)\n"
    "import skein\n"
    "skein.ApplicationClient.from_current().kv['%s' + os.environ['CONTAINER_ID']] = b'1'\""
    % (START_MARK, DONE_PREFIX))


def _epoch(dt):
    return dt.timestamp() if dt is not None else None


class AppWatcher:
    """Polls one YARN application from a thread: when it was first seen RUNNING and in a
    final state, and the master's list of its worker containers (kept after it ends)."""

    def __init__(self, client, app_id):
        self.client, self.app_id = client, app_id
        self.running_seen = self.final_seen = None
        self.final_state = self.final_status = None
        self.report = None
        self.containers = {}  # yarn container id -> (start epoch, finish epoch, state)
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        app = None
        deadline = time.monotonic() + APP_TIMEOUT
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                report = self.client.application_report(self.app_id)
            except Exception as e:  # noqa: BLE001 - keep polling
                self.errors.append(f"application_report: {e}")
                time.sleep(WATCH_INTERVAL)
                continue
            now = time.time()
            state = str(report.state)
            if state == "RUNNING" and self.running_seen is None:
                self.running_seen = now
            if state in FINAL_APP_STATES:
                self.final_seen, self.report = now, report
                self.final_state, self.final_status = state, str(report.final_status)
                return
            if state == "RUNNING":
                try:
                    if app is None:
                        app = self.client.connect(self.app_id, wait=False)
                    for c in app.get_containers(services=["worker"],
                                                states=ALL_CONTAINER_STATES):
                        self.containers[c.yarn_container_id or f"#{c.instance}"] = (
                            _epoch(c.start_time), _epoch(c.finish_time), str(c.state))
                except Exception as e:  # noqa: BLE001 - the master may be going away
                    self.errors.append(f"get_containers: {type(e).__name__}")
            time.sleep(WATCH_INTERVAL)

    def wait(self, timeout=APP_TIMEOUT):
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"{self.app_id} did not end within {timeout:.0f} s")
        if self.final_seen is None:
            raise RuntimeError(f"watching {self.app_id} failed: {self.errors[-3:]}")
        return self

    def stop(self):
        self._stop.set()

    def container_times(self):
        starts = sorted(s for s, _, _ in self.containers.values() if s)
        ends = sorted(f for _, f, _ in self.containers.values() if f)
        return starts, ends


class Bench:
    def __init__(self, cluster, client, dist_path, dist_config, n_tasks):
        import dato_dist as gl

        self.gl, self.cluster, self.client = gl, cluster, client
        self.dist_path, self.dist_config, self.n = dist_path, dist_config, n_tasks
        self.live = set()  # applications started and not seen ended
        self.hd = gl.deploy.hadoop_cluster.create(
            "bench-hadoop", dist_path, hadoop_conf_dir=cluster.conf_dir,
            num_containers=CONTAINERS, container_size=CONTAINER_MB, num_vcores=VCORES)
        self.params = [{"x": i, "y": i} for i in range(n_tasks)]

    def kill_live(self):
        for app_id in sorted(self.live):
            try:
                self.client.kill_application(app_id)
                print(f"killed {app_id}", file=sys.stderr)
            except Exception as e:  # noqa: BLE001 - it may have ended meanwhile
                print(f"could not kill {app_id}: {e}", file=sys.stderr)
        self.live.clear()

    # -- dato-dist ---------------------------------------------------------------------
    def run_dd(self):
        t0 = time.time()
        job = self.gl.deploy.map_job.create(workloads.add, self.params, environment=self.hd)
        t_created = time.time()
        app_id = job.app_id
        self.live.add(app_id)
        watcher = AppWatcher(self.client, app_id)
        try:
            results = job.get_map_results()
            t_results = time.time()
            watcher.wait()
        finally:
            watcher.stop()
        self.live.discard(app_id)
        status = job.get_status()
        if status != "Completed":
            raise RuntimeError(f"dato-dist job {job.id} ended {status}: {job.get_error()}")
        expected = [2 * i for i in range(self.n)]
        if results != expected:
            raise AssertionError(f"dato-dist: wrong results (first: {results[:5]})")
        records = job._files.read_results()  # no public accessor for the epochs
        state = job._files.read_state() or {}
        launch = job._files.read_launch() or {}
        starts = sorted(r["start"] for r in records.values())
        task_ends = [r["start"] + (r["run_time"] or 0) for r in records.values()]
        workers = sorted({r["worker"] for r in records.values()})
        c_starts, c_ends = watcher.container_times()
        rel = lambda t: (t - t0) if t else None  # noqa: E731
        phases = {
            "create_returned": t_created - t0,
            "submitted": rel(launch.get("submitted")),
            "app_running_seen": rel(watcher.running_seen),
            "driver_started": rel(state.get("started")),
            "first_container_start": rel(c_starts[0] if c_starts else None),
            "last_container_start": rel(c_starts[-1] if c_starts else None),
            "first_task_start": rel(starts[0]),
            "last_task_end": rel(max(task_ends)),
            "driver_ended": rel(state.get("ended")),
            "results_returned": t_results - t0,
            "app_finished_seen": rel(watcher.final_seen),
            "app_finish_time": rel(_epoch(watcher.report.finish_time)),
        }
        run = {"first": phases["first_task_start"], "end": phases["results_returned"],
               "phases": phases, "app_id": app_id, "job": job.id,
               "final_status": watcher.final_status, "containers_seen": len(c_starts),
               "workers_used": len(workers),
               "tasks_per_worker": {w: sum(r["worker"] == w for r in records.values())
                                    for w in workers}}
        return run

    # -- the floor ---------------------------------------------------------------------
    def floor_spec(self, side):
        import skein

        archive = f"{self.dist_path.rstrip('/')}/{self.dist_config['env_archive']}"
        files = {"env": skein.File(source=archive, type="archive", visibility="private")}
        env = {"PYTHONUNBUFFERED": "1", "PYTHONNOUSERSITE": "1"}
        master = skein.Master(resources=skein.Resources(memory=MASTER_MB, vcores=1),
                              script=floor_master_script(FLOOR_WAIT[side]), files=files,
                              env=env)
        worker = skein.Service(
            instances=CONTAINERS, resources=skein.Resources(memory=CONTAINER_MB, vcores=VCORES),
            script=FLOOR_WORKER_SCRIPT, files=files, env=env, max_restarts=0)
        return skein.ApplicationSpec(name=f"dato-dist-bench:{side}", queue="default",
                                     tags={"dato-dist-bench"}, master=master,
                                     services={"worker": worker}, max_attempts=1)

    def python_starts(self, app_id, t0, expected, timeout=60.0):
        """Epochs at which the floor's worker Pythons started, from the aggregated logs
        (each NodeManager uploads its own: read until ``expected`` are there)."""
        deadline = time.monotonic() + timeout
        best = []
        while True:
            out = self.cluster.yarn("logs", "-applicationId", app_id).stdout
            found = sorted(float(m) for m in re.findall(
                re.escape(START_MARK) + r" '?([0-9.]+)", out))
            found = [t for t in found if t >= t0 - 1]
            if len(found) > len(best):
                best = found
            if len(best) >= expected or time.monotonic() > deadline:
                return best
            time.sleep(1.0)

    def run_floor(self, side=FLOOR):
        spec = self.floor_spec(side)
        t0 = time.time()
        app_id = self.client.submit(spec)
        t_submitted = time.time()
        self.live.add(app_id)
        watcher = AppWatcher(self.client, app_id)
        try:
            watcher.wait()
        finally:
            watcher.stop()
        self.live.discard(app_id)
        if watcher.final_status != "SUCCEEDED":
            raise RuntimeError(f"floor application {app_id} ended {watcher.final_state}/"
                               f"{watcher.final_status}: {watcher.report.diagnostics}")
        c_starts, c_ends = watcher.container_times()
        py_starts = self.python_starts(app_id, t0, FLOOR_WAIT[side])
        if not py_starts:
            raise RuntimeError(f"floor application {app_id}: no worker's Python start found "
                               f"in its logs (yarn logs -applicationId {app_id})")
        rel = lambda t: (t - t0) if t else None  # noqa: E731
        phases = {
            "submitted": t_submitted - t0,
            "app_running_seen": rel(watcher.running_seen),
            "first_container_start": rel(c_starts[0] if c_starts else None),
            "last_container_start": rel(c_starts[-1] if c_starts else None),
            "first_python_start": rel(py_starts[0]),
            "last_python_start": rel(py_starts[-1]),
            "first_container_finish": rel(c_ends[0] if c_ends else None),
            "last_container_finish": rel(c_ends[-1] if c_ends else None),
            "app_finished_seen": rel(watcher.final_seen),
            "app_finish_time": rel(_epoch(watcher.report.finish_time)),
        }
        return {"first": phases["first_python_start"], "end": phases["app_finished_seen"],
                "phases": phases, "app_id": app_id, "final_status": watcher.final_status,
                "containers_seen": len(c_starts), "pythons_started": len(py_starts)}


# -- setup -------------------------------------------------------------------------------

def open_cluster(hadoop_dir):
    from dato_dist.yarn_app.minicluster import MiniCluster

    cluster = MiniCluster(hadoop_dir)
    if not cluster.is_running():
        raise SystemExit(f"No Hadoop MiniCluster runs in {hadoop_dir}. Start one with:\n"
                         f"  .venv/bin/python -m dato_dist.yarn_app.minicluster start --dir {hadoop_dir}")
    os.environ.update(cluster.env)
    os.environ["SKEIN_CONFIG"] = os.path.join(cluster.dir, "skein")
    return cluster


def deploy(dist_path):
    """Deploy the dist folder with the admin's command; return (seconds, its config)."""
    from dato_dist.yarn_app import dist as distmod

    cmd = [sys.executable, "-m", "dato_dist.cli", "hadoop", "install", dist_path,
           "--num-containers", str(CONTAINERS), "--container-size", str(CONTAINER_MB),
           "--num-vcores", str(VCORES)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=REPO_DIR,
                         stdin=subprocess.DEVNULL)
    secs = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"hadoop install failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return secs, distmod.read_config(dist_path)


# -- reporting ---------------------------------------------------------------------------

def summarize(runs):
    entry = {"first_median_s": statistics.median(r["first"] for r in runs),
             "end_median_s": statistics.median(r["end"] for r in runs),
             "first_samples_s": [r["first"] for r in runs],
             "end_samples_s": [r["end"] for r in runs], "phases_median_s": {}}
    for key in runs[0]["phases"]:
        values = [r["phases"][key] for r in runs if r["phases"].get(key) is not None]
        entry["phases_median_s"][key] = statistics.median(values) if values else None
    entry["runs"] = runs
    return entry


def print_table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                    for i, (h, w) in enumerate(zip(header, widths))))
    print(line)
    for r in rows:
        print("  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                        for i, (v, w) in enumerate(zip(r, widths))))
    print(line)


PHASE_LABELS = [
    ("submitted", "client.submit returned (dato-dist: launch.json 'submitted')"),
    ("create_returned", "map_job.create returned"),
    ("app_running_seen", "application RUNNING (seen by the watcher)"),
    ("driver_started", "driver started (state.json 'started')"),
    ("first_container_start", "first worker container started (YARN, before localizing)"),
    ("last_container_start", "last worker container started (YARN, before localizing)"),
    ("first_python_start", "first worker Python started (its log)"),
    ("last_python_start", "last worker Python started (its log)"),
    ("first_task_start", "first task started (records)"),
    ("last_task_end", "last task ended (records)"),
    ("first_container_finish", "first worker container finished (YARN)"),
    ("last_container_finish", "last worker container finished (YARN)"),
    ("driver_ended", "driver ended (state.json 'ended')"),
    ("results_returned", "get_map_results returned"),
    ("app_finish_time", "application finish time (YARN report)"),
    ("app_finished_seen", "application FINISHED (seen by the watcher)"),
]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=None,
                   help="runs of each side; the median is reported (default 2, 1 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke mode: {QUICK_TASKS} tasks instead of {FULL_TASKS:,}, 1 repeat")
    p.add_argument("--out", default=os.path.join(BENCH_DIR, "results", "hadoop.json"),
                   help="where to write the JSON results (default bench/results/hadoop.json)")
    p.add_argument("--hadoop-dir", default=os.environ.get("DATO_DIST_TEST_HADOOP_DIR",
                                                          "/tmp/hadoop"),
                   help="the running MiniCluster's --dir (default $DATO_DIST_TEST_HADOOP_DIR "
                        "or /tmp/hadoop)")
    p.add_argument("--keep-home", action="store_true",
                   help="keep the temporary DATO_DIST_HOME and print its path")
    args = p.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 2
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    home, dropped = isolate_dato_dist_home()
    started = datetime.datetime.now().astimezone()
    n_tasks = QUICK_TASKS if args.quick else FULL_TASKS
    cluster = open_cluster(args.hadoop_dir)
    dist_path = f"{cluster.hdfs_uri}/{DIST_FOLDER}"
    client = bench = None
    try:
        import dato_dist
        from dato_dist.yarn_app import cluster as yarn_cluster

        print(f"dato-dist {dato_dist.__version__} on YARN (MiniCluster {cluster.dir}, Hadoop "
              f"{cluster.info.get('hadoop_version')}): {n_tasks:,} x add on {CONTAINERS} "
              f"containers of {CONTAINER_MB} MB / {VCORES} vcore vs a bare Skein application; "
              f"median of {args.repeat}{', QUICK' if args.quick else ''}")
        print(f"DATO_DIST_HOME={home}")
        load = os.getloadavg()
        if load[0] > 0.5:
            print(f"WARNING: load average {load[0]:.2f} before the run: the figures will be "
                  "noisy.")
        print(f"deploying the dist folder to {dist_path} ...", flush=True)
        deploy_s, dist_config = deploy(dist_path)
        print(f"  hadoop install: {fmt(deploy_s)} (not in the figures); env archive "
              f"{dist_config['env_archive']}", flush=True)
        client = yarn_cluster.skein_client(cluster.conf_dir)  # dato-dist's, shared
        bench = Bench(cluster, client, dist_path, dist_config, n_tasks)
        samples = {side: [] for side in SIDES}
        runners = {DD: bench.run_dd, FLOOR: lambda: bench.run_floor(FLOOR),
                   FLOOR_ALL: lambda: bench.run_floor(FLOOR_ALL)}
        for rep in range(args.repeat):
            for side in SIDES:  # interleaved, so drift hits every side alike
                run = runners[side]()
                samples[side].append(run)
                print(f"  run {rep + 1}/{args.repeat} {side:<10} first {fmt(run['first'])}  "
                      f"end {fmt(run['end'])}  ({run['app_id']})", flush=True)
        sides = {side: summarize(runs) for side, runs in samples.items()}
        ratios = {f"{DD}/{floor}": {
            "first": sides[DD]["first_median_s"] / sides[floor]["first_median_s"],
            "end": sides[DD]["end_median_s"] / sides[floor]["end_median_s"]}
            for floor in (FLOOR, FLOOR_ALL)}

        print()
        rows = [("first task running / first worker Python started",
                 *(fmt(sides[s]["first_median_s"]) for s in SIDES),
                 fmt(ratios[f"{DD}/{FLOOR}"]["first"], "x"),
                 fmt(ratios[f"{DD}/{FLOOR_ALL}"]["first"], "x")),
                (f"job end ({n_tasks:,} x add) / application FINISHED",
                 *(fmt(sides[s]["end_median_s"]) for s in SIDES),
                 fmt(ratios[f"{DD}/{FLOOR}"]["end"], "x"),
                 fmt(ratios[f"{DD}/{FLOOR_ALL}"]["end"], "x"))]
        print_table(rows, ("milestone (from map_job.create / submit)", *SIDES,
                           f"{DD}/{FLOOR}", f"{DD}/{FLOOR_ALL}"))
        print()
        print("Phases (median seconds from map_job.create / client.submit)")
        rows = []
        for key, label in PHASE_LABELS:
            vals = [sides[s]["phases_median_s"].get(key) for s in SIDES]
            if any(v is not None for v in vals):
                rows.append((label, *("-" if v is None else f"{v:.2f}" for v in vals)))
        print_table(rows, ("phase", *SIDES))
        used = [r["workers_used"] for r in samples[DD]]
        print(f"\ndato-dist worker containers that ran tasks, per run: {used} "
              f"(of {CONTAINERS})")
        print(f"dist folder deployment (hadoop install, once, not in the figures): "
              f"{fmt(deploy_s)}")

        commit, dirty = git_commit()
        meta = {
            "date": started.isoformat(timespec="seconds"), "python": sys.version.split()[0],
            "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "dato_dist_version": dato_dist.__version__, "git_commit": commit,
            "dato_dist_dirty": dirty, "repeat": args.repeat, "quick": args.quick,
            "statistic": "median", "tasks": n_tasks, "containers": CONTAINERS,
            "container_mb": CONTAINER_MB, "vcores": VCORES, "master_mb": MASTER_MB,
            "hadoop_version": cluster.info.get("hadoop_version"),
            "nodemanagers": cluster.info.get("nodemanagers"), "dist_path": dist_path,
            "env_archive": dist_config["env_archive"], "dato_dist_home": home,
            "dropped_env": dropped, "loadavg_before": list(load),
            "loadavg_after": list(os.getloadavg()),
            "floor_master_script": {f: floor_master_script(n) for f, n in FLOOR_WAIT.items()},
            "floor_worker_script": FLOOR_WORKER_SCRIPT,
            "timing": "seconds from just before map_job.create / client.submit; first = the "
                      "first task's record 'start' (dato-dist) or the first worker container's "
                      "start time from the application master (floor); end = "
                      "get_map_results returned (dato-dist) or the application seen FINISHED "
                      f"(floor, polled every {WATCH_INTERVAL} s)",
        }
        out = {"meta": meta, "deploy_s": deploy_s, "sides": sides, "ratios": ratios,
               "ratio_first": ratios[f"{DD}/{FLOOR}"]["first"],
               "ratio_end": ratios[f"{DD}/{FLOOR}"]["end"]}
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
        print(f"\nwrote {args.out}")
    except BaseException:
        if bench is not None:
            bench.kill_live()
        raise
    finally:
        if client is not None:
            from dato_dist.yarn_app import cluster as yarn_cluster

            yarn_cluster._clients.pop(cluster.conf_dir, None)
            client.close()
        workloads.release_home(home, args.keep_home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
