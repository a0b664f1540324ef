"""summary.txt's timeline stays short at any job size (pure; no processes)."""

import json
import os
import time

import pytest

from start_ray.host.placement import Probe, place
from start_ray.lifecycle.agree import software
from start_ray.lifecycle.agree.agreement import Agreement, Plan
from start_ray.lifecycle.head.ledger import Ledger
from start_ray.options import make_options
from start_ray.record import events, logs, summary

pytestmark = pytest.mark.fast  # in-process: `make test-fast`

GIB = 2**30


def agreement(tmp_path, hosts, per_host):
    probes = [Probe(rank=r, host=f"nid{r // per_host:05d}", ip=f"10.0.{r // per_host // 250}."
                    f"{r // per_host % 250 + 1}", ip_source="test", interface="eth0",
                    affinity=(r % per_host,),
                    cpu_quota=None, memory_limit=None, available_memory=64 * GIB,
                    shm_free=32 * GIB, env={}) for r in range(hosts * per_host)]
    nodes = place(probes, make_options(environ={}))
    plan = Plan(run_id="20261121-000000-1", job_tag="abcd1234", auth_token=None)
    return Agreement(plan=plan, rank=0, size=len(probes), hosts=tuple(p.host for p in probes),
                     nodes=tuple(nodes), run_dir=str(tmp_path), runs=software.this_rank())


def test_a_thousand_ranks_read_in_a_few_lines(tmp_path):
    agreed = agreement(tmp_path, hosts=250, per_host=4)
    ledger = Ledger(agreed, started=0.0)
    ledger.note(events.HeadUp(0, 2.0))
    for rank in agreed.node_ranks[1:]:
        ledger.joined(rank, 1 if rank != 8 else 3, 5.0 + rank / 1000)
    ledger.note(events.NodeLost(500, 60.0, "`ray start` exited with status 1: raylet died"))
    for rank in range(agreed.size):
        if rank != 500:
            ledger.note(events.Stopped(rank, 70.0))
    ledger.note(events.NoReport(500, 75.0))
    began = time.perf_counter()
    path = summary.write(ledger, 0, None)
    assert time.perf_counter() - began < 2.0, "the summary of 1,000 ranks is quick"
    text = open(path).read()
    lines = text.splitlines()
    assert len(lines) < 16, text
    assert max(len(line) for line in lines) < 200, text
    assert "ranks 1-3,5-7,9-11,...,997-999 (750 ranks) (250 hosts): served by its host's node; " \
        "stopped, none left at 70.0s" in text
    assert "rank 8 (nid00002): joined (attempt 3) at 5.0s; stopped, none left at 70.0s" in text
    assert "rank 500 (nid00125): joined (attempt 1) at 5.5s; lost its node" in text
    # the other 247 worker nodes are one line, with the spread of their join times
    assert "ranks 4-996 every 4" not in text  # 8 and 500 are apart, so: a shortened list
    assert any(line.startswith("  ranks 4,12,16,...,996 (247 ranks) (247 hosts): joined "
                               "(attempt 1) at 5.0-6.0s; stopped") for line in lines), text
    assert "rank 500 (nid00125):" in text and "no Ray logs were collected" in text
    # summary.json holds the same events, as records a program can read back
    with open(os.path.join(agreed.run_dir, "summary.json")) as handle:
        record = json.load(handle)
    assert record["status"] == 0 and record["ranks"] == 1000 and len(record["nodes"]) == 250
    back = [events.from_record(item) for item in record["events"]]
    assert back == ledger.events
    assert events.NodeLost(500, 60.0, "`ray start` exited with status 1: raylet died") in back
    assert [e for e in back if isinstance(e, events.NodeJoined) and e.rank == 8] == [
        events.NodeJoined(8, 5.008, 3)]


def test_the_rank_s_own_word_on_its_join_replaces_the_gcs_s(tmp_path):
    ledger = Ledger(agreement(tmp_path, hosts=2, per_host=1), started=0.0)
    ledger.joined(1, at=4.0)  # seen alive in the GCS
    ledger.joined(1, at=5.0)  # seen again: nothing new
    assert ledger.events == [events.NodeJoined(1, 4.0, None)]
    ledger.joined(1, 2, 3.5)  # the rank says it joined at its second attempt
    assert ledger.events == [events.NodeJoined(1, 3.5, 2)]
    assert summary.lines(ledger)[1].endswith("joined (attempt 2) at 3.5s")


def test_compact_rank_lists():
    assert logs.compact([0, 1, 2, 3, 8]) == "0-3,8"
    assert logs.compact(list(range(4, 1000, 4))) == "4-996 every 4"
    assert logs.compact([5]) == "5"
