"""`python -m start_ray ...` (and the `start-ray` command).

A rank's first act is to catch the signals a scheduler may send it at any
moment: Slurm can send the walltime warning to every process of a step as
the step starts, and a rank that has no handler yet dies of it (status 138).
Caught here, before the command line's modules are even imported, they wait
in the inbox until the lifecycle acts on them; once the job is over, they
are ignored while the rank exits.
"""

import os
import sys

from start_ray.procs.signals import (
    WARNED_VARIABLE,
    SignalInbox,
    ignore_after_the_job,
    ignore_hydras_failure_word,
    walltime_signal_given,
)


def console() -> int:
    walltime = walltime_signal_given(sys.argv[1:])
    ignore_hydras_failure_word(walltime)
    with SignalInbox([walltime]) as inbox:
        if os.environ.pop(WARNED_VARIABLE, "") == "1":  # warned before this step began
            inbox.record(walltime)
        from start_ray.entry.cli import main
        status = main(inbox=inbox)
    ignore_after_the_job(walltime)
    return status


if __name__ == "__main__":
    sys.exit(console())
