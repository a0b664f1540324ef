"""`python -m start_ray ...` (and the `start-ray` command).

A rank's first act is to catch the signals a scheduler may send it at any
moment: Slurm can send the walltime warning to every process of a step as
the step starts, and a rank that has no handler yet dies of it (status 138).
Caught here, before the command line's modules are even imported, they wait
in the inbox until the lifecycle acts on them.
"""

import sys

from start_ray.procs.signals import SignalInbox, walltime_signal_given


def console() -> int:
    with SignalInbox([walltime_signal_given(sys.argv[1:])]) as inbox:
        from start_ray.entry.cli import main
        return main(inbox=inbox)


if __name__ == "__main__":
    sys.exit(console())
