"""What a run leaves in its folder for a user who cannot reach the nodes'
/tmp afterwards: Ray's logs of every node (on failure, or always), each
node's ports in the log, and summary.txt naming the cause first.
Real mpirun, real Ray."""

import glob
import os
import re
import signal
import time

import psutil
import pytest

from jobs import DRIVER, assert_nothing_left, leftovers, ray_process
from start_ray.record import collect


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
                       result.rank0_log)
    assert sorted(rank for rank, *_ in ports) == ["0", "1"], result.stdout
    assert all(int(port) > 0 for _, *pair in ports for port in pair)
    assert re.search(r"ports of rank 0 .*GCS \d+", result.rank0_log)


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


def test_a_failing_drivers_traceback_is_kept_and_named_in_the_summary(jobs, tmp_path):
    """The driver's output goes to the console as before and into
    driver.log; its last exception is the summary's cause."""
    crash = tmp_path / "crash.py"
    crash.write_text("print('\\x1b[32mstarting\\x1b[0m', flush=True)\n"
                     "def train():\n    raise ValueError('learning rate must be > 0')\n"
                     "train()\n")
    result = jobs.run(2, ["--num-cpus", "1", str(crash)])
    assert result.returncode == 1, result.output
    assert "ValueError: learning rate must be > 0" in result.stderr, "still shown live"
    with open(os.path.join(result.run_dir, "driver.log")) as handle:
        kept = handle.read()
    assert "starting" in kept and "\x1b" not in kept, "no escape codes in the file"
    assert "Traceback (most recent call last):" in kept and 'line 3, in train' in kept
    cause = ("the driver exited with status 1; its last exception: ValueError: learning "
             "rate must be > 0 (in driver.log)")
    assert result.run_record()["cause"] == cause
    assert result.summary().splitlines()[1] == "cause: " + cause
    assert_nothing_left(result)


def test_ray_logs_survive_a_job_killed_with_sigkill(jobs):
    """Every process of the job SIGKILLed at once (the scheduler after its
    KillWait, a node crash) once the sync copied the logs: no teardown runs, yet the
    run folder holds each node's raylet log and the head's GCS log."""
    running, _, _ = jobs.hold(2, "--sync-logs", "1")
    synced = os.path.join(running.log_root, "*", "ray", "rank-*", "session_*")
    deadline = time.monotonic() + 60  # the sync's first copies: each node's raylet log
    while not (len(glob.glob(os.path.join(synced, "raylet.out"))) == 2 and all(
            os.path.getsize(path) > 0 for path in glob.glob(os.path.join(synced, "raylet.out")))
            and glob.glob(os.path.join(synced, "gcs_server.out"))):
        assert time.monotonic() < deadline, "the logs were never synced"
        time.sleep(0.2)
    for proc in running.processes():  # the launcher, the ranks, Ray, the watchdogs
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    os.killpg(running.proc.pid, signal.SIGKILL)
    result = running.wait(60)
    assert result.returncode != 0
    folders = result.ray_logs()
    assert sorted(folders) == [f"rank-0-{os.uname().nodename}", f"rank-1-{os.uname().nodename}"]
    head, worker = folders.values()
    for files in (head, worker):
        assert has(files, r"session_[^/]+/raylet\.out"), files
    assert has(head, r"session_[^/]+/gcs_server\.out"), head
    raylet = next(name for name in worker if re.fullmatch(r"session_[^/]+/raylet\.out", name))
    copy = os.path.join(result.run_dir, "ray", f"rank-1-{os.uname().nodename}", raylet)
    assert os.path.getsize(copy) > 0
    # What outlives a SIGKILL of everything (Ray's agents, for a minute) is ours to end.
    for proc in leftovers(result.mark, result.temp_root, result.before):
        proc.kill()
