"""`python -m start_ray [OPTIONS] DRIVER [DRIVER_ARGS...]` (also `start-ray`).

A thin layer: parse and check the arguments (without touching MPI, so bad
input and --help are instant), then hand over to lifecycle.run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from typing import List, Optional, Tuple

from start_ray import __version__, errors
from start_ray.entry import attach, driver_payload, serve
from start_ray.errors import UsageError
from start_ray.lifecycle.opening import run as run_job
from start_ray.mpi import launch_env
from start_ray.options import SPECS, Options, make_options
from start_ray.procs import driver
from start_ray.procs.signals import SignalInbox

DESCRIPTION = """\
Turn an MPI allocation into a Ray cluster, run DRIVER on it, and leave the
nodes clean. One Ray node per host (the ranks of a host share it, with the
CPUs/GPUs/memory the job was given there): rank 0 starts the Ray head, the
first rank on every other host joins it, rank 0 runs DRIVER once every node
is alive, and when DRIVER ends every Ray process the job started is stopped.
The exit status is DRIVER's.

DRIVER is a .py file (run with this Python) or a command. It finds the cluster
through RAY_ADDRESS, so a plain `ray.init()` attaches to it; a driver that
wants the address as an argument can be given the placeholder {ray_address}.

  python -m start_ray attach [RUN] [-- COMMAND]   a command on a running cluster
  python -m start_ray stop [RUN]                  end a --serve job
"""

USAGE = """\
python -m start_ray [OPTIONS] DRIVER [DRIVER_ARGS ...]
       python -m start_ray [OPTIONS] --serve [DRIVER [DRIVER_ARGS ...]]
       python -m start_ray {attach,stop} [RUN] ...   (see --help of each)"""

EPILOG = """\
examples on a laptop (the venv active; `python -m start_ray.jobs example NAME`
prints the path of an example driver):
  python -m start_ray --dry-run "$(python -m start_ray.jobs example cluster_info)"
  mpirun -np 2 python -m start_ray --node-per-rank "$(python -m start_ray.jobs example cluster_info)"
  mpirun -np 2 python -m start_ray --node-per-rank "$(python -m start_ray.jobs example)" --stop-iters 2
  mpirun -np 2 python -m start_ray --node-per-rank --serve --serve-timeout 30
  python -m start_ray "$(python -m start_ray.jobs example cluster_info)" --ray-address {ray_address}

examples in a batch job:
  srun --mpi=pmix python -m start_ray --interface ib0 my_driver.py --epochs 10
  mpiexec -n 8 --ppn 4 python -m start_ray --dry-run my_driver.py

Every option can also be set through the environment variable named in
brackets; an option on the command line wins over its variable.

exit status: DRIVER's (128+N if it was killed by signal N); 2 for bad input;
1 when the cluster could not be brought up (the log names the rank and host);
75 when the walltime warning came before the cluster was up (not done yet).
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


class _YesNo(argparse.Action):
    """`--x` sets True, `--no-x` False (for `--no-auth`: `--auth` sets False)."""

    def __init__(self, option_strings: List[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: Optional[str] = None) -> None:
        setattr(namespace, self.dest, option_string == self.option_strings[0])


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m start_ray", description=DESCRIPTION, epilog=EPILOG,
                     usage=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = {False: parser.add_argument_group("options most jobs use"),
              True: parser.add_argument_group("advanced options")}
    for spec in SPECS:
        help_text = f"{spec.help} [{spec.env}]"
        group = groups[spec.advanced]
        if spec.metavar is None:
            group.add_argument(spec.option, spec.negative, dest=spec.name, action=_YesNo,
                               default=None, help=help_text)
        else:
            group.add_argument(spec.option, dest=spec.name, metavar=spec.metavar,
                               default=None, help=help_text.replace("%(default)s",
                                                                    str(spec.default)))
    parser.add_argument("--version", action="version", version=f"start_ray {__version__}")
    parser.add_argument("driver", metavar="DRIVER", nargs="?",
                        help="the program to run on rank 0 (optional with --serve)")
    parser.add_argument("driver_args", metavar="DRIVER_ARGS", nargs=argparse.REMAINDER,
                        help="arguments for DRIVER, passed as they are")
    return parser


def parse(argv: List[str]) -> Tuple[Options, List[str]]:
    """Options and the driver command ([] when serving alone); UsageError
    for bad input."""
    namespace = build_parser().parse_args(argv)
    options = make_options(**{spec.name: getattr(namespace, spec.name) for spec in SPECS})
    args = list(namespace.driver_args)
    if args[:1] == ["--"]:
        args = args[1:]
    if namespace.driver is None and not options.serve and not options.dry_run:
        raise UsageError("give a DRIVER to run, or --serve to hold the cluster for "
                         "programs that attach to it")
    if options.serve_timeout and not options.serve:
        raise UsageError("--serve-timeout goes with --serve")
    return options, [namespace.driver, *args] if namespace.driver else []


def main(argv: Optional[List[str]] = None, inbox: Optional[SignalInbox] = None) -> int:
    """The command line; `inbox` holds the signals caught since the rank
    began (__main__), if it was started that way."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["attach"], ["stop"]):  # a cluster that runs, not a job
        return attach.main(argv[0], argv[1:])
    first_rank = launch_env.rank_from_environment() == 0
    try:
        # --help and --version print once per job, not once per rank.
        with contextlib.redirect_stdout(sys.stdout if first_rank else io.StringIO()):
            options, given = parse(argv)
    except UsageError as err:
        return refuse(err, inbox)
    except SystemExit as done:  # --help, --version
        return int(done.code or 0)
    cmd: List[str] = []

    def check() -> None:  # rank 0's, at each AGREE (again after a restart)
        if given:
            cmd[:] = driver.command(given[0], given[1:])

    run = (serve.payload(cmd, options.poll_interval, options.serve_timeout) if options.serve
           else driver_payload.payload(cmd, options.poll_interval))
    return run_job(options, run, check=check, inbox=inbox)


def refuse(err: UsageError, inbox: Optional[SignalInbox] = None) -> int:
    """Bad input: one message, exit status 2 on every rank. Under a launcher
    the ranks agree over MPI first, so that rank 0 has printed the message
    before any rank exits (mpirun ends the job at the first non-zero exit)."""
    if not launch_env.under_launcher():
        print(f"start_ray: error: {err}", file=sys.stderr)
        return errors.EXIT_USAGE

    def fail() -> None:
        raise err
    return run_job(Options(), lambda _: 0, check=fail, inbox=inbox)
