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

from . import __version__, driver, errors, launcher, lifecycle
from .errors import UsageError
from .options import SPECS, Options, make_options

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
"""

EPILOG = """\
examples:
  mpirun -np 4 python -m start_ray drivers/train_ppo.py --stop-iters 10
  srun --ntasks-per-node=4 python -m start_ray --interface ib0 drivers/train_ppo.py
  mpirun -np 4 python -m start_ray --node-per-rank drivers/cluster_info.py  # 4 nodes on a laptop
  mpirun -np 2 python -m start_ray my_driver.py --ray-address {ray_address}
  python -m start_ray drivers/cluster_info.py        # one process: a one-node cluster
  START_RAY_JOIN_TIMEOUT=600 mpirun -np 64 python -m start_ray drivers/train_ppo.py

Every option can also be set through the environment variable named in
brackets; an option on the command line wins over its variable.

exit status: DRIVER's (128+N if it was killed by signal N); 2 for bad input;
1 when the cluster could not be brought up (the log names the rank and host).
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m start_ray", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for spec in SPECS:
        help_text = f"{spec.help} [{spec.env}]"
        if spec.metavar is None:
            parser.add_argument(spec.option, dest=spec.name, action="store_true",
                                default=None, help=help_text)
        else:
            parser.add_argument(spec.option, dest=spec.name, metavar=spec.metavar,
                                default=None, help=help_text.replace("%(default)s",
                                                                     str(spec.default)))
    parser.add_argument("--version", action="version", version=f"start_ray {__version__}")
    parser.add_argument("driver", metavar="DRIVER", help="the program to run on rank 0")
    parser.add_argument("driver_args", metavar="DRIVER_ARGS", nargs=argparse.REMAINDER,
                        help="arguments for DRIVER, passed as they are")
    return parser


def parse(argv: List[str]) -> Tuple[Options, List[str]]:
    """Options and the driver command; UsageError for bad input."""
    namespace = build_parser().parse_args(argv)
    options = make_options(**{spec.name: getattr(namespace, spec.name) for spec in SPECS})
    args = list(namespace.driver_args)
    if args[:1] == ["--"]:
        args = args[1:]
    return options, [namespace.driver, *args]


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    first_rank = launcher.rank_from_environment() == 0
    try:
        # --help and --version print once per job, not once per rank.
        with contextlib.redirect_stdout(sys.stdout if first_rank else io.StringIO()):
            options, (program, *program_args) = parse(argv)
    except UsageError as err:
        return refuse(err)
    except SystemExit as done:  # --help, --version
        return int(done.code or 0)
    cmd: List[str] = []

    def check() -> None:
        cmd.extend(driver.command(program, program_args))

    run_driver = driver.payload(cmd, options.poll_interval)
    return lifecycle.run(options, run_driver, check=check)


def refuse(err: UsageError) -> int:
    """Bad input: one message, exit status 2 on every rank. Under a launcher
    the ranks agree over MPI first, so that rank 0 has printed the message
    before any rank exits (mpirun ends the job at the first non-zero exit)."""
    if not launcher.under_launcher():
        print(f"start_ray: error: {err}", file=sys.stderr)
        return errors.EXIT_USAGE

    def fail() -> None:
        raise err
    return lifecycle.run(Options(), lambda _: 0, check=fail)
