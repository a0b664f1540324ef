"""The rank protocol in-process, in milliseconds: threads act as ranks
(tests/fake_world.py), the lifecycle, roles and agreement are the real code.
These are the cases that are hard to stage with real MPI and Ray; the
real-mpirun tests (test_lifecycle.py, test_faults.py, ...) stay the
acceptance layer."""

import contextlib
import signal
import socket
import threading
import time

import pytest
from fake_world import WAIT, FakeOwner, FakeTable, Script, World, options, tick_until

from start_ray.entry import api
from start_ray.errors import ClusterError, UsageError
from start_ray.lifecycle import job as lifecycle
from start_ray.lifecycle.head import teardown as head_teardown
from start_ray.lifecycle.head import watch
from start_ray.lifecycle.phases import NEXT, Outcome, Phase
from start_ray.procs.signals import SignalInbox
from start_ray.record import events

pytestmark = pytest.mark.fast  # in-process: `make test-fast`

SIGTERM_STATUS = 128 + signal.SIGTERM
# Every rank of the fake world runs on this host: its name, whatever it is.
HOST = socket.gethostname()


def done_at_once(running):
    return 0


def never_runs(running):
    raise AssertionError("the payload ran although the cluster never came up")


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
    assert world.jobs[0].cause == "received SIGTERM"
    assert world.jobs[1].history == FAILED_START[:3] + [P.SERVE, P.STOP, P.REPORT, P.DONE]
    assert not world.ledger_events(events.JoinFailed), "a join stopped by rank 0 did not fail"


@pytest.mark.parametrize("hanging", [0, 1], ids=["while-the-head-starts", "while-a-worker-joins"])
def test_a_signal_during_start_up_stops_every_rank(tmp_path, hanging):
    world = World(2, {hanging: Script(hangs=True)})
    after(world, hanging, "start attempt 1", lambda: world.inboxes[0].record(signal.SIGTERM))
    statuses = world.run(options(tmp_path), never_runs)
    # A worker whose head never came up says so with 1; one that was
    # joining when rank 0 ended the job did nothing wrong: 0.
    assert statuses == {0: SIGTERM_STATUS, 1: 1 if hanging == 0 else 0}
    assert world.said(0, "stopped own") and world.said(1, "stopped own")
    assert world.jobs[0].cause == "received SIGTERM"
    assert world.jobs[0].history == FAILED_START
    if hanging == 1:
        assert "rank 0 ended the job (status 143) while this rank was joining" in world.log_text(1)
    else:
        assert "the Ray head could not start on rank 0" in world.log_text(1)


def test_a_lost_node_during_the_run_is_logged_once_and_the_job_goes_on(tmp_path):
    world = World(3)

    def payload(running):
        world.latest_nodes()[2].end()
        return tick_until(running.tick, lambda: world.said(2, "send Lost to 0"), after=0.05)

    statuses = world.run(options(tmp_path, rejoins=0), payload)
    assert statuses == {0: 0, 1: 0, 2: 0}
    # the GCS and the rank both said so: one loss, one event, one log line
    assert [event.rank for event in world.ledger_events(events.NodeLost)] == [2]
    assert world.jobs[0].role.ledger.lost == {2}
    assert world.log_text(0).count("lost its Ray node") == 1
    assert "the job goes on with the remaining 2 node(s)" in world.log_text(0)
    assert not world.said(2, "start attempt 2"), "--rejoins 0 brings nothing back"
    assert not world.ledger_events(events.GivenUp), "nothing was given up: no rejoin was asked"


def rejoined(world, times=1):
    """Whether rank 0 has counted rank 2's node back in `times` times."""
    return world.log_text(0).count(f"rank 2 ({HOST}) rejoined the cluster") >= times


def test_a_node_that_dies_is_started_anew_and_rejoins(tmp_path):
    world = World(3)

    def payload(running):
        world.latest_nodes()[2].end()
        return tick_until(running.tick, lambda: rejoined(world))

    statuses = world.run(options(tmp_path), payload)
    assert statuses == {0: 0, 1: 0, 2: 0}
    ledger = world.jobs[0].role.ledger
    assert ledger.lost == set() and ledger.members == {0, 1, 2}
    assert [(e.rank, e.rejoin) for e in world.ledger_events(events.NodeRejoined)] == [(2, 1)]
    # what was left of the dead node went before the new `ray start`
    assert world.index(2, "node ended") < world.index(2, "stopped own") \
        < world.index(2, "start attempt 2")
    head, worker = world.log_text(0), world.log_text(2)
    assert "rejoin 1 of at most 3); 3 of 3 node(s) alive" in head
    assert "starting it anew (rejoin 1 of at most 3)" in worker
    assert "rejoined the cluster at 127.0.0.1:" in worker
    assert all(not node.alive() for node in world.launchers[2].nodes)


def test_a_look_at_the_gcs_older_than_a_rejoin_does_not_lose_the_node_again(tmp_path,
                                                                           monkeypatch):
    # The node-table helper's answer can predate the rejoin it is read after.
    monkeypatch.setattr(watch, "NODE_WATCH_INTERVAL", 0.01)
    world, frozen = World(2), {}
    real_view = FakeTable.alive
    monkeypatch.setattr(FakeTable, "alive",
                        lambda table: frozen["view"] if frozen else real_view(table))
    monkeypatch.setattr(FakeTable, "looked_at",
                        property(lambda table: frozen.get("at", time.monotonic())))

    def payload(running):
        world.latest_nodes()[1].end()
        frozen.update(view=real_view(world.launchers[0].table), at=time.monotonic())
        assert 1 not in frozen["view"]
        return tick_until(running.tick, lambda: "rejoined the cluster" in world.log_text(0),
                          after=0.2)

    assert world.run(options(tmp_path), payload) == {0: 0, 1: 0}
    assert [e.rank for e in world.ledger_events(events.NodeLost)] == [1], "lost twice"
    assert world.jobs[0].role.ledger.members == {0, 1}


def test_a_node_that_dies_before_the_cluster_is_up_rejoins_before_the_driver(tmp_path):
    world = World(3, {2: Script(start_seconds=0.5)})
    after(world, 1, "node up", lambda: world.launchers[1].nodes[0].end())
    seen = []

    def payload(running):
        seen.append(sorted(node.rank for node in running.info.nodes))
        return 0

    statuses = world.run(options(tmp_path), payload)
    assert statuses == {0: 0, 1: 0, 2: 0}
    assert seen == [[0, 1, 2]]
    ledger = world.jobs[0].role.ledger
    assert ledger.lost == set() and ledger.members == {0, 1, 2}
    assert [(e.rank, e.rejoin) for e in world.ledger_events(events.NodeRejoined)] == [(1, 1)]
    head = world.log_text(0)
    assert f"rank 1 ({HOST}) rejoined the cluster (rejoin 1 of at most 3)\n" in head
    assert "the job goes on" not in head, "nothing went on yet"


def test_a_node_lost_after_stop_does_not_keep_its_rank_waiting_at_the_end(tmp_path):
    # Rank 0 reads rank 1's Lost only after its Stop said "leave together":
    # rank 1 waits for rank 0 at the end, so rank 0 must come.
    world = World(2)

    def payload(running):
        world.latest_nodes()[1].end()
        world.wait_for(1, "send Lost to 0")
        return 0  # no tick: the news waits for the teardown

    began = time.monotonic()
    assert world.run(options(tmp_path), payload) == {0: 0, 1: 0}
    assert world.jobs[0].role.state.together
    assert set(world.parting) == {0, 1}, "both came to the end together"
    assert time.monotonic() - began < 3.0, "rank 1 waited for rank 0 in vain"


def test_a_node_that_keeps_dying_is_given_up_after_its_rejoins(tmp_path):
    world = World(3)

    def payload(running):
        world.latest_nodes()[2].end()
        tick_until(running.tick, lambda: rejoined(world))
        world.latest_nodes()[2].end()
        return tick_until(running.tick, lambda: "gives its Ray node up" in world.log_text(0))

    statuses = world.run(options(tmp_path, rejoins=1), payload)
    assert statuses == {0: 0, 1: 0, 2: 0}, "the job goes on without it"
    assert [(e.rank, e.rejoins) for e in world.ledger_events(events.GivenUp)] == [(2, 1)]
    assert [e.rank for e in world.ledger_events(events.NodeLost)] == [2, 2]
    assert f"rank 2 ({HOST}) gives its Ray node up after 1 rejoin(s) (--rejoins 1)" \
        in world.log_text(0)
    assert "given up (--rejoins)" in world.log_text(2)
    assert len(world.launchers[2].nodes) == 2, "no third start"


def test_the_end_of_the_job_during_a_rejoin_stops_the_rejoining_node(tmp_path):
    world = World(3, {2: Script(hang_attempts=(2,))})

    def payload(running):
        world.latest_nodes()[2].end()
        return tick_until(running.tick, lambda: world.said(2, "start attempt 2"))

    began = time.monotonic()
    statuses = world.run(options(tmp_path), payload)
    assert statuses == {0: 0, 1: 0, 2: 0}
    assert time.monotonic() - began < 2.0, "the rejoin held the teardown up"
    assert all(not node.alive() for node in world.launchers[2].nodes)
    assert world.said(2, "stopped own") and world.said(2, "finished clean=True")
    assert "no teardown report" not in world.log_text(0)


def test_min_nodes_starts_the_driver_without_a_late_node_and_counts_it_in(tmp_path):
    # rank 2's first start fails at once; its retry comes after the deadline
    world = World(3, {2: Script(failed_starts=1)})
    seen = []

    def payload(running):
        seen.append(len(running.info.nodes))
        return tick_until(running.tick, lambda: "joined late" in world.log_text(0))

    statuses = world.run(options(tmp_path, min_nodes=2, join_timeout=0.3), payload)
    assert statuses == {0: 0, 1: 0, 2: 0}
    assert seen == [2], "the driver started with the 2 nodes up at the deadline"
    assert [e.rank for e in world.ledger_events(events.NotJoinedYet)] == [2]
    assert [e.rank for e in world.ledger_events(events.JoinedLate)] == [2]
    assert world.jobs[0].role.ledger.members == {0, 1, 2}
    head = world.log_text(0)
    assert "2 of 3 Ray node(s) joined by the deadline: the driver starts with them " \
        f"(--min-nodes 2); still joining, counted in when they do: rank 2 ({HOST})" in head
    assert f"rank 2 ({HOST}) joined late and is counted in; 3 of 3 node(s) alive" in head


def test_min_nodes_lets_a_slow_late_join_finish_its_attempt(tmp_path):
    """A node whose `ray start` takes longer than --join-timeout joins late
    in its first attempt: past the deadline no attempt is cut by start_ray's
    clock (cutting it at --join-timeout started it again and again, and the
    node never joined)."""
    world = World(3, {1: Script(start_seconds=0.8)})

    def payload(running):
        assert sorted(node.rank for node in running.info.nodes) == [0, 2]
        return tick_until(running.tick, lambda: "joined late" in world.log_text(0))

    statuses = world.run(options(tmp_path, min_nodes=2, join_timeout=0.3), payload)
    assert statuses == {0: 0, 1: 0, 2: 0}
    assert len(world.launchers[1].nodes) == 1, "the first attempt joined"
    assert [e.rank for e in world.ledger_events(events.JoinedLate)] == [1]


def test_a_head_that_dies_while_the_workers_join_ends_the_job_at_once(tmp_path):
    """Rank 0 used to wait out the join deadline and then blame the workers."""
    world = World(3, {1: Script(start_seconds=5), 2: Script(start_seconds=5)})
    after(world, 1, "start attempt 1", lambda: world.launchers[0].nodes[0].end())
    began = time.monotonic()
    statuses = world.run(options(tmp_path, join_timeout=8), never_runs)
    assert statuses[0] == 1 and time.monotonic() - began < 3.0
    cause = world.jobs[0].cause
    assert cause.startswith("the Ray head on ") and "(rank 0) ended" in cause, cause
    assert "the nodes that were joining cannot join" in cause
    assert not world.ledger_events(events.NeverJoined), "the workers were blamed"


def test_min_nodes_out_of_reach_at_the_deadline_fails_naming_the_missing(tmp_path):
    world = World(3, {1: Script(hangs=True), 2: Script(hangs=True)})
    statuses = world.run(options(tmp_path, min_nodes=0.5, join_timeout=0.3), never_runs)
    assert statuses == {0: 1, 1: 0, 2: 0}
    cause = world.jobs[0].cause
    assert cause.startswith("timed out after 0.3s: 2 of 3 Ray node(s) did not join; 2 are "
                            f"needed (--min-nodes): rank 1 ({HOST}), rank 2 ({HOST})"), cause
    assert sorted(e.rank for e in world.ledger_events(events.NeverJoined)) == [1, 2]
    assert all(not node.alive() for rank in (1, 2) for node in world.launchers[rank].nodes)


def test_fail_fast_stops_the_job_when_a_node_is_lost(tmp_path):
    world = World(3)

    def payload(running):
        world.latest_nodes()[1].end()
        return tick_until(running.tick, lambda: False)  # on_tick raises first

    statuses = world.run(options(tmp_path, fail_fast=True), payload)
    assert statuses[0] == 1 and statuses[1] == statuses[2] == 0
    assert world.jobs[0].cause.startswith("stopping the job (--fail-fast): rank 1 (")
    assert [event.rank for event in world.ledger_events(events.NodeLost)] == [1]
    assert world.index(0, "send Stop to 2") < world.index(0, "stopped own")


@pytest.mark.parametrize("node_lost", [True, False], ids=["lost-rank-excused", "silent-rank-named"])
def test_collect_done_waits_briefly_for_ranks_whose_node_was_lost(tmp_path, monkeypatch,
                                                                   node_lost):
    monkeypatch.setattr(head_teardown, "LOST_RANK_PATIENCE", 0.2)
    # A lost rank is excused after the patience, long before the deadline.
    monkeypatch.setattr(lifecycle, "REPORT_SLACK", WAIT if node_lost else 0.5)
    world = World(3, {2: Script(mute_after_loss=True)})

    def payload(running):
        if node_lost:  # rank 2 dies with its node: rank 0 hears it from the GCS
            world.latest_nodes()[2].end()
            head = world.log_text
            return tick_until(running.tick, lambda: "rank 2 (" in head(0) and "lost" in head(0))
        world.muted.add(2)  # rank 2 goes silent, its node still up
        return 0

    began = time.monotonic()
    # A rank that died with its node brings nothing back (with rejoins its
    # new node could be up before the GCS was looked at: a race, not a loss).
    statuses = world.run(options(tmp_path, rejoins=0), payload)
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

        def _open(self):
            return contextlib.nullcontext(world.job(self.rank, self.options))

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
    after(world, 2, "start attempt 1", lambda: world.launchers[0].table.kill())
    statuses = world.run(options(tmp_path), done_at_once)
    assert statuses == {0: 0, 1: 0, 2: 0}
    assert world.said(0, "the fake node table restarted")
    head = world.log_text(0)
    assert "the fake node table (pid" in head and "was killed by SIGKILL while rank 0 " \
        "waited for the nodes to join: restarted it (pid" in head, head
    assert sorted(event.rank for event in world.ledger_events(events.NodeJoined)) == [1, 2]


def test_a_node_table_helper_killed_twice_ends_the_job_naming_it(tmp_path):
    world = World(2, {1: Script(start_seconds=1.0)})

    def kill_twice():
        table = world.launchers[0].table
        table.kill()
        world.wait_for(0, "the fake node table restarted")
        table.kill()

    after(world, 1, "start attempt 1", kill_twice)
    began = time.monotonic()
    statuses = world.run(options(tmp_path, join_timeout=8), never_runs)
    assert statuses[0] == 1, statuses
    assert time.monotonic() - began < 3.0, "it waited for the join deadline"
    assert world.jobs[0].cause.startswith("the fake node table (pid")
    assert ("was killed by SIGKILL while rank 0 waited for the nodes to join, and it had "
            "been restarted 1 time(s)") in world.jobs[0].cause
    assert not world.ledger_events(events.NeverJoined), "the nodes were blamed"


def test_a_worker_whose_watchdog_dies_twice_during_the_run_ends_the_job(tmp_path):
    world = World(2)

    def payload(running):
        watchdog = world.owned[1].watchdog
        watchdog.kill()
        world.wait_for(1, "the fake watchdog restarted")
        watchdog.kill()
        return tick_until(running.tick, lambda: False)  # on_tick raises first

    statuses = world.run(options(tmp_path), payload)
    assert statuses[0] == 1, statuses
    cause = world.jobs[0].cause
    assert cause.startswith("rank 1 (") and ") failed: the fake watchdog (pid" in cause, cause
    assert "while this rank waited for the end of the job" in cause
    assert [event.rank for event in world.ledger_events(events.RankFailed)] == [1]
    assert world.said(1, "stopped own")


# ------------------------------------------------------------------ phases
P = Phase
HEAD_PATH = [P.AGREE, P.OWN, P.START, P.RUN, P.STOP, P.REPORT, P.DONE]
WORKER_PATH = [P.AGREE, P.OWN, P.START, P.SERVE, P.STOP, P.REPORT, P.DONE]
FAILED_START = [P.AGREE, P.OWN, P.START, P.STOP, P.REPORT, P.DONE]


def test_every_transition_taken_is_one_the_table_allows():
    """The table is the diagram: every phase but DONE leads on, DONE nowhere,
    and each path below uses only its edges."""
    assert set(NEXT) == set(Phase) and NEXT[P.DONE] == frozenset()
    for path in (HEAD_PATH, WORKER_PATH, FAILED_START, [P.AGREE, P.DONE]):
        assert all(b in NEXT[a] for a, b in zip(path, path[1:])), path


def test_a_transition_outside_the_table_is_refused(tmp_path):
    job = World(1).job(0, options(tmp_path))
    with pytest.raises(RuntimeError, match="no transition from AGREE on CLUSTER_UP"):
        job.go(Outcome.CLUSTER_UP)


def test_a_whole_job_goes_through_the_phases_in_order(tmp_path):
    world = World(3)
    assert world.run(options(tmp_path), done_at_once) == {0: 0, 1: 0, 2: 0}
    assert world.jobs[0].history == HEAD_PATH
    assert world.jobs[1].history == world.jobs[2].history == WORKER_PATH


def test_bad_input_goes_from_agree_to_done_on_every_rank(tmp_path):
    world = World(2)

    def on_rank(rank):
        job = world.job(rank, options(tmp_path))
        job.payload, job.check = never_runs, refuse_input
        world.jobs[rank] = job
        return job.advance(P.DONE)

    def refuse_input():
        raise UsageError("(fake) no such driver")

    assert world.run(None, never_runs, on_rank=on_rank) == {0: 2, 1: 2}
    assert world.jobs[0].history == world.jobs[1].history == [P.AGREE, P.DONE]
    assert not world.said(0, "set up") and not world.said(1, "set up")


def test_a_head_that_fails_sends_every_rank_from_start_to_stop(tmp_path):
    world = World(2, {0: Script(failed_starts=1)})
    statuses = world.run(options(tmp_path), never_runs)
    assert statuses == {0: 1, 1: 1}
    assert world.jobs[0].history == world.jobs[1].history == FAILED_START
    assert world.said(1, "stopped own")


def test_an_unexpected_error_while_owning_stops_the_rank_and_aborts_the_job(tmp_path,
                                                                         monkeypatch):
    world = World(2)
    real_set_up = FakeOwner.set_up

    def set_up(owner):
        if owner.rank == 1:
            raise OSError("(fake) the temp dir cannot be made")
        real_set_up(owner)

    monkeypatch.setattr(FakeOwner, "set_up", set_up)
    statuses = world.run(options(tmp_path), never_runs)
    assert isinstance(statuses[1], OSError)
    assert world.jobs[1].history == [P.AGREE, P.OWN, P.STOP, P.REPORT, P.DONE]
    assert world.aborted == 1, "no rank may wait for rank 1 forever"


def test_a_lost_node_in_the_run_phase_under_fail_fast_goes_from_run_to_stop(tmp_path):
    world = World(2)

    def payload(running):
        world.latest_nodes()[1].end()
        return tick_until(running.tick, lambda: False)  # the tick raises first

    statuses = world.run(options(tmp_path, fail_fast=True), payload)
    assert statuses[0] == 1
    assert world.jobs[0].history == HEAD_PATH
    assert world.jobs[0].cause.startswith("stopping the job (--fail-fast): rank 1")


# --------------------------------------------------------------- API body
class FakeCluster(api.cluster):
    """api.cluster whose Job runs in the fake world (ranks are threads)."""

    def __init__(self, world, rank, **given):
        settings = dict(node_per_rank=True, poll_interval=0.01, join_timeout=5,
                        stop_timeout=0.1, num_cpus=1)
        settings.update(given)
        super().__init__(**settings)
        self.world, self.rank = world, rank

    def _open(self):
        self.world.inboxes[self.rank] = SignalInbox([self.options.walltime_signal])
        job = self.world.job(self.rank, self.options)
        self.world.jobs[self.rank] = job
        return contextlib.nullcontext(job)


def api_world(tmp_path, size, body, monkeypatch, **given):
    """Every rank runs `with FakeCluster(...) as info: if info: body(info)`;
    each rank's outcome (status, or the exception it ended with)."""
    monkeypatch.setattr(api, "attach", lambda address, token: None)
    monkeypatch.setattr(api, "detach", lambda: None)
    world = World(size)

    def on_rank(rank):
        with FakeCluster(world, rank, log_dir=str(tmp_path / "logs"), **given) as info:
            if info:
                body(world, info)
        return world.jobs[rank].status

    return world, world.run(None, never_runs, on_rank=on_rank)


def test_the_walltime_signal_during_an_api_body_is_seen_and_ends_nothing(tmp_path,
                                                                        monkeypatch):
    seen = []

    def body(world, info):
        world.inboxes[0].record(signal.SIGUSR1)  # as the signal handler would
        seen.append(info.walltime_warning.is_set())
        seen.append(world.jobs[0].phase)

    world, statuses = api_world(tmp_path, 2, body, monkeypatch)
    assert seen == [True, P.RUN], "the body saw it, the cluster stayed up"
    assert statuses == {0: 0, 1: 0}
    assert world.jobs[0].history == HEAD_PATH
    assert world.jobs[1].history == WORKER_PATH


@pytest.mark.parametrize("fail_fast", [False, True], ids=["goes-on", "fail-fast"])
def test_a_node_lost_during_an_api_body_is_watched(tmp_path, monkeypatch, fail_fast):
    def body(world, info):
        world.latest_nodes()[1].end()
        until = time.monotonic() + WAIT
        while not world.jobs[0].role.ledger.lost and time.monotonic() < until:
            time.sleep(0.01)  # the watch thread reads the news meanwhile

    world, statuses = api_world(tmp_path, 2, body, monkeypatch, fail_fast=fail_fast)
    head = world.log_text(0)
    assert "rank 1 (" in head and "lost its Ray node" in head, head
    if fail_fast:
        # A thread can get no signal: the body ended, then the error was raised.
        assert isinstance(statuses[0], ClusterError), statuses
        assert str(statuses[0]).startswith("stopping the job (--fail-fast): rank 1")
        assert isinstance(statuses[1], ClusterError)
        assert world.jobs[0].status == 1
    else:
        assert statuses == {0: 0, 1: 0}
        assert "the job goes on with the remaining 1 node(s)" in head


# ------------------------------------------------ the head's GCS in place
def kill_the_gcs(world, times):
    """A payload that kills the head's GCS `times` times, ticking after each."""
    def payload(running):
        for _ in range(times):
            world.latest_nodes()[0].kill_gcs()
            running.tick()
        return 0
    return payload


def test_a_dead_gcs_is_started_again_in_place_and_the_job_goes_on(tmp_path):
    world = World(2)
    statuses = world.run(options(tmp_path, gcs_restarts=2), kill_the_gcs(world, 2))
    assert statuses == {0: 0, 1: 0}
    assert world.latest_nodes()[0].gcs_restarts == 2
    assert [event.restart for event in world.ledger_events(events.GcsRestarted)] == [1, 2]
    assert world.log_text(0).count("is back in place") == 2
    assert "restart 2 of at most 2" in world.log_text(0)


def test_a_gcs_that_dies_past_its_restarts_ends_the_job_naming_why(tmp_path):
    world = World(2)
    statuses = world.run(options(tmp_path, gcs_restarts=1), kill_the_gcs(world, 2))
    assert statuses[0] == 1
    assert world.jobs[0].cause.startswith(
        "the Ray head's GCS on ") and "died again (gcs_server was killed by SIGKILL) after " \
        "1 restart(s) in place (--gcs-restarts 1)" in world.jobs[0].cause
    assert world.latest_nodes()[0].gcs_restarts == 1


def test_a_gcs_that_cannot_come_back_ends_the_job_naming_why(tmp_path):
    world = World(2, {0: Script(gcs_fails_again=True)})
    statuses = world.run(options(tmp_path), kill_the_gcs(world, 1))
    assert statuses[0] == 1
    assert "could not be started again in place (gcs_server started again exited with " \
        "status 1 at once: (fake))" in world.jobs[0].cause


def test_a_gcs_that_dies_between_the_watchs_two_looks_is_still_brought_back(tmp_path):
    """The watch looks at the GCS, then at the node's processes: a GCS that
    died in between was seen dead by the second look only, and the job
    ended as 'its gcs_server ended' (1 run in 16 of test_gcs.py's)."""
    world = World(2)

    def payload(running):
        world.latest_nodes()[0].gcs_dies_after_this_look = True
        running.tick()
        return 0
    statuses = world.run(options(tmp_path), payload)
    assert statuses == {0: 0, 1: 0}, world.jobs[0].cause
    assert world.latest_nodes()[0].gcs_restarts == 1


def test_a_gcs_that_died_with_the_heads_raylet_is_not_started_again(tmp_path):
    """The raylet is the head: a GCS brought back beside a dead raylet would
    leave the workers waiting on a head that is gone."""
    world = World(2)

    def payload(running):
        head = world.latest_nodes()[0]
        head.kill_gcs()
        head.kill()
        running.tick()
        return 0
    statuses = world.run(options(tmp_path), payload)
    assert statuses[0] == 1
    assert "(rank 0) ended ((fake) `ray start` exited)" in world.jobs[0].cause
    assert not world.ledger_events(events.GcsRestarted)
    assert world.latest_nodes()[0].gcs_restarts == 0


def test_gcs_restarts_0_keeps_todays_gcs_and_its_death_ends_the_job(tmp_path):
    world = World(2)
    statuses = world.run(options(tmp_path, gcs_restarts=0), kill_the_gcs(world, 1))
    assert statuses[0] == 1
    assert not world.latest_nodes()[0].gcs_store
    assert "(its gcs_server ended): the cluster is gone" in world.jobs[0].cause
    assert not world.ledger_events(events.GcsRestarted)


def test_a_head_whose_gcs_store_fails_starts_without_it_with_one_warning(tmp_path):
    world = World(2, {0: Script(store_fails=True)})
    statuses = world.run(options(tmp_path), kill_the_gcs(world, 0))
    assert statuses == {0: 0, 1: 0}
    assert world.said(0, "start with the store failed") and world.said(0, "start attempt 2")
    assert not world.latest_nodes()[0].gcs_store
    assert world.log_text(0).count("did not start with its GCS store") == 1


# ------------------------------------------------------------- --restarts
def lose_the_head(world, times, seen):
    """A payload that ends the head's node in its first `times` runs (its
    raylet died), else returns 0; `seen` gets each run's START_RAY_RESTART."""
    def payload(running):
        seen.append(running.info.env.get("START_RAY_RESTART"))
        if len(seen) > times:
            return 0
        world.latest_nodes()[0].end()
        return tick_until(running.tick, lambda: False)  # the tick raises first
    return payload


def test_a_lost_head_is_formed_again_and_the_driver_runs_again(tmp_path):
    world, seen = World(3), []
    statuses = world.run(options(tmp_path, restarts=2), lose_the_head(world, 1, seen))
    assert statuses == {0: 0, 1: 0, 2: 0}
    assert seen == ["0", "1"], "the driver ran twice, told which attempt it is"
    for rank in range(3):
        assert world.jobs[rank].history.count(P.AGREE) == 2
        assert world.said(rank, "start attempt 1")
    assert [e.restart for e in world.ledger_events(events.Restarted)] == [1]
    joins = [e.rank for e in world.ledger_events(events.NodeJoined)]
    assert sorted(joins) == [1, 1, 2, 2], "the timeline keeps the first attempt's joins"
    head = world.log_text(0)
    assert "restart 1 of at most 2 (--restarts)" in head
    assert world.jobs[0].run_id == world.jobs[1].run_id, "one run folder"
    # The job's end is said once, at its end: not after the attempt restarted.
    assert head.count("| INFO | exit status ") == 1 and "| INFO | exit status 0" in head
    assert head.count("| INFO | summary of the run: ") == 1


def test_a_head_lost_past_the_restarts_ends_the_job_naming_it(tmp_path):
    world, seen = World(2), []
    statuses = world.run(options(tmp_path, restarts=1), lose_the_head(world, 2, seen))
    assert statuses[0] == 1
    assert seen == ["0", "1"]
    assert "the Ray head on" in world.jobs[0].cause and "the cluster is gone" in \
        world.jobs[0].cause
    assert "no restart left (--restarts 1)" in world.log_text(0)
    assert world.jobs[1].history.count(P.AGREE) == 2


def test_a_head_lost_after_the_walltime_warning_is_not_restarted(tmp_path):
    world, seen = World(2), []

    def payload(running):
        running.info.walltime_warning.set()
        return lose_the_head(world, 1, seen)(running)

    statuses = world.run(options(tmp_path, restarts=1), payload)
    assert statuses[0] == 1 and seen == ["0"]
    assert "not restarted (--restarts): the walltime warning came" in world.log_text(0)
