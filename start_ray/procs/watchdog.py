"""Cleans up after a rank that dies without its teardown.

`mpirun` SIGKILLs every rank ~0.25 s after forwarding SIGTERM (Open MPI 5),
Hydra SIGKILLs the other ranks when one dies (MPICH), a rank may be
OOM-killed, and so on. `ray start` and the driver then get SIGKILL
(PR_SET_PDEATHSIG), but Ray's agents, children of the raylet, were seen to
live on for ~60 s. So each rank that starts anything first starts this small
process. It holds the read end of a pipe whose write end only the rank holds:
the rank writes the session of every child it starts down it (`Watchdog.
watch`, called by procs/owner.ProcessOwner.adopt), and when the rank dies the pipe reaches
end of file. Then the watchdog kills everything the rank started (the
processes in those sessions, or carrying the rank's marker; see proctree),
writes what it did into the rank's log, and exits. When the rank ends
normally it kills the watchdog itself, last.

    python -m start_ray.procs.watchdog RANK_PID VARIABLE VALUE LOG_FILE LABEL
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import List, Tuple

from start_ray.procs import proctree
from start_ray.procs.helpers import HelperProcess


class RankGone(Exception):
    """The rank died: its pipe closed, or the kernel reparented us."""


class Watchdog(HelperProcess):
    """The rank's handle on its watchdog process (a helpers.Helper: its whole
    state is the sessions it was told of, which the handle keeps too, so a
    watchdog that was killed is restarted with all of them)."""

    what = "the rank's watchdog start_ray.procs.watchdog"

    def __init__(self, variable: str, value: str, log_file: str, label: str) -> None:
        # Without the marker: the watchdog must not find (and kill) itself.
        self._env = {key: val for key, val in os.environ.items() if key != variable}
        self._args = [sys.executable, "-m", "start_ray.procs.watchdog", str(os.getpid()), variable,
                      value, log_file, label]
        self._told: List[Tuple[int, int]] = []
        self.process = self._spawn()

    def _spawn(self) -> "subprocess.Popen[str]":
        # A session of its own: launchers signal a rank's process group, and
        # only the rank's death means anything here.
        return subprocess.Popen(self._args, env=self._env, stdin=subprocess.PIPE, text=True,
                                start_new_session=True, preexec_fn=_ignore_at_exec)

    def _retell(self) -> None:
        """A new watchdog is told every session the old one was told."""
        for leader, began in self._told:
            self._say(leader, began)

    def watch(self, leader: int, began: int) -> None:
        """Tell the watchdog of a session the rank just started."""
        self._told.append((leader, began))
        self._say(leader, began)

    def _say(self, leader: int, began: int) -> None:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(f"{leader} {began}\n")
            self.process.stdin.flush()
        except (OSError, ValueError):
            pass  # the watchdog is gone: the rank's Helpers.check restarts it

    def stop(self) -> None:
        """After a normal teardown there is nothing left for it to do."""
        self.process.kill()
        self.process.wait()
        if self.process.stdin is not None:
            self.process.stdin.close()


# Signals a scheduler or a terminal hands to every process of a job, which
# mean nothing to the watchdog (only its rank's death does): ignored from
# before its exec, so that none of them kills it while Python starts.
IGNORED = (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE)


def _ignore_at_exec() -> None:
    for signum in IGNORED:
        signal.signal(signum, signal.SIG_IGN)


def clean(variable: str, value: str, sessions: List[Tuple[int, int]],
          timeout: float = 15.0) -> Tuple[List[str], List[str]]:
    """Kill every process the rank started until none is left; return
    (what was killed, what is still running) as `pid name` strings."""
    killed: List[str] = []
    deadline = time.monotonic() + timeout
    while True:
        found = proctree.owned(variable, value, sessions)
        if not found or time.monotonic() >= deadline:
            return killed, proctree.names(found)
        for proc, described in zip(found, proctree.names(found)):
            try:
                proc.kill()
            except Exception:
                continue
            if described not in killed:
                killed.append(described)
        time.sleep(0.05)


def _wait_for_rank(rank_pid: int, sessions: List[Tuple[int, int]]) -> None:
    """Collect sessions until the rank is gone (a blocking read: no CPU).

    The pipe's end and the kernel's SIGTERM (PR_SET_PDEATHSIG, for the case
    of a forked child of the rank keeping the pipe open) come together when
    the rank dies: the SIGTERM may interrupt us anywhere in here, so it
    raises only while we wait, and is caught around the whole wait.
    scancel's SIGTERM, which every process of a Slurm job gets, is not taken
    for the rank's death (the rank is still our parent then)."""
    waiting = True

    def on_term(signum: int, frame: object) -> None:
        if waiting and os.getppid() != rank_pid:
            raise RankGone()

    signal.signal(signal.SIGTERM, on_term)
    proctree.set_parent_death_signal(signal.SIGTERM)
    try:
        try:
            while os.getppid() == rank_pid:  # false at once if the rank died already
                line = sys.stdin.readline()
                if not line:
                    return
                leader, began = line.split()
                sessions.append((int(leader), int(began)))
        finally:
            waiting = False
    except RankGone:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _log(log_file: str, label: str) -> logging.Logger:
    """The rank's own log file, in its format (see logs.py)."""
    from start_ray.record import logs
    return logs.attach_file(logging.getLogger("start_ray.watchdog"), log_file, label)


def main(argv: List[str]) -> int:
    if len(argv) != 5:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    rank_pid = int(argv[0])
    variable, value, log_file, label = argv[1:]
    _ignore_at_exec()  # already so since exec; a watchdog run by hand too
    sessions: List[Tuple[int, int]] = []
    _wait_for_rank(rank_pid, sessions)
    began = time.monotonic()
    killed, left = clean(variable, value, sessions)
    log = _log(log_file, label)
    what = (f"killed {len(killed)} process(es) it left: {', '.join(killed)}" if killed
            else "it had left no process running")
    log.error("watchdog: the rank (pid %d) ended without its teardown; %s; %s after "
              "%.1fs", rank_pid, what,
              f"still running: {', '.join(left)}" if left else "none left",
              time.monotonic() - began)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
