"""benchmarks/scale_sim.py at small sizes: rank 0's real code against the
simulated world ends well, with the events and messages the protocol
says (the same counts a real run has: tests/test_matrix.py compares one
with a real run on three emulated hosts), and rank 0's costs grow with
the hosts, not with the ranks."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
import scale_sim  # noqa: E402

from start_ray.lifecycle.head import join_slots  # noqa: E402

pytestmark = pytest.mark.fast


def expected_counts(hosts: int, per_host: int) -> dict:
    """What one run of H hosts x R ranks (one node each) must show rank 0:
    the head up, H-1 joins, H hosts' stops; messages: H-1 Joined, H-1
    HostDone, R-1 Done from rank 0's own host."""
    return {"events": {"head_up": 1, "joined": hosts - 1, "stopped": hosts},
            "messages_to_rank0": 2 * (hosts - 1) + per_host - 1}


def simulate(tmp_path, hosts, per_host, **shape):
    return scale_sim.simulate(scale_sim.Shape(hosts, per_host, **shape), str(tmp_path))


@pytest.mark.parametrize("hosts,per_host", [(3, 2), (20, 4), (120, 8)])
def test_the_simulated_run_ends_well_with_the_protocols_counts(tmp_path, hosts, per_host):
    row = simulate(tmp_path, hosts, per_host)
    assert row["status"] == 0
    want = expected_counts(hosts, per_host)
    assert row["events"] == want["events"]
    assert row["messages_to_rank0"] == want["messages_to_rank0"]
    assert row["nodes"] == hosts
    # the first `slots` workers join at once; each other gets a Go (from rank 0)
    slots = join_slots.slots_for(hosts - 1, None)
    assert row["messages_from_rank0"] == hosts - 1 - slots
    assert set(row["phases"]) == {"agree", "own", "start", "run", "stop", "report"}
    summary = open(os.path.join(row["run_dir"], "summary.txt")).read()
    assert f"{hosts * (per_host - 1)} other rank(s) on {hosts} host(s)" in summary


def test_rank_0s_messages_grow_with_the_hosts_not_the_ranks(tmp_path):
    few = simulate(tmp_path / "a", 20, 2)
    many = simulate(tmp_path / "b", 20, 64)
    assert many["messages_to_rank0"] - few["messages_to_rank0"] == 64 - 2, \
        "only rank 0's own host's ranks speak to it directly"
    assert many["events"] == few["events"]
    assert many["summary_lines"] == few["summary_lines"]


def test_a_slow_world_still_ends_and_the_clock_is_virtual(tmp_path):
    """Joins of 30 s each and a driver of 10 minutes: simulated in seconds."""
    row = simulate(tmp_path, 40, 2, join_seconds=30.0, run_seconds=600.0)
    assert row["status"] == 0 and row["virtual_seconds"] > 600
    assert row["events"] == expected_counts(40, 2)["events"]
