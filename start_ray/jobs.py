"""`python -m start_ray.jobs ...`: what batch scripts use from start_ray
(start_ray/entry/batch.py; the work is in start_ray/batch/).

A batch script runs `exec python -m start_ray.jobs run -- srun ...`, so this
process is the batch shell itself, which the scheduler's walltime warning
(`#SBATCH --signal=B:USR1@T`) may reach at any moment, its first instant
included: it catches the warning before anything else, and passes it on to
the step once the step has started.
"""

import sys

from start_ray.procs.signals import SignalInbox, walltime_signal_given

if __name__ == "__main__":
    with SignalInbox([walltime_signal_given([])]) as caught:
        from start_ray.entry.batch import main
        sys.exit(main(inbox=caught))
