"""--restarts N with real MPI and Ray: the head's raylet, SIGKILLed while the
driver runs, takes the driver with it; start_ray stops every node, starts the
cluster again on the same ranks, and runs the driver again, which resumes
from its own saved state (tests/drivers/counter.py). The raylet is found in
/proc by the job variable of its environment (tests/jobs.py: ray_process).
Under --serve, the cluster is served again: a new card and token, which
`attach` and `stop` use. The policy's corners (restarts spent, after the
walltime warning) are the fast tests' (test_protocol.py)."""

import json
import os
import re
import time

import test_interactive as interactive  # its serve() and attach helpers

from jobs import PYTHON, ROOT, assert_nothing_left, events_of, ray_process

COUNTER = os.path.join(ROOT, "tests", "drivers", "counter.py")


def wait_for_count(path, at_least, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if int(path.read_text()) >= at_least:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"the driver did not count to {at_least} in {timeout}s")


def test_a_killed_head_raylet_with_restarts_1_forms_the_cluster_again_and_resumes(
        jobs, tmp_path):
    state = tmp_path / "count"
    running = jobs.start(2, ["--num-cpus", "1", "--node-per-rank", "--restarts", "1",
                             COUNTER, "--state", str(state), "--target", "40",
                             "--step-seconds", "0.25"])
    wait_for_count(state, 4, 180)
    first = ray_process(running, "raylet", 0)
    first.kill()
    result = running.wait(240)
    assert result.returncode == 0, result.output
    assert int(state.read_text()) == 40, "the driver ran again and reached its target"
    lines = re.findall(r"COUNTER link=\S+ chain=(\S+) from=(\d+) to=(\d+)",
                       open(os.path.join(result.run_dir, "driver.log")).read())
    assert lines and int(lines[-1][1]) >= 4 and lines[-1][2] == "40", lines
    assert lines[-1][0] == result.run_record()["run_id"], "the chain ID is the run's"
    head = result.rank_logs()["rank-0.log"]
    assert "restart 1 of at most 1 (--restarts): starting the cluster again" in head
    assert re.search(r"the Ray head on \S+ \(rank 0\) ended \(its raylet ended\)", head)
    assert [e["restart"] for e in events_of(result, "restarted")] == [1]
    assert "was started again 1 time(s) (--restarts)" in result.summary()
    assert result.output.count("READY:") == 2, "two attempts, each announced"
    assert_nothing_left(result)


def test_a_served_cluster_whose_head_raylet_dies_is_served_again_under_restarts_1(
        jobs, tmp_path):
    """`--serve --restarts 1`: the cluster is formed again, its card and token
    file written anew, and `attach` by the run folder reaches the new
    cluster (both nodes); `stop` then ends the job with exit 0."""
    running, run_dir, card = interactive.serve(jobs, 2, "--node-per-rank", "--restarts", "1")
    with open(card["token_file"]) as handle:
        token = handle.read()
    ray_process(running, "raylet", 0).kill()
    deadline, again = time.monotonic() + 180, None
    while again is None:
        assert time.monotonic() < deadline, "the cluster was not served again"
        assert running.proc.poll() is None, running.wait(5).output
        with open(os.path.join(run_dir, "cluster.json")) as handle:
            now = json.load(handle)
        if now["state"] == "serving" and now["address"] != card["address"]:
            again = now
        time.sleep(0.2)
    with open(again["token_file"]) as handle:
        assert handle.read() != token, "a new token for the new cluster"
    attached = interactive.start_ray("attach", run_dir, "--", PYTHON, "-c", interactive.TASKS)
    assert attached.returncode == 0, attached.stdout + attached.stderr
    assert "ATTACHED 2 " in attached.stdout, attached.stdout
    stopped = interactive.start_ray("stop", run_dir)
    assert stopped.returncode == 0, stopped.stderr
    result = running.wait(90)
    assert result.returncode == 0, result.output
    assert [e["restart"] for e in events_of(result, "restarted")] == [1]
    assert_nothing_left(result)
