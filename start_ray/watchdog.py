"""Cleans up after a rank that dies without its teardown.

`mpirun` SIGKILLs every rank ~0.25 s after forwarding SIGTERM (measured
with Open MPI 5), a rank may be OOM-killed, and so on. `ray start` and the
driver then get SIGKILL (PR_SET_PDEATHSIG), but Ray's agents, children of
the raylet, were seen to linger for ~40 s. So each rank starts this small
process: it sleeps until the rank dies (it gets SIGTERM then, through
PR_SET_PDEATHSIG), kills every process carrying the rank's job marker, and
exits. When the rank ends normally it kills the watchdog itself, last.

    python -m start_ray.watchdog RANK_PID VARIABLE VALUE
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import List

from . import proctree


def start(variable: str, value: str) -> subprocess.Popen:
    """Start the watchdog of this rank (in a session of its own, so signals
    for the rank's process group, as launchers send, do not reach it)."""
    env = {key: val for key, val in os.environ.items() if key != variable}
    return subprocess.Popen([sys.executable, "-m", "start_ray.watchdog", str(os.getpid()),
                             variable, value],
                            env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_die_with_parent_by_sigterm)


def _die_with_parent_by_sigterm() -> None:
    proctree.set_parent_death_signal(signal.SIGTERM)


def clean(variable: str, value: str, timeout: float = 15.0) -> List[int]:
    """Kill every process marked `variable=value` until none is left."""
    killed: List[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        marked = proctree.marked(variable, value)
        if not marked:
            break
        for proc in marked:
            try:
                proc.kill()
                killed.append(proc.pid)
            except Exception:
                pass
        time.sleep(0.1)
    return killed


def main(argv: List[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    rank_pid = int(argv[0])
    variable, value = argv[1:]
    # Launchers forward signals such as SIGUSR1 to a rank's descendants too,
    # and Slurm's scancel sends SIGTERM to every process of the job: only the
    # rank's death means anything here. It comes as SIGTERM (PDEATHSIG), by
    # which time this process has a new parent.
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    while os.getppid() == rank_pid:  # false at once if the rank died before this
        signal.sigtimedwait([signal.SIGTERM], 60)
    killed = clean(variable, value)
    if killed:
        print(f"start_ray watchdog: the rank died without its teardown; killed "
              f"{len(killed)} process(es) it left: {sorted(set(killed))}",
              file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
