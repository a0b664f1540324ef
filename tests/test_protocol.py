"""The rank protocol in-process, in milliseconds: threads act as ranks
(tests/fake_world.py), the lifecycle, roles and agreement are the real code.
These are the cases that are hard to stage with real MPI and Ray; the
real-mpirun tests (test_lifecycle.py, test_faults.py, ...) stay the
acceptance layer."""

import signal
import threading
import time

import pytest

from fake_world import WAIT, Script, World, options
from start_ray import api, head_rank, lifecycle
from start_ray.errors import ClusterError

SIGTERM_STATUS = 128 + signal.SIGTERM


def done_at_once(info, inbox, on_tick):
    return 0


def never_runs(info, inbox, on_tick):
    raise AssertionError("the payload ran although the cluster never came up")


def tick_until(on_tick, done, after=0.0):
    """The payload's loop: on_tick until `done()`, then `after` seconds more."""
    until = time.monotonic() + WAIT
    while not done() and time.monotonic() < until:
        on_tick()
        time.sleep(0.005)
    assert done(), "the payload waited in vain"
    stop_at = time.monotonic() + after
    while time.monotonic() < stop_at:
        on_tick()
        time.sleep(0.005)
    return 0


def after(world, rank, what, action):
    """Run `action` (from a thread of its own) once `rank` did `what`."""
    def go():
        world.wait_for(rank, what)
        action()
    threading.Thread(target=go, daemon=True).start()


def test_a_whole_job_stops_the_others_before_rank_0_stops_its_own_node(tmp_path):
    world = World(3)
    statuses = world.run(options(tmp_path), done_at_once)
    assert statuses == {0: 0, 1: 0, 2: 0}
    assert world.index(0, "table closed") < world.index(0, "send Stop to 1")
    for rank in (1, 2):
        assert world.index(0, "send Stop to 2") < world.index(rank, "stopped own")
        assert world.index(rank, "send Done to 0") < world.index(0, "stopped own")
    assert all(world.said(rank, "finished clean=True") for rank in range(3))
    assert "all Ray processes stopped (3 process(es) on 3 rank(s), none left)" \
        in world.log_text(0)


def test_stop_during_a_join_backoff_ends_the_rank_without_another_attempt(tmp_path):
    world = World(2, {1: Script(failed_starts=99)})
    after(world, 1, "attempt 1 failed", lambda: world.inboxes[0].record(signal.SIGTERM))
    began = time.monotonic()
    statuses = world.run(options(tmp_path), never_runs)
    assert statuses == {0: SIGTERM_STATUS, 1: 0}
    assert not world.said(1, "start attempt 2"), "it retried after Stop"
    assert time.monotonic() - began < 2.0
    worker = world.log_text(1)
    assert "attempt 1 to join failed" in worker and "could not join" not in worker
    assert "received SIGTERM during start-up: stopping the job" in world.log_text(0)


@pytest.mark.parametrize("hanging", [0, 1], ids=["while-the-head-starts", "while-a-worker-joins"])
def test_a_signal_during_start_up_stops_every_rank(tmp_path, hanging):
    world = World(2, {hanging: Script(hangs=True)})
    after(world, hanging, "start attempt 1", lambda: world.inboxes[0].record(signal.SIGTERM))
    statuses = world.run(options(tmp_path), never_runs)
    # A worker whose head never came up says so with 1; one that was
    # joining when rank 0 ended the job did nothing wrong: 0.
    assert statuses == {0: SIGTERM_STATUS, 1: 1 if hanging == 0 else 0}
    assert world.said(0, "stopped own") and world.said(1, "stopped own")
    assert "received SIGTERM during start-up" in world.log_text(0)
    if hanging == 1:
        assert "rank 0 ended the job (status 143) while this rank was joining" in world.log_text(1)
    else:
        assert "the Ray head could not start on rank 0" in world.log_text(1)


def test_a_lost_node_during_the_run_is_logged_once_and_the_job_goes_on(tmp_path):
    world = World(3)

    def payload(info, inbox, on_tick):
        world.latest_nodes()[2].end()
        return tick_until(on_tick, lambda: world.said(2, "send Lost to 0"), after=0.05)

    statuses = world.run(options(tmp_path), payload)
    assert statuses == {0: 0, 1: 0, 2: 0}
    head = world.log_text(0)
    assert head.count("lost its Ray node") == 1, head  # the GCS and the rank both said so
    assert "the job goes on with the remaining 2 node(s)" in head
    assert "the Ray node of this rank ended" in world.log_text(2)


def test_fail_fast_stops_the_job_when_a_node_is_lost(tmp_path):
    world = World(3)

    def payload(info, inbox, on_tick):
        world.latest_nodes()[1].end()
        return tick_until(on_tick, lambda: False)  # on_tick raises first

    statuses = world.run(options(tmp_path, fail_fast=True), payload)
    assert statuses[0] == 1 and statuses[1] == statuses[2] == 0
    head = world.log_text(0)
    assert "stopping the job (--fail-fast): rank 1 (" in head
    assert world.index(0, "send Stop to 2") < world.index(0, "stopped own")


@pytest.mark.parametrize("node_lost", [True, False], ids=["lost-rank-excused", "silent-rank-named"])
def test_collect_done_waits_briefly_for_ranks_whose_node_was_lost(tmp_path, monkeypatch,
                                                                   node_lost):
    monkeypatch.setattr(head_rank, "LOST_RANK_PATIENCE", 0.2)
    # A lost rank is excused after the patience, long before the deadline.
    monkeypatch.setattr(lifecycle, "REPORT_SLACK", WAIT if node_lost else 0.5)
    world = World(3, {2: Script(mute_after_loss=True)})

    def payload(info, inbox, on_tick):
        if node_lost:  # rank 2 dies with its node: rank 0 hears it from the GCS
            world.latest_nodes()[2].end()
            head = world.log_text
            return tick_until(on_tick, lambda: "rank 2 (" in head(0) and "lost" in head(0))
        world.muted.add(2)  # rank 2 goes silent, its node still up
        return 0

    began = time.monotonic()
    statuses = world.run(options(tmp_path), payload)
    assert statuses[0] == 0
    head = world.log_text(0)
    if node_lost:
        assert "all Ray processes stopped" in head and "no teardown report" not in head
    else:
        assert "no teardown report from rank 2 (" in head
        assert "all Ray processes stopped" not in head
    assert time.monotonic() - began < 2.0


def test_a_failing_ray_init_in_the_api_stops_the_cluster_on_every_rank(tmp_path, monkeypatch):
    world = World(2)
    settings = dict(node_per_rank=True, poll_interval=0.01, join_timeout=5, stop_timeout=0.1,
                    num_cpus=1, log_dir=str(tmp_path / "logs"))

    def refuse(address, token):
        raise ConnectionError("(fake) the GCS refused the connection")

    monkeypatch.setattr(api, "attach", refuse)
    bodies = []

    class FakeCluster(api.cluster):
        def __init__(self, rank):
            super().__init__(**settings)
            self.rank = rank

        def _job(self, inbox):
            return world.job(self.rank, self.options)

    def on_rank(rank):
        with FakeCluster(rank):
            bodies.append(rank)
        return "no error"

    statuses = world.run(None, never_runs, on_rank=on_rank)
    assert bodies == []
    assert isinstance(statuses[0], ClusterError), statuses
    assert "ray.init() could not attach to the cluster: (fake) the GCS refused" \
        in str(statuses[0])
    assert isinstance(statuses[1], ClusterError), statuses
    assert "rank 0 ended the cluster with status 1" in str(statuses[1])
    assert world.said(0, "stopped own") and world.said(1, "stopped own")
    assert world.index(0, "send Stop to 1") < world.index(0, "stopped own")


def test_a_node_table_helper_killed_during_the_joins_is_restarted(tmp_path):
    world = World(3, {2: Script(start_seconds=0.3)})
    after(world, 2, "start attempt 1", lambda: world.owned[0].table.kill())
    statuses = world.run(options(tmp_path), done_at_once)
    assert statuses == {0: 0, 1: 0, 2: 0}
    assert world.said(0, "the fake node table restarted")
    head = world.log_text(0)
    assert "the fake node table (pid" in head and "was killed by SIGKILL while rank 0 " \
        "waited for the nodes to join: restarted it (pid" in head, head


def test_a_node_table_helper_killed_twice_ends_the_job_naming_it(tmp_path):
    world = World(2, {1: Script(start_seconds=1.0)})

    def kill_twice():
        table = world.owned[0].table
        table.kill()
        world.wait_for(0, "the fake node table restarted")
        table.kill()

    after(world, 1, "start attempt 1", kill_twice)
    began = time.monotonic()
    statuses = world.run(options(tmp_path, join_timeout=8), never_runs)
    assert statuses[0] == 1, statuses
    assert time.monotonic() - began < 3.0, "it waited for the join deadline"
    head = world.log_text(0)
    assert ("the fake node table (pid" in head and "was killed by SIGKILL while rank 0 "
            "waited for the nodes to join, and it had been restarted 1 time(s)") in head
    assert "did not join" not in head, "the nodes were blamed"


def test_a_worker_whose_watchdog_dies_twice_during_the_run_ends_the_job(tmp_path):
    world = World(2)

    def payload(info, inbox, on_tick):
        watchdog = world.owned[1].watchdog
        watchdog.kill()
        world.wait_for(1, "the fake watchdog restarted")
        watchdog.kill()
        return tick_until(on_tick, lambda: False)  # on_tick raises first

    statuses = world.run(options(tmp_path), payload)
    assert statuses[0] == 1, statuses
    head = world.log_text(0)
    assert "rank 1 (" in head and ") failed: the fake watchdog (pid" in head, head
    assert "while this rank waited for the end of the job" in head
    assert world.said(1, "stopped own")
