"""The Python API (`start_ray.execute(fn)`, `with start_ray.cluster() as
info:`) under real mpirun: the same lifecycle as the command line, the same
watch while the body runs, the walltime signal for the body to see."""

import json
import os
import re
import signal
import time

import pytest

from jobs import (
    MPIRUN,
    MPIS,
    OPENMPI,
    PYTHON,
    ROOT,
    Mpi,
    assert_nothing_left,
    driver_on_the_head,
    rank_processes,
    ray_process,
    run_record,
    wait_for_rank0_log,
)

PROGRAM = os.path.join(ROOT, "tests", "drivers", "api_program.py")
EXAMPLE = os.path.join(ROOT, "drivers", "api_example.py")


def outcomes(outdir, np):
    found = {}
    for rank in range(np):
        with open(os.path.join(outdir, f"rank-{rank}.json")) as handle:
            found[rank] = json.load(handle)
    return found


def api_job(jobs, tmp_path, np, *flags, mpi: Mpi = OPENMPI):
    return jobs.launch(mpi.command(np, [mpi.python, PROGRAM, str(tmp_path), *flags]))


def wait_for(path, running, timeout=180):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert running.proc.poll() is None, running.proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def test_worked_example_runs_the_body_once_on_three_nodes(jobs):
    result = jobs.launch([MPIRUN, "--oversubscribe", "-np", "3", PYTHON, EXAMPLE]).wait(240)
    assert result.returncode == 0, result.output
    bodies = [line for line in result.stdout.splitlines() if line.startswith("API_BODY ")]
    assert len(bodies) == 1, result.output
    body = json.loads(bodies[0][len("API_BODY "):])
    assert body["nodes"] == 3 and body["cpus"] == 3 and body["sum"] == sum(i * i for i in range(12))
    assert f"API_AFTER ranks=3 sum={body['sum']}" in result.stdout
    record = run_record(result)
    assert record["status"] == 0 and all(not e["left"] for e in record["events"]
                                         if e["event"] == "stopped")
    assert_nothing_left(result)


@pytest.mark.parametrize("form", ["execute", "with"])
def test_exception_in_the_body_fails_every_rank(jobs, tmp_path, form):
    flags = ["--fail"] + (["--with"] if form == "with" else [])
    result = api_job(jobs, tmp_path, 3, *flags).wait(240)
    assert result.returncode != 0, result.output
    seen = outcomes(tmp_path, 3)
    assert [seen[r]["body_ran"] for r in range(3)] == [True, False, False]
    assert seen[0]["error"] == "RuntimeError"
    assert seen[1]["error"] == seen[2]["error"] == "ClusterError"
    assert all(seen[r]["world_sum"] == 3 for r in range(3)), "every rank got past teardown"
    record = run_record(result)
    assert record["status"] == 1
    assert record["cause"] == "the body raised RuntimeError: the body failed on purpose"
    assert_nothing_left(result)


def test_cluster_on_a_sub_communicator_while_others_use_mpi(jobs, tmp_path):
    result = api_job(jobs, tmp_path, 4, "--split", "--with").wait(240)
    assert result.returncode == 0, result.output
    seen = outcomes(tmp_path, 4)
    assert seen[0]["body_ran"] and seen[0]["nodes"] == 2 and seen[0]["alive"] == 2
    assert seen[0]["result"] == "result of rank 0" and "result" not in seen[2]
    assert not seen[1]["body_ran"]
    assert seen[2]["side_sum"] == seen[3]["side_sum"] == 2 * sum(range(200))
    assert all(seen[r]["world_sum"] == 4 and seen[r]["error"] is None for r in range(4))
    assert run_record(result)["ranks"] == 2
    assert_nothing_left(result)


def test_the_walltime_signal_in_the_body_is_seen_and_the_cluster_stays(jobs, tmp_path):
    """SIGUSR1 to rank 0 while its body runs: the body sees it
    (info.walltime_warning), runs a task on every node after it, returns;
    the job exits 0. (Before, rank 0 died of it: exit 138, nothing torn down.)"""
    running = api_job(jobs, tmp_path, 2, "--hold")
    wait_for(os.path.join(tmp_path, "ready"), running)
    rank_processes(running)[0].send_signal(signal.SIGUSR1)
    result = running.wait(120)
    assert result.returncode == 0, result.output
    seen = outcomes(tmp_path, 2)
    assert seen[0]["walltime_warning"] is True and seen[0]["tasks_after"] == 2
    assert seen[0]["error"] is None and seen[1]["error"] is None
    assert run_record(result)["status"] == 0
    assert_nothing_left(result)


@pytest.mark.parametrize("mpi", ["openmpi", "mpich"])
def test_the_walltime_warning_before_the_cluster_is_up_ends_the_job_not_done(jobs, tmp_path,
                                                                             mpi):
    """SIGUSR1 to every rank while the head starts (the scheduler's warning
    with a time limit shorter than its lead): the body never runs, every
    rank stops what it started, and the job exits 75, "not done" by the
    chain's contract (it was an uncaught ClusterError, exit 1: a failure)."""
    from start_ray.batch import chain
    MPIS[mpi].skip_unless_here()
    running = api_job(jobs, tmp_path, 2, mpi=MPIS[mpi])
    log = wait_for_rank0_log(running, "starting the Ray head", 120)
    assert "starting the Ray head" in log, log
    for process in rank_processes(running, MPIS[mpi]).values():
        process.send_signal(signal.SIGUSR1)
    result = running.wait(120)
    assert_nothing_left(result)  # whatever the status
    assert result.returncode == 75, result.output
    assert chain.outcome(result.returncode, warned=True) == "continues"
    seen = outcomes(tmp_path, 2)
    assert not seen[0]["body_ran"] and seen[0]["exit_status"] == seen[1]["exit_status"] == 75, \
        seen


@driver_on_the_head
@pytest.mark.parametrize("fail_fast", [False, True], ids=["goes-on", "fail-fast"])
def test_a_node_lost_during_the_body_is_seen_at_once(jobs, tmp_path, fail_fast):
    """A worker's raylet is SIGKILLed while the body runs: rank 0 logs it
    within seconds; with fail_fast the body is interrupted with ClusterError
    and every rank exits non-zero, otherwise the body goes on."""
    running = api_job(jobs, tmp_path, 2, "--hold", *(["--fail-fast"] if fail_fast else []))
    wait_for(os.path.join(tmp_path, "ready"), running)
    ray_process(running, "raylet", 1).kill()
    killed = time.monotonic()
    text = wait_for_rank0_log(running, "lost its Ray node", 10)
    noticed = time.monotonic() - killed
    assert "lost its Ray node" in text, f"nothing logged 10 s after the kill:\n{text}"
    if not fail_fast:
        open(os.path.join(tmp_path, "until"), "w").close()
    result = running.wait(120)
    seen = outcomes(tmp_path, 2)
    record = run_record(result)
    lost = [e for e in record["events"] if e["event"] == "node_lost"]
    assert [e["rank"] for e in lost] == [1], record
    if fail_fast:
        assert result.returncode != 0, result.output
        assert seen[0]["error"] == "ClusterError", seen
        assert re.match(r"stopping the job \(--fail-fast\): rank 1 \(\S+\) lost its Ray node",
                        seen[0]["message"]), seen
        assert "tasks_after" not in seen[0], "the body was interrupted"
        assert seen[1]["error"] == "ClusterError"
        assert record["status"] == 1 and record["cause"] == seen[0]["message"]
    else:
        assert result.returncode == 0, result.output
        assert seen[0]["error"] is None and seen[0]["tasks_after"] == 2  # on the node left
        assert record["status"] == 0
    print(f"lost node noticed after {noticed:.1f}s")
    assert_nothing_left(result)


def test_an_unguarded_with_body_gets_no_stray_ray_on_the_other_ranks(jobs, tmp_path):
    """A `with` body written for start_ray 0.1 calls Ray on every rank: on the
    ranks without the cluster each Ray call now fails at once, naming the
    contract, instead of starting a local Ray (which also saved a token in
    ~/.ray that turned auth on for every later `ray start --head`)."""
    home = tmp_path / "home"
    home.mkdir()
    running = jobs.launch([MPIRUN, "--oversubscribe", "-np", "3", PYTHON, PROGRAM,
                           str(tmp_path), "--with", "--unguarded"], {"HOME": str(home)})
    result = running.wait(240)
    assert result.returncode == 0, result.output
    seen = outcomes(tmp_path, 3)
    assert seen[0]["result"] == "result of rank 0" and seen[0]["alive"] == 3
    for rank in (1, 2):
        assert "stray_ray" not in seen[rank], seen[rank]
        assert seen[rank]["refused"].startswith("this rank has no Ray cluster: `with "
                                                "start_ray.cluster() as info:`")
        assert "Guard Ray calls with `if info:`" in seen[rank]["refused"]
        assert seen[rank]["ray_call_seconds"] < 5
    assert "Started a local Ray instance" not in result.output
    assert not (home / ".ray").exists(), "a local Ray saved its token"
    assert_nothing_left(result)
