#!/usr/bin/env python
"""Large arguments: 64 map tasks each with a distinct 4 MiB ``bytes`` argument, dato-dist
(``LocalAsync(num_workers=2)``) side by side with ``ProcessPoolExecutor(max_workers=2)``
(``map`` with its default chunksize 1, and chunksize 32: two chunks), in the same run.

Run from the repository root::

    .venv/bin/python bench/bench_large_args.py                 # 64 x 4 MiB, median of 3
    .venv/bin/python bench/bench_large_args.py --n 16 --repeat 1

Each side is timed end to end: from ``map_job.create`` / pool creation to the last result
in hand (pool shutdown and the driver's exit are not included). dato-dist keeps every
argument durable in its store (``map_job.create`` returns once the last one is written;
its runners start on the first ones meanwhile): after the runs, one job is reloaded from its store URI and
its parameters read back and compared (``durable``). The bar (issue 10, item 8): dato-dist's
rate at least ProcessPoolExecutor's, for both chunksizes. The sides alternate within each
repeat so that load drift hits each alike.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import workloads  # noqa: E402

MIB = 1024 * 1024
WORKERS = 2


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=64, help="tasks (default 64)")
    p.add_argument("--mib", type=int, default=4, help="MiB per argument (default 4)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", default=os.path.join(BENCH_DIR, "results", "large_args.json"))
    args = p.parse_args(argv)
    home = tempfile.mkdtemp(prefix="dd-bench-args-")
    os.environ["DATO_DIST_HOME"] = home
    os.environ["DATO_DIST_CONFIG"] = os.path.join(home, "config.toml")
    size = args.mib * MIB
    base = os.urandom(size - 1)
    blobs = [base + bytes([i % 256]) for i in range(args.n)]  # distinct objects
    params = [{"data": b} for b in blobs]
    expected = [size] * args.n
    try:
        import dato_dist as gl

        env = gl.deploy.environment.LocalAsync("bench-args", num_workers=WORKERS)
        gl.deploy.map_job.create(workloads.add, [{"x": 1, "y": 2}],
                                 environment=env).get_map_results()  # starts the launcher
        jobs = []

        def dd():
            t0 = time.perf_counter()
            job = gl.deploy.map_job.create(workloads.blob_len, params, environment=env)
            t1 = time.perf_counter()
            jobs.append(job)
            out = job.get_map_results()
            return time.perf_counter() - t0, out, {"create_s": t1 - t0}

        def ppe(chunksize):
            def run():
                t0 = time.perf_counter()
                ex = ProcessPoolExecutor(max_workers=WORKERS)
                out = list(ex.map(workloads.blob_len, blobs, chunksize=chunksize))
                secs = time.perf_counter() - t0
                ex.shutdown(wait=True)
                return secs, out, {}
            return run

        sides = {"dato-dist": dd, "PPE chunksize 1": ppe(1),
                 f"PPE chunksize {max(1, args.n // 2)}": ppe(max(1, args.n // 2))}
        samples = {s: [] for s in sides}
        for rep in range(args.repeat):
            for side, fn in sides.items():
                secs, out, extra = fn()
                if out != expected:
                    detail = ""
                    if side == "dato-dist":
                        job = jobs[-1]
                        metrics = job.get_metrics() or ()
                        bad = [(r["task_name"], r["status"], r["exception"],
                                r["exception_message"]) for r in metrics
                               if r["status"] != "Completed"]
                        detail = (f" (job {job.uri} {job.get_status()}: "
                                  f"{job.get_error()}; results {str(out)[:300]}; not "
                                  f"completed {bad[:3]}; state {job._files.read_state()})")
                    raise RuntimeError(f"{side}: wrong results{detail}")
                samples[side].append((secs, extra))
                print(f"  run {rep + 1}/{args.repeat} {side:<20} {secs:7.3f} s "
                      f"{args.n * size / MIB / secs:8.1f} MiB/s", flush=True)
        job = gl.deploy.job.load(jobs[-1].uri)
        got = job.get_parameters()
        durable = sorted(len(kw["data"]) for kw in got.values()) == expected and all(
            kw["data"] == blobs[int(name.rsplit("-", 1)[1])] for name, kw in got.items())
        summary = {}
        for side, ss in samples.items():
            med = statistics.median(s for s, _ in ss)
            summary[side] = {"median_s": med, "MiB_per_s": args.n * size / MIB / med,
                             "samples_s": [s for s, _ in ss],
                             "extra": [e for _, e in ss]}
        dd_rate = summary["dato-dist"]["MiB_per_s"]
        print(f"\n{args.n} x {args.mib} MiB, median of {args.repeat}, load "
              f"{os.getloadavg()[0]:.1f}")
        for side, r in summary.items():
            ratio = dd_rate / r["MiB_per_s"]
            print(f"{side:<20} {r['median_s']:7.3f} s {r['MiB_per_s']:8.1f} MiB/s"
                  + ("" if side == "dato-dist" else
                     f"   dato-dist rate = {ratio:.0%} of it  "
                     f"{'PASS' if ratio >= 1 else 'FAIL'} (bar >= 100%)"))
        creates = [e["create_s"] for e in summary["dato-dist"]["extra"]]
        print(f"dato-dist map_job.create (the arguments written to the store): median "
              f"{statistics.median(creates):.3f} s of its {summary['dato-dist']['median_s']:.3f} s")
        print(f"durable (job reloaded from {job.uri}, parameters equal): {durable}")
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"n": args.n, "arg_bytes": size, "repeat": args.repeat,
                       "sides": summary, "durable": durable,
                       "loadavg": list(os.getloadavg())}, f, indent=2)
        print(f"wrote {args.out}")
    finally:
        from dato_dist import launcher

        launcher.stop(home)
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
