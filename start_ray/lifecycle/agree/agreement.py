"""What every rank agrees on before anything starts (phase 1 of the lifecycle).

    rank 0: check the input and the job's settings, choose the head's address,
            a run id, an auth token, the driver's grace   -- share -->  Plan
    every rank: probe its host (name, CPUs, IP) and say
                what it runs (Python, Ray, start_ray)    -- gather -->  rank 0
    rank 0: the placement (placement.place), or the one error (a software
            difference, a host without an address)      -- share -->  Layout
    every rank: the same placement, the same run folder

Only rank 0 holds every probe (~400-650 bytes each): an allgather would put
all of them on every rank, 80 MB on each of 128,000 ranks (1,000 hosts x 128).

Bad input, or a host without a usable address, is a UsageError on every rank
before anything runs. The result, an Agreement, is the job's fixed part (like
torch elastic's WorkerSpec): made once, the same on every rank, never changed.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any, Callable, List, Optional, Tuple

from start_ray.errors import AddressError, UsageError
from start_ray.host import network, placement
from start_ray.host.placement import NodePlan
from start_ray.lifecycle.agree import software
from start_ray.mpi import launch_env
from start_ray.node import auth
from start_ray.options import Options
from start_ray.record import logs


@dataclasses.dataclass(frozen=True)
class Plan:
    """Made by rank 0 before anything starts; the same on every rank."""

    run_id: str
    job_tag: str
    auth_token: Optional[str] = dataclasses.field(repr=False)  # None: auth off
    head_ip: str = ""
    grace: float = 30.0  # the driver's grace after SIGTERM, within Slurm's KillWait
    error: Optional[str] = None
    grace_note: str = ""  # why the grace is shorter than --grace, if it is


# Up to this many ranks are named one by one in a log line; more are grouped.
NAMED_ONE_BY_ONE = 8


@dataclasses.dataclass(frozen=True)
class Agreement:
    """The plan, the placement and the run folder, as this rank sees them."""

    plan: Plan
    rank: int
    size: int
    hosts: Tuple[str, ...]  # by rank
    nodes: Tuple[NodePlan, ...]  # the Ray nodes, rank 0's first
    run_dir: str
    runs: software.Software  # what every rank runs (checked to be the same)

    @property
    def host(self) -> str:
        return self.hosts[self.rank]

    @property
    def my_node(self) -> Optional[NodePlan]:
        """The node this rank starts (None: it starts nothing)."""
        return placement.node_of(self.rank, list(self.nodes))

    @property
    def node_ranks(self) -> List[int]:
        """The ranks that start a Ray node (rank 0 first)."""
        return [node.rank for node in self.nodes]

    @property
    def marker(self) -> str:
        """`<job tag>/<rank>`: per rank, since ranks on one host stop concurrently."""
        return f"{self.plan.job_tag}/{self.rank}"

    def name_ranks(self, ranks: List[int]) -> str:
        """`rank 3 (host-b), rank 5 (host-c)` for log lines; for many,
        `40 ranks (4-160 every 4) on nid[002-041]`, one line at any size."""
        if len(ranks) > NAMED_ONE_BY_ONE:
            return (f"{len(ranks)} ranks ({logs.compact(ranks)}) on " +
                    logs.hostlist([self.hosts[r] for r in ranks if r < len(self.hosts)]))
        return ", ".join(f"rank {r} ({self.hosts[r] if r < len(self.hosts) else '?'})"
                         for r in ranks)


def agree(channel: Any, options: Options, check: Callable[[], None]) -> Agreement:
    """The collective calls every rank makes, in this order, before anything starts."""
    plan = channel.share(make_plan(options, channel.size, check) if channel.rank == 0 else None)
    if plan.error:
        raise UsageError(plan.error)
    mine = placement.probe(channel.rank, options.interface,
                           plan.head_ip if channel.rank else None)
    runs = software.this_rank()
    gathered = channel.gather((mine, runs))
    layout = channel.share(lay_out(gathered, options) if channel.rank == 0 else None)
    if layout.error:
        raise UsageError(layout.error)
    return Agreement(plan=plan, rank=channel.rank, size=channel.size, hosts=layout.hosts,
                     nodes=layout.nodes, run_dir=logs.run_dir(options.log_dir, plan.run_id),
                     runs=runs)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Rank 0's placement for everyone: the host of each rank and the nodes."""

    hosts: Tuple[str, ...] = ()
    nodes: Tuple[NodePlan, ...] = ()
    error: Optional[str] = None


def lay_out(gathered: List[Tuple[placement.Probe, software.Software]],
            options: Options) -> Layout:
    """Rank 0: every rank's probe and software -> the placement, or why not."""
    probes = [probe for probe, _ in gathered]
    hosts = [p.host for p in probes]
    differ = software.differences([theirs for _, theirs in gathered], hosts)
    if differ:
        return Layout(error=differ)
    try:
        return Layout(hosts=tuple(hosts), nodes=tuple(placement.place(probes, options)))
    except UsageError as err:
        return Layout(error=str(err))


def make_plan(options: Options, size: int, check: Callable[[], None]) -> Plan:
    """Rank 0's plan. `check` raises UsageError for bad input (the command
    line's and the job's settings, preflight.check); such an error travels
    inside the plan, so that every rank exits with 2 and only rank 0 says why."""
    error, head_ip = None, ""
    try:
        check()
        head_ip, _ = network.choose_address(options.interface, None)
    except (UsageError, AddressError) as err:
        error = str(err)
    grace, note = grace_within_kill_wait(options)
    return Plan(run_id=logs.new_run_id(), job_tag=secrets.token_hex(4),
                auth_token=None if options.no_auth else auth.new_token(),
                head_ip=head_ip, grace=grace, error=error, grace_note=note)


def grace_within_kill_wait(options: Options) -> Tuple[float, str]:
    """The driver's grace, and why it is shorter than asked if it is. Slurm
    SIGKILLs every process KillWait seconds after its SIGTERM (scancel): the
    driver's grace and the teardown must fit in it."""
    kill_wait = launch_env.slurm_kill_wait()
    grace = options.grace
    if kill_wait is None or grace + options.stop_timeout + 5 <= kill_wait:
        return grace, ""
    grace = max(0.0, kill_wait - options.stop_timeout - 5)
    return grace, (f"the driver's grace is {grace:g}s, not {options.grace:g}s: "
                   f"Slurm kills the job {kill_wait:g}s (KillWait) after SIGTERM")
