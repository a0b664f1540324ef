"""Where the Ray nodes go: by default one per host, started by the host's
lowest rank with the resources of all the host's ranks; the other ranks wait.

Every rank measures what it sees (`probe`); each host's leader turns its
ranks' probes into its host's node plan (`host_nodes`), and rank 0 checks the
hosts' plans against each other (`finish`: addresses, the head's CPUs). All
pure functions, so the whole decision is unit-tested and rank 0 can log it;
`place` is both steps at once.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
from typing import Dict, List, Mapping, Optional, Tuple

import psutil

from start_ray.errors import UsageError
from start_ray.host import accelerators, network, resources, tempdirs
from start_ray.host.resources import Found
from start_ray.mpi.ranks import RankSet
from start_ray.options import Options


@dataclasses.dataclass(frozen=True)
class Probe:
    """What one rank sees of its host."""

    rank: int
    host: str
    ip: Optional[str]
    ip_source: str  # why this address; the error when there is none
    interface: Optional[str]  # the interface that carries `ip` on this host
    affinity: Tuple[int, ...]
    cpu_quota: Optional[float]
    memory_limit: Optional[int]
    available_memory: int
    shm_free: Optional[int]
    env: Dict[str, str]
    temp_root: str = "/tmp"  # where this host's ranks would make their temp dirs
    temp_why: str = "default"


# What placement reads of each rank's environment (gathered from every rank).
GATHERED = resources.SCHEDULER_VARIABLES + network.COLLECTIVE_VARIABLES


def probe(rank: int, interface: Optional[str], head_ip: Optional[str],
          environ: Optional[Mapping[str, str]] = None, temp_dir: Optional[str] = None) -> Probe:
    env = os.environ if environ is None else environ
    temp_root, temp_why = tempdirs.choose_root(temp_dir, tempdirs.SAMPLE_TAG, rank, env)
    try:
        ip, why = network.choose_address(interface, head_ip)
    except network.AddressError as err:
        ip, why = None, str(err)
    try:
        shm_free: Optional[int] = shutil.disk_usage(resources.SHM).free
    except OSError:
        shm_free = None
    return Probe(rank=rank, host=socket.gethostname(), ip=ip, ip_source=why,
                 interface=network.interface_of(ip) if ip else None,
                 affinity=tuple(resources.affinity()),
                 cpu_quota=resources.cgroup_cpu_quota(),
                 memory_limit=resources.cgroup_memory_limit(),
                 available_memory=psutil.virtual_memory().available, shm_free=shm_free,
                 temp_root=temp_root, temp_why=temp_why,
                 env={k: env[k] for k in GATHERED if k in env})


@dataclasses.dataclass(frozen=True)
class NodePlan:
    """One Ray node: the rank that starts it and what it offers."""

    rank: int
    host: str
    ranks: RankSet  # the ranks it stands for (itself included)
    ip: str
    ip_source: str
    cpus: Found
    gpus: Found
    memory: Dict[str, Found]  # --memory and --object-store-memory
    nodes_on_host: int
    # its object store lives in files under its temp dir (resources.shm_too_small)
    store_on_disk: bool = False
    temp: str = ""  # its temp dir's root, why, and Ray's longest socket path there
    device_env: Dict[str, Optional[str]] = dataclasses.field(default_factory=dict)
    collectives: Dict[str, str] = dataclasses.field(default_factory=dict)
    user_collectives: Dict[str, str] = dataclasses.field(default_factory=dict)
    # The CPUs its processes run on when it stands for several ranks of its
    # host (the union of their affinities, which its CPU count is made of);
    # empty: where its rank runs. A launcher that binds each rank to a core
    # would otherwise put all of a node's Ray processes on its owner's core.
    cpu_set: RankSet = dataclasses.field(default_factory=lambda: RankSet.of(()))

    @property
    def env(self) -> Dict[str, Optional[str]]:
        """What every process of the node (and the driver, on the head) gets
        on top of the rank's own environment: the union of its ranks' GPUs
        in the variables Ray reads, and the node's interface for the
        libraries that open their own sockets (gloo, NCCL). None: removed."""
        return {**self.device_env, **self.collectives}

    @property
    def ip_given(self) -> bool:
        """Ray replaces a loopback --node-ip-address by its own guess; such a
        node (a one-host job on a machine without a network) is left to Ray."""
        return not network.is_loopback(self.ip)

    def ray_args(self) -> List[str]:
        args = ["--node-ip-address", self.ip] if self.ip_given else []
        if self.cpus.value is not None:
            args += ["--num-cpus", str(int(self.cpus.value))]
        if self.gpus.value is not None:
            args += ["--num-gpus", str(int(self.gpus.value))]
        for option, found in sorted(self.memory.items()):
            if found.value is not None:
                args += [option, str(int(found.value))]
        return args

    def describe(self) -> str:
        ranks = self.ranks.text()
        return (f"node of rank {self.rank} on {self.host} for rank(s) {ranks}: "
                f"IP {self.ip} ({self.ip_source}); CPUs {self.cpus.text()}; "
                f"GPUs {self.gpus.text()}{self._device_text()}; "
                f"memory {self.memory['--memory'].text('GiB')}; "
                f"object store {self.memory['--object-store-memory'].text('GiB')}; "
                f"{self._collectives_text()}")

    def describe_lines(self) -> List[str]:
        """The same, one number a line (--dry-run prints this)."""
        return [f"node of rank {self.rank} on {self.host}, for rank(s) "
                f"{self.ranks.text()}:",
                f"    address       {self.ip} ({self.ip_source})",
                f"    CPUs          {self.cpus.text()}"
                + (f"; its processes on CPUs {self.cpu_set.text()}" if self.cpu_set else ""),
                f"    GPUs          {self.gpus.text()}{self._device_text()}",
                f"    memory        {self.memory['--memory'].text('GiB')}",
                f"    object store  {self.memory['--object-store-memory'].text('GiB')}",
                f"    temp dir      {self.temp}",
                f"    {self._collectives_text().replace(': ', '   ', 1)}"]

    def _device_text(self) -> str:
        if not self.device_env:
            return ""
        return ", Ray gets " + ", ".join(f"{k}={v}" if v is not None else f"no {k}"
                                        for k, v in sorted(self.device_env.items()))

    def _collectives_text(self) -> str:
        """Which interface gloo and NCCL use, and who chose it."""
        parts = []
        if self.collectives:
            names = ", ".join(sorted(self.collectives))
            parts.append(f"{names}={next(iter(self.collectives.values()))}")
        parts += [f"{k}={v} (set by the user)" for k, v in sorted(self.user_collectives.items())]
        return "collectives: " + ("; ".join(parts) if parts else "left to gloo and NCCL "
                                  "(the node's address is left to Ray)")


# The variables the job's Ray reads for AMD's and Intel's GPUs (node.compat
# says which, per Ray version; the caller passes them).
GpuReads = Tuple[str, str]


def place(probes: List[Probe], options: Options,
          gpu_reads: GpuReads = (accelerators.HIP, accelerators.ZE)) -> List[NodePlan]:
    """The job's Ray nodes from every rank's probe, ordered by rank; rank 0
    always starts the head. Raises UsageError when a node has no usable
    address. (In a job, each host's leader does the first step and rank 0
    the second: agreement.py.)"""
    by_host: Dict[str, List[Probe]] = {}
    for p in sorted(probes, key=lambda p: p.rank):
        by_host.setdefault(p.host, []).append(p)
    return finish([node for group in by_host.values()
                   for node in host_nodes(group, options, gpu_reads)], options)


def host_nodes(host_probes: List[Probe], options: Options,
               gpu_reads: GpuReads) -> List[NodePlan]:
    """The node(s) of one host's ranks (probes of one host name): one for
    them all, or one per rank with --node-per-rank."""
    ordered = sorted(host_probes, key=lambda p: p.rank)
    groups = [[p] for p in ordered] if options.node_per_rank else [ordered]
    return [_node(group, ordered, options, gpu_reads) for group in groups]


def finish(nodes: List[NodePlan], options: Options) -> List[NodePlan]:
    """Rank 0: every host's nodes become the job's: ordered by rank, checked
    against each other (addresses), the head's CPUs set for its size."""
    nodes = sorted(nodes, key=lambda node: node.rank)
    _check_addresses(nodes, multi_host=len({node.host for node in nodes}) > 1)
    head = head_cpus(len(nodes), options.head_num_cpus)
    if head is not None and nodes:
        nodes[0] = dataclasses.replace(nodes[0], cpus=head)
    return nodes


# From this many nodes on, the head offers no CPUs to tasks by default.
HEAD_IDLE_FROM = 32


def head_cpus(nodes: int, given: Optional[int]) -> Optional[Found]:
    """The head's CPUs when they differ from its host's: --head-num-cpus, or 0
    in big jobs (Ray's large-cluster guide: keep tasks off the head, whose
    GCS serves every node)."""
    if given is not None:
        return Found(given, "--head-num-cpus")
    if nodes >= HEAD_IDLE_FROM:
        return Found(0, f"the head of {nodes} nodes keeps its CPUs for the GCS and the "
                        "driver; --head-num-cpus N to change")
    return None


def _node(group: List[Probe], host_group: List[Probe], options: Options,
          gpu_reads: GpuReads) -> NodePlan:
    leader = group[0]
    tasks, host_tasks = len(group), len(host_group)
    union = set().union(*(p.affinity for p in host_group))
    cpus = resources.cpus(leader.env, tasks, host_tasks, len(union), leader.cpu_quota,
                          options.num_cpus, host=leader.host)
    devices = accelerators.devices([p.env for p in group], gpu_reads)
    gpus = resources.gpus(leader.env, tasks, host_tasks, devices, options.num_gpus)
    memory = resources.job_memory(leader.env, cpus.value, tasks, host_tasks,
                                  leader.memory_limit, leader.available_memory)
    nodes_on_host = host_tasks // tasks  # 1 but with --node-per-rank
    user_store = any(arg.split("=", 1)[0] == "--object-store-memory"
                     for arg in options.ray_args)
    longest = tempdirs.socket_path_length(leader.temp_root, tempdirs.SAMPLE_TAG,
                                          max(p.rank for p in group))
    return NodePlan(
        rank=leader.rank, host=leader.host, ranks=RankSet.of(p.rank for p in group),
        ip=leader.ip or "", ip_source=leader.ip_source, cpus=cpus, gpus=gpus,
        memory=resources.memory_args(options.ray_args, memory, nodes_on_host,
                                     leader.available_memory, leader.shm_free),
        nodes_on_host=nodes_on_host,
        cpu_set=RankSet.of(union if nodes_on_host == 1 and len(host_group) > 1 else ()),
        store_on_disk=not user_store and resources.shm_too_small(leader.shm_free,
                                                                 nodes_on_host),
        temp=(f"{tempdirs.job_dir(leader.temp_root, '<job>')}/<rank> ({leader.temp_why}); "
              f"Ray's longest socket path {longest} of {tempdirs.UNIX_PATH_MAX} bytes"),
        device_env=accelerators.node_environment(devices, leader.env),
        collectives=network.collective_environment(leader.interface, leader.ip, leader.env),
        user_collectives={k: leader.env[k] for k in network.COLLECTIVE_VARIABLES
                          if k in leader.env})


def _check_addresses(nodes: List[NodePlan], multi_host: bool) -> None:
    for node in nodes:
        if not node.ip:
            raise UsageError(f"rank {node.rank} on {node.host}: {node.ip_source}")
        if multi_host and network.is_loopback(node.ip):
            raise UsageError(
                f"rank {node.rank} on {node.host} found only a loopback address "
                f"({node.ip}: {node.ip_source}), which other hosts cannot reach; "
                "name the interface with --interface (e.g. ib0, hsn0)")
    seen: Dict[str, str] = {}
    for node in nodes:
        other = seen.setdefault(node.ip, node.host)
        if other != node.host:
            raise UsageError(f"hosts {other} and {node.host} both chose address {node.ip} "
                             f"({node.ip_source}); name the interface with --interface")
