"""`python -m start_ray.jobs ...`: what batch scripts use from start_ray, so
that they work from any folder (Slurm and PBS run a copy of the script, far
from its own folder) and with any driver.

    run [--warn-before S] -- STEP...       the job step, the walltime warning
                                          passed on to it (step.py)
    chain [--max-links N] [--warn-before S] [--script PATH] -- STEP...
                                          one link of a chain (chain.py)
    example                               the path of the example driver,
                                          drivers/train_ppo.py of this checkout
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from start_ray.batch import chain, scheduler
from start_ray.batch.step import Step
from start_ray.errors import UsageError
from start_ray.procs.signals import SignalInbox, walltime_signal_given

EXAMPLES = """\
examples (in a batch script, after activating the environment):
  python -m start_ray.jobs run -- srun --mpi=pmix python -m start_ray my_driver.py
  python -m start_ray.jobs run --warn-before 300 -- mpiexec -n 8 python -m start_ray my.py
  python -m start_ray.jobs chain --max-links 10 -- srun python -m start_ray my_driver.py
"""


def example_driver() -> str:
    """drivers/train_ppo.py beside this package (a checkout, or `pip install
    -e`), else the relative path (start_ray then says it is not found)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    beside = os.path.join(os.path.dirname(package), "drivers", "train_ppo.py")
    return beside if os.path.isfile(beside) else os.path.join("drivers", "train_ppo.py")


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
            verb.add_argument("--script", default=os.environ.get("CHAIN_SCRIPT") or None,
                              help="the batch script each link runs (default: the one this "
                                   "job runs, as the scheduler reports it) [CHAIN_SCRIPT]")
        verb.add_argument("step", nargs=argparse.REMAINDER, metavar="-- STEP",
                          help="the job step: srun/mpiexec/aprun ... python -m start_ray ...")
    verbs.add_parser("example", help="print the path of the example driver (train_ppo.py)")
    return top


def main(argv: Optional[List[str]] = None, inbox: Optional[SignalInbox] = None) -> int:
    """The batch tools; `inbox`: the signals caught since this process began
    (a warning that came before the step started is passed on as it starts)."""
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.verb == "example":
        print(example_driver())
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
            return chain.link(step, args.max_links, args.warn_before, args.script,
                              step=job_step)
        return job_step.run(scheduler.around(), args.warn_before)
    except UsageError as err:
        print(f"python -m start_ray.jobs {args.verb}: error: {err}", file=sys.stderr)
        return 2
