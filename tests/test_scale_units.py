"""The parts of start_ray that matter as jobs grow, in-process: join slots,
grouped host names, progress lines, the head's CPUs, limits too small for
a job's size. The real-process side: test_scale.py and
benchmarks/compare.py --per-host / --join-storm."""

import signal
import threading

import pytest
from fake_world import Script, World, options, tick_until
from test_placement_units import probe

from start_ray.host import placement, resources
from start_ray.lifecycle.agree.agreement import Layout
from start_ray.mpi.ranks import HostRanks
from start_ray.lifecycle.head import bring_up, join_slots
from start_ray.options import make_options
from start_ray.record import logs

pytestmark = pytest.mark.fast  # in-process: `make test-fast`


@pytest.mark.parametrize("workers, slots", [
    (1, 1), (3, 3), (16, 16), (20, 20), (100, 40), (400, 80), (1000, 128), (5000, 128)])
def test_default_join_slots_grow_with_the_root_of_n(workers, slots):
    assert join_slots.default_slots(workers) == slots


def test_join_slots_given_are_capped_by_the_workers():
    assert join_slots.slots_for(5, 3) == 3
    assert join_slots.slots_for(2, 8) == 2
    assert join_slots.slots_for(20, None) == 20


def test_join_slots_grant_the_next_rank_when_a_join_ends():
    slots = join_slots.JoinSlots([1, 2, 3, 4, 5], 2)
    assert slots.in_flight == {1, 2} == join_slots.first([1, 2, 3, 4, 5], 2)
    assert slots.finished(2) == [3]
    assert slots.finished(2) == []  # said twice (Joined, then seen alive): once
    assert slots.finished(1) == [4]
    assert slots.finished(3) == [5]
    assert slots.finished(4) == [] and slots.finished(5) == []
    assert slots.peak == 2 and not slots.in_flight and not slots.waiting


def test_a_rejoin_asks_for_a_slot_only_while_the_joins_are_bounded():
    slots = join_slots.JoinSlots([1, 2, 3], 1)
    assert slots.finished(1) == [2] and slots.finished(2) == [3]
    assert slots.request(1) == [], "rank 3 still joins: rank 1 waits"
    assert slots.finished(3) == [1]
    # by each worker node's place among the 3 (0: the first): 1 slot
    assert join_slots.needs_go(0, 3, 1, rejoin=True)
    assert not join_slots.needs_go(0, 3, 1, rejoin=False)
    assert join_slots.needs_go(1, 3, 1, rejoin=False)
    everyone = join_slots.JoinSlots([1, 2, 3], 3)
    assert everyone.request(2) == [] and not everyone.waiting, "nobody waits for a Go"
    assert not join_slots.needs_go(1, 3, 3, rejoin=True)


def test_hostlist_groups_numbered_hosts_like_slurm():
    assert logs.hostlist(["nid003", "nid001", "nid002", "nid010", "login"]) == \
        "nid[001-003,010],login"
    assert logs.hostlist(["a9", "a10", "a11"]) == "a9,a[10-11]"  # widths differ
    assert logs.hostlist(["vm", "vm"]) == "vm"


def test_many_ranks_are_named_in_one_line():
    probes = [probe(r, f"nid{r // 4:04d}", f"10.0.{r // 4 // 250}.{r // 4 % 250 + 1}")
              for r in range(1001)]
    nodes = placement.place(probes, make_options({}))
    hosts = tuple(HostRanks(node.host, node.rank, node.ranks) for node in nodes)
    layout = Layout(hosts=hosts, nodes=tuple(nodes))
    text = layout.name_ranks(list(range(4, 1001, 4)))
    assert text == "250 ranks (4-1000 every 4) on nid[0001-0250]"
    assert layout.name_ranks([4, 8]) == "rank 4 (nid0001), rank 8 (nid0002)"
    assert layout.name_ranks([5]) == "rank 5 (nid0001)", "a rank without a node too"


def test_progress_lines_are_rare_and_only_on_change(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(bring_up.time, "monotonic", lambda: now[0])
    lines = []

    class Log:
        def info(self, text, *args):
            lines.append(text % args)

    progress = bring_up.Progress(1000, 59.0, Log())
    for second, joined in [(1, 10), (5, 100), (10, 312), (12, 400), (20, 400), (21, 500),
                           (40, 999), (60, 1000)]:
        now[0] = 100.0 + second
        progress.show(joined)
    # not before 10 s, at most every 10 s, never the same count twice, not the last
    assert lines == ["312/1000 nodes joined (51 s)", "400/1000 nodes joined (61 s)",
                     "999/1000 nodes joined (81 s)"]


def test_the_node_table_is_read_less_often_as_n_grows():
    assert bring_up.table_interval(4, 0.2) == 0.2
    assert bring_up.table_interval(1000, 0.2) == 2.0


def test_scale_warnings_name_the_limit_and_the_fix():
    assert resources.scale_warnings(20, 20, 20000, 1024) == []
    open_files, arp = resources.scale_warnings(1000, 1000, 4096, 1024)
    assert "limit here is 4096" in open_files and "ulimit -n" in open_files
    assert "65535" in open_files
    assert "gc_thresh3" in arp and "1000 hosts" in arp
    assert resources.scale_warnings(16, 16, 1024, None)[0].startswith("open files")


def test_the_head_keeps_its_cpus_in_big_jobs():
    def place(hosts, **given):
        probes = [probe(i, f"h{i}", f"10.0.0.{i + 1}") for i in range(hosts)]
        return placement.place(probes, placement_options(**given))

    small = place(4)
    assert small[0].cpus.value == small[1].cpus.value == 2
    big = place(32)
    assert big[0].cpus.value == 0 and "--head-num-cpus" in big[0].cpus.source
    assert big[1].cpus.value == 2
    assert "--num-cpus" in big[0].ray_args() and big[0].ray_args()[
        big[0].ray_args().index("--num-cpus") + 1] == "0"
    assert place(32, head_num_cpus=2)[0].cpus.value == 2
    assert place(4, head_num_cpus=0)[0].cpus.value == 0


def placement_options(**given):
    from start_ray.options import make_options
    return make_options(environ={}, **given)


def test_join_slots_bound_the_joins_in_flight(tmp_path):
    """Rank 0 grants slots: with 2 slots and 5 workers, never more than two
    starts between `start attempt 1` and `node up`, and every node joins."""
    world = World(6, {rank: Script(start_seconds=0.1) for rank in range(1, 6)})
    statuses = world.run(options(tmp_path, join_slots=2), lambda *_: 0)
    assert statuses == {rank: 0 for rank in range(6)}
    joining, peak = set(), 0
    for _, rank, what in world.events:
        if rank and what == "start attempt 1":
            joining.add(rank)
            peak = max(peak, len(joining))
        elif rank and what == "node up":
            joining.discard(rank)
    assert peak == 2
    head = world.log_text(0)
    assert "waiting for 5 worker node(s) to join, 2 at a time" in head
    assert "at most 2 node(s) joining at once" in head
    for rank in (3, 4, 5):
        assert "waiting for a join slot (2 node(s) join at a time)" in world.log_text(rank)
        assert "got a join slot after" in world.log_text(rank)


def test_a_rejoin_waits_for_its_slot_when_the_joins_are_bounded(tmp_path):
    world = World(4)

    def payload(running):
        world.latest_nodes()[3].end()
        return tick_until(running.tick, lambda: "rejoined the cluster" in world.log_text(0))

    statuses = world.run(options(tmp_path, join_slots=1), payload)
    assert statuses == {rank: 0 for rank in range(4)}
    rejoin = world.log_text(3).split("starting it anew")[1]
    assert "waiting for a join slot (1 node(s) join at a time)" in rejoin
    assert "got a join slot after" in rejoin and "rejoined the cluster at" in rejoin


def test_a_worker_waiting_for_a_slot_leaves_when_the_job_ends(tmp_path):
    world = World(3, {1: Script(hangs=True)})

    def sigterm_once_rank_1_joins():
        world.wait_for(1, "start attempt 1")
        world.inboxes[0].record(signal.SIGTERM)

    threading.Thread(target=sigterm_once_rank_1_joins, daemon=True).start()
    statuses = world.run(options(tmp_path, join_slots=1), lambda *_: 0)
    assert statuses == {0: 128 + signal.SIGTERM, 1: 0, 2: 0}, statuses
    assert "rank 0 ended the job while this rank waited to join" in world.log_text(2)
    assert not world.said(2, "start attempt 1")


def test_a_slot_that_never_comes_fails_at_the_deadline(tmp_path):
    world = World(3, {1: Script(hangs=True)})
    statuses = world.run(options(tmp_path, join_slots=1, join_timeout=1), lambda *_: 0)
    assert statuses[0] == 1, statuses
    # rank 0's deadline and rank 2's are the same moment: either notices first
    waiting = world.log_text(2)
    assert ("no join slot came before the deadline (--join-timeout)" in waiting or
            "rank 0 ended the job while this rank waited to join" in waiting), waiting
    assert not world.said(2, "start attempt 1")

