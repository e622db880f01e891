#!/usr/bin/env python
"""dato-dist on this machine (LocalAsync, 2 workers) side by side with its peers.

Run from the repository root::

    .venv/bin/python bench/bench_local.py              # full run, median of 3
    .venv/bin/python bench/bench_local.py --quick      # smoke run: small sizes, 1 repeat
    .venv/bin/python bench/bench_local.py --repeat 5 --only W1,W3 --out /tmp/b.json

Workloads (issue 2, item 10):

W1  10,000 calls of ``add(x, y)``
W2  200 calls sleeping 50 ms on 2 workers; efficiency = (200 * 0.05 / 2) / measured
W3  cold start: a fresh ``python -c`` that imports the library / creates the pool, runs
    one call and prints the result; timed from before the subprocess starts to the line
    with the result (the figure the bar uses) and to the subprocess's exit
W4  64 calls with a 4 MiB ``bytes`` argument, returning its length

Sides: dato-dist (``map_job.create`` on ``LocalAsync(num_workers=2)``),
``concurrent.futures.ProcessPoolExecutor(max_workers=2)`` (``map``, chunksize 100) and
``multiprocessing.Pool(2)`` (``map`` / ``starmap``, chunksize 100). Each is timed end to
end: from ``map_job.create`` / pool creation to the last result in hand. Pool shutdown and
the dato-dist driver's exit after the last result are measured separately and not included.

Everything runs with ``DATO_DIST_HOME`` (and ``DATO_DIST_CONFIG``) pointing into a fresh
temporary directory, so the user's ``~/.dato_dist`` is never read or written. Exit status:
0 when the benchmark ran (even if a bar FAILs), non-zero on an exception.
"""

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
# The task functions must pickle by reference (module 'workloads') on every side.
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import workloads  # noqa: E402

DD, PPE, POOL = "dato-dist", "ProcessPoolExecutor", "multiprocessing.Pool"
#: dato-dist with no launcher running: the job starts one (what a user's first job costs).
DD_COLD = "dato-dist, no launcher"
SIDES = (DD, DD_COLD, PPE, POOL)
#: Workloads also measured without a launcher (where the driver's start shows).
COLD_WORKLOADS = ("W1", "W3")
WORKERS = 2
MIB = 1024 * 1024

FULL = {"W1": 10_000, "W2": 200, "W4": 64}
QUICK = {"W1": 1_000, "W2": 20, "W4": 8}
BLOB_BYTES = 4 * MIB

# The bars, and what it aims at.
BAR_W1_RATIO, AIM_W1_RATIO = 3.0, 1.2
BAR_W2_EFFICIENCY = 0.85
BAR_W3_SECONDS, AIM_W3_SECONDS = 2.0, 0.3


# -- isolation ---------------------------------------------------------------------------

def isolate_dato_dist_home():
    """Point dato-dist at a fresh temporary home before it is imported; return its path.

    Other ``DATO_DIST_*`` variables of the caller are dropped so the defaults are measured.
    """
    dropped = sorted(k for k in os.environ if k.startswith("DATO_DIST_"))
    for key in dropped:
        del os.environ[key]
    home = tempfile.mkdtemp(prefix="dato-dist-bench-")
    os.environ["DATO_DIST_HOME"] = home
    # The user config file is read from ~/.dato_dist unless this names another (absent) one.
    os.environ["DATO_DIST_CONFIG"] = os.path.join(home, "no-user-config.toml")
    return home, dropped


# -- helpers -----------------------------------------------------------------------------

def check_results(label, got, expected):
    if got != expected:
        bad = next((i for i, (g, e) in enumerate(zip(got, expected)) if g != e), None)
        raise AssertionError(
            f"{label}: wrong results ({len(got)} vs {len(expected)} expected; first "
            f"difference at {bad}: {got[bad] if bad is not None else None!r} vs "
            f"{expected[bad] if bad is not None else None!r})")


def wait_driver_exit(job, timeout=30.0):
    """Seconds until the job's driver process is gone (it stops its runners first).

    Waiting keeps one job's shutdown from overlapping the next measurement.
    """
    from dato_dist import procs

    t0 = time.perf_counter()
    launch = job._files.read_launch() or {}  # no public accessor for the driver's pid
    pid, started = launch.get("pid"), launch.get("start_time")
    while pid and procs.is_alive(pid, started):
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"the driver of job {job.id} (pid {pid}) is still alive "
                               f"{timeout:.0f} s after the job ended")
        time.sleep(0.005)
    try:  # reap it if it is our child, so no zombie lingers
        from dato_dist.environments import local

        local._reap()
    except Exception:
        pass
    return time.perf_counter() - t0


class Bench:
    def __init__(self, sizes, chunksize, quick):
        import dato_dist as gl

        self.gl = gl
        self.sizes = sizes
        self.chunksize = chunksize
        self.quick = quick
        self.env = gl.deploy.environment.LocalAsync("bench", num_workers=WORKERS)
        # Distinct objects: pickle memoizes a repeated object within one pickle, so 64
        # references to one bytes would travel as one 4 MiB copy in a peer's chunk.
        base = os.urandom(BLOB_BYTES - 1)
        self.blobs = [base + bytes([i % 256]) for i in range(sizes["W4"])]

    def stop_launcher(self):
        """Stop the local launcher (the next job starts a new one)."""
        from dato_dist import launcher

        launcher.stop(os.environ["DATO_DIST_HOME"])

    def warm_up(self):
        """One tiny job before the timed runs: it starts the local launcher, which stays
        up between jobs as it does for a user (it exits after 10 idle minutes)."""
        self.run_dd(workloads.add, [{"x": 1, "y": 2}])

    # -- the sides of a map ----------------------------------------------------------------
    def run_dd(self, fn, params):
        t0 = time.perf_counter()
        job = self.gl.deploy.map_job.create(fn, params, environment=self.env)
        t_created = time.perf_counter()
        results = job.get_map_results()
        t1 = time.perf_counter()
        status = job.get_status()
        if status != "Completed":
            raise RuntimeError(f"dato-dist job {job.id} ended {status}: {job.get_error()}")
        extra = {"create_s": t_created - t0, "wait_s": t1 - t_created,
                 "driver_exit_after_s": wait_driver_exit(job), "job": job.id}
        return t1 - t0, results, extra

    def run_ppe(self, fn, columns):
        t0 = time.perf_counter()
        ex = ProcessPoolExecutor(max_workers=WORKERS)
        results = list(ex.map(fn, *columns, chunksize=self.chunksize))
        t1 = time.perf_counter()
        ex.shutdown(wait=True)
        return t1 - t0, results, {"shutdown_s": time.perf_counter() - t1}

    def run_pool(self, fn, columns):
        t0 = time.perf_counter()
        pool = multiprocessing.Pool(WORKERS)
        if len(columns) == 1:
            results = pool.map(fn, columns[0], chunksize=self.chunksize)
        else:
            results = pool.starmap(fn, zip(*columns), chunksize=self.chunksize)
        t1 = time.perf_counter()
        pool.close()
        pool.join()
        return t1 - t0, results, {"shutdown_s": time.perf_counter() - t1}

    def run_map(self, side, fn, names, columns):
        if side == DD_COLD:
            self.stop_launcher()
            side = DD
        if side == DD:
            params = [dict(zip(names, values)) for values in zip(*columns)]
            return self.run_dd(fn, params)
        if side == PPE:
            return self.run_ppe(fn, columns)
        return self.run_pool(fn, columns)

    # -- workloads: each returns (seconds, extra) -------------------------------------------
    def w1(self, side):
        n = self.sizes["W1"]
        xs, ys = list(range(n)), list(range(n, 2 * n))
        secs, results, extra = self.run_map(side, workloads.add, ("x", "y"), (xs, ys))
        check_results(f"W1 {side}", results, [x + y for x, y in zip(xs, ys)])
        return secs, extra

    def w2(self, side):
        n = self.sizes["W2"]
        ids = list(range(n))
        secs, results, extra = self.run_map(side, workloads.sleep_task, ("i",), (ids,))
        check_results(f"W2 {side}", results, ids)
        extra["efficiency"] = self.w2_ideal() / secs
        return secs, extra

    def w2_ideal(self):
        return self.sizes["W2"] * workloads.SLEEP_SECONDS / WORKERS

    def w4(self, side):
        n = self.sizes["W4"]
        blobs = self.blobs[:n]
        secs, results, extra = self.run_map(side, workloads.blob_len, ("data",), (blobs,))
        check_results(f"W4 {side}", results, [BLOB_BYTES] * n)
        extra["MiB_per_s"] = n * BLOB_BYTES / MIB / secs
        return secs, extra

    def w3(self, side):
        """Cold start in a fresh interpreter; seconds to the printed result."""
        prelude = f"import sys; sys.path.insert(0, {BENCH_DIR!r})\n"
        if side == DD_COLD:
            self.stop_launcher()
        if side in (DD, DD_COLD):
            code = prelude + (
                "import dato_dist as gl\n"
                "from workloads import add\n"
                f"env = gl.deploy.environment.LocalAsync('bench-cold', num_workers={WORKERS})\n"
                "job = gl.deploy.map_job.create(add, [{'x': 1, 'y': 2}], environment=env)\n"
                "print(job.get_map_results()[0], flush=True)\n"
                "print(job.uri, flush=True)\n")
        elif side == PPE:
            code = prelude + (
                "from concurrent.futures import ProcessPoolExecutor\n"
                "from workloads import add\n"
                f"with ProcessPoolExecutor(max_workers={WORKERS}) as ex:\n"
                "    print(ex.submit(add, 1, 2).result(), flush=True)\n")
        else:
            code = prelude + (
                "import multiprocessing\n"
                "from workloads import add\n"
                f"with multiprocessing.Pool({WORKERS}) as pool:\n"
                "    print(pool.apply(add, (1, 2)), flush=True)\n")
        with tempfile.TemporaryFile("w+") as err_file:
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                    stderr=err_file, cwd=REPO_DIR, text=True)
            first = proc.stdout.readline()
            t_first = time.perf_counter()
            rest = proc.stdout.read()
            proc.wait(timeout=120)
            t_exit = time.perf_counter()
            proc.stdout.close()
            if proc.returncode != 0 or first.strip() != "3":
                err_file.seek(0)
                raise RuntimeError(f"W3 {side}: exit {proc.returncode}, printed {first!r}; "
                                   f"stderr:\n{err_file.read()}")
        extra = {"exit_s": t_exit - t0}
        if side in (DD, DD_COLD):
            job = self.gl.deploy.job.load(rest.strip())
            extra["driver_exit_after_s"] = wait_driver_exit(job)
        return t_first - t0, extra


# -- reporting ---------------------------------------------------------------------------

def summarize(samples):
    """{side: {samples, median, extra medians}} from {side: [(secs, extra), ...]}."""
    out = {}
    for side, runs in samples.items():
        secs = [s for s, _ in runs]
        entry = {"median_s": statistics.median(secs), "samples_s": secs}
        keys = [k for k, v in runs[0][1].items() if isinstance(v, (int, float))]
        for key in keys:
            entry[key] = statistics.median(e[key] for _, e in runs)
        out[side] = entry
    return out


def fmt(value, unit="s"):
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:.3g}{unit}"


def build_rows(results):
    """Table rows: (label, dd, ppe, pool, ratio dd/ppe, unit)."""
    rows = []

    def side_row(label, wl, key="median_s", unit="s"):
        r = results.get(wl)
        if not r:
            return
        vals = [r["sides"].get(s, {}).get(key) for s in SIDES]
        ratio = vals[0] / vals[2] if vals[0] is not None and vals[2] else None
        rows.append((label, *vals, ratio, unit))

    if "W1" in results:
        side_row(f"W1 {results['W1']['n']:,} x add, end to end", "W1")
    if "W2" in results:
        side_row(f"W2 {results['W2']['n']} x sleep 50 ms, end to end", "W2")
        side_row(f"W2 efficiency (ideal {results['W2']['ideal_s']:.2f} s)", "W2",
                 "efficiency", "")
    if "W3" in results:
        side_row("W3 cold start to printed result", "W3")
        side_row("W3 cold start to process exit", "W3", "exit_s")
    if "W4" in results:
        side_row(f"W4 {results['W4']['n']} x 4 MiB arg, end to end", "W4")
        side_row("W4 throughput (MiB/s)", "W4", "MiB_per_s", "")
    return rows


def print_table(rows):
    header = ("workload", DD, DD_COLD, PPE, POOL, f"{DD}/PPE")
    cells = []
    for label, dd, cold, ppe, pool, ratio, unit in rows:
        cells.append((label, fmt(dd, unit), fmt(cold, unit), fmt(ppe, unit), fmt(pool, unit),
                      fmt(ratio, "x")))
    widths = [max(len(str(c[i])) for c in cells + [header]) for i in range(6)]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                    for i, (h, w) in enumerate(zip(header, widths))))
    print(line)
    for c in cells:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                        for i, (v, w) in enumerate(zip(c, widths))))
    print(line)


def check_bars(results):
    bars = []

    def add(name, measured, bar, ok, aim=None, aim_ok=None):
        bars.append({"bar": name, "measured": measured, "threshold": bar,
                     "result": "PASS" if ok else "FAIL", "aim": aim,
                     "aim_met": aim_ok})

    if "W1" in results:
        s = results["W1"]["sides"]
        if DD in s and PPE in s:
            ratio = s[DD]["median_s"] / s[PPE]["median_s"]
            add("W1 dato-dist within 3x of ProcessPoolExecutor", ratio, BAR_W1_RATIO,
                ratio <= BAR_W1_RATIO, AIM_W1_RATIO, ratio <= AIM_W1_RATIO)
    if "W2" in results and DD in results["W2"]["sides"]:
        eff = results["W2"]["sides"][DD]["efficiency"]
        add("W2 dato-dist efficiency >= 0.85", eff, BAR_W2_EFFICIENCY,
            eff >= BAR_W2_EFFICIENCY)
    if "W3" in results and DD in results["W3"]["sides"]:
        t = results["W3"]["sides"][DD]["median_s"]
        add("W3 dato-dist cold start under 2 s", t, BAR_W3_SECONDS, t < BAR_W3_SECONDS,
            AIM_W3_SECONDS, t <= AIM_W3_SECONDS)
    return bars


def print_bars(bars, quick):
    print()
    print("Bars (issue 2 item 10)" + ("  [--quick: reduced sizes, indicative only]"
                                      if quick else ""))
    for b in bars:
        unit = "x" if "W1" in b["bar"] else ("" if "W2" in b["bar"] else "s")
        measured = fmt(b["measured"], unit) if unit != "" else f"{b['measured']:.3f}"
        aim = ""
        if b["aim"] is not None:
            aim = f"   (aim {fmt(b['aim'], unit)}: {'met' if b['aim_met'] else 'not met'})"
        print(f"  {b['result']}  {b['bar']}: measured {measured}{aim}")


def git_commit():
    try:
        out = subprocess.run(["git", "-C", REPO_DIR, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", REPO_DIR, "status", "--porcelain", "dato_dist"],
                               capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None, bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


# -- main --------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=None,
                   help="runs of each workload per side; the median is reported "
                        "(default 3, or 1 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="smoke mode: W1 1,000 calls, W2 20 calls, W4 8 calls, peer "
                        "chunksize 10, 1 repeat")
    p.add_argument("--out", default=os.path.join(BENCH_DIR, "results", "local.json"),
                   help="where to write the JSON results (default bench/results/local.json)")
    p.add_argument("--only", default="W1,W2,W3,W4",
                   help="comma-separated workloads to run (default all)")
    p.add_argument("--chunksize", type=int, default=None,
                   help="chunksize of the peers' map (default 100, or 10 with --quick so "
                        "the reduced workloads keep the same number of chunks)")
    p.add_argument("--keep-home", action="store_true",
                   help="keep the temporary DATO_DIST_HOME (job stores, driver and runner "
                        "logs) and print its path")
    args = p.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.chunksize is None:
        args.chunksize = 10 if args.quick else 100
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    args.only = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    unknown = set(args.only) - {"W1", "W2", "W3", "W4"}
    if unknown:
        p.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    return args


def main(argv=None):
    args = parse_args(argv)
    home, dropped = isolate_dato_dist_home()
    sizes = QUICK if args.quick else FULL
    started = datetime.datetime.now().astimezone()
    bench = None
    try:
        bench = Bench(sizes, args.chunksize, args.quick)
        import dato_dist

        commit, dirty = git_commit()
        meta = {
            "date": started.isoformat(timespec="seconds"),
            "python": sys.version.split()[0], "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "workers": WORKERS,
            "dato_dist_version": getattr(dato_dist, "__version__", None),
            "git_commit": commit, "dato_dist_dirty": dirty,
            "repeat": args.repeat, "quick": args.quick, "statistic": "median",
            "peer_chunksize": args.chunksize,
            "mp_start_method": multiprocessing.get_start_method(),
            "dato_dist_environment": f"LocalAsync(num_workers={WORKERS})",
            "dato_dist_home": home, "dropped_env": dropped,
            "timing": "end to end: map_job.create / pool creation to the last result; "
                      "pool shutdown and driver exit not included",
            "launcher": f"'{DD}' runs with the local launcher up (started by a warm-up job "
                        f"before the timed runs); '{DD_COLD}' stops it before each run, so "
                        "the job starts it",
            "w3_timing": "from before the subprocess starts to the line with the result "
                         "(median_s) and to its exit (exit_s)",
        }
        print(f"dato-dist {meta['dato_dist_version']} vs peers: {WORKERS} workers, "
              f"python {meta['python']}, {os.cpu_count()} CPUs, start method "
              f"{meta['mp_start_method']}, peer chunksize {args.chunksize}, median of "
              f"{args.repeat}{', QUICK' if args.quick else ''}")
        print(f"DATO_DIST_HOME={home}")
        load = os.getloadavg()
        meta["loadavg_before"] = list(load)
        if load[0] > 0.5:
            print(f"WARNING: load average {load[0]:.2f} before the run: other processes "
                  "compete for the CPUs and the figures will be noisy.")
        workload_fns = {"W1": bench.w1, "W2": bench.w2, "W3": bench.w3, "W4": bench.w4}
        results = {}
        bench.warm_up()
        for wl in args.only:
            sides = [s for s in SIDES if s != DD_COLD or wl in COLD_WORKLOADS]
            samples = {s: [] for s in sides}
            for rep in range(args.repeat):
                for side in sides:  # interleaved, so drift hits every side alike
                    secs, extra = workload_fns[wl](side)
                    samples[side].append((secs, extra))
                    print(f"  {wl} run {rep + 1}/{args.repeat} {side:<22} {fmt(secs)}",
                          flush=True)
            entry = {"sides": summarize(samples)}
            if wl in sizes:
                entry["n"] = sizes[wl]
            if wl == "W2":
                entry["ideal_s"] = bench.w2_ideal()
            if wl == "W4":
                entry["arg_bytes"] = BLOB_BYTES
            s = entry["sides"]
            entry["ratio_dd_over_ppe"] = s[DD]["median_s"] / s[PPE]["median_s"]
            entry["ratio_dd_over_pool"] = s[DD]["median_s"] / s[POOL]["median_s"]
            if DD_COLD in s:
                entry["ratio_dd_cold_over_ppe"] = s[DD_COLD]["median_s"] / s[PPE]["median_s"]
            results[wl] = entry
        meta["loadavg_after"] = list(os.getloadavg())
        print()
        print_table(build_rows(results))
        bars = check_bars(results)
        print_bars(bars, args.quick)
        out = {"meta": meta, "workloads": results, "bars": bars}
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
        print(f"\nwrote {args.out}")
    finally:
        try:
            if bench is not None:
                bench.stop_launcher()
        except Exception as e:
            print(f"WARNING: could not stop the local launcher: {e}")
        workloads.release_home(home, args.keep_home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
