"""Resource detection and placement from synthetic environments: every
source the detection reads, and the placement every rank computes."""

import os
import subprocess
import sys

import pytest

from start_ray.errors import UsageError
from start_ray.host import accelerators, network, placement, resources
from start_ray.host.placement import Probe
from start_ray.node import compat
from start_ray.options import make_options

pytestmark = pytest.mark.fast  # in-process: `make test-fast`

GIB = 2**30


# ------------------------------------------------------------------ CPUs
@pytest.mark.parametrize("env, tasks, host_tasks, expected, source", [
    # Slurm: --cpus-per-task times the ranks the node stands for.
    ({"SLURM_CPUS_PER_TASK": "4"}, 4, 4, 16, "SLURM_CPUS_PER_TASK=4 x 4 tasks"),
    # Slurm without --cpus-per-task: the job's CPUs on this node.
    ({"SLURM_CPUS_ON_NODE": "12"}, 3, 3, 12, "SLURM_CPUS_ON_NODE=12"),
    # ... split when each rank has its own node (--node-per-rank).
    ({"SLURM_CPUS_ON_NODE": "12"}, 1, 3, 4, "shared by 3 ranks"),
    # PBS: the host's chunk...
    ({"PBS_JOBID": "1.pbs", "NCPUS": "64"}, 1, 1, 64, "NCPUS=64"),
    # ... or OMP_NUM_THREADS per rank when several ranks share the chunk.
    ({"PBS_JOBID": "1.pbs", "NCPUS": "64", "OMP_NUM_THREADS": "8"}, 4, 4, 32,
     "OMP_NUM_THREADS=8 x 4 tasks"),
    # NCPUS outside PBS means nothing.
    ({"NCPUS": "64"}, 1, 1, 16, "affinity"),
    # Cray ALPS: aprun -d.
    ({"ALPS_APP_DEPTH": "8"}, 2, 2, 16, "ALPS_APP_DEPTH=8 (aprun -d) x 2 tasks"),
])
def test_cpus_from_the_scheduler(env, tasks, host_tasks, expected, source):
    found = resources.cpus(env, tasks, host_tasks, affinity=16, quota=None)
    assert found.value == expected
    assert source in found.source


def test_cpus_explicit_beats_scheduler_beats_affinity_and_quota():
    env = {"SLURM_CPUS_PER_TASK": "4"}
    assert resources.cpus(env, 2, 2, 64, None, explicit=3).value == 3
    assert resources.cpus(env, 2, 2, 64, None).value == 8
    # No scheduler: the ranks' affinity, never the host's total...
    found = resources.cpus({}, 2, 2, affinity=6, quota=None)
    assert found.value == 6 and "affinity" in found.source
    # ... capped by a cgroup quota (docker --cpus, Slurm cgroups)...
    found = resources.cpus({}, 1, 1, affinity=128, quota=2.5)
    assert found.value == 2 and "quota" in found.source
    # ... and shared between the nodes of --node-per-rank, at least 1 each.
    assert resources.cpus({}, 1, 4, affinity=2, quota=None).value == 1


def test_scheduler_cpus_beyond_affinity_are_kept_but_noted():
    found = resources.cpus({"SLURM_CPUS_PER_TASK": "8"}, 1, 1, affinity=2, quota=None)
    assert found.value == 8 and "only 2 CPU(s)" in found.source


# ------------------------------------------------------------------ GPUs
def found(*envs):
    return accelerators.devices(list(envs))


@pytest.mark.parametrize("env, devices, expected, source", [
    ({"SLURM_GPUS_ON_NODE": "4"}, (), 4, "SLURM_GPUS_ON_NODE=4"),
    ({"SLURM_TRES_PER_TASK": "cpu=8,gres/gpu:a100=1"}, (), 2, "SLURM_TRES_PER_TASK"),
    ({"SLURM_TRES_PER_TASK": "gres/gpu=2"}, (), 4, "x 2 tasks"),
    ({"SLURM_GPUS_PER_TASK": "1"}, (), 2, "SLURM_GPUS_PER_TASK=1"),
    ({}, ({"CUDA_VISIBLE_DEVICES": "0,1,3"},), 3, "CUDA_VISIBLE_DEVICES=0,1,3 (NVIDIA)"),
    ({}, ({"CUDA_VISIBLE_DEVICES": ""},), 0, "CUDA_VISIBLE_DEVICES='' (NVIDIA)"),
    ({}, ({"ROCR_VISIBLE_DEVICES": "4,5"},), 2, "ROCR_VISIBLE_DEVICES=4,5 (AMD)"),
    ({}, ({"HIP_VISIBLE_DEVICES": "1"},), 1, "HIP_VISIBLE_DEVICES=1 (AMD)"),
    ({}, ({"ZE_AFFINITY_MASK": "0.0,0.1,1.0"},), 3, "ZE_AFFINITY_MASK=0.0,0.1,1.0 (Intel)"),
    ({}, ({"ONEAPI_DEVICE_SELECTOR": "level_zero:2,3"},), 2,
     "ONEAPI_DEVICE_SELECTOR=level_zero:2,3 (Intel)"),
    ({}, (), None, "no scheduler or GPU vendor variables"),
])
def test_gpus(env, devices, expected, source):
    given = found(*devices) if devices else []
    detected = resources.gpus(env, 2, 2, given)
    assert detected.value == expected and source in detected.source
    assert resources.gpus(env, 2, 2, given, explicit=1).value == 1


def test_slurm_variables_count_before_the_vendors_lists():
    assert resources.gpus({"SLURM_GPUS_ON_NODE": "8"}, 1, 1,
                          found({"ROCR_VISIBLE_DEVICES": "0"})).value == 8


def test_each_vendors_devices_are_the_union_of_the_ranks():
    nvidia, = found({"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1,2"},
                    {"CUDA_VISIBLE_DEVICES": "1"})
    assert nvidia.ids == ("0", "1", "2") and nvidia.env == {"CUDA_VISIBLE_DEVICES": "0,1,2"}
    assert nvidia.source == "CUDA_VISIBLE_DEVICES=0 | 1,2 | 1"
    intel, = found({"ZE_AFFINITY_MASK": "0.0"}, {"ZE_AFFINITY_MASK": "0.1"})
    assert intel.env == {"ZE_AFFINITY_MASK": "0.0,0.1"} and intel.vendor == "Intel"
    assert found({"CUDA_VISIBLE_DEVICES": ""}, {"CUDA_VISIBLE_DEVICES": "NoDevFiles"})[0].ids == ()
    # Flux's gpubind gives a task without GPUs CUDA_VISIBLE_DEVICES=-1 (seen on
    # a real Flux 0.88): none, as CUDA reads it (up to the first invalid id).
    assert found({"CUDA_VISIBLE_DEVICES": "-1"}, {"CUDA_VISIBLE_DEVICES": "-1"})[0].ids == ()
    assert found({"CUDA_VISIBLE_DEVICES": "2,-1,3"})[0].ids == ("2",)
    # A rank without the variable: the node's devices are not known from it.
    assert found({"CUDA_VISIBLE_DEVICES": "0"}, {}) == []


def test_amd_devices_reach_ray_in_the_variable_it_reads():
    """Slurm and Cray set ROCR_VISIBLE_DEVICES, which Ray 2.45+ refuses
    ("Please use HIP_VISIBLE_DEVICES instead"): the node gets the devices in
    HIP and no ROCR. Older Rays read ROCR: the devices in ROCR, and no HIP."""
    ranks = ({"ROCR_VISIBLE_DEVICES": "2"}, {"ROCR_VISIBLE_DEVICES": "3"})
    amd, = found(*ranks)
    assert amd.ids == ("2", "3")
    assert amd.env == {"HIP_VISIBLE_DEVICES": "2,3", "ROCR_VISIBLE_DEVICES": None}
    assert accelerators.node_environment([amd], ranks[0]) == amd.env
    old, = accelerators.devices(list(ranks), compat.gpu_variables("2.44.1"))
    assert old.env == {"ROCR_VISIBLE_DEVICES": "2,3", "HIP_VISIBLE_DEVICES": None}
    assert accelerators.node_environment([old], ranks[0]) == {"ROCR_VISIBLE_DEVICES": "2,3"}
    # Both set: HIP indexes ROCR's list, per rank; the node gets the devices.
    amd, = found({"ROCR_VISIBLE_DEVICES": "4,5", "HIP_VISIBLE_DEVICES": "1"},
                 {"ROCR_VISIBLE_DEVICES": "6,7", "HIP_VISIBLE_DEVICES": "0"})
    assert amd.ids == ("5", "6")
    assert amd.env == {"HIP_VISIBLE_DEVICES": "5,6", "ROCR_VISIBLE_DEVICES": None}
    # HIP alone: the union, as for CUDA.
    amd, = found({"HIP_VISIBLE_DEVICES": "0"}, {"HIP_VISIBLE_DEVICES": "1"})
    assert amd.env == {"HIP_VISIBLE_DEVICES": "0,1", "ROCR_VISIBLE_DEVICES": None}


def test_intel_selector_reaches_ray_in_the_variable_it_reads():
    """A ZE mask stays the union on every Ray (it masks below what Ray sets);
    a oneAPI selector alone becomes a ZE mask for Ray 2.58+, which sets ZE
    per task (an old selector would then index within that task's mask)."""
    ranks = ({"ONEAPI_DEVICE_SELECTOR": "level_zero:0"},
             {"ONEAPI_DEVICE_SELECTOR": "level_zero:1"})
    intel, = found(*ranks)
    assert intel.env == {"ZE_AFFINITY_MASK": "0,1", "ONEAPI_DEVICE_SELECTOR": None}
    old, = accelerators.devices(list(ranks), compat.gpu_variables("2.57.0"))
    assert old.env == {"ONEAPI_DEVICE_SELECTOR": "level_zero:0,1"}
    assert found({"ONEAPI_DEVICE_SELECTOR": "level_zero:gpu"}) == []
    assert found({"ONEAPI_DEVICE_SELECTOR": "*:*"}) == []
    masked = [{"ZE_AFFINITY_MASK": "0.1", "ONEAPI_DEVICE_SELECTOR": "level_zero:0"}]
    for version in ("2.57.0", "2.60.0"):
        intel, = accelerators.devices(masked, compat.gpu_variables(version))
        assert intel.env == {"ZE_AFFINITY_MASK": "0.1"}


def test_slurm_sets_several_vendors_at_once_each_is_handed_on():
    """Slurm's gres/gpu may set CUDA, ROCR and ZE to the same list: NVIDIA
    counts first, and every vendor's devices are handed on."""
    ranks = [{"CUDA_VISIBLE_DEVICES": str(i), "ROCR_VISIBLE_DEVICES": str(i),
              "ZE_AFFINITY_MASK": str(i)} for i in range(2)]
    vendors = found(*ranks)
    assert [d.vendor for d in vendors] == ["NVIDIA", "AMD", "Intel"]
    assert accelerators.node_environment(vendors, ranks[0]) == {
        "CUDA_VISIBLE_DEVICES": "0,1", "ROCR_VISIBLE_DEVICES": None,
        "HIP_VISIBLE_DEVICES": "0,1", "ZE_AFFINITY_MASK": "0,1"}
    # What the rank already has is not repeated.
    one = [{"HIP_VISIBLE_DEVICES": "0,1"}]
    assert accelerators.node_environment(found(*one), one[0]) == {}


# ---------------------------------------------------------------- memory
def test_memory_from_slurm_cgroup_or_left_to_ray():
    found = resources.job_memory({"SLURM_MEM_PER_NODE": "8192"}, 4, 1, 1, None, 100 * GIB)
    assert found.value == 8 * GIB and "SLURM_MEM_PER_NODE" in found.source
    found = resources.job_memory({"SLURM_MEM_PER_CPU": "1024"}, 4, 1, 1, None, 100 * GIB)
    assert found.value == 4 * GIB
    found = resources.job_memory({}, 4, 1, 1, 16 * GIB, 100 * GIB)
    assert found.value == 16 * GIB and "cgroup" in found.source
    assert resources.job_memory({}, 4, 1, 1, None, 100 * GIB).value is None
    # --node-per-rank: 4 nodes on the host each get a quarter, not Ray's ~all.
    found = resources.job_memory({}, 1, 1, 4, None, 100 * GIB)
    assert found.value == 25 * GIB and "shared by 4 ranks" in found.source


def test_object_store_from_memory_and_shm():
    store = resources.object_store_bytes(40 * GIB, 1, 100 * GIB)
    assert store.value == int(0.3 * 40 * GIB) and "30%" in store.source
    store = resources.object_store_bytes(40 * GIB, 2, 2 * GIB)  # small /dev/shm caps it
    assert store.value == int(0.8 * 2 * GIB / 2) and "/dev/shm" in store.source
    # A container's 64 MB /dev/shm: the store goes into files, sized from memory.
    store = resources.object_store_bytes(40 * GIB, 1, 64 * 2**20)
    assert store.value == int(0.3 * 40 * GIB) and "in files" in store.source
    assert resources.shm_too_small(64 * 2**20, 1)
    assert resources.shm_too_small(2 * GIB, 8)  # 8 nodes share 2 GiB: 205 MiB each
    assert not resources.shm_too_small(2 * GIB, 2) and not resources.shm_too_small(None, 1)


def test_lsf_cpus_from_the_hosts_slots():
    env = {"LSB_JOBID": "7", "LSB_MCPU_HOSTS": "batch1 1 h1.lsf.example 42 h2 42"}
    found = resources.cpus(env, 1, 1, 64, None, host="h1")
    assert found.value == 42 and "LSB_MCPU_HOSTS: 42 slots on h1" in found.source
    found = resources.cpus(env, 1, 6, 64, None, host="h2.lsf.example")
    assert found.value == 7 and "shared by 6 ranks" in found.source
    # A host LSF does not name: the affinity decides, as without LSF.
    assert "LSB" not in resources.cpus(env, 1, 1, 4, None, host="h9").source


def test_memory_args_respect_the_users_ray_args():
    memory = resources.Found(10 * GIB, "SLURM_MEM_PER_NODE=10240M")
    args = resources.memory_args([], memory, 1, 50 * GIB, 100 * GIB)
    assert args["--object-store-memory"].value == 3 * GIB
    assert args["--memory"].value == 7 * GIB
    args = resources.memory_args(["--object-store-memory=5"], memory, 1, 50 * GIB, None)
    assert args["--object-store-memory"].value is None


# ------------------------------------------------------------- placement
def probe(rank, host, ip, affinity=(0, 1), env=None, ip_source="test", interface="eth0"):
    return Probe(rank=rank, host=host, ip=ip, ip_source=ip_source, interface=interface,
                 affinity=tuple(affinity),
                 cpu_quota=None, memory_limit=None, available_memory=64 * GIB,
                 shm_free=32 * GIB, env=env or {})


def test_one_node_per_host_with_all_its_ranks():
    probes = [probe(0, "a", "10.0.0.1", (0,)), probe(1, "a", "10.0.0.1", (1,)),
              probe(2, "b", "10.0.0.2", (0,)), probe(3, "b", "10.0.0.2", (1,)),
              probe(4, "c", "10.0.0.3", (0, 1, 2, 3))]
    nodes = placement.place(probes, make_options({}))
    assert [(n.rank, n.host, tuple(n.ranks)) for n in nodes] == [
        (0, "a", (0, 1)), (2, "b", (2, 3)), (4, "c", (4,))]
    assert [n.cpus.value for n in nodes] == [2, 2, 4]  # union of the ranks' affinity
    assert nodes[1].ray_args()[:4] == ["--node-ip-address", "10.0.0.2", "--num-cpus", "2"]
    assert [n.rank for n in nodes if n.rank in (1, 2)] == [2], "rank 1 starts none"
    # ...and its processes run on that union (a launcher binds each rank to a core)
    assert [list(n.cpu_set) for n in nodes] == [[0, 1], [0, 1], []]
    assert ("    CPUs          2 (CPU affinity of this host's ranks: 2); its processes on "
            "CPUs 0-1") in nodes[0].describe_lines()


def test_node_per_rank_and_ranks_in_any_order():
    probes = [probe(1, "b", "10.0.0.2"), probe(0, "a", "10.0.0.1"), probe(2, "a", "10.0.0.1")]
    nodes = placement.place(probes, make_options({}, node_per_rank=True))
    assert [(n.rank, tuple(n.ranks), n.nodes_on_host) for n in nodes] == [
        (0, (0,), 2), (1, (1,), 1), (2, (2,), 2)]
    assert nodes[0].cpus.value == 1  # 2 CPUs shared by the host's 2 nodes
    assert not any(n.cpu_set for n in nodes)  # each node where its rank runs


def test_slurm_gpu_binding_gives_the_node_every_ranks_gpu():
    probes = [probe(i, "a", "10.0.0.1", env={"CUDA_VISIBLE_DEVICES": str(i)}) for i in range(4)]
    node, = placement.place(probes, make_options({}))
    assert node.gpus.value == 4 and node.env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    assert "Ray gets CUDA_VISIBLE_DEVICES=0,1,2,3" in node.describe()
    rocr = [probe(i, "a", "10.0.0.1", env={"ROCR_VISIBLE_DEVICES": str(i + 4)}) for i in range(2)]
    node, = placement.place(rocr, make_options({}))
    assert node.gpus.value == 2
    assert "GPUs 2 (ROCR_VISIBLE_DEVICES=4 | 5 (AMD)), Ray gets HIP_VISIBLE_DEVICES=4,5, " \
        "no ROCR_VISIBLE_DEVICES" in node.describe()


def test_collectives_follow_each_nodes_interface_unless_the_user_set_them():
    """Names may differ per host; a variable the user set is kept and logged."""
    probes = [probe(0, "a", "10.0.0.1", interface="ib0"),
              probe(1, "b", "10.0.0.2", interface="hsn1",
                    env={"NCCL_SOCKET_IFNAME": "=hsn0"})]
    head, worker = placement.place(probes, make_options({}))
    assert head.env == {"GLOO_SOCKET_IFNAME": "ib0", "NCCL_SOCKET_IFNAME": "ib0"}
    assert "collectives: GLOO_SOCKET_IFNAME, NCCL_SOCKET_IFNAME=ib0" in head.describe()
    assert worker.env == {"GLOO_SOCKET_IFNAME": "hsn1"}
    assert worker.describe().endswith(
        "collectives: GLOO_SOCKET_IFNAME=hsn1; NCCL_SOCKET_IFNAME==hsn0 (set by the user)")
    # A lone loopback node: its address and interface are left to Ray.
    node, = placement.place([probe(0, "a", "127.0.0.1", interface="lo")], make_options({}))
    assert node.env == {} and "collectives: left to gloo and NCCL" in node.describe()


def test_addresses_other_hosts_cannot_use_are_refused_before_anything_starts():
    with pytest.raises(UsageError, match="loopback.*--interface"):
        placement.place([probe(0, "a", "10.0.0.1"), probe(1, "b", "127.0.0.1")],
                        make_options({}))
    with pytest.raises(UsageError, match="both chose address 10.0.0.1"):
        placement.place([probe(0, "a", "10.0.0.1"), probe(1, "b", "10.0.0.1")],
                        make_options({}))
    with pytest.raises(UsageError, match="no such interface"):
        placement.place([probe(0, "a", None, ip_source="--interface ib0: no such interface")],
                        make_options({}))
    # One host alone may be on loopback; Ray is then left to pick.
    node, = placement.place([probe(0, "a", "127.0.0.1")], make_options({}))
    assert "--node-ip-address" not in node.ray_args()


def test_interface_address_and_error_lists_interfaces():
    assert network.interface_address("lo") == "127.0.0.1"
    assert network.interface_of("127.0.0.1") == "lo" and network.interface_of("192.0.2.99") is None
    with pytest.raises(network.AddressError, match="interfaces there: .*lo \\(127.0.0.1\\)"):
        network.interface_address("nonexistent0")
    assert network.reach("127.0.0.1", 1, timeout=2)  # nothing listens on port 1


def test_a_process_is_let_run_on_the_cpus_of_its_node():
    """resources.run_on: every thread of the process, and only a change
    counts as one."""
    cpus = sorted(os.sched_getaffinity(0))
    child = subprocess.Popen([sys.executable, "-c", "import sys, threading; "
                              "threading.Thread(target=sys.stdin.read).start(); sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        os.sched_setaffinity(child.pid, cpus[:1])
        assert resources.run_on(child.pid, cpus) is (len(cpus) > 1)
        for tid in os.listdir(f"/proc/{child.pid}/task"):
            assert sorted(os.sched_getaffinity(int(tid))) == cpus
        assert resources.run_on(child.pid, cpus) is False
    finally:
        child.kill()
        child.wait(timeout=10)


def test_probe_sees_this_process():
    mine = placement.probe(0, None, None, environ={"SLURM_CPUS_PER_TASK": "2", "HOME": "/"})
    assert mine.env == {"SLURM_CPUS_PER_TASK": "2"} and mine.affinity and mine.ip


def test_aprun_depth_beats_the_pbs_chunk():
    env = {"PBS_JOBID": "1", "NCPUS": "64", "ALPS_APP_DEPTH": "4"}
    assert resources.cpus(env, 2, 2, affinity=64, quota=None).value == 8


def test_nodes_up_meet_their_plans_by_rank_not_by_position():
    """--min-nodes starts with any subset of the planned nodes: with the
    middle one late, the last node must be checked against its own plan
    (paired by position, it was blamed for the middle node's address)."""
    from start_ray.lifecycle.head.bring_up import misplaced
    from start_ray.node.gcs_table import NodeInfo
    planned = placement.place([probe(0, "h0", "10.0.0.10"), probe(1, "h1", "10.0.0.11"),
                               probe(2, "h2", "10.0.0.12")], make_options({}))

    def up(rank, ip):
        return NodeInfo(node_id=f"n{rank}", ip=ip, hostname=f"h{rank}", alive=True, rank=rank,
                        resources={})

    assert misplaced([up(0, "10.0.0.10"), up(2, "10.0.0.12")], planned) == []
    assert misplaced([up(0, "10.0.0.10"), up(2, "10.0.0.99")], planned) == \
        ["rank 2 on h2: 10.0.0.99, expected 10.0.0.12"]
