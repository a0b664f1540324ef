"""What every rank agrees on before anything starts (phase 1 of the lifecycle).

    rank 0: check the input and the job's settings, choose the head's address,
            a run id, an auth token, the driver's grace    -- share -->  Plan
    every rank: probe its host (name, CPUs, IP) and say
                what it runs (Python, Ray, start_ray)     -- gather --> its leader
    each leader: its host's node plan (placement.host_nodes), its ranks, what
                they run                                  -- gather --> rank 0
    rank 0: the job's placement (placement.finish), or the one error (a
            software difference, a host without an address) -- scatter -->
            each leader its host's Seat                   -- share -->  its ranks
    every rank: its node plan (if it starts one), the same run folder

Rank 0 handles one report per host and holds the whole placement (Layout) in
O(hosts); every other rank holds its host's part. Probes (~400-650 bytes
each) never travel past their host: gathered whole on rank 0 they were 80 MB
at 128,000 ranks (1,000 hosts x 128), 800 MB at 1.28 million.

Bad input, or a host without a usable address, is a UsageError on every rank
before anything runs. The result, an Agreement, is the job's fixed part (like
torch elastic's WorkerSpec): made once, the same on every rank, never changed.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from start_ray.errors import AddressError, UsageError
from start_ray.host import network, placement
from start_ray.host.placement import NodePlan
from start_ray.identity import Identity
from start_ray.lifecycle.agree import software
from start_ray.lifecycle.agree.gcs_policy import GcsPolicy
from start_ray.lifecycle.contracts import Channel
from start_ray.mpi import launch_env
from start_ray.mpi.ranks import HostRanks, RankSet
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
class Layout:
    """Rank 0's whole placement: every host and every Ray node, O(hosts)."""

    hosts: Tuple[HostRanks, ...]
    nodes: Tuple[NodePlan, ...]  # rank 0's first

    @functools.cached_property
    def by_rank(self) -> Dict[int, NodePlan]:
        return {node.rank: node for node in self.nodes}

    @property
    def node_ranks(self) -> List[int]:
        """The ranks that start a Ray node (rank 0 first)."""
        return [node.rank for node in self.nodes]

    @property
    def leaders(self) -> List[int]:
        return sorted({host.leader for host in self.hosts})

    def host_of(self, rank: int) -> str:
        node = self.by_rank.get(rank)
        if node is not None:
            return node.host
        return next((host.name for host in self.hosts if rank in host.ranks), "?")

    def name_ranks(self, ranks: Sequence[int]) -> str:
        """`rank 3 (host-b), rank 5 (host-c)` for log lines; for many,
        `40 ranks (4-160 every 4) on nid[002-041]`, one line at any size."""
        if len(ranks) > NAMED_ONE_BY_ONE:
            return (f"{len(ranks)} ranks ({RankSet.of(ranks).text()}) on " +
                    logs.hostlist([self.host_of(r) for r in ranks]))
        return ", ".join(f"rank {r} ({self.host_of(r)})" for r in ranks)


@dataclasses.dataclass(frozen=True)
class Seat:
    """A host's part of the placement, from rank 0 to its leader and from
    the leader to its ranks (or the one error that ends the job)."""

    error: Optional[str] = None
    head_host: str = ""
    node_count: int = 0  # the job's Ray nodes
    nodes: Tuple[NodePlan, ...] = ()  # this host's
    indexes: Tuple[int, ...] = ()  # each of them among the job's nodes (0: the head)
    host_ranks: RankSet = RankSet()  # this host's ranks (its leader fills them in)


@dataclasses.dataclass(frozen=True)
class Agreement:
    """The plan and this rank's part of the placement; on rank 0 the whole
    placement too (`layout`). Made once, the same wherever it is shared
    (like torch elastic's WorkerSpec), never changed."""

    plan: Plan
    rank: int
    size: int
    run_dir: str
    runs: software.Software  # what this rank runs (checked to be what all run)
    host: str
    leader: int  # the rank that leads this rank's host
    head_host: str
    node_count: int
    my_node: Optional[NodePlan]  # the node this rank starts (None: it starts nothing)
    node_index: Optional[int]  # my_node's place among the job's nodes (0: the head)
    served_by: int  # the rank whose node serves this rank
    host_ranks: RankSet  # the ranks of this rank's host (its leader hears their Done)
    gcs: GcsPolicy  # whether the head's GCS comes back in place
    layout: Optional[Layout] = None  # rank 0's

    @property
    def identity(self) -> Identity:
        return Identity(run_dir=self.run_dir, rank=self.rank, size=self.size, host=self.host,
                        job_tag=self.plan.job_tag)

    @property
    def marker(self) -> str:
        return self.identity.marker

    @property
    def whole(self) -> Layout:
        """Rank 0's layout (only rank 0 holds it)."""
        assert self.layout is not None, "only rank 0 holds the whole placement"
        return self.layout


def agree(channel: Channel, options: Options, check: Callable[[], None],
          gpu_reads: placement.GpuReads, run_id: Optional[str] = None) -> Agreement:
    """The collective calls every rank makes, in this order, before anything
    starts: the plan (world); the probes (host, then leaders); the seats
    (leaders, then host). `run_id`: a restart's (--restarts), the run's."""
    plan = channel.share(make_plan(options, channel.size, check, run_id)
                         if channel.rank == 0 else None)
    if plan.error:
        raise UsageError(plan.error)
    mine = placement.probe(channel.rank, options.interface,
                           plan.head_ip if channel.rank else None, temp_dir=options.temp_dir)
    runs = software.this_rank()
    here = channel.gather_host((mine, runs))
    layout: Optional[Layout] = None
    seat: Optional[Seat] = None
    if channel.is_leader:
        assert here is not None
        reports = channel.gather_leaders(host_report(here, options, gpu_reads))
        seats = None
        if channel.rank == 0:
            assert reports is not None
            layout, seats = lay_out(reports, options)
        seat = dataclasses.replace(channel.scatter_leaders(seats),
                                   host_ranks=RankSet.of(probe.rank for probe, _ in here))
    seat = channel.share_host(seat)
    assert seat is not None
    if seat.error:
        raise UsageError(seat.error)
    mine_in = [i for i, node in enumerate(seat.nodes) if node.rank == channel.rank]
    served = next((node.rank for node in seat.nodes if channel.rank in node.ranks),
                  channel.leader)
    return Agreement(plan=plan, rank=channel.rank, size=channel.size,
                     run_dir=logs.run_dir(options.log_dir, plan.run_id),
                     runs=runs, host=mine.host, leader=channel.leader,
                     head_host=seat.head_host, node_count=seat.node_count,
                     my_node=seat.nodes[mine_in[0]] if mine_in else None,
                     node_index=seat.indexes[mine_in[0]] if mine_in else None,
                     served_by=served, host_ranks=seat.host_ranks,
                     gcs=GcsPolicy.of(options, runs.ray), layout=layout)


@dataclasses.dataclass(frozen=True)
class HostReport:
    """A leader's word on its host: its ranks (grouped by host name: one
    group, unless MPI's host and the host names disagree), its node plans,
    and what its ranks run."""

    hosts: Tuple[HostRanks, ...]
    nodes: Tuple[NodePlan, ...]
    runs: Tuple[software.Group, ...]


def host_report(here: List[Tuple[placement.Probe, software.Software]], options: Options,
                gpu_reads: placement.GpuReads) -> HostReport:
    """A leader: its host's probes -> its host's report (pure)."""
    probes = [probe for probe, _ in here]
    by_name: Dict[str, List[placement.Probe]] = {}
    for probe in probes:
        by_name.setdefault(probe.host, []).append(probe)
    return HostReport(
        hosts=tuple(HostRanks(name, group[0].rank, RankSet.of(p.rank for p in group))
                    for name, group in by_name.items()),
        nodes=tuple(node for group in by_name.values()
                    for node in placement.host_nodes(group, options, gpu_reads)),
        runs=tuple(software.host_groups([runs for _, runs in here], [p.rank for p in probes],
                                        [p.host for p in probes])))


def lay_out(reports: List[HostReport], options: Options) -> Tuple[Optional[Layout], List[Seat]]:
    """Rank 0: every leader's report -> the layout and each leader's seat
    (each the same error, when the job cannot start)."""
    hosts = [host for report in reports for host in report.hosts]
    named: Dict[str, HostRanks] = {}
    for host in hosts:
        other = named.setdefault(host.name, host)
        if other is not host and not options.node_per_rank:  # a node per rank needs no host
            return None, [Seat(error=(
                f"ranks {other.ranks.text()} and {host.ranks.text()} share host name "
                f"{host.name}, but MPI puts them on different hosts (shared memory); "
                "start_ray places by host name: give each host a name of its own, or run "
                "a Ray node per rank (--node-per-rank), as in a Flux test instance"))
            ] * len(reports)
    differ = software.differences([group for report in reports for group in report.runs])
    try:
        if differ:
            raise UsageError(differ)
        nodes = placement.finish([node for report in reports for node in report.nodes],
                                 options)
    except UsageError as err:
        return None, [Seat(error=str(err))] * len(reports)
    layout = Layout(hosts=tuple(hosts), nodes=tuple(nodes))
    index = {node.rank: i for i, node in enumerate(nodes)}
    seats = []
    for report in reports:
        mine = tuple(layout.by_rank[node.rank] for node in report.nodes)  # rank 0's versions
        seats.append(Seat(head_host=nodes[0].host, node_count=len(nodes), nodes=mine,
                          indexes=tuple(index[node.rank] for node in mine)))
    return layout, seats


def make_plan(options: Options, size: int, check: Callable[[], None],
              run_id: Optional[str] = None) -> Plan:
    """Rank 0's plan. `check` raises UsageError for bad input (the command
    line's and the job's settings, preflight.check); such an error travels
    inside the plan, so that every rank exits with 2 and only rank 0 says why.
    A restart keeps the run (`run_id`): a new token and job tag all the same."""
    error, head_ip = None, ""
    try:
        check()
        head_ip, _ = network.choose_address(options.interface, None)
    except (UsageError, AddressError) as err:
        error = str(err)
    grace, note = grace_within_kill_wait(options)
    return Plan(run_id=run_id or logs.new_run_id(), job_tag=secrets.token_hex(4),
                auth_token=None if options.no_auth else auth.new_token(),
                head_ip=head_ip, grace=grace, error=error, grace_note=note)


def grace_within_kill_wait(options: Options) -> Tuple[float, str]:
    """The driver's grace, and why it is shorter than asked if it is. The
    scheduler SIGKILLs every process some time after its SIGTERM (a cancel,
    the walltime: Slurm's KillWait, PBS's kill_delay): the driver's grace
    and the teardown must fit in it."""
    found = launch_env.kill_wait()
    grace = options.grace
    if found is None or grace + options.stop_timeout + 5 <= found[0]:
        return grace, ""
    kill_wait, name = found
    grace = max(0.0, kill_wait - options.stop_timeout - 5)
    return grace, (f"the driver's grace is {grace:g}s, not {options.grace:g}s: "
                   f"the scheduler kills the job {kill_wait:g}s ({name}) after SIGTERM")
