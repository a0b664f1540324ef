"""summary.txt's timeline stays short at any job size (pure; no processes)."""

import json
import os
import time

import pytest

from start_ray.host.placement import Probe, place
from start_ray.lifecycle.agree.agreement import Layout
from start_ray.mpi.ranks import HostRanks
from start_ray.lifecycle.head import ledger as ledger_module
from start_ray.lifecycle.head.ledger import Ledger
from start_ray.mpi.messages import HostDone
from start_ray.mpi.ranks import RankSet
from start_ray.options import make_options
from start_ray.record import events, summary

pytestmark = pytest.mark.fast  # in-process: `make test-fast`

GIB = 2**30


def layout_of(hosts, per_host):
    probes = [Probe(rank=r, host=f"nid{r // per_host:05d}", ip=f"10.0.{r // per_host // 250}."
                    f"{r // per_host % 250 + 1}", ip_source="test", interface="eth0",
                    affinity=(r % per_host,),
                    cpu_quota=None, memory_limit=None, available_memory=64 * GIB,
                    shm_free=32 * GIB, env={}) for r in range(hosts * per_host)]
    nodes = place(probes, make_options(environ={}))
    return Layout(hosts=tuple(HostRanks(node.host, node.rank, node.ranks) for node in nodes),
                  nodes=tuple(nodes))


def facts_of(tmp_path, layout, ledger):
    return summary.Facts(
        run_id="20261121-000000-1", run_dir=str(tmp_path),
        size=sum(len(host.ranks) for host in layout.hosts),
        hosts=layout.hosts,
        nodes=[summary.Node(n.rank, n.host, n.ip, n.ranks) for n in layout.nodes],
        events=ledger.events)


def test_a_thousand_ranks_read_in_a_few_lines(tmp_path, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(ledger_module.time, "monotonic", lambda: now[0])
    layout = layout_of(hosts=250, per_host=4)
    ledger = Ledger(layout, started=0.0)
    ledger.note(events.HeadUp(0, 2.0))
    for rank in layout.node_ranks[1:]:
        ledger.joined(rank, 1 if rank != 8 else 3, 5.0 + rank / 1000)
    now[0] = 60.0
    ledger.lose(500, "`ray start` exited with status 1: raylet died")
    now[0] = 70.0
    for host in layout.hosts:  # each host's leader reports, but 500's host
        if host.leader != 500:
            ledger.host_done(host.leader, HostDone(4, (), host.ranks, RankSet()))
    now[0] = 75.0
    ledger.host_done(500, HostDone(0, (), RankSet(), RankSet.span(500, 504)))
    began = time.perf_counter()
    path = summary.write(facts_of(tmp_path, layout, ledger), 0, None)
    assert time.perf_counter() - began < 2.0, "the summary of 1,000 ranks is quick"
    text = open(path).read()
    lines = text.splitlines()
    assert len(lines) < 16, text
    assert max(len(line) for line in lines) < 200, text
    assert "rank 0 (nid00000): head up at 2.0s; stopped, none left at 70.0s" in text
    assert "rank 8 (nid00002): joined (attempt 3) at 5.0s; stopped, none left at 70.0s" in text
    assert "rank 500 (nid00125): joined (attempt 1) at 5.5s; lost its node: `ray start` " \
        "exited with status 1: raylet died at 60.0s; no teardown report at 75.0s" in text
    assert "ranks 501-503 (nid00125): no teardown report at 75.0s" in text
    # the other 247 worker nodes are one line, with the spread of their join times
    assert "  ranks 4,12-496 every 4,504-996 every 4 (247 hosts): joined (attempt 1) at " \
        "5.0-6.0s; stopped, none left at 70.0s" in lines, text
    # the 747 ranks the nodes served, and nothing happened to: one line
    assert "  747 other rank(s) on 249 host(s) (nid[00000-00124,00126-00249]): served by " \
        "their host's node, with it to the end" in text
    assert "rank 500 (nid00125):" in text and "no Ray logs were collected" in text
    # summary.json holds the same events, as records a program can read back
    with open(os.path.join(str(tmp_path), "summary.json")) as handle:
        record = json.load(handle)
    assert record["status"] == 0 and record["ranks"] == 1000 and len(record["nodes"]) == 250
    assert record["hosts"][125] == {"name": "nid00125", "leader": 500, "ranks": "500-503"}
    back = [events.from_record(item) for item in record["events"]]
    assert back == ledger.events
    assert events.NodeLost(500, 60.0, "`ray start` exited with status 1: raylet died") in back
    assert [e for e in back if isinstance(e, events.NodeJoined) and e.rank == 8] == [
        events.NodeJoined(8, 5.008, 3)]


def test_the_rank_s_own_word_on_its_join_replaces_the_gcs_s(tmp_path):
    layout = layout_of(hosts=2, per_host=1)
    ledger = Ledger(layout, started=0.0)
    ledger.joined(1, at=4.0)  # seen alive in the GCS
    ledger.joined(1, at=5.0)  # seen again: nothing new
    assert ledger.events == [events.NodeJoined(1, 4.0, None)]
    ledger.joined(1, 2, 3.5)  # the rank says it joined at its second attempt
    assert ledger.events == [events.NodeJoined(1, 3.5, 2)]
    assert summary.lines(facts_of(tmp_path, layout, ledger))[1].endswith(
        "joined (attempt 2) at 3.5s")


def test_hosts_of_one_name_each_report_their_own_nodes():
    """A Flux test instance's brokers are MPI's hosts with one name (`vm`):
    under --node-per-rank each leader's teardown report covers its own
    node, not the other's (keyed by name, rank 0 waited in vain for a
    report of rank 1's as one of its own host's, for the whole deadline)."""
    probes = [Probe(rank=r, host="vm", ip="10.0.0.1", ip_source="test", interface="eth0",
                    affinity=(r,), cpu_quota=None, memory_limit=None,
                    available_memory=64 * GIB, shm_free=32 * GIB, env={}) for r in range(2)]
    nodes = place(probes, make_options(environ={}, node_per_rank=True))
    layout = Layout(hosts=tuple(HostRanks("vm", n.rank, RankSet.of([n.rank])) for n in nodes),
                    nodes=tuple(nodes))
    ledger = Ledger(layout, started=0.0)
    assert ledger.node_ranks_of == {0: [0], 1: [1]}
