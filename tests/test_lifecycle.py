"""The whole lifecycle with real MPI and real Ray: pytest starts
`mpirun -np K python -m start_ray ...` and checks exit statuses, what the
driver saw, the logs, and that nothing the job started is left running.

Clusters are sized for a 2-core machine (1 CPU per Ray node). N=4 is the
case stack-facts.md measured failing without retries.
"""

import os
import re
import subprocess

import pytest

from jobs import DRIVER, MPIRUN, PYTHON, assert_nothing_left, events_of, leftovers

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} \| rank \d+ \| \S+ \| \w+ \| ")


@pytest.mark.every_ray
# More nodes (6, joining 2 at a time): test_scale.py.
@pytest.mark.parametrize("np", [None, 2], ids=["no-mpirun", "np2"])
def test_cluster_of_n_nodes_runs_the_driver_and_leaves_nothing(jobs, np):
    result = jobs.run(np, ["--num-cpus", "1", DRIVER])
    assert result.returncode == 0, result.output
    nodes = np or 1
    info = result.cluster_info()
    assert info["alive_nodes"] == nodes
    assert info["ranks"] == list(range(nodes))
    assert len(set(info["tasks_ran_on"])) == nodes, "a task ran on every node"
    assert info["cpus"] == nodes
    assert info["env_ray_address"] == info["address"]
    assert info["driver_mpi_vars"] == [] and info["worker_mpi_vars"] == []
    # Rank 0 tells the short story once; not one copy per rank.
    assert result.stdout.count("READY: ") == 1
    assert "Ray head is up at " + info["address"] in result.stdout
    # The run's record: every rank stopped and left nothing.
    record = result.run_record()
    assert record["status"] == 0 and record["cause"] is None
    stopped = events_of(result, "stopped")
    assert sorted(e["rank"] for e in stopped) == list(range(nodes))
    assert all(e["left"] == "" for e in stopped)
    assert [e["rank"] for e in events_of(result, "head_up")] == [0]
    assert sorted(e["rank"] for e in events_of(result, "joined")) == list(range(1, nodes))
    # One log per rank, every line dated and naming its rank and host.
    logs = result.rank_logs()
    assert sorted(logs) == [f"rank-{r}.log" for r in range(nodes)]
    for name, text in logs.items():
        lines = [line for line in text.splitlines() if line]
        assert lines and all(LOG_LINE.match(line) for line in lines), name
        assert "none left" in text, name
    assert_nothing_left(result)
    assert os.listdir(result.temp_root) == [], "the Ray temp dirs are removed"


def test_dry_run_prints_the_plan_and_warnings_and_starts_nothing(jobs):
    result = jobs.run(2, ["--dry-run", "--node-per-rank", "--num-cpus", "1",
                          "--min-nodes", "3", DRIVER])
    assert result.returncode == 0, result.output
    out = result.stdout
    assert "placement: 2 Ray node(s), one per rank (--node-per-rank)" in out
    assert "--num-cpus" in out and "rank 1" in out, "each node and where its numbers came from"
    assert "--min-nodes 3: this job has 2 Ray node(s)" in out
    assert "dry run: nothing was started" in out
    assert "Ray head is up" not in out and "READY" not in out
    assert not os.path.exists(os.path.join(result.run_dir, "driver.log"))
    assert_nothing_left(result)


@pytest.mark.every_ray
def test_driver_exit_status_is_the_jobs(jobs):
    result = jobs.run(2, ["--num-cpus", "1", DRIVER, "--exit-code", "3"])
    assert result.returncode == 3, result.output
    record = result.run_record()
    assert record["status"] == 3 and record["cause"] == "the driver exited with status 3"
    assert_nothing_left(result)


def test_address_placeholder_reaches_the_driver(jobs):
    result = jobs.run(None, [DRIVER, "--ray-address", "{ray_address}"])
    assert result.returncode == 0, result.output
    info = result.cluster_info()
    assert info["argv"] == ["--ray-address", info["address"]]
    assert_nothing_left(result)


@pytest.mark.parametrize("args,message", [
    (["drivers/no_such_driver.py"], "driver not found: drivers/no_such_driver.py"),
    (["--join-timeout", "soon", DRIVER], "--join-timeout='soon'"),
    (["--ray-args=--port 6379", DRIVER], "--port is set by start_ray itself"),
    (["--temp-dir", "/tmp/" + "x" * 60, DRIVER], "too long"),
])
def test_bad_input_one_message_exit_2_nothing_started(jobs, args, message):
    result = jobs.run(3, args, timeout=60)
    assert result.returncode == 2, result.output
    assert result.stderr.count("start_ray: error:") == 1, result.output
    assert message in result.stderr
    assert "Ray head" not in result.stdout
    assert not os.path.exists(result.log_root), "no run folder for a job that never ran"
    assert_nothing_left(result)


def test_head_that_cannot_start_stops_every_rank_quickly(jobs):
    result = jobs.run(3, ["--ray-args=--object-store-memory 10", DRIVER], timeout=90)
    assert result.returncode == 1, result.output
    assert "minimum allowed is" in result.stdout, "Ray's own reason is shown"
    assert result.seconds < 45
    logs = result.rank_logs()
    for rank in (1, 2):  # the GCS may have served before the raylet failed
        assert ("the Ray head could not start on rank 0" in logs[f"rank-{rank}.log"] or
                "rank 0 ended the job (status 1) while this rank was joining"
                in logs[f"rank-{rank}.log"])
    assert_nothing_left(result)


def test_join_timeout_names_the_missing_rank(jobs, tmp_path):
    # Rank 1 (an MPMD second app context) runs Ray through a command that
    # never finishes starting: a hung join, as on an overloaded node.
    hang = tmp_path / "hang.sh"
    hang.write_text("#!/bin/sh\necho 'pretending to start'\nexec sleep 1000\n")
    hang.chmod(0o755)
    start_ray = [PYTHON, "-m", "start_ray", "--num-cpus", "1", "--join-timeout", "25", DRIVER]
    cmd = [MPIRUN, "--oversubscribe", "-np", "1", *start_ray, ":",
           "-np", "1", "env", f"START_RAY_RAY_COMMAND={hang}", *start_ray]
    result = jobs.launch(cmd).wait(150)
    assert result.returncode == 1, result.output
    assert re.search(r"timed out after 25s: 1 of 2 Ray node\(s\) did not join: rank 1 \(",
                     result.stdout), result.output
    assert "running the driver" not in result.stdout
    assert result.seconds < 25 + 45
    # summary.txt names the cause first, then what happened to rank 1, with
    # what its hung `ray start` said last (copied from the node's temp dir).
    record = result.run_record()
    assert re.match(r"timed out after 25s: 1 of 2 Ray node\(s\) did not join: rank 1 ",
                    record["cause"]), record
    assert [e["rank"] for e in events_of(result, "never_joined")] == [1]
    lines = result.summary().splitlines()
    assert lines[1] == "cause: " + record["cause"]
    assert "pretending to start" in "\n".join(lines)
    worker = result.ray_logs()[f"rank-1-{os.uname().nodename}"]
    assert any(re.fullmatch(r"ray-start-\d+\.out", name) for name in worker), worker
    assert_nothing_left(result)  # the hung `ray start` was stopped too


@pytest.mark.every_ray
def test_failed_join_is_retried(jobs, tmp_path):
    # Rank 1's first `ray start` fails the way an overloaded node does; the
    # retry runs the real Ray and the job goes on with every node.
    flag = tmp_path / "failed-once"
    flaky = tmp_path / "flaky.sh"
    ray = os.path.join(os.path.dirname(PYTHON), "ray")
    flaky.write_text(
        "#!/bin/sh\n"
        f"if [ ! -e {flag} ]; then touch {flag}\n"
        "  echo 'Exception: The current node timed out during startup.'; exit 1; fi\n"
        f"exec {ray} \"$@\"\n")
    flaky.chmod(0o755)
    start_ray = [PYTHON, "-m", "start_ray", "--num-cpus", "1", DRIVER]
    cmd = [MPIRUN, "--oversubscribe", "-np", "1", *start_ray, ":",
           "-np", "1", "env", f"START_RAY_RAY_COMMAND={flaky}", *start_ray]
    result = jobs.launch(cmd).wait(180)
    assert result.returncode == 0, result.output
    assert result.cluster_info()["alive_nodes"] == 2
    logs = result.rank_logs()
    assert "attempt 1 to join failed (`ray start` exited with status 1: Exception: The " \
           "current node timed out during startup.); retrying" in logs["rank-1.log"]
    assert [(e["rank"], e["attempt"]) for e in events_of(result, "joined")] == [(1, 2)]
    assert_nothing_left(result)


@pytest.mark.every_ray
def test_leftover_auth_token_in_home_does_not_split_the_cluster(jobs, tmp_path):
    # With ~/.ray/auth_token present, a bare `ray start --head` turns token
    # auth on but a bare `ray start --address` does not, and workers loop
    # forever. start_ray sets the mode and token explicitly everywhere.
    (tmp_path / "home" / ".ray").mkdir(parents=True)
    (tmp_path / "home" / ".ray" / "auth_token").write_text("stale-token-of-an-old-session\n")
    result = jobs.run(2, ["--num-cpus", "1", "--join-timeout", "90", DRIVER],
                      env={"HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.output
    assert result.cluster_info()["alive_nodes"] == 2
    assert_nothing_left(result)


@pytest.mark.every_ray
def test_foreign_ray_cluster_survives_and_is_not_used(jobs, tmp_path):
    """Someone else's Ray on the host: our driver's plain ray.init() must not
    attach to it, and our teardown must not touch it."""
    foreign_tmp = jobs.temp_root + "/foreign"
    os.makedirs(foreign_tmp)
    ray = os.path.join(os.path.dirname(PYTHON), "ray")
    env = jobs.env("foreign-" + os.urandom(4).hex(), {"RAY_AUTH_MODE": "disabled"})
    jobs.marks.append(env["START_RAY_TEST_MARK"])
    subprocess.run([ray, "start", "--head", "--port", "0", "--temp-dir", foreign_tmp,
                    "--num-cpus", "1", "--include-dashboard", "false",
                    "--disable-usage-stats"], env=env, check=True, capture_output=True,
                   timeout=120)
    foreign_address = open(os.path.join(foreign_tmp, "ray_current_cluster")).read().strip()
    foreign = leftovers(env["START_RAY_TEST_MARK"])
    assert any(p.name() == "gcs_server" for p in foreign)

    result = jobs.run(2, ["--num-cpus", "1", DRIVER])
    assert result.returncode == 0, result.output
    info = result.cluster_info()
    assert info["address"] != foreign_address
    assert info["alive_nodes"] == 2
    assert_nothing_left(result)
    assert all(p.is_running() for p in foreign), "the foreign cluster is untouched"
