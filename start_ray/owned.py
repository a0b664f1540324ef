"""What one rank starts, and stopping exactly that (and nothing else).

A rank that starts a Ray node first makes itself a child subreaper (so every
process it starts stays its descendant), starts its watchdog (which kills
what is left if the rank dies without its teardown), and makes its private
temp dir. Every child goes through `proctree.popen`: a session of its own,
announced here, and the job's marker `START_RAY_JOB=<job>/<rank>` in its
environment. `stop` ends the tree, then checks the sessions and the marker
for anything that escaped it (see proctree.owned for why both).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Dict, List, Optional, Tuple

from . import (auth, collect, helpers, launcher, logs, network, proctree, raynode,
               resources, tempdirs, watchdog)
from .agreement import Agreement
from .cluster_state import NodeTable
from .options import Options
from .raynode import RayNode

# In the environment of every process a rank starts: finds any that escaped.
JOB_MARKER = "START_RAY_JOB"
# Variables a `ray` imported ahead may get only when it runs (raynode.ReadyRay).
IMPORT_SAFE = (JOB_MARKER, *auth.VARIABLES, *network.COLLECTIVE_VARIABLES)


class OwnedProcesses:
    """One rank's subreaper, watchdog, temp dir and Ray node."""

    def __init__(self, agreed: Agreement, options: Options, log: logging.Logger) -> None:
        self.agreed = agreed
        self.options = options
        self.log = log
        self.sessions: List[Tuple[int, int]] = []  # (leader, start time) of our children
        self.watchdog: Optional[watchdog.Watchdog] = None
        self.temp_dir: Optional[str] = None
        self.node: Optional[RayNode] = None
        self.ready: Optional[raynode.ReadyRay] = None  # `ray` imported ahead, unused yet
        self.helpers = helpers.Helpers(log)  # what this rank's waits rely on

    def set_up(self) -> None:
        """Before the rank's first child: nothing it starts can escape unseen."""
        proctree.become_subreaper()
        proctree.add_listener(self.started_session)
        rank, size = self.agreed.rank, self.agreed.size
        self.watchdog = watchdog.Watchdog(JOB_MARKER, self.agreed.marker,
                                          logs.file_path(self.agreed.run_dir, rank, size),
                                          logs.label(rank, size))
        self.helpers.add(self.watchdog)
        job_tag = self.agreed.plan.job_tag
        root, why = tempdirs.choose_root(self.options.temp_dir, job_tag, rank)
        self.temp_dir = tempdirs.rank_dir(root, job_tag, rank)
        tempdirs.create(self.temp_dir)
        self.log.debug("start_ray %s, python %s, pid %d, watchdog pid %d, temp dir %s (%s); %s",
                       _version(), sys.executable, os.getpid(), self.watchdog.pid,
                       self.temp_dir, why, resources.raise_open_files_limit())

    def started_session(self, leader: int, began: int) -> None:
        self.sessions.append((leader, began))

    def ray_env(self) -> Dict[str, str]:
        """Environment of every Ray process (and the driver): no MPI
        variables, no inherited RAY_ADDRESS, the same auth settings
        everywhere (a leftover ~/.ray/auth_token otherwise turns auth on for
        the head alone), and the node's GPUs and interface (NodePlan.env)."""
        my_node = self.agreed.my_node
        env = launcher.child_environment({JOB_MARKER: self.agreed.marker,
                                          **(my_node.env if my_node else {})})
        env.pop("RAY_ADDRESS", None)
        return auth.apply(env, self.agreed.plan.auth_token)

    def adopt(self, ready: raynode.ReadyRay) -> None:
        """A `ray` started before MPI (and before set_up): its session is
        ours like any other, and it serves this rank's first `ray start`,
        unless the node's environment differs in more than what Ray reads
        late (auth, re-read; the marker and the collectives' interface, read
        by Ray's children): GPU variables, say, which a vendor library may
        read when Ray is imported. Then it goes, and `ray` starts anew."""
        proctree.announce(ready.process.pid)
        differ = ready.differs(self.ray_env(), IMPORT_SAFE)
        if differ:
            self.log.debug("Ray was imported ahead with other %s: starting it anew",
                           ", ".join(differ))
            ready.discard()
            return
        self.ready = ready

    def prepare_node(self) -> None:
        """While the head starts: a `ray` with its imports done, for this
        rank's first `ray start` (raynode.ReadyRay)."""
        if self.ready is None and raynode.ReadyRay.possible(self.options.ray_command):
            self.ready = raynode.ReadyRay(self.ray_env(), [self.options.walltime_signal])

    def start_node(self, role_args: List[str]) -> RayNode:
        """`ray start ROLE_ARGS --block` with this rank's node plan (in the
        `ray` prepared ahead, if there is one)."""
        my_node = self.agreed.my_node
        assert self.temp_dir is not None and my_node is not None
        args = raynode.common_args(self.temp_dir, self.agreed.rank,
                                   my_node.ray_args() + self.options.ray_args)
        env = self.ray_env()
        # Ray's processes ignore the walltime signal: it is for the driver,
        # but Slurm hands it to every process of the job.
        ready, self.ready = self.ready, None
        if ready is not None and ready.process.poll() is not None:
            self.log.warning("the `ray` imported ahead (pid %d, python -m start_ray.ray_cli) "
                             "%s before it was used: running `ray start` anew",
                             ready.process.pid, helpers.how_it_ended(ready.process.wait()))
            ready = None
        self.node = RayNode(role_args + args, env, self.temp_dir, self.options.ray_command,
                            ignored_signals=[self.options.walltime_signal], ready=ready)
        return self.node

    def node_table(self) -> NodeTable:
        """Rank 0's reader of the GCS node table (a helper process, watched)."""
        table = NodeTable(self.ray_env())
        self.helpers.add(table)
        return table

    def close_node_table(self, table: NodeTable) -> None:
        """The node table is no longer relied on: it goes, unwatched."""
        self.helpers.remove(table)
        table.close()

    def check_helpers(self, doing: str) -> None:
        """Restart a helper that ended (once), or raise helpers.HelperLost."""
        self.helpers.check(doing)

    def stop(self) -> Tuple[int, List[str]]:
        """Stop every process this rank started (all but the watchdog, which
        outlives them): how many there were, and `pid name` of those still
        running, in our tree, or anywhere in our sessions or with our marker.

        A rank that started nothing (it shares its host's node) has nothing
        to look for: with 128 ranks on a host, each scanning every process
        made the teardown grow with the square of the ranks per host."""
        if self.watchdog is None and not self.sessions:
            return 0, []
        keep = {self.watchdog.pid} if self.watchdog else set()
        stopped = len(proctree.descendants()) - len(keep)
        leaders = []
        if self.node is not None and self.node.started:
            leaders = [self.node.process.pid]
        elif self.node is not None:
            # A `ray start` still starting heeds neither SIGINT nor SIGTERM for
            # seconds (seen: the whole stop timeout); it has nothing to drain.
            proctree.kill_tree(self.node.process.pid)
        left = proctree.stop_descendants(self.options.stop_timeout, exclude=keep,
                                         leaders=leaders)
        left += [p for p in proctree.owned(JOB_MARKER, self.agreed.marker, self.sessions)
                 if p not in left]
        return stopped, proctree.names(left)

    def collect_logs(self) -> bool:
        """Copy Ray's logs of this rank's node into the run folder (shared
        storage; the temp dir is node-local). A copy that fails is logged and
        changes nothing else. Whether the logs are safe in the run folder."""
        if self.temp_dir is None:
            return False
        dest = logs.ray_logs_dir(self.agreed.run_dir, self.agreed.rank, self.agreed.size,
                                 self.agreed.host)
        try:
            done = collect.collect(self.temp_dir, dest)
        except Exception as err:  # a full disk, a vanished file: never the job's status
            self.log.error("could not copy Ray's logs into %s: %s", dest, err)
            return False
        self.log.info("Ray's logs of this node copied into %s (%s)", dest, done.describe())
        return True

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
        proctree.remove_listener(self.started_session)
        if self.temp_dir is None:
            return
        if clean and not self.options.keep_temp_dir:
            tempdirs.remove(self.temp_dir)
        else:
            self.log.info("Ray's temp dir and session logs are kept in %s", self.temp_dir)


def _version() -> str:
    from . import __version__
    return __version__
