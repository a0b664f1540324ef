"""What one rank starts, and stopping exactly that (and nothing else).

A rank that starts a Ray node first makes itself a child subreaper (so every
process it starts stays its descendant), starts its watchdog (which kills
what is left if the rank dies without its teardown), and makes its private
temp dir. Every child then goes through `ProcessOwner.popen`: a session of
its own, announced to the owner's book of sessions and to the watchdog, and
the job's marker `START_RAY_JOB=<job>/<rank>` in its environment (the node
launcher puts it there). `stop` ends the tree, then checks the sessions and
the marker for anything that escaped it (see proctree.owned for why both).
The owner also watches the helpers the rank relies on (helpers.py).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Any, List, Optional, Protocol, Sequence, Tuple

from start_ray.host import tempdirs
from start_ray.identity import Identity
from start_ray.options import Options
from start_ray.procs import helpers, proctree, watchdog
from start_ray.procs.helpers import Helper
from start_ray.record import logs

# In the environment of every process a rank starts: finds any that escaped.
JOB_MARKER = "START_RAY_JOB"


class Stoppable(Protocol):
    """A `ray start` as the owner stops it (node/raynode.RayNode)."""

    @property
    def started(self) -> bool: ...
    @property
    def process(self) -> Any: ...
    @property
    def block(self) -> bool: ...

    def stop_in_order(self, timeout: float) -> None: ...


class Owner(Protocol):
    """What one rank started, and stopping exactly that (ProcessOwner, and
    the tests' fakes)."""

    @property
    def temp_dir(self) -> Optional[str]: ...

    def set_up(self) -> None: ...
    def popen(self, cmd: Sequence[str], ignored_signals: Sequence[int] = (),
              walltime_warning: bool = False, **kwargs: Any) -> Any: ...
    def adopt(self, pid: int) -> None: ...
    def watch_helper(self, helper: Helper) -> None: ...
    def forget_helper(self, helper: Helper) -> None: ...
    def check_helpers(self, doing: str) -> None: ...
    def stop(self, node: Optional[Stoppable]) -> Tuple[int, List[str]]: ...
    def finish(self, clean: bool) -> None: ...


class ProcessOwner:
    """One rank's subreaper, watchdog, temp dir, children and helpers."""

    def __init__(self, me: Identity, options: Options, log: logging.Logger) -> None:
        self.me = me
        self.options = options
        self.log = log
        self.sessions: List[Tuple[int, int]] = []  # (leader, start time) of our children
        self.watchdog: Optional[watchdog.Watchdog] = None
        self.temp_dir: Optional[str] = None
        self.helpers = helpers.Helpers(log)  # what this rank's waits rely on

    def set_up(self) -> None:
        """Before the rank's first child: nothing it starts can escape unseen."""
        proctree.become_subreaper()
        rank, size = self.me.rank, self.me.size
        self.watchdog = watchdog.Watchdog(JOB_MARKER, self.me.marker,
                                          logs.file_path(self.me.run_dir, rank, size),
                                          logs.label(rank, size))
        self.helpers.add(self.watchdog)
        job_tag = self.me.job_tag
        root, why = tempdirs.choose_root(self.options.temp_dir, job_tag, rank)
        self.temp_dir = tempdirs.rank_dir(root, job_tag, rank)
        tempdirs.create(self.temp_dir)
        self.log.debug("start_ray %s, python %s, pid %d, watchdog pid %d, temp dir %s (%s)",
                       _version(), sys.executable, os.getpid(), self.watchdog.pid,
                       self.temp_dir, why)

    def popen(self, cmd: Sequence[str], ignored_signals: Sequence[int] = (),
              walltime_warning: bool = False, **kwargs: Any) -> "subprocess.Popen[Any]":
        """Start a child of this rank (proctree.popen), and book its session.

        Only the driver acts on the walltime warning (`walltime_warning`):
        every other child ignores it from its first instant (a disposition
        set before exec), since Slurm hands a step's signal to every process
        of the step, and a helper killed by it once ended the job."""
        ignored = list(ignored_signals)
        if not walltime_warning and self.options.walltime_signal not in ignored:
            ignored.append(self.options.walltime_signal)
        process = proctree.popen(cmd, ignored, **kwargs)
        self.adopt(process.pid)
        return process

    def adopt(self, pid: int) -> None:
        """Book the session `pid` leads (started by proctree.popen, here or
        before this owner existed: a `ray` imported ahead) and tell the
        watchdog."""
        began = proctree.start_time(pid)
        if began is None:
            return
        self.sessions.append((pid, began))
        if self.watchdog is not None:
            self.watchdog.watch(pid, began)

    def watch_helper(self, helper: helpers.Helper) -> None:
        self.helpers.add(helper)

    def forget_helper(self, helper: helpers.Helper) -> None:
        """No longer relied on (closed on purpose)."""
        self.helpers.remove(helper)

    def check_helpers(self, doing: str) -> None:
        """Restart a helper that ended (once), or raise helpers.HelperLost."""
        self.helpers.check(doing)

    def stop(self, node: Optional[Stoppable]) -> Tuple[int, List[str]]:
        """Stop every process this rank started (all but the watchdog, which
        outlives them): how many there were, and `pid name` of those still
        running, in our tree, or anywhere in our sessions or with our marker.
        `node` (this rank's `ray start`, if any) is asked to stop its node.

        A rank that started nothing (it shares its host's node) has nothing
        to look for: with 128 ranks on a host, each scanning every process
        made the teardown grow with the square of the ranks per host."""
        if self.watchdog is None and not self.sessions:
            return 0, []
        keep = {self.watchdog.pid} if self.watchdog else set()
        ours = [proc.pid for proc in proctree.descendants() if proc.pid not in keep]
        leaders = []
        if node is not None and node.started and not node.block:
            node.stop_in_order(self.options.stop_timeout)
        elif node is not None and node.started:
            leaders = [node.process.pid]
        elif node is not None:
            # A `ray start` still starting heeds neither SIGINT nor SIGTERM for
            # seconds (seen: the whole stop timeout); it has nothing to drain.
            proctree.kill_tree(node.process.pid)
        left = proctree.stop_descendants(self.options.stop_timeout, exclude=keep,
                                         leaders=leaders)
        left += [p for p in proctree.owned(JOB_MARKER, self.me.marker, self.sessions)
                 if p not in left]
        reaped = proctree.reap(ours)
        if reaped:  # else they would pass to init: see proctree.reap
            self.log.debug("reaped %d process(es) that ended last: %s", len(reaped),
                           " ".join(map(str, reaped)))
        return len(ours), proctree.names(left)

    def finish(self, clean: bool) -> None:
        """After the teardown: the watchdog has nothing left to do; the temp
        dir goes if `clean` (nothing left, and the job succeeded or its logs
        are copied) and the user does not keep it."""
        if self.watchdog is not None:
            self.helpers.remove(self.watchdog)
            ended = self.watchdog.returncode()
            if ended is not None:  # the teardown did its work without it
                self.log.warning("%s (pid %d) %s during the teardown", self.watchdog.what,
                                 self.watchdog.pid, helpers.how_it_ended(ended))
            self.watchdog.stop()
        if self.temp_dir is None:
            return
        if clean and not self.options.keep_temp_dir:
            tempdirs.remove(self.temp_dir)
        else:
            self.log.info("Ray's temp dir and session logs are kept in %s", self.temp_dir)


def _version() -> str:
    from start_ray import __version__
    return __version__
