"""The head's GCS is no longer the job's single point of failure (Ray 2.57+):
killed with SIGKILL while the driver runs, it is started again in place, on
its RocksDB store and port, and the driver's actor keeps its state; past
--gcs-restarts, the job ends naming why. The GCS is found in /proc by the
job variable of its environment (tests/jobs.py: ray_process), not by
start_ray's own bookkeeping. Today's behaviour on an older Ray (or
--gcs-restarts 0): test_faults.py::test_dead_head_gcs_stops_the_driver_at_once."""

import json
import os
import time

from requirements import requires

from jobs import (
    ROOT,
    assert_nothing_left,
    events_of,
    ray_process,
    wait_for_rank0_log,
)
from start_ray.node import compat

ACTOR_COUNT = os.path.join(ROOT, "tests", "drivers", "actor_count.py")
# The driver's longest pause over a GCS kill: benchmarks/results/gcs-store.md
# measured 1.77 to 2.01 s (1.17 to 1.32 s the round before); seven times that,
# for a loaded test machine, is well under Ray's own wait for the GCS (60 s),
# so a pause that only Ray's reconnect timeout would end fails here.
PAUSE_BOUND = 15.0

pytestmark = requires("gcs-store", None if compat.gcs_store() else
                      f"Ray {compat.ray_version()} has no GCS store (2.57+)")


def start_counting(jobs, tmp_path, *args, np=2):
    ready, until, out = tmp_path / "ready", tmp_path / "until", tmp_path / "out.json"
    running = jobs.start(np, ["--num-cpus", "1", "--node-per-rank", *args, ACTOR_COUNT,
                              "--ready", str(ready), "--until", str(until), "--out", str(out),
                              "--progress", str(tmp_path / "count")])
    assert int(running.wait_for_file(str(ready), timeout=180)) == np
    return running, until, out


def counted(tmp_path) -> int:
    """The driver's own count so far."""
    try:
        return int((tmp_path / "count").read_text())
    except (OSError, ValueError):
        return 0


def counts_on(running, tmp_path, more: int = 5, timeout: float = 30) -> int:
    """Wait until the driver has counted `more` rounds beyond its count now
    (on the GCS started again); its count then."""
    start, deadline = counted(tmp_path), time.monotonic() + timeout
    while counted(tmp_path) < start + more:
        assert time.monotonic() < deadline, f"the driver stopped counting at {start}"
        assert running.proc.poll() is None, "the job ended"
        time.sleep(0.1)
    return counted(tmp_path)


def kill_the_gcs(running):
    """SIGKILL the head's gcs_server; its PID."""
    gcs = ray_process(running, "gcs_server", 0)
    gcs.kill()
    return gcs.pid


def test_a_drivers_actor_survives_two_gcs_kills_and_the_job_ends_well(jobs, tmp_path):
    running, until, out = start_counting(jobs, tmp_path)
    first = kill_the_gcs(running)
    log = wait_for_rank0_log(running, "is back in place", 30)
    assert "restart 1 of at most 3" in log, log[-2000:]
    after_first = counts_on(running, tmp_path)  # counting on the GCS started again
    second = kill_the_gcs(running)
    assert second != first, "a gcs_server started again, with the job's variable"
    wait_for_rank0_log(running, "restart 2 of at most 3", 30)
    after_second = counts_on(running, tmp_path)
    until.touch()
    result = running.wait(120)
    assert result.returncode == 0, result.output
    seen = json.loads(out.read_text())
    assert seen["errors"] == [] and seen["count"] >= after_second > after_first, seen
    assert seen["alive"] == seen["nodes"] == 2, "both nodes reconnected"
    assert seen["worst_pause"] < PAUSE_BOUND, seen
    print(f"the driver's longest pause: {seen['worst_pause']} s over two GCS kills")
    assert [e["restart"] for e in events_of(result, "gcs_restarted")] == [1, 2]
    assert result.run_record()["gcs_restarts"] == 2
    assert "came back in place 2 time(s)" in result.summary()
    assert not events_of(result, "node_lost"), "no node was lost"
    assert_nothing_left(result)


def test_a_gcs_killed_past_its_restarts_ends_the_job_naming_why(jobs, tmp_path):
    running, until, out = start_counting(jobs, tmp_path, "--gcs-restarts", "1")
    kill_the_gcs(running)
    wait_for_rank0_log(running, "is back in place", 30)
    kill_the_gcs(running)
    killed = time.monotonic()
    result = running.wait(120)
    assert result.returncode == 1, result.output
    assert time.monotonic() - killed < 45, "the job ended in seconds"
    cause = result.run_record()["cause"]
    assert cause.startswith("the Ray head's GCS on ") and cause.endswith(
        " (rank 0) died again (gcs_server was killed by SIGKILL) after 1 restart(s) in place "
        "(--gcs-restarts 1): the cluster is gone, so the driver is stopped now"), cause
    assert_nothing_left(result)
