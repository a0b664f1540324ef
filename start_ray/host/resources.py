"""What the batch job was given on one host, and where each number came from.

Ray looks at the whole host: a job given 8 of 128 cores offers 128 CPUs, and
every Ray node sizes its object store at 30% of the host's memory whatever
else runs there. start_ray gives each Ray node its job's share instead:
explicit option > scheduler variables > CPU affinity and cgroup limits >
Ray's own default. Every function here is pure (the caller passes the
environment and what was measured), so each source is unit-tested.

`tasks` is how many ranks a Ray node stands for; `host_tasks` how many of
the job's ranks share its host. Numbers the scheduler gives per host are
split by `tasks / host_tasks` (that is 1 with one Ray node per host).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import resource
from typing import Dict, List, Mapping, Optional, Sequence

from start_ray.host import accelerators

SHM = "/dev/shm"
RAY_DEFAULT_FRACTION = 0.3        # Ray's own default share of memory
SHM_FRACTION = 0.8                # leave the rest of /dev/shm to others
RAY_MINIMUM = 75 * 1024 * 1024    # Ray refuses a smaller store
# A node whose share of /dev/shm is below this keeps its object store in files
# under its temp dir instead, sized from its memory (a container's 64 MB
# /dev/shm, podman's and docker's default, starved Ray: ray#3149, #14629)
SHM_TOO_SMALL = 512 * 2**20
# ... which Ray refuses above 10 GB unless it is told the disk is on purpose
SLOW_STORAGE_OK = "RAY_OBJECT_STORE_ALLOW_SLOW_STORAGE"
MIB = 2**20

# The variables that the detection reads: gathered from every rank, so that
# rank 0 can log (and every rank compute) the whole placement.
SCHEDULER_VARIABLES = (
    "SLURM_JOB_ID", "SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE", "SLURM_GPUS_ON_NODE",
    "SLURM_TRES_PER_TASK", "SLURM_GPUS_PER_TASK", "SLURM_MEM_PER_NODE", "SLURM_MEM_PER_CPU",
    "PBS_JOBID", "NCPUS", "OMP_NUM_THREADS", "ALPS_APP_DEPTH", "LSB_JOBID", "LSB_MCPU_HOSTS",
    # each host's CPUs from PBS's exec_host, which `start_ray.jobs` reads
    # once and gives the step (batch/scheduler.py)
    "START_RAY_PBS_HOST_CPUS",
) + accelerators.VARIABLES


@dataclasses.dataclass(frozen=True)
class Found:
    """One detected number (None: leave it to Ray) and where it came from."""

    value: Optional[float]
    source: str

    def text(self, unit: str = "") -> str:
        if self.value is None:
            return f"left to Ray ({self.source})"
        if unit == "GiB":
            return f"{self.value / 2**30:.2f} GiB ({self.source})"
        return f"{self.value:g}{unit} ({self.source})"


def _number(env: Mapping[str, str], name: str) -> Optional[float]:
    """A positive number from a scheduler variable (Slurm writes `2(x3)` for
    repeated per-node counts: the first number is this node's)."""
    match = re.match(r"\s*(\d+(\.\d+)?)", env.get(name, ""))
    return float(match.group(1)) if match and float(match.group(1)) > 0 else None


def _share(value: float, tasks: int, host_tasks: int) -> float:
    return value * tasks / host_tasks


def _tasks(tasks: int) -> str:
    return f"{tasks} task{'s' if tasks != 1 else ''}"


def _per_task(env: Mapping[str, str], name: str, tasks: int, what: str = "") -> Optional[Found]:
    """A per-task number from the scheduler times the node's tasks, if set."""
    value = _number(env, name)
    if not value:
        return None
    return Found(value * tasks, f"{name}={value:g}{what} x {_tasks(tasks)}")


def cpus(env: Mapping[str, str], tasks: int, host_tasks: int, affinity: int,
         quota: Optional[float], explicit: Optional[float] = None, host: str = "") -> Found:
    """CPUs for a Ray node. `affinity` counts the CPUs that the host's ranks
    may run on together; `quota` is a cgroup CPU limit (in CPUs), if any.
    Flux binds each task to its cores: what Flux gave is the affinity."""
    if explicit is not None:
        return Found(explicit, "--num-cpus")
    found = _per_task(env, "SLURM_CPUS_PER_TASK", tasks)
    if found is None and _number(env, "SLURM_CPUS_ON_NODE"):
        found = _host_share(env, "SLURM_CPUS_ON_NODE", tasks, host_tasks)
    if found is None:  # aprun -d: per PE, so before PBS's per host
        found = _per_task(env, "ALPS_APP_DEPTH", tasks, " (aprun -d)")
    if found is None and env.get("PBS_JOBID") and _number(env, "NCPUS"):
        found = _pbs_cpus(env, tasks, host_tasks)
    if found is None and env.get("LSB_JOBID") and env.get("LSB_MCPU_HOSTS"):
        found = _lsf_cpus(env["LSB_MCPU_HOSTS"], host, tasks, host_tasks)
    if found is not None:
        if found.value is not None and found.value * host_tasks / tasks > affinity:
            found = Found(found.value, found.source + f"; note: this host's ranks may run "
                          f"on only {affinity} CPU(s)")
        return found
    usable = float(affinity)
    source = f"CPU affinity of this host's ranks: {affinity}"
    if quota is not None and quota < usable:
        usable, source = quota, f"cgroup CPU quota {quota:g} (affinity {affinity})"
    value = max(1, math.floor(_share(usable, tasks, host_tasks)))
    if tasks != host_tasks:
        source += f", shared by {host_tasks} ranks"
    return Found(value, source)


def _host_share(env: Mapping[str, str], name: str, tasks: int, host_tasks: int) -> Found:
    total = _number(env, name) or 0
    value = max(1, math.floor(_share(total, tasks, host_tasks)))
    shared = f" shared by {host_tasks} ranks" if tasks != host_tasks else ""
    return Found(value, f"{name}={total:g}{shared}")


def _pbs_cpus(env: Mapping[str, str], tasks: int, host_tasks: int) -> Found:
    """The host's chunks' ncpus from exec_host (passed on by `start_ray.jobs`),
    shared by the host's ranks. Else NCPUS, a rank's threads to PBS
    (ompthreads; by default its chunk's ncpus); with several ranks per host,
    an OMP_NUM_THREADS set by the script (mpiexec --depth, PALS) per rank."""
    host_cpus = _number(env, "START_RAY_PBS_HOST_CPUS")
    if host_cpus:
        value = max(1, math.floor(_share(host_cpus, tasks, host_tasks)))
        shared = f", shared by {host_tasks} ranks" if tasks != host_tasks else ""
        return Found(value, f"PBS exec_host: {host_cpus:g} CPUs on each host{shared}")
    ncpus = _number(env, "NCPUS") or 0
    threads = _number(env, "OMP_NUM_THREADS")
    if threads and host_tasks > 1 and threads * host_tasks <= ncpus:
        return Found(threads * tasks, f"OMP_NUM_THREADS={threads:g} x {_tasks(tasks)} "
                                      f"(PBS NCPUS={ncpus:g})")
    return _host_share(env, "NCPUS", tasks, host_tasks)


def _lsf_cpus(mcpu_hosts: str, host: str, tasks: int, host_tasks: int) -> Optional[Found]:
    """LSF's slots on this host, from LSB_MCPU_HOSTS ("host1 n1 host2 n2 ...";
    a long or a short name), shared by the host's ranks."""
    words = mcpu_hosts.split()
    slots = dict(zip(words[::2], words[1::2]))
    short = host.split(".")[0]
    count = next((value for name, value in slots.items()
                  if name == host or name.split(".")[0] == short), None)
    if count is None or not count.isdigit() or int(count) == 0:
        return None
    value = max(1, math.floor(_share(int(count), tasks, host_tasks)))
    shared = f" shared by {host_tasks} ranks" if tasks != host_tasks else ""
    return Found(value, f"LSB_MCPU_HOSTS: {count} slots on {short}{shared}")


_TRES_GPU = re.compile(r"gres/gpu(?::[\w.-]+)?[=:](\d+)")


def gpus(env: Mapping[str, str], tasks: int, host_tasks: int,
         devices: Sequence[accelerators.Devices], explicit: Optional[int] = None) -> Found:
    """GPUs for a Ray node. `devices`: what the node's ranks select with
    each vendor's variables (accelerators.devices), by precedence."""
    if explicit is not None:
        return Found(explicit, "--num-gpus")
    if _number(env, "SLURM_GPUS_ON_NODE"):
        return _host_share(env, "SLURM_GPUS_ON_NODE", tasks, host_tasks)
    tres = _TRES_GPU.search(env.get("SLURM_TRES_PER_TASK", ""))
    if tres and int(tres.group(1)) > 0:
        return Found(int(tres.group(1)) * tasks,
                     f"SLURM_TRES_PER_TASK={env['SLURM_TRES_PER_TASK']} x {_tasks(tasks)}")
    per_task = _per_task(env, "SLURM_GPUS_PER_TASK", tasks)
    if per_task is not None:
        return per_task
    if devices:
        return Found(len(devices[0].ids), devices[0].text())
    return Found(None, "no scheduler or GPU vendor variables")


def job_memory(env: Mapping[str, str], num_cpus: Optional[float], tasks: int,
               host_tasks: int, cgroup_limit: Optional[int], available: int) -> Found:
    """The memory (bytes) this Ray node's ranks were given: Slurm's --mem or
    --mem-per-cpu, else a cgroup limit, else the share of what is available.
    The value is None (Ray sizes `memory` itself) in the last case, unless
    several of the job's Ray nodes share the host (--node-per-rank): Ray
    would give each of them most of the host."""
    per_node = _number(env, "SLURM_MEM_PER_NODE")
    if per_node:
        return Found(int(_share(per_node * MIB, tasks, host_tasks)),
                     f"SLURM_MEM_PER_NODE={per_node:g}M" +
                     (f" shared by {host_tasks} ranks" if tasks != host_tasks else ""))
    per_cpu = _number(env, "SLURM_MEM_PER_CPU")
    if per_cpu and num_cpus:
        return Found(int(per_cpu * MIB * num_cpus),
                     f"SLURM_MEM_PER_CPU={per_cpu:g}M x {num_cpus:g} CPUs")
    if cgroup_limit is not None and cgroup_limit < available:
        return Found(int(_share(cgroup_limit, tasks, host_tasks)),
                     f"cgroup memory limit {cgroup_limit / 2**30:.1f} GiB")
    if tasks != host_tasks:  # several of the job's nodes on this host: each its share
        return Found(int(_share(available, tasks, host_tasks)),
                     f"{available / 2**30:.1f} GiB available, shared by {host_tasks} ranks")
    return Found(None, f"{available / 2**30:.1f} GiB available")


def shm_too_small(shm_free: Optional[int], nodes_on_host: int) -> bool:
    """Whether a node's share of /dev/shm is too small for its object store
    (then it goes into files under the node's temp dir)."""
    return shm_free is not None and SHM_FRACTION * shm_free / nodes_on_host < SHM_TOO_SMALL


def object_store_bytes(memory: int, nodes_on_host: int, shm_free: Optional[int]) -> Found:
    """The store size for a node given `memory`, with `nodes_on_host` of the
    job's nodes sharing /dev/shm; None leaves it to Ray (when even our share
    would be under Ray's minimum). With a /dev/shm too small to matter, the
    store is sized from memory alone: it lives in files (shm_too_small)."""
    share = int(RAY_DEFAULT_FRACTION * memory)
    why = "30% of the node's memory"
    if shm_too_small(shm_free, nodes_on_host):
        assert shm_free is not None
        return Found(share, f"{why}, in files under the node's temp dir: {SHM} has "
                            f"{shm_free / MIB:.0f} MiB free")
    if shm_free is not None:
        shm_share = int(SHM_FRACTION * shm_free / nodes_on_host)
        if shm_share < share:
            share = shm_share
            why = f"80% of free {SHM} ({shm_free / 2**30:.1f} GiB)" + (
                f" shared by {nodes_on_host} nodes" if nodes_on_host > 1 else "")
    if share < RAY_MINIMUM:
        return Found(None, f"our share ({share} bytes) is below Ray's minimum")
    return Found(share, why)


def memory_args(ray_args: List[str], memory: Found, nodes_on_host: int,
                available: int, shm_free: Optional[int]) -> Dict[str, Found]:
    """`--memory` and `--object-store-memory` for `ray start`, unless the
    user passed them in --ray-args. `memory` is the node's share (None: all
    that is `available`, see job_memory)."""
    given = {arg.split("=", 1)[0] for arg in ray_args}
    out: Dict[str, Found] = {}
    base = memory.value if memory.value is not None else available
    store = (Found(None, "set by the user in --ray-args")
             if "--object-store-memory" in given
             else object_store_bytes(int(base), nodes_on_host, shm_free))
    out["--object-store-memory"] = store
    if "--memory" in given:
        out["--memory"] = Found(None, "set by the user in --ray-args")
    elif memory.value is not None:
        out["--memory"] = Found(int(memory.value - (store.value or 0)),
                                memory.source + ", less the object store")
    else:
        out["--memory"] = memory
    return out


# ------------------------------------------------------------ measurements
def affinity() -> List[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def run_on(pid: int, cpus: Sequence[int]) -> bool:
    """Let every thread of process `pid` run on `cpus` (the processes it
    starts from then on inherit that); False if it already could."""
    wanted = set(cpus)
    try:
        threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        threads = [pid]
    changed = False
    for tid in threads:
        try:
            if os.sched_getaffinity(tid) != wanted:
                os.sched_setaffinity(tid, wanted)
                changed = True
        except ProcessLookupError:
            continue  # a thread that ended meanwhile
    return changed


def _cgroup_paths(controller: str) -> List[str]:
    """Folders of this process's cgroup for `controller`, leaf first, up to
    the mount point (v2 unified or v1 per-controller)."""
    try:
        with open("/proc/self/cgroup") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    roots = []
    for line in lines:
        _, names, path = line.split(":", 2)
        if names == "" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            roots.append(("/sys/fs/cgroup", path))
        elif controller in names.split(","):
            roots.append((f"/sys/fs/cgroup/{names}", path))
    folders = []
    for mount, path in roots:
        parts = [part for part in path.split("/") if part]
        for depth in range(len(parts), -1, -1):
            folder = os.path.join(mount, *parts[:depth])
            if os.path.isdir(folder):
                folders.append(folder)
    return folders


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def cgroup_cpu_quota() -> Optional[float]:
    """The tightest CPU quota (in CPUs) on this process's cgroups, if any."""
    quotas = []
    for folder in _cgroup_paths("cpu"):
        v2 = _read(os.path.join(folder, "cpu.max"))
        if v2 and not v2.startswith("max"):
            limit, period = v2.split()[:2]
            quotas.append(int(limit) / int(period))
        quota = _read(os.path.join(folder, "cpu.cfs_quota_us"))
        period_v1 = _read(os.path.join(folder, "cpu.cfs_period_us"))
        if quota and period_v1 and int(quota) > 0:
            quotas.append(int(quota) / int(period_v1))
    return min(quotas) if quotas else None


def cgroup_memory_limit() -> Optional[int]:
    """The tightest memory limit (bytes) on this process's cgroups, if any."""
    limits = []
    for folder in _cgroup_paths("memory"):
        for name in ("memory.max", "memory.limit_in_bytes"):
            text = _read(os.path.join(folder, name))
            if text and text.isdigit() and int(text) < 2**60:
                limits.append(int(text))
    return min(limits) if limits else None


def raise_open_files_limit() -> str:
    """Ray opens many sockets and files per worker ("Too many open files"):
    raise the soft limit to the hard one for this rank and what it starts.
    Called once per rank, before its first child (the lifecycle keeps what
    it says for the rank's log)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return f"open files: soft limit raised from {soft} to {target}"
        except (ValueError, OSError) as err:
            return f"open files: soft limit stays {soft} ({err})"
    return f"open files: soft limit {soft} (already the hard limit)"


# Ray's guide for large clusters: `ulimit -n` of at least 65535. Below that,
# warn once a job's size makes it matter: ~64 descriptors per node at the head
# (its GCS, raylet and the driver keep connections to every node's processes).
OPEN_FILES_ADVISED = 65535
OPEN_FILES_PER_NODE = 64
ARP_LIMIT = "/proc/sys/net/ipv4/neigh/default/gc_thresh3"


def open_files_limit() -> Optional[int]:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def arp_limit(path: str = ARP_LIMIT) -> Optional[int]:
    try:
        with open(path) as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def scale_warnings(nodes: int, hosts: int, open_files: Optional[int],
                   arp_entries: Optional[int]) -> List[str]:
    """What is too small on the head's host for a job of this size:
    the open-files limit ("Too many open files" at the head) and the
    kernel's ARP table (every host talks to every other: "neighbour table
    overflow", lost connections)."""
    found = []
    needed = min(OPEN_FILES_ADVISED, 1024 + OPEN_FILES_PER_NODE * nodes)
    if open_files is not None and open_files < needed:
        found.append(
            f"open files: the limit here is {open_files}, small for {nodes} Ray nodes "
            f"(about {needed} wanted; Ray's guide for large clusters says {OPEN_FILES_ADVISED}): "
            "raise it with `ulimit -n` in the job script (up to the hard limit) or ask the "
            "admins")
    if arp_entries is not None and hosts > arp_entries // 2:
        found.append(
            f"ARP table: at most {arp_entries} entries (net.ipv4.neigh.default.gc_thresh3) "
            f"for {hosts} hosts that all talk to each other: expect 'neighbour table overflow' "
            "and dropped connections; ask the admins to raise gc_thresh1/2/3")
    return found
