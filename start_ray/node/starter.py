"""This rank's Ray node, from its environment to its `ray start`.

The launcher owns the three things a node's start depends on: the
environment every Ray process (and the driver) gets, the `ray` imported
ahead (ready_ray.ReadyRay: started before MPI, or while the head starts), and
the `ray start` itself. Every process goes through the process owner's
`popen` (owned.py), which books it for the teardown.
"""

from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional

from start_ray.host import network, resources
from start_ray.host.placement import NodePlan
from start_ray.identity import Identity
from start_ray.mpi import launch_env
from start_ray.node import auth, compat, gcs_server, raynode
from start_ray.node.gcs_table import NodeTable, Table
from start_ray.node.raynode import RayNode
from start_ray.node.ready_ray import ReadyRay
from start_ray.options import Options
from start_ray.procs import helpers
from start_ray.procs.owner import JOB_MARKER, Owner

# Variables a `ray` imported ahead may get only when it runs (ready_ray.ReadyRay).
IMPORT_SAFE = (JOB_MARKER, *auth.VARIABLES, *network.COLLECTIVE_VARIABLES)


class NodeLauncher:
    """The environment, the `ray` imported ahead and `ray start` of one rank."""

    def __init__(self, me: Identity, plan: Optional[NodePlan], token: Optional[str],
                 options: Options, log: logging.Logger, owner: Owner) -> None:
        self.me, self.plan, self.token = me, plan, token
        self.options = options
        self.log = log
        self.owner = owner
        self.ready: Optional[ReadyRay] = None  # `ray` imported ahead, unused yet
        self.node: Optional[RayNode] = None

    def ray_env(self) -> Dict[str, str]:
        """Environment of every Ray process (and the driver): no MPI
        variables, no inherited RAY_ADDRESS, the same auth settings
        everywhere (a leftover ~/.ray/auth_token otherwise turns auth on for
        the head alone), and the node's GPUs and interface (NodePlan.env)."""
        env = launch_env.child_environment({JOB_MARKER: self.me.marker,
                                            **(self.plan.env if self.plan else {})})
        if self.plan is not None and self.plan.store_on_disk:
            env[resources.SLOW_STORAGE_OK] = "1"  # the store's files are on purpose
        env.pop("RAY_ADDRESS", None)
        return auth.apply(env, self.token)

    def adopt(self, ready: ReadyRay) -> None:
        """A `ray` started before MPI (and before the owner): its session is
        ours like any other, and it serves this rank's first `ray start`,
        unless the node's environment differs in more than what Ray reads
        late (auth, re-read; the marker and the collectives' interface, read
        by Ray's children): GPU variables, say, which a vendor library may
        read when Ray is imported. Then it goes, and `ray` starts anew."""
        self.owner.adopt(ready.process.pid)
        differ = ready.differs(self.ray_env(), IMPORT_SAFE)
        if differ:
            self.log.debug("Ray was imported ahead with other %s: starting it anew",
                           ", ".join(differ))
            ready.discard()
            return
        self.ready = ready

    def prepare(self) -> None:
        """While the head starts: a `ray` with its imports done, for this
        rank's first `ray start` (ready_ray.ReadyRay)."""
        if self.ready is None and ReadyRay.possible(self.options.ray_command):
            self.ready = ReadyRay(self.ray_env(), [self.options.walltime_signal],
                                  spawn=self.owner.popen)

    def start_head(self, role_args: List[str], gcs_store: bool) -> RayNode:
        """The head's node; `gcs_store`: its GCS keeps its state in the temp
        dir, and `ray start` runs without --block (gcs_server.py)."""
        return self.start_node(role_args, gcs_store)

    def start_node(self, role_args: List[str], gcs_store: bool = False) -> RayNode:
        """`ray start ROLE_ARGS --block` with this rank's node plan (in the
        `ray` prepared ahead, if it is still there)."""
        temp_dir = self.owner.temp_dir
        assert temp_dir is not None and self.plan is not None
        extra = ["--plasma-directory", temp_dir] if self.plan.store_on_disk else []
        args = raynode.common_args(temp_dir, self.me.rank,
                                   self.plan.ray_args() + extra + self.options.ray_args)
        ready, self.ready = self.ready, None
        if ready is not None and ready.process.poll() is not None:
            self.log.warning("the `ray` imported ahead (pid %d, python -m start_ray.node.ray_ahead) "
                             "%s before it was used: running `ray start` anew",
                             ready.process.pid, helpers.how_it_ended(ready.process.wait()))
            ready = None
        self.run_on_the_nodes_cpus(ready)
        # Ray's processes ignore the walltime signal: it is for the driver,
        # but Slurm hands it to every process of the job.
        env = self.ray_env()
        if gcs_store:
            env.update(compat.gcs_store_env(gcs_server.store_path(temp_dir)))
        self.node = RayNode(role_args + args, env, temp_dir, self.options.ray_command,
                            ignored_signals=[self.options.walltime_signal], ready=ready,
                            spawn=self.owner.popen, gcs_store=gcs_store)
        return self.node

    def run_on_the_nodes_cpus(self, ready: Optional[ReadyRay]) -> None:
        """A node that stands for several ranks of its host offers their CPUs
        (the union of their affinities), so its processes must run on all of
        them, not only where the launcher bound this rank (Open MPI binds
        each rank of a small job to a core). This rank, and the `ray`
        imported ahead, are widened before `ray start`: what they start
        inherits it, the driver on rank 0 too."""
        assert self.plan is not None
        cpus = list(self.plan.cpu_set)
        if not cpus:
            return
        try:
            widened = [pid for pid in [os.getpid()] + ([ready.process.pid] if ready else [])
                       if resources.run_on(pid, cpus)]
        except OSError as err:  # CPUs outside this rank's cgroup, say
            self.log.warning("the Ray node offers CPUs %s (its ranks' affinity) but cannot run "
                             "on them from this rank (%s): it runs where this rank was bound",
                             self.plan.cpu_set.text(), err)
            return
        if widened:
            self.log.info("the Ray node runs on CPUs %s, those of the ranks it stands for "
                          "(the launcher bound this rank to fewer)", self.plan.cpu_set.text())

    def node_table(self) -> NodeTable:
        """Rank 0's reader of the GCS node table (a helper process, watched)."""
        table = NodeTable(self.ray_env(), spawn=self.owner.popen)
        self.owner.watch_helper(table)
        return table

    def close_node_table(self, table: Table) -> None:
        """The node table is no longer relied on: it goes, unwatched."""
        self.owner.forget_helper(table)
        table.close()
