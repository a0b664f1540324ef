"""`python -m start_ray.jobs ...`: what batch scripts use from start_ray, so
that they work from any folder (Slurm and PBS run a copy of the script, far
from its own folder) and with any driver.

    run [--warn-before S] -- STEP...       the job step, the walltime warning
                                          passed on to it (step.py)
    chain [--max-links N] [--warn-before S] [--script PATH] -- STEP...
                                          one link of a chain (chain.py)
    example [NAME]                        the path of an example driver
                                          (train_ppo, cluster_info, ...): in a
                                          checkout, its drivers/; installed, the
                                          copy in <venv>/share/start_ray/drivers
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from start_ray.batch import chain, schedulers, tmrsh
from start_ray.batch.step import Step
from start_ray.errors import UsageError
from start_ray.procs.signals import SignalInbox, walltime_signal_given

EXAMPLES = """\
examples (in a batch script, after activating the environment):
  python -m start_ray.jobs run -- srun --mpi=pmix python -m start_ray my_driver.py
  python -m start_ray.jobs run --warn-before 300 -- mpiexec -n 8 python -m start_ray my.py
  python -m start_ray.jobs chain --max-links 10 -- srun python -m start_ray my_driver.py
"""


# Where an installed (non-editable) start_ray keeps the example drivers:
# setup.cfg's data_files, under the environment's prefix.
INSTALLED_DRIVERS = os.path.join("share", "start_ray", "drivers")


def drivers_folder() -> str:
    """drivers/ beside this package (a checkout, or `pip install -e`), else
    the copy that `pip install .` or a wheel put under sys.prefix."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    beside = os.path.join(os.path.dirname(package), "drivers")
    if os.path.isfile(os.path.join(beside, "train_ppo.py")):
        return beside
    return os.path.join(sys.prefix, INSTALLED_DRIVERS)


def example_driver(name: str = "train_ppo") -> str:
    """The path of the example driver `name` (a file in drivers/)."""
    folder = drivers_folder()
    path = os.path.join(folder, name if name.endswith(".py") else name + ".py")
    if os.path.isfile(path):
        return path
    found = sorted(entry[:-3] for entry in os.listdir(folder) if entry.endswith(".py")) \
        if os.path.isdir(folder) else []
    raise UsageError(f"no example driver {name!r} in {folder}"
                     + (f": one of {', '.join(found)}" if found else
                        " (start_ray is installed without its drivers)"))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m start_ray.jobs", description=__doc__,
                                  epilog=EXAMPLES,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = top.add_subparsers(dest="verb", required=True)
    for name, what in (("run", "run the job step, passing the walltime warning on"),
                       ("chain", "one link of a chain of jobs (see --help)")):
        verb = verbs.add_parser(name, help=what, description=(chain.__doc__ if name == "chain"
                                                             else what))
        verb.add_argument("--warn-before", type=float, default=0.0, metavar="SECONDS",
                          help="send the walltime warning (SIGUSR1) this long before the "
                               "job's time limit, for schedulers that send none (PBS)")
        if name == "chain":
            verb.add_argument("--max-links", type=int, default=10, metavar="N",
                              help="the chain ends after N jobs (default: %(default)s)")
            verb.add_argument("--script", metavar="PATH",
                              help="the batch script each link runs (default: $CHAIN_SCRIPT, "
                                   "else the one this job runs, as the scheduler reports it)")
        verb.add_argument("step", nargs=argparse.REMAINDER, metavar="-- STEP",
                          help="the job step: srun/mpiexec/aprun ... python -m start_ray ...")
    example = verbs.add_parser("example", help="print the path of an example driver")
    example.add_argument("name", nargs="?", default="train_ppo",
                         help="train_ppo (default), cluster_info, api_example, ...")
    return top


def main(argv: Optional[List[str]] = None, inbox: Optional[SignalInbox] = None) -> int:
    """The batch tools; `inbox`: the signals caught since this process began
    (a warning that came before the step started is passed on as it starts)."""
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.verb == "example":
        try:
            print(example_driver(args.name))
        except UsageError as err:
            print(f"python -m start_ray.jobs example: error: {err}", file=sys.stderr)
            return 2
        return 0
    step = args.step[1:] if args.step[:1] == ["--"] else args.step
    if not step:
        print(f"python -m start_ray.jobs {args.verb}: error: no step to run (give it "
              "after --)", file=sys.stderr)
        return 2
    try:
        walltime = walltime_signal_given([])  # START_RAY_WALLTIME_SIGNAL, as the ranks read it
        job_step = Step(step, walltime, inbox)
        if args.verb == "chain":
            script = args.script or os.environ.get("CHAIN_SCRIPT") or None
            return chain.link(step, args.max_links, args.warn_before, script,
                              step=job_step)
        return job_step.run(schedulers.around(), args.warn_before)
    except UsageError as err:
        print(f"python -m start_ray.jobs {args.verb}: error: {err}", file=sys.stderr)
        return 2


def tmrsh_main(argv: Optional[List[str]] = None) -> int:
    """`start-ray-tmrsh HOST COMMAND...`: mpiexec's rsh inside a PBS job
    (start_ray/batch/tmrsh.py); it becomes pbs_tmrsh."""
    try:
        cmd = tmrsh.command(sys.argv[1:] if argv is None else argv, os.environ)
    except UsageError as err:
        print(f"start-ray-tmrsh: error: {err}", file=sys.stderr)
        return 2
    os.execv(cmd[0], cmd)
    return 127  # not reached
