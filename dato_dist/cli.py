"""The ``dato-dist`` command: demo, jobs, job show|metrics|logs|cancel|wait|rerun, launcher, hadoop, ec2.

Errors map to exit codes in one place (:func:`main`): each ``DatoDistError`` class has an
``exit_code``; Ctrl-C is 130; anything unexpected prints its traceback and exits 1. The
backends' subcommands (``hadoop``, ``ec2``) come from the backend registry
(:mod:`dato_dist.backends`); a missing extra is a one-line ``BackendUnavailable``.
"""

import argparse
import logging
import sys

from . import backends
from ._version import __version__
from .errors import DatoDistError


def _load(job_id):
    from .session import jobs

    return jobs.load(job_id)


def cmd_demo(args):
    """The seed's map_job: three adds, one failing, then the same with a combiner."""
    import dato_dist as gl

    from .demo_functions import add, add_combiner

    env = gl.deploy.environment.LocalAsync("demo", num_workers=args.workers)
    print(">>> job = gl.deploy.map_job.create(add, [{'x': 20, 'y': 20}, {'x': None, 'y': 10}, "
          "{'x': 5, 'y': 5}])")
    job = gl.deploy.map_job.create(add, [{"x": 20, "y": 20}, {"x": None, "y": 10},
                                         {"x": 5, "y": 5}], environment=env)
    _wait(job, args)
    print(">>> print(job.get_metrics())")
    print(job.get_metrics())
    print(">>> print(job.get_map_results())")
    print(job.get_map_results())
    print(">>> job = gl.deploy.map_job.create(add, [{'x': 20, 'y': 20}, {'x': 10, 'y': 10}, "
          "{'x': 5, 'y': 5}], combiner_function=add_combiner)")
    job = gl.deploy.map_job.create(add, [{"x": 20, "y": 20}, {"x": 10, "y": 10},
                                         {"x": 5, "y": 5}], environment=env,
                                   combiner_function=add_combiner)
    _wait(job, args)
    print(">>> print(job.get_map_results())")
    print(job.get_map_results())
    print(">>> print(job.get_results())")
    print(job.get_results())
    from . import launcher
    from .config import load

    for info in launcher.running(load().home):
        print(f"\n(The local launcher, pid {info['pid']}, stays up for "
              f"{load()['local.launcher_idle_timeout']:.0f} idle seconds to start the next "
              "job at once; `dato-dist launcher stop` stops it.)")
    return 0


def _wait(job, args):
    from .progress import ProgressBar

    bar = ProgressBar(enabled=False if getattr(args, "no_progress", False) else None)
    try:
        return job.wait(timeout=getattr(args, "timeout", None), on_progress=bar.update)
    finally:
        bar.close()


def cmd_jobs(args):
    from .session import jobs

    print(jobs)
    return 0


def cmd_show(args):
    print(_load(args.id))
    return 0


def cmd_metrics(args):
    metrics = _load(args.id).get_metrics()
    if metrics is None:
        print("No task has started yet.")
    else:
        metrics.print_rows(num_rows=args.rows)
    return 0


def cmd_logs(args):
    job = _load(args.id)
    from .rerun import run_of_state

    logs = job.read_logs(run=args.run)
    print(f"# logs of job {job.name}: {job.get_log_file_path()}")
    runs = run_of_state(job._files.read_state())
    if runs > 1:
        which = "every run" if args.run == "all" else f"run {args.run or runs} of {runs}"
        print(f"# {which} (--run N for one run, --run all for every run)")
    for name, text in logs.items():
        print(f"==> {name} <==")
        print(text, end="" if text.endswith("\n") or not text else "\n")
    return 0


def _run_arg(value):
    if value == "all":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a run number or 'all', not {value!r}") from None


def cmd_cancel(args):
    job = _load(args.id)
    job.cancel()
    print(f"Job '{job.name}': {job.get_status(_silent=True)}")
    return 0


def cmd_wait(args):
    job = _load(args.id)
    status = _wait(job, args)
    print(f"Job '{job.name}': {status}")
    if status != "Completed":
        if job.get_error():
            print(job.get_error(), file=sys.stderr)
        return 5
    return 0


def cmd_rerun(args):
    job = _load(args.id)
    job.rerun(failed_only=args.failed)
    what = "the failed and unfinished tasks" if args.failed else "every task"
    print(f"Job '{job.name}': running {what} again: {job.get_status(_silent=True)} "
          f"(dato-dist job wait {job.name})")
    return 0


def cmd_launcher(args):
    from . import launcher
    from .config import load

    home = load().home
    if args.launcher_action == "stop":
        pids = launcher.stop(home)
        print(f"Stopped launcher pid {', '.join(map(str, pids))}." if pids
              else "No launcher was running.")
        return 0
    running = launcher.running(home)
    if not running:
        print(f"No launcher is running for {home}.")
    for info in running:
        print(f"Launcher pid {info['pid']}: {info['socket']}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="dato-dist", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"dato-dist {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the GraphLab user guide's map_job example here")
    demo.add_argument("--workers", type=int, default=None, help="runner processes")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(func=cmd_demo)

    sub.add_parser("jobs", help="list the jobs of this machine").set_defaults(func=cmd_jobs)

    job = sub.add_parser("job", help="one job: show, metrics, logs, cancel, wait, rerun")
    jsub = job.add_subparsers(dest="action", required=True)
    for name, func, text in [("show", cmd_show, "print the job's summary"),
                             ("metrics", cmd_metrics, "print the per-task metrics"),
                             ("logs", cmd_logs, "print the job's logs"),
                             ("cancel", cmd_cancel, "cancel the job"),
                             ("wait", cmd_wait, "wait for the job to end"),
                             ("rerun", cmd_rerun, "run the job again under the same id")]:
        p = jsub.add_parser(name, help=text)
        p.add_argument("id", help="job name (see `dato-dist jobs`) or store URI")
        p.set_defaults(func=func)
        if name == "metrics":
            p.add_argument("--rows", type=int, default=50, help="rows to print")
        if name == "wait":
            p.add_argument("--timeout", type=float, default=None, help="seconds")
            p.add_argument("--no-progress", action="store_true")
        if name == "logs":
            p.add_argument("--run", type=_run_arg, default=None,
                           help="the logs of this run (1 is the first) or of 'all' runs; "
                                "default: the latest run")
        if name == "rerun":
            p.add_argument("--failed", action="store_true",
                           help="only the tasks that failed or never finished; completed "
                                "results are kept")
    launch = sub.add_parser("launcher", help="the local launcher that forks job drivers")
    launch.add_argument("launcher_action", choices=["status", "stop"], metavar="ACTION",
                        help="status or stop (running jobs go on)")
    launch.set_defaults(func=cmd_launcher)
    backends.add_cli(sub)  # `dato-dist hadoop ...`, `dato-dist ec2 ...`
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="[%(levelname)s] %(name)s: %(message)s")
    backend = getattr(args, "backend", None)
    try:
        if backend:
            backends.require(backend)
        try:
            return args.func(args)
        except ImportError as e:  # a backend command imported a module of a missing extra
            unavailable = backend and backends.translate(backends.backend(backend), e)
            if unavailable:
                raise unavailable from None
            raise
    except DatoDistError as e:
        print(f"dato-dist: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("dato-dist: interrupted (running jobs go on; `dato-dist job cancel ID` stops "
              "one)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
