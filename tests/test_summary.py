"""summary.txt's timeline stays short at any job size (pure; no processes)."""

from start_ray import logs, software, summary
from start_ray.agreement import Agreement, Plan
from start_ray.options import make_options
from start_ray.placement import Probe, place

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
    timeline = summary.Timeline(agreed, started=0.0)
    timeline.note(0, "head up", 2.0)
    for rank in agreed.node_ranks[1:]:
        timeline.joined(rank, 1 if rank != 8 else 3, 5.0 + rank / 1000)
    timeline.note(500, "lost its node: `ray start` exited with status 1: raylet died", 60.0)
    for rank in range(agreed.size):
        if rank != 500:
            timeline.note(rank, "stopped, none left", 70.0)
    timeline.note(500, "no teardown report", 75.0)
    path = summary.write(timeline, 0, None)
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


def test_compact_rank_lists():
    assert logs.compact([0, 1, 2, 3, 8]) == "0-3,8"
    assert logs.compact(list(range(4, 1000, 4))) == "4-996 every 4"
    assert logs.compact([5]) == "5"
