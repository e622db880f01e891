#!/usr/bin/env python
"""A million tiny tasks: dato-dist (LocalAsync, 2 workers) side by side with
ProcessPoolExecutor, in one run (issue 10 item 8).

Run from the repository root::

    .venv/bin/python bench/bench_scale.py              # 1M, 100k, 10k tasks; median of 3
    .venv/bin/python bench/bench_scale.py --quick      # 100k and 10k, 1 run (about 15 s)
    .venv/bin/python bench/bench_scale.py --sizes 1000000 --repeat 5 --out /tmp/s.json

Each size is timed for three sides, interleaved (run 1 of every side and size, then run
2, ...): dato-dist (``map_job.create(add, [{x, y}, ...])`` + ``get_map_results()``),
``ProcessPoolExecutor(max_workers=2).map(add, xs, ys, chunksize=N/100)`` and the same with
chunksize 100; all end to end, from create / pool creation to the last result. For
dato-dist it also records the client's peak RSS growth beyond the parameter list (the
kernel's high-water mark, reset through ``/proc/self/clear_refs`` before the run), the
driver's peak RSS (its ``VmHWM``, sampled by pid until it exits), the job folder's size
(and its logs, results and tasks files), and, on fresh ``Job`` handles, the times of
``get_map_results()``, ``get_metrics()`` (plus ``str`` of the table) and ``print(job)``.
Exit status: 0 when the benchmark ran (even if a bar FAILs), non-zero on an exception.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import bench_local  # noqa: E402  (isolation and the driver-exit wait are shared)
import workloads  # noqa: E402

WORKERS = 2
FULL_SIZES, QUICK_SIZES = (1_000_000, 100_000, 10_000), (100_000, 10_000)
DD, PPE_BEST, PPE_100 = "dato-dist", "PPE chunksize N/100", "PPE chunksize 100"
SIDES = (DD, PPE_BEST, PPE_100)
MIB = 1024 * 1024

# The bars (item 8), for the 1M size (or the largest one run).
BAR_RATIO = 2.0
BAR_CLIENT_GROWTH_MB = 150
BAR_DRIVER_MB = 300
BAR_METRICS_RATIO = 3.0


def _status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


class DriverPeak:
    """The driver's peak RSS (``VmHWM``), sampled by pid every 20 ms until it exits."""

    def __init__(self, job):
        self.job, self.peak_kb = job, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        launch = self.job._files.read_launch() or {}  # no public accessor for the pid
        pid = launch.get("pid")
        while pid and not self._stop.is_set():
            try:
                self.peak_kb = max(self.peak_kb, _status_kb(pid, "VmHWM") or 0)
            except OSError:
                return  # it exited
            time.sleep(0.02)

    def result_mb(self):
        self._stop.set()
        self._thread.join(1.0)
        return self.peak_kb / 1024


def folder_sizes(path):
    """Bytes of the job folder and of its logs, results and tasks file."""
    out = {"total": 0, "logs": 0, "results": 0, "tasks": 0}
    for root, _dirs, names in os.walk(path):
        for name in names:
            size = os.path.getsize(os.path.join(root, name))
            out["total"] += size
            rel = os.path.relpath(os.path.join(root, name), path)
            part = rel.split(os.sep)[0]
            if part in ("logs", "results"):
                out[part] += size
            elif part == "tasks.pkl":
                out["tasks"] += size
    return out


class Bench:
    def __init__(self):
        import dato_dist as gl
        from dato_dist.job import Job

        self.gl, self.Job = gl, Job
        self.env = gl.deploy.environment.LocalAsync("scale", num_workers=WORKERS)

    def warm_up(self):
        """One tiny job: the local launcher starts and stays up, as it does for a user."""
        self.gl.deploy.map_job.create(workloads.add, [{"x": 1, "y": 2}],
                                      environment=self.env).get_map_results()

    def run_dd(self, n):
        params = [{"x": i, "y": i} for i in range(n)]
        expected = [2 * i for i in range(n)]
        base_kb = _status_kb("self", "VmRSS")
        with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
            f.write("5")
        t0 = time.perf_counter()
        job = self.gl.deploy.map_job.create(workloads.add, params, environment=self.env)
        t_created = time.perf_counter()
        peak = DriverPeak(job)
        results = job.get_map_results()
        t1 = time.perf_counter()
        growth_mb = (_status_kb("self", "VmHWM") - base_kb) / 1024
        bench_local.check_results(f"{DD} {n}", results, expected)
        status = job.get_status()
        if status != "Completed":
            raise RuntimeError(f"dato-dist job {job.id} ended {status}: {job.get_error()}")
        bench_local.wait_driver_exit(job)
        extra = {"create_s": t_created - t0, "wait_s": t1 - t_created,
                 "client_growth_mb": growth_mb, "driver_peak_mb": peak.result_mb(),
                 "job": job.id}
        del results, params, expected
        extra.update(self.reads(job))
        return t1 - t0, extra

    def reads(self, job):
        """Times of the read calls at this size, each on a fresh handle (nothing cached)."""
        out = {}
        fresh = self.Job.load(job.uri)
        t = time.perf_counter()
        fresh.get_map_results()
        out["get_map_results_s"] = time.perf_counter() - t
        fresh = self.Job.load(job.uri)
        t = time.perf_counter()
        metrics = fresh.get_metrics()
        out["get_metrics_s"] = time.perf_counter() - t
        t = time.perf_counter()
        text = str(metrics)
        out["str_metrics_s"] = time.perf_counter() - t
        assert f"[{len(metrics)} rows x {metrics.num_columns} columns]" in text, text[-200:]
        fresh = self.Job.load(job.uri)
        t = time.perf_counter()
        str(fresh)
        out["print_job_s"] = time.perf_counter() - t
        local = job._files.store.local_path(job._files.job_id)
        if local:
            out["folder_bytes"] = folder_sizes(local)
        return out

    @staticmethod
    def run_ppe(n, chunksize):
        xs = list(range(n))
        t0 = time.perf_counter()
        ex = ProcessPoolExecutor(max_workers=WORKERS)
        results = list(ex.map(workloads.add, xs, xs, chunksize=chunksize))
        t1 = time.perf_counter()
        ex.shutdown(wait=True)
        bench_local.check_results(f"PPE {n}", results, [2 * x for x in xs])
        return t1 - t0, {"chunksize": chunksize, "shutdown_s": time.perf_counter() - t1}

    def run(self, side, n):
        if side == DD:
            return self.run_dd(n)
        return self.run_ppe(n, max(1, n // 100) if side == PPE_BEST else 100)


def summarize(samples):
    out = {}
    for side, runs in samples.items():
        secs = [s for s, _ in runs]
        entry = {"median_s": statistics.median(secs), "runs_s": secs,
                 "extra": [e for _, e in runs]}
        for key in ("create_s", "wait_s", "client_growth_mb", "driver_peak_mb",
                    "get_map_results_s", "get_metrics_s", "str_metrics_s", "print_job_s"):
            values = [e[key] for _, e in runs if key in e]
            if values:
                entry[key] = statistics.median(values)
        out[side] = entry
    return out


def report(results):
    print(f"\n{'tasks':>9} | {'dato-dist':>9} | {'PPE N/100':>9} | {'PPE 100':>9} | "
          f"{'ratio':>6} | {'ratio100':>8} | {'client+':>8} | {'driver':>7} | "
          f"{'metrics':>7} | {'map_res':>7} | {'print(job)':>10} | {'folder':>7}")
    for n, entry in results.items():
        s = entry["sides"]
        dd = s[DD]
        folder = (dd["extra"][-1].get("folder_bytes") or {}).get("total")
        print(f"{n:>9,} | {dd['median_s']:>8.2f}s | {s[PPE_BEST]['median_s']:>8.2f}s | "
              f"{s[PPE_100]['median_s']:>8.2f}s | {entry['ratio']:>5.2f}x | "
              f"{entry['ratio_chunk100']:>7.2f}x | {dd['client_growth_mb']:>6.0f}MB | "
              f"{dd['driver_peak_mb']:>5.0f}MB | {dd['get_metrics_s']:>6.2f}s | "
              f"{dd['get_map_results_s']:>6.2f}s | {dd['print_job_s']:>9.2f}s | "
              f"{(folder or 0) / MIB:>5.1f}MB")


def check_bars(results):
    n = max(results)
    entry = results[n]
    dd = entry["sides"][DD]
    metrics_ratio = dd["get_metrics_s"] / dd["get_map_results_s"]
    bars = [
        (f"{n:,} tasks within {BAR_RATIO}x of PPE chunksize N/100", entry["ratio"],
         entry["ratio"] <= BAR_RATIO),
        (f"client grows under {BAR_CLIENT_GROWTH_MB} MB", dd["client_growth_mb"],
         dd["client_growth_mb"] < BAR_CLIENT_GROWTH_MB),
        (f"driver under {BAR_DRIVER_MB} MB", dd["driver_peak_mb"],
         dd["driver_peak_mb"] < BAR_DRIVER_MB),
        (f"get_metrics within {BAR_METRICS_RATIO}x of get_map_results", metrics_ratio,
         metrics_ratio <= BAR_METRICS_RATIO),
    ]
    return [{"bar": name, "measured": round(value, 3), "pass": ok} for name, value, ok in bars]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke mode: 100,000 and 10,000 tasks, 1 run")
    p.add_argument("--sizes", help="comma-separated task counts (default 1000000,100000,10000)")
    p.add_argument("--repeat", type=int, default=None,
                   help="runs per side and size; the median is reported (default 3, 1 with "
                        "--quick)")
    p.add_argument("--out", default=os.path.join(BENCH_DIR, "results", "scale.json"),
                   help="where to write the JSON results (default bench/results/scale.json)")
    p.add_argument("--keep-home", action="store_true",
                   help="keep the temporary DATO_DIST_HOME and print its path")
    args = p.parse_args(argv)
    args.repeat = args.repeat or (1 if args.quick else 3)
    if args.sizes:
        args.sizes = tuple(int(x) for x in args.sizes.split(","))
    else:
        args.sizes = QUICK_SIZES if args.quick else FULL_SIZES
    return args


def main(argv=None):
    args = parse_args(argv)
    home, dropped = bench_local.isolate_dato_dist_home()
    bench = None
    try:
        bench = Bench()
        import dato_dist

        commit, dirty = bench_local.git_commit()
        meta = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "python": sys.version.split()[0], "platform": platform.platform(),
                "cpu_count": os.cpu_count(), "workers": WORKERS,
                "dato_dist_version": getattr(dato_dist, "__version__", None),
                "git_commit": commit, "dato_dist_dirty": dirty, "repeat": args.repeat,
                "quick": args.quick, "sizes": list(args.sizes), "statistic": "median",
                "loadavg_before": list(os.getloadavg()), "dropped_env": dropped}
        print(f"dato-dist {meta['dato_dist_version']} vs ProcessPoolExecutor, {WORKERS} "
              f"workers, {os.cpu_count()} CPUs, sizes {list(args.sizes)}, median of "
              f"{args.repeat}; load average {meta['loadavg_before'][0]:.2f}")
        bench.warm_up()
        samples = {n: {s: [] for s in SIDES} for n in args.sizes}
        for rep in range(args.repeat):
            for n in args.sizes:
                for side in SIDES:  # interleaved, so drift hits every side alike
                    secs, extra = bench.run(side, n)
                    samples[n][side].append((secs, extra))
                    print(f"  run {rep + 1}/{args.repeat} {n:>9,} {side:<20} {secs:7.3f} s",
                          flush=True)
        results = {}
        for n in args.sizes:
            s = summarize(samples[n])
            results[n] = {"sides": s, "ratio": s[DD]["median_s"] / s[PPE_BEST]["median_s"],
                          "ratio_chunk100": s[DD]["median_s"] / s[PPE_100]["median_s"]}
        meta["loadavg_after"] = list(os.getloadavg())
        report(results)
        bars = check_bars(results)
        print()
        for bar in bars:
            print(f"  {'PASS' if bar['pass'] else 'FAIL'}  {bar['bar']}: {bar['measured']}")
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "sizes": {str(n): r for n, r in results.items()},
                       "bars": bars}, f, indent=2)
            f.write("\n")
        print(f"\nwrote {args.out}")
    finally:
        if bench is not None:
            try:
                from dato_dist import launcher

                launcher.stop(os.environ["DATO_DIST_HOME"])
            except Exception as e:  # noqa: BLE001
                print(f"WARNING: could not stop the local launcher: {e}")
        workloads.release_home(home, args.keep_home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
