"""`python -m start_ray ...`

A rank's first act is to catch the signals a scheduler may send it at any
moment: Slurm can send the walltime warning to every process of a step as
the step starts, and a rank that has no handler yet dies of it (status 138).
Caught here, they wait in the inbox until the lifecycle acts on them.
"""

import sys

from start_ray.procs.signals import SignalInbox, walltime_signal_given

if __name__ == "__main__":
    with SignalInbox([walltime_signal_given(sys.argv[1:])]) as inbox:
        from start_ray.entry.cli import main
        sys.exit(main(inbox=inbox))
