"""What a run leaves in its folder for a user who cannot reach the nodes'
/tmp afterwards: Ray's logs of every node (on failure, or always), each
node's ports in the log, and summary.txt naming the cause first.
Real mpirun, real Ray."""

import os
import re

import pytest

from jobs import DRIVER, assert_nothing_left, ray_process
from start_ray import collect


def has(files, pattern):
    return any(re.fullmatch(pattern, name) for name in files)


def test_a_failing_driver_leaves_every_nodes_ray_logs_and_says_why_first(jobs, tmp_path):
    crash = tmp_path / "crash.py"
    crash.write_text("import sys; sys.exit(3)\n")
    result = jobs.run(2, ["--num-cpus", "1", str(crash)])
    assert result.returncode == 3, result.output
    folders = result.ray_logs()
    assert sorted(folders) == [f"rank-0-{os.uname().nodename}", f"rank-1-{os.uname().nodename}"]
    head, worker = folders.values()
    for files in (head, worker):
        assert has(files, r"session_[^/]+/raylet\.out"), files
        assert has(files, r"ray-start-\d+\.out"), files
        assert "COLLECTED.txt" in files
    assert has(head, r"session_[^/]+/gcs_server\.out"), head
    lines = result.summary().splitlines()
    assert "exit status 3" in lines[0]
    assert lines[1] == "cause: the driver exited with status 3"
    text = "\n".join(lines)
    assert re.search(r"rank 0 \(\S+\): head up at [\d.]+s; stopped, none left", text), text
    # "(attempt 1)" when rank 1 said it joined before rank 0 stopped the job;
    # the driver is quick, so maybe only the GCS saw it.
    assert re.search(r"rank 1 \(\S+\): joined( \(attempt 1\))? at [\d.]+s; stopped, none left",
                     text), text
    assert "summary of the run:" in result.stdout
    assert_nothing_left(result)


def test_a_successful_job_keeps_no_ray_logs_unless_asked(jobs):
    quiet = jobs.run(2, ["--num-cpus", "1", DRIVER])
    assert quiet.returncode == 0, quiet.output
    assert quiet.ray_logs() == {}
    assert quiet.summary().splitlines()[0].endswith(
        "exit status 0; 2 rank(s) on 1 host(s), 2 Ray node(s)")
    assert "cause:" not in quiet.summary()
    kept = jobs.run(2, ["--num-cpus", "1", "--collect-logs", "always", DRIVER])
    assert kept.returncode == 0, kept.output
    assert len(kept.ray_logs()) == 2
    assert_nothing_left(kept)


def test_each_nodes_ports_are_logged_as_it_joins(jobs):
    result = jobs.run(2, ["--num-cpus", "1", DRIVER])
    assert result.returncode == 0, result.output
    ports = re.findall(r"ports of rank (\d) .*node manager (\d+), object manager (\d+)",
                       result.stdout)
    assert sorted(rank for rank, *_ in ports) == ["0", "1"], result.stdout
    assert all(int(port) > 0 for _, *pair in ports for port in pair)
    assert re.search(r"ports of rank 0 .*GCS \d+", result.stdout)


def test_a_lost_worker_node_is_named_with_its_ray_errors(jobs):
    running, _, _ = jobs.hold(2, "--fail-fast")
    ray_process(running, "raylet", 1).kill()
    result = running.wait(90)
    assert result.returncode == 1, result.output
    text = result.summary()
    assert re.search(r"^cause: stopping the job \(--fail-fast\): rank 1 \(\S+\) lost its Ray "
                     r"node$", text, re.M), text
    assert re.search(r"^  rank 1 \(\S+\): joined( \(attempt 1\))? at [\d.]+s; lost its node",
                     text, re.M), text
    assert "first error lines in the Ray logs of the nodes in trouble" in text
    assert len(result.ray_logs()) == 2
    assert_nothing_left(result)


@pytest.mark.parametrize("limit", [10**9, 200 * 1024])
def test_the_copy_is_bounded_and_errors_come_first(tmp_path, limit):
    node = tmp_path / "node"
    logs = node / "session_2026-01-01_00-00-00_000000_1" / "logs"
    logs.mkdir(parents=True)
    (logs / "raylet.out").write_bytes(b"[2026-01-01 00:00:00,000 E 12 34] node_manager.cc:1: "
                                      b"boom\n" + b"x" * 1000)
    (logs / "big.log").write_bytes(b"y" * (300 * 1024) + b"\nthe end\n")
    (logs / "old.log").write_bytes(b"z" * (100 * 1024))
    os.utime(logs / "old.log", (1, 1))
    (node / "ray-start-7.out").write_text("Ray runtime started.\n")
    done = collect.collect(str(node), str(tmp_path / "copy"), limit=limit)
    copy = tmp_path / "copy"
    assert (copy / "session_2026-01-01_00-00-00_000000_1" / "raylet.out").exists()
    listing = (copy / "COLLECTED.txt").read_text()
    if limit > 10**6:
        assert done.files == 4 and not done.cut and not done.left_out
    else:
        assert done.size <= limit
        assert done.cut or done.left_out, listing
        big = copy / "session_2026-01-01_00-00-00_000000_1" / "big.log"
        assert big.read_bytes().endswith(b"the end\n"), "a cut file keeps its end"
        assert "old.log" in listing and "left out" in listing
    assert collect.error_lines(str(logs / "raylet.out")) == [
        "[2026-01-01 00:00:00,000 E 12 34] node_manager.cc:1: boom"]
