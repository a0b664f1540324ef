"""Host-aware placement with real MPI and real Ray: one Ray node per host by
default, and, across emulated hosts (network namespaces, see
emulated_hosts.py), the right address on every node, or one message when
there is none. Three hosts of two ranks each, and --interface, are rows of
the behaviour matrix (test_matrix.py)."""

import os

import pytest
from requirements import requires, skip_or_fail
from emulated_hosts import EmulatedHosts, unavailable

from jobs import DRIVER, MPIRUN, PYTHON, ROOT, assert_nothing_left

PER_HOST = {"START_RAY_NODE_PER_RANK": "0"}  # the default placement
AFFINITY = os.path.join(ROOT, "tests", "drivers", "affinity.py")


def test_ranks_of_one_host_share_one_ray_node(jobs):
    """Three ranks on this host: one Ray node offering what all three were
    given (here SLURM_CPUS_PER_TASK=1 each), started with the open-file
    limit raised; the two other ranks start nothing and wait."""
    cmd = ["prlimit", "--nofile=1024:8192", "--",
           *jobs.command(3, [DRIVER])]
    result = jobs.launch(cmd, {**PER_HOST, "SLURM_CPUS_PER_TASK": "1"}).wait(180)
    assert result.returncode == 0, result.output
    info = result.cluster_info()
    assert info["alive_nodes"] == 1 and info["ranks"] == [0]
    assert info["cpus"] == 3
    assert info["task_open_files"] == [8192], "Ray's workers get the hard limit"
    assert "placement: 1 Ray node(s), one per host" in result.stdout
    assert "for rank(s) 0-2" in result.rank0_log
    assert "CPUs 3 (SLURM_CPUS_PER_TASK=1 x 3 tasks" in result.rank0_log
    logs = result.rank_logs()
    assert sorted(logs) == ["rank-0.log", "rank-1.log", "rank-2.log"]
    for name in ("rank-1.log", "rank-2.log"):
        assert "the Ray node of rank 0 serves this rank too" in logs[name]
    assert "open files: soft limit raised from 1024 to 8192" in logs["rank-0.log"]
    assert "none left" in result.stdout
    assert_nothing_left(result)
    assert os.listdir(result.temp_root) == []


@requires("2-cpus", None if len(os.sched_getaffinity(0)) >= 2 else "needs 2 CPUs")
def test_a_node_runs_on_the_cpus_of_all_the_ranks_it_stands_for(jobs):
    """Open MPI binds each rank of a 2-rank job to a core of its own: the
    host's node offers both cores, and its processes (and the driver) run on
    both, not only on the core of the rank that started it."""
    cmd = [MPIRUN, "--bind-to", "core", "-np", "2", PYTHON, "-m", "start_ray", AFFINITY]
    result = jobs.launch(cmd, PER_HOST).wait(180)
    assert result.returncode == 0, result.output
    found = result.report("AFFINITY")
    assert found["task"] == found["raylet"] == found["driver"], found
    assert len(found["task"]) == found["cpus"] >= 2, found
    assert "the Ray node runs on CPUs" in result.rank0_log
    assert_nothing_left(result)


# ------------------------------------------------------------- multi-host
def emulated(make):
    why = unavailable()
    if why:
        skip_or_fail("netns", f"no emulated hosts on this machine: {why}")
    with make() as made:
        yield made


@pytest.fixture(scope="module")
def hosts():
    yield from emulated(EmulatedHosts)


@pytest.fixture(scope="module")
def two_networks():
    """Each host's name resolves to an address on eth0, which connects no
    two hosts; only eth1 does (the multi-NIC trap, emulated_hosts.py)."""
    yield from emulated(EmulatedHosts.two_networks)


def run_on_hosts(jobs, hosts, per_host, args, timeout=240):
    """mpirun started on h0, `per_host` ranks on each of h0, h1, h2."""
    names = ",".join(f"{name}:{per_host}" for name in hosts.names)
    mpirun = [MPIRUN, "--oversubscribe", "--map-by", f"ppr:{per_host}:node",
              "--host", names, "-np", str(per_host * len(hosts.names)),
              PYTHON, "-m", "start_ray", *args]
    return jobs.launch(hosts.command_on("h0", mpirun),
                       {**PER_HOST, **hosts.mpirun_env()}).wait(timeout)


def test_worker_that_cannot_reach_the_head_names_both_ends(jobs, hosts):
    """On ib0 the last host is cut off: the job fails at once with both
    hosts and addresses named, instead of retrying until the deadline."""
    result = run_on_hosts(jobs, hosts, 1, ["--interface", "ib0", DRIVER])
    assert result.returncode == 1, result.output
    assert f"cannot reach the Ray head at {hosts.address(0, 'ib0')}:" in result.stdout
    assert "(rank 0 on h0) from h2 (10.202.0.12, interface ib0)" in result.stdout
    assert result.seconds < 120
    assert "CLUSTER_INFO" not in result.stdout
    assert_nothing_left(result)


def test_unknown_interface_is_one_message_before_anything_starts(jobs, hosts):
    result = run_on_hosts(jobs, hosts, 1, ["--interface", "ib9", DRIVER], timeout=120)
    assert result.returncode == 2, result.output
    assert result.stderr.count("start_ray: error: --interface ib9: no such interface") == 1
    assert "eth0 (10.200.0.10)" in result.stderr
    assert "Ray head" not in result.stdout
    assert_nothing_left(result)


# ------------------------------------------------------- two networks per host
TORCH_DRIVER = os.path.join(ROOT, "drivers", "torch_allreduce.py")


def test_ray_train_all_reduces_across_hosts_on_the_named_network(jobs, two_networks):
    """An unmodified Ray Train TorchTrainer (gloo, one worker per host):
    gloo binds to the host name's address unless told otherwise, and that
    address is on eth0, which no other host reaches. With --interface eth1
    every Ray process gets GLOO_SOCKET_IFNAME=eth1, and the all-reduce and
    the DDP steps cross the hosts on eth1."""
    result = run_on_hosts(jobs, two_networks, 1, ["--interface", "eth1", TORCH_DRIVER])
    assert result.returncode == 0, result.output
    report = result.report("ALLREDUCE")
    workers = report["workers"]
    assert report["world"] == 3 and [w["sum"] for w in workers] == [6.0] * 3
    assert sorted(w["host"] for w in workers) == ["h0", "h1", "h2"]
    assert sorted(w["ip"] for w in workers) == [two_networks.address(i, "eth1")
                                                for i in range(3)]
    assert {w["GLOO_SOCKET_IFNAME"] for w in workers} == {"eth1"}
    assert {w["NCCL_SOCKET_IFNAME"] for w in workers} == {"eth1"}
    assert report["driver"] == {"GLOO_SOCKET_IFNAME": "eth1", "NCCL_SOCKET_IFNAME": "eth1"}
    assert result.rank0_log.count("collectives: GLOO_SOCKET_IFNAME, NCCL_SOCKET_IFNAME=eth1") == 3
    assert "none left" in result.stdout
    assert_nothing_left(result)


def test_without_interface_the_unreachable_head_is_named_at_once(jobs, two_networks):
    """The head takes its host name's address (eth0): the workers cannot
    reach it. The job fails well within the join deadline, naming the
    address and the interfaces to choose from; it does not hang."""
    result = run_on_hosts(jobs, two_networks, 1, ["--join-timeout", "60", TORCH_DRIVER],
                          timeout=120)
    assert result.returncode == 1, result.output
    head = two_networks.address(0, "eth0")
    assert f"cannot reach the Ray head at {head}:" in result.stdout
    assert any("choose a network that connects the hosts with --interface NAME (here: "
               f"eth0 ({two_networks.address(i, 'eth0')}), eth1 "
               f"({two_networks.address(i, 'eth1')})" in result.stdout for i in (1, 2))
    assert result.seconds < 60
    assert "ALLREDUCE" not in result.stdout
    assert_nothing_left(result)
