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


pytestmark = pytest.mark.fast


def expected_counts(hosts: int, per_host: int) -> dict:
    """What one run of H hosts x R ranks (one node each) must show rank 0:
    the head up, H-1 joins, H hosts' stops; messages that rank 0's own code
    takes from its inbox (what it reads is its doing, not the world's):
    H-1 Joined, H-1 HostDone, R-1 Done from rank 0's own host."""
    return {"events": {"head_up": 1, "joined": hosts - 1, "stopped": hosts},
            "read_by_rank0": {"Joined": hosts - 1, "HostDone": hosts - 1,
                              **({"Done": per_host - 1} if per_host > 1 else {})}}


def simulate(tmp_path, hosts, per_host, **shape):
    return scale_sim.simulate(scale_sim.Shape(hosts, per_host, **shape), str(tmp_path))


@pytest.mark.parametrize("hosts,per_host", [(3, 2), (20, 4), (120, 8)])
def test_the_simulated_run_ends_well_with_the_protocols_counts(tmp_path, hosts, per_host):
    row = simulate(tmp_path, hosts, per_host)
    assert row["status"] == 0
    want = expected_counts(hosts, per_host)
    assert row["events"] == want["events"]
    assert row["read_by_rank0"] == want["read_by_rank0"], row["read_by_rank0"]
    assert row["unread_by_rank0"] == 0, "rank 0 left messages unread"
    assert row["looks_parsed"] >= 1, "the node table's looks are rank 0's work"
    assert row["nodes"] == hosts
    # the first workers join at once: all of them up to 16, then 4 x sqrt(N)
    # rounded up (docs/scale.md: 119 workers, 4 x 11); each other gets a Go
    slots = {2: 2, 19: 19, 119: 44}[hosts - 1]
    assert row["messages_from_rank0"] == hosts - 1 - slots
    assert set(row["phases"]) == {"agree", "own", "start", "run", "stop", "report"}
    summary = open(os.path.join(row["run_dir"], "summary.txt")).read()
    assert f"{hosts * (per_host - 1)} other rank(s) on {hosts} host(s)" in summary


def test_rank_0s_messages_grow_with_the_hosts_not_the_ranks(tmp_path):
    few = simulate(tmp_path / "a", 20, 2)
    many = simulate(tmp_path / "b", 20, 64)
    assert many["read_by_rank0"]["Done"] - few["read_by_rank0"]["Done"] == 64 - 2, \
        "only rank 0's own host's ranks speak to it directly"
    assert {k: v for k, v in many["read_by_rank0"].items() if k != "Done"} == \
        {k: v for k, v in few["read_by_rank0"].items() if k != "Done"}
    assert many["events"] == few["events"]
    assert many["summary_lines"] == few["summary_lines"]


def test_a_slow_world_still_ends_and_the_clock_is_virtual(tmp_path):
    """Joins of 30 s each and a driver of 10 minutes: simulated in seconds."""
    row = simulate(tmp_path, 40, 2, join_seconds=30.0, run_seconds=600.0)
    assert row["status"] == 0 and row["virtual_seconds"] > 600
    assert row["events"] == expected_counts(40, 2)["events"]


def test_the_benchmark_says_whether_the_targets_hold(tmp_path):
    """The limits (10 s of CPU with the idle cost measured in a real job
    added, 2 GiB, x12 from 1,000 to 10,000 hosts), each with its verdict."""
    rows = [{"hosts": 1000, "rank0_cpu_s": 0.3, "rank0_peak_mb": 10, "run_seconds": 60.0},
            {"hosts": 10000, "rank0_cpu_s": 3.0, "rank0_peak_mb": 90, "run_seconds": 60.0}]
    text = scale_sim.verdict(rows)
    assert "CPU at 10,000 hosts" in text and "growth from 1,000 to 10,000 hosts: x10.0" in text
    assert "FAILS" not in text and text.count("holds") == 3
    if scale_sim.idle_per_minute() is not None:
        assert "measured in a real job" in text
    rows[1].update(rank0_cpu_s=4.0, rank0_peak_mb=3000)
    text = scale_sim.verdict(rows)
    assert text.count("FAILS") == 2, text  # memory, and x13.3 growth
