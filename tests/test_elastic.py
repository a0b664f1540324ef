"""A cluster whose members change, with real MPI and real Ray: a worker node
that dies while its rank lives comes back (--rejoins), one that keeps dying
is given up, and --min-nodes starts the driver without a node that is late,
counting it in when it joins. The driver (tests/drivers/elastic.py) proves
each node it was promised by running a task pinned to it.

The raylet is found in /proc by the job variable of its environment
(tests/jobs.py: ray_process), not by start_ray's own bookkeeping.
"""

import json
import os
import signal
import time

import pytest

from jobs import (
    DRIVER,
    MPICH,
    MPIRUN,
    OPENMPI,
    PYTHON,
    ROOT,
    assert_nothing_left,
    driver_on_the_head,
    events_of,
    rank_processes,
    ray_process,
    wait_for_rank0_log,
)

ELASTIC = os.path.join(ROOT, "tests", "drivers", "elastic.py")
# From the raylet's SIGKILL until the driver sees a fresh node of that rank.
# Measured here (2 cores, 3 Ray nodes): 4-7 s in 6 runs, Open MPI and MPICH.
REJOIN_BOUND = 45.0


def elastic_args(tmp_path, ranks, *replaced):
    ready, out = tmp_path / "ready", tmp_path / "out.json"
    return ready, out, [ELASTIC, "--ready", str(ready), "--out", str(out), "--ranks",
                        str(ranks), "--replaced", *map(str, replaced)]


@driver_on_the_head
def test_a_worker_node_killed_mid_run_rejoins_and_the_driver_uses_it(jobs, tmp_path):
    """Under MPICH (the family most clusters run); under Open MPI the chaos
    case openmpi-raylet-driver (test_chaos.py) kills a raylet mid-run."""
    MPICH.skip_unless_here()
    ready, out, driver = elastic_args(tmp_path, 3, 1)
    running = jobs.start(3, ["--num-cpus", "1", *driver], mpi=MPICH)
    start = json.loads(running.wait_for_file(str(ready), timeout=180))["start"]
    assert sorted(start) == ["0", "1", "2"], start
    ray_process(running, "raylet", 1).kill()
    killed = time.monotonic()
    running.wait_for_file(str(out), timeout=REJOIN_BOUND + 30)
    back = time.monotonic() - killed
    result = running.wait(120)
    assert result.returncode == 0, result.output
    seen = json.loads(out.read_text())
    assert not seen["timed_out"], seen
    assert seen["end"]["1"] not in start["1"], "rank 1 has a new node"
    assert seen["cpus"] == {"0": 1.0, "1": 1.0, "2": 1.0}, "with the same resources"
    assert sorted(seen["tasks_ran_on"]) == sorted(seen["end"].values()), \
        "a task ran on every node, the rejoined one too"
    assert back < REJOIN_BOUND, f"the node came back after {back:.0f}s"
    print(f"rank 1's node came back {back:.1f}s after its raylet was killed")
    assert [e["rank"] for e in events_of(result, "node_lost")] == [1]
    assert [(e["rank"], e["rejoin"]) for e in events_of(result, "rejoined")] == [(1, 1)]
    head, worker = result.rank_logs()["rank-0.log"], result.rank_logs()["rank-1.log"]
    assert "rejoined the cluster (rejoin 1 of at most 3); 3 of 3 node(s) alive" in head
    assert "starting it anew (rejoin 1 of at most 3)" in worker
    assert "rejoined" in result.summary()
    assert_nothing_left(result)


@driver_on_the_head
def test_a_worker_node_that_keeps_dying_is_given_up_and_the_job_goes_on(jobs):
    running, _, release = jobs.hold(2, "--rejoins", "1")
    ray_process(running, "raylet", 1).kill()
    text = wait_for_rank0_log(running, "rejoined the cluster", REJOIN_BOUND)
    assert "rejoined the cluster (rejoin 1 of at most 1)" in text, text
    ray_process(running, "raylet", 1).kill()  # the new node's
    text = wait_for_rank0_log(running, "gives its Ray node up", 60)
    assert "gives its Ray node up after 1 rejoin(s) (--rejoins 1)" in text, text
    release()
    result = running.wait(120)
    assert result.returncode == 0, result.output
    assert "STILL WORKS 1" in result.stdout, "the cluster worked on with the head"
    assert [e["rank"] for e in events_of(result, "node_lost")] == [1, 1]
    assert [(e["rank"], e["rejoins"]) for e in events_of(result, "given_up")] == [(1, 1)]
    assert_nothing_left(result)


@driver_on_the_head
@pytest.mark.parametrize("ending", ["driver-exit", "sigterm"])
def test_the_job_ending_while_a_node_rejoins_leaves_nothing(jobs, ending):
    running, _, release = jobs.hold(2)
    ray_process(running, "raylet", 1).kill()

    def rejoining() -> bool:
        return any("starting it anew" in open(os.path.join(root, name)).read()
                   for root, _, names in os.walk(running.log_root) for name in names
                   if name == "rank-1.log")

    deadline = time.monotonic() + 60
    while not rejoining() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rejoining(), "rank 1 never started its node anew"
    # rank 1's new `ray start` is somewhere in its start now
    if ending == "driver-exit":
        release()
    else:  # as scancel does: every rank gets it
        for proc in rank_processes(running).values():
            proc.send_signal(signal.SIGTERM)
    result = running.wait(120)
    if ending == "driver-exit":
        assert result.returncode == 0, result.output
        assert "STILL WORKS 1" in result.stdout
        assert result.run_record()["cause"] is None
    else:  # the driver's status: Ray's own handler exits 15, a plain Python 143
        assert result.returncode in (signal.SIGTERM, 128 + signal.SIGTERM), result.output
        assert result.run_record()["status"] == result.returncode
    assert_nothing_left(result)


def test_min_nodes_starts_the_driver_without_a_late_node_and_counts_it_in(jobs, tmp_path):
    # Rank 2's `ray start` needs longer than --join-timeout (an overloaded
    # node): the driver starts without it, and its first attempt, left to
    # finish past the deadline, joins late.
    late = tmp_path / "late.sh"
    ray = os.path.join(os.path.dirname(PYTHON), "ray")
    late.write_text("#!/bin/sh\necho 'holding back'\nsleep 30\n"
                    f"exec {ray} \"$@\"\n")
    late.chmod(0o755)
    ready, out, driver = elastic_args(tmp_path, 3)
    start_ray = [PYTHON, "-m", "start_ray", "--num-cpus", "1", "--join-timeout", "20",
                 "--min-nodes", "2", *driver]
    cmd = [MPIRUN, *OPENMPI.launcher_args, "-np", "2", *start_ray, ":",
           "-np", "1", "env", f"START_RAY_RAY_COMMAND={late}", *start_ray]
    result = jobs.launch(cmd).wait(240)
    assert result.returncode == 0, result.output
    start = json.loads(ready.read_text())["start"]
    assert sorted(start) == ["0", "1"], "the driver started without rank 2"
    seen = json.loads(out.read_text())
    assert not seen["timed_out"] and sorted(seen["end"]) == ["0", "1", "2"], seen
    assert len(set(seen["tasks_ran_on"])) == 3, "a task ran on the late node too"
    head = result.rank_logs()["rank-0.log"]
    assert "2 of 3 Ray node(s) joined by the deadline: the driver starts with them " \
           "(--min-nodes 2); still joining, counted in when they do: rank 2 (" in head
    assert "joined late and is counted in; 3 of 3 node(s) alive" in head
    assert "joined the cluster at " in result.rank_logs()["rank-2.log"]
    assert "attempt 1)" in result.rank_logs()["rank-2.log"], "its first attempt joined"
    assert "to join failed" not in result.rank_logs()["rank-2.log"]
    assert [e["rank"] for e in events_of(result, "not_joined_yet")] == [2]
    assert [e["rank"] for e in events_of(result, "joined_late")] == [2]
    summary = result.summary()
    assert "not joined at the start (--min-nodes)" in summary and "joined late" in summary
    assert_nothing_left(result)


def test_min_nodes_does_not_wait_for_a_node_that_cannot_start(jobs, tmp_path):
    """A node whose `ray start` fails every time holds nothing up: the
    driver starts at the deadline with the nodes there, the failing rank
    keeps trying (its log says why) until the job ends, and nothing is left."""
    broken = tmp_path / "broken.sh"
    broken.write_text("#!/bin/sh\necho 'no route to the fabric'\nexit 1\n")
    broken.chmod(0o755)
    start_ray = [PYTHON, "-m", "start_ray", "--num-cpus", "1", "--join-timeout", "15",
                 "--min-nodes", "0.5", DRIVER]
    cmd = [MPIRUN, *OPENMPI.launcher_args, "-np", "1", *start_ray, ":",
           "-np", "1", "env", f"START_RAY_RAY_COMMAND={broken}", *start_ray]
    result = jobs.launch(cmd).wait(180)
    assert result.returncode == 0, result.output
    assert result.cluster_info()["alive_nodes"] == 1
    assert [e["rank"] for e in events_of(result, "not_joined_yet")] == [1]
    assert "attempt 1 to join failed (`ray start` exited with status 1: no route to the " \
           "fabric); retrying" in result.rank_logs()["rank-1.log"]
    assert_nothing_left(result)
