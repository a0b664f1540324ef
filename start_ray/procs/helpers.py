"""The helper processes a rank relies on, watched so that none dies unseen.

A rank starts small helpers beside its Ray node: its watchdog (every rank
with a node), and on rank 0 the node-table helper (`cluster_state`). A wait
that relies on a helper must not outlive it quietly: the node-table helper
killed during the joins once made rank 0 wait out the whole join deadline
and then blame both (healthy) nodes. So every waiting loop of a rank calls
`Helpers.check(doing)`, a /proc look per helper, and a helper that ended is

- restarted once, when its whole state is held by the rank (the node-table
  helper: what it watches; the watchdog: the sessions it guards), with a
  warning that names it and what the rank was doing;
- otherwise, or when it ends a second time, the end of the job: HelperLost,
  whose message names the helper, how it ended and what the rank was doing.

The `ray` imported ahead (ready_ray.ReadyRay) is no long-lived helper: the
rank looks at it once, when it is about to use it, and falls back to a plain
`ray start` if it is gone (owned.OwnedProcesses.start_node).
"""

from __future__ import annotations

import logging
import signal
import subprocess
from typing import List, Optional, Protocol

from start_ray.errors import JobError

# How often a helper may be restarted before its end ends the job.
RESTARTS = 1


class HelperProcess:
    """A Helper that is one child process of the rank: its pid, its end, and
    a restart that starts it again (`_spawn`) and tells the new one the old
    one's whole state (`_retell`)."""

    process: "subprocess.Popen[str]"

    def _spawn(self) -> "subprocess.Popen[str]":
        raise NotImplementedError

    def _retell(self) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        return self.process.pid

    def returncode(self) -> Optional[int]:
        return self.process.poll()

    def restart(self) -> None:
        self.process.wait()
        self.process = self._spawn()
        self._retell()


class HelperLost(JobError):
    """A helper the rank relies on ended and could not be restarted."""


class Helper(Protocol):
    """What a watched helper offers (cluster_state.NodeTable, watchdog.Watchdog)."""

    what: str  # "the node-table helper start_ray.node.gcs_table"

    @property
    def pid(self) -> int: ...

    def returncode(self) -> Optional[int]:
        """None while it runs; its exit status (negative: signal) once ended."""

    def restart(self) -> None:
        """Start it again with the state it had."""


def how_it_ended(returncode: int) -> str:
    """`exited with status 1` / `was killed by SIGKILL`."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


class Helpers:
    """The helpers one rank watches, and how often each was restarted."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._watched: List[Helper] = []
        self._restarts: dict = {}

    def add(self, helper: Helper) -> None:
        self._watched.append(helper)
        self._restarts[id(helper)] = 0

    def remove(self, helper: Helper) -> None:
        """No longer relied on (closed on purpose)."""
        if helper in self._watched:
            self._watched.remove(helper)

    def restarts(self, helper: Helper) -> int:
        return self._restarts.get(id(helper), 0)

    def check(self, doing: str) -> None:
        """Restart an ended helper once; raise HelperLost for one that
        ended again. `doing`: what the rank was doing, for the message."""
        for helper in list(self._watched):
            returncode = helper.returncode()
            if returncode is None:
                continue
            pid, how = helper.pid, how_it_ended(returncode)
            if self._restarts[id(helper)] >= RESTARTS:
                self.remove(helper)
                raise HelperLost(
                    f"{helper.what} (pid {pid}) {how} while {doing}, and it had been "
                    f"restarted {self._restarts[id(helper)]} time(s) already: stopping "
                    "the job")
            self._restarts[id(helper)] += 1
            try:
                helper.restart()
            except OSError as err:
                self.remove(helper)
                raise HelperLost(f"{helper.what} (pid {pid}) {how} while {doing}, and "
                                 f"could not be restarted: {err}") from None
            self.log.warning("%s (pid %d) %s while %s: restarted it (pid %d)",
                             helper.what, pid, how, doing, helper.pid)
