"""Batch jobs end badly all the time. Each test causes one ending for real and
checks the exit status, that the job ends within a bound, the message, and
that no process the job started is left on the machine."""

import os
import re
import signal
import socket
import time

import psutil
import pytest
from requirements import requires
import step_signals
from leftovers import cmdline as found_by_cmdline

from jobs import (
    DEFAULT_MPI,
    DRIVER,
    MPICH,
    MPIRUN,
    PYTHON,
    SIGNALS_DRIVER,
    assert_nothing_left,
    driver_on_the_head,
    events_of,
    finish_held,
    helper_process,
    node_process,
    rank_processes,
    ray_process,
    wait_for_rank0_log,
)

from start_ray.node import compat


def start_signals_job(jobs, tmp_path, np, *args, driver_args=()):
    ready, events = tmp_path / "ready", tmp_path / "events"
    running = jobs.start(np, ["--num-cpus", "1", *args, SIGNALS_DRIVER, "--ready", str(ready),
                              "--events", str(events), *driver_args])
    assert int(running.wait_for_file(str(ready), timeout=180)) == (np or 1)
    return running, events


def ranks(running):
    """The job's start_ray rank processes."""
    return list(rank_processes(running).values())


def read(path):
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.every_ray
def test_sigterm_to_every_rank_gives_the_driver_its_grace(jobs, tmp_path):
    """scancel: SIGTERM reaches every rank at once. The driver gets it, and
    the worker nodes stay up while it finishes (here: runs a task on every
    node, then 'checkpoints' for 2 s)."""
    running, events = start_signals_job(jobs, tmp_path, 2,
                                        driver_args=["--checkpoint-seconds", "2"])
    for proc in ranks(running):
        proc.send_signal(signal.SIGTERM)
    result = running.wait(60)
    assert result.returncode == 0, result.output
    assert read(events) == ["signal SIGTERM", "tasks ran on 2 nodes after the signal",
                            "checkpointed"]
    assert "received SIGTERM: forwarding it to the driver" in result.stdout
    assert result.seconds < 60
    assert_nothing_left(result)


def test_driver_that_ignores_sigterm_is_killed_after_the_grace(jobs, tmp_path):
    running, events = start_signals_job(jobs, tmp_path, None, "--grace", "3",
                                        driver_args=["--ignore-term"])
    began = time.monotonic()
    ranks(running)[0].send_signal(signal.SIGTERM)
    result = running.wait(60)
    assert result.returncode == 128 + signal.SIGKILL, result.output
    assert "did not exit within the 3s grace period" in result.stdout
    assert 3 <= time.monotonic() - began < 30
    assert_nothing_left(result)


def test_walltime_signal_reaches_the_driver_through_mpirun(jobs, tmp_path):
    """Slurm's --signal=B:USR1@120, or `kill -USR1` to mpirun: forwarded to the
    driver, which checkpoints and exits; the Ray nodes were not harmed."""
    running, events = start_signals_job(jobs, tmp_path, 2, driver_args=["--exit-code", "0"])
    running.proc.send_signal(signal.SIGUSR1)  # to mpirun
    result = running.wait(60)
    assert result.returncode == 0, result.output
    assert read(events) == ["signal SIGUSR1", "tasks ran on 2 nodes after the signal",
                            "checkpointed"]
    assert "received SIGUSR1: forwarding it to the driver" in result.stdout
    assert_nothing_left(result)


def test_custom_walltime_signal(jobs, tmp_path):
    running, events = start_signals_job(jobs, tmp_path, None, "--walltime-signal", "USR2")
    ranks(running)[0].send_signal(signal.SIGUSR2)
    result = running.wait(60)
    assert result.returncode == 0, result.output
    assert read(events)[0] == "signal SIGUSR2"
    assert_nothing_left(result)


def test_sigterm_to_mpirun_ends_the_job_in_seconds_leaving_nothing(jobs, tmp_path):
    """Open MPI's mpirun SIGKILLs the ranks ~0.25 s after forwarding SIGTERM
    (Open MPI 5), too soon for any teardown: the watchdogs must clean up.
    MPICH's mpiexec forwards it and waits: the driver checkpoints and its
    status (0) is the job's."""
    running, events = start_signals_job(jobs, tmp_path, 2)
    running.proc.send_signal(signal.SIGTERM)
    result = running.wait(60)
    if DEFAULT_MPI.name == "openmpi":
        assert result.returncode != 0
    else:
        assert result.returncode == 0, result.output
        assert "checkpointed" in events.read_text().split(), events.read_text()
    assert result.seconds < 120
    assert_nothing_left(result)


@pytest.mark.every_ray
@pytest.mark.parametrize("rank", [1, 0], ids=["worker-rank", "head-rank"])
def test_rank_killed_with_sigkill_leaves_nothing(jobs, tmp_path, rank):
    running, _ = start_signals_job(jobs, tmp_path, 2)
    rank_processes(running)[rank].kill()
    began = time.monotonic()
    result = running.wait(60)
    assert result.returncode != 0
    assert time.monotonic() - began < 30, "the other ranks noticed within seconds"
    assert_nothing_left(result)


def test_rank_killed_leaves_not_even_the_drivers_own_children(jobs, tmp_path):
    """No launcher to clean up (python -m start_ray alone), and a driver that
    started a program of its own: when the rank is SIGKILLed, the driver dies
    with it (PR_SET_PDEATHSIG), and its child only through the watchdog."""
    ready = tmp_path / "ready"
    driver = tmp_path / "spawner.py"
    driver.write_text(
        "import subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        f"open({str(ready)!r}, 'w').write(str(child.pid) + '\\n')\n"
        "time.sleep(300)\n")
    running = jobs.start(None, ["--num-cpus", "1", str(driver)])
    child = psutil.Process(int(running.wait_for_file(str(ready), timeout=120)))
    ranks(running)[0].kill()
    result = running.wait(30)
    assert result.returncode == -signal.SIGKILL
    assert_nothing_left(result)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


@pytest.mark.every_ray
@driver_on_the_head
def test_lost_worker_node_is_logged_and_the_job_goes_on(jobs):
    running, _, release = jobs.hold(2)
    ray_process(running, "raylet", 1).kill()
    # The later of the two lines: the log may be read between them.
    text = wait_for_rank0_log(running, "the job goes on", 60)
    assert "the job goes on with the remaining 1 node(s)" in text
    result = finish_held(running, release)
    assert [e["rank"] for e in events_of(result, "node_lost")] == [1]
    assert result.run_record()["status"] == 0


@driver_on_the_head
@requires("openmpi-jobs", None if DEFAULT_MPI.name == "openmpi" else (
    "Open MPI's --enable-recovery: under MPICH's mpiexec -disable-auto-cleanup the other "
    "ranks still end (and with the SIGUSR1 warning start_ray refuses it: "
    "test_hydra_without_auto_cleanup_and_a_usr1_warning_are_refused_naming_usr2)"))
def test_dead_worker_rank_under_enable_recovery_the_job_goes_on(jobs):
    """With `mpirun --enable-recovery` a dead rank does not end the job; it
    reports nothing itself, so rank 0 learns it from the GCS."""
    running, _, release = jobs.hold(2, mpirun_args=["--enable-recovery"])
    rank_processes(running)[1].kill()
    wait_for_rank0_log(running, "lost its Ray node", 90)
    result = finish_held(running, release)
    lost = events_of(result, "node_lost")
    assert [(e["rank"], e["why"]) for e in lost] == [(1, "the GCS reports its node dead")]


def test_hydra_without_auto_cleanup_and_a_usr1_warning_are_refused_naming_usr2(jobs):
    """Under `mpiexec -disable-auto-cleanup` Hydra tells the ranks that live
    on of a failed one with SIGUSR1: taken for the walltime warning, the
    driver would save and stop, and a chain would resubmit. So the pair is
    refused before anything starts; with another warning signal, a rank
    Hydra started ignores SIGUSR1 (test_units: ignore_hydras_failure_word)."""
    MPICH.skip_unless_here()
    result = jobs.start(2, [DRIVER], mpi=MPICH,
                        mpirun_args=["-disable-auto-cleanup"]).wait(120)
    assert result.returncode == 2, result.output
    assert result.output.count("start_ray: error:") == 1, result.output
    assert "mpiexec -disable-auto-cleanup tells the ranks that live on of a failure with " \
        "SIGUSR1" in result.output and "--walltime-signal USR2" in result.output
    assert "starting the Ray head" not in result.output
    assert_nothing_left(result)
    assert jobs.start(2, ["--walltime-signal", "USR2", "--dry-run"], mpi=MPICH,
                      mpirun_args=["-disable-auto-cleanup"]).wait(120).returncode == 0


@pytest.mark.every_ray
def test_lost_worker_node_with_fail_fast_stops_the_job(jobs):
    running, _, _ = jobs.hold(2, "--fail-fast")
    ray_process(running, "raylet", 1).kill()
    result = running.wait(90)
    assert result.returncode == 1, result.output
    assert re.fullmatch(r"stopping the job \(--fail-fast\): rank 1 \(\S+\) lost its Ray node",
                        result.run_record()["cause"])
    assert "starting it anew" not in result.rank_logs()["rank-1.log"], "no rejoin"
    assert not events_of(result, "rejoined")
    assert_nothing_left(result)


@pytest.mark.parametrize("module,rank", [("node.gcs_table", 0), ("procs.watchdog", 1)],
                         ids=["node-table-helper", "worker-watchdog"])
def test_a_helper_killed_twice_ends_the_job_in_seconds_naming_it(jobs, module, rank):
    """The first kill is survived (a restart); the second ends the job at
    once, with one message that names the helper, not the nodes."""
    running, _, _ = jobs.hold(2)
    first = helper_process(running, module, rank)
    first.kill()
    deadline = time.monotonic() + 20
    second = helper_process(running, module, rank)
    while (second is None or second.pid == first.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
        second = helper_process(running, module, rank)
    assert second is not None and second.pid != first.pid, "no restarted helper"
    second.kill()
    killed = time.monotonic()
    result = running.wait(90)
    assert time.monotonic() - killed < 20, result.output
    assert result.returncode == 1, result.output
    assert re.search(rf"start_ray\.{module} \(pid {first.pid}\) was killed by SIGKILL "
                     rf"while .*: restarted it \(pid {second.pid}\)",
                     "".join(result.rank_logs().values())), result.output
    assert re.search(rf"start_ray\.{module} \(pid {second.pid}\) was killed by SIGKILL "
                     r"while .*, and it had been restarted 1 time\(s\) already",
                     result.run_record()["cause"])
    assert not events_of(result, "node_lost"), "the nodes were blamed"
    assert_nothing_left(result)


@pytest.mark.every_ray
def test_dead_head_gcs_stops_the_driver_at_once(jobs):
    """The head's GCS dies (OOM killer, a signal meant for someone else): the
    cluster is gone, so rank 0 stops the driver and tears down instead of
    waiting for a driver that can no longer work."""
    in_place = compat.gcs_store()  # then --gcs-restarts 0 keeps today's GCS
    running, _, _ = jobs.hold(2, *(["--gcs-restarts", "0"] if in_place else []))
    plan = wait_for_rank0_log(running, "the GCS keeps its state in memory", 10)
    assert ("(--gcs-restarts 0)" if in_place else "has no GCS store") in plan
    ray_process(running, "gcs_server", 0).kill()
    killed = time.monotonic()
    result = running.wait(120)
    assert result.returncode == 1, result.output
    # Whoever sees it first: rank 0's look at the head's processes (the
    # raylet, without its GCS, may have ended by then too), or the head's
    # `ray start`, which ends when its GCS does (and says how).
    assert re.fullmatch(r"the Ray head on \S+ \(rank 0\) ended \("
                        r"(its gcs_server( and raylet)? ended|"
                        r"`ray start` exited with status \d+: gcs_server was killed by SIGKILL)"
                        r"\): the cluster is gone, so the driver is stopped now",
                        result.run_record()["cause"]), result.run_record()["cause"]
    assert all(e["left"] == "" for e in events_of(result, "stopped"))
    assert time.monotonic() - killed < 60
    assert_nothing_left(result)


# A plain exit status: test_lifecycle.py::test_driver_exit_status_is_the_jobs.
@pytest.mark.parametrize("code,status", [
    ("raise RuntimeError('driver bug')", 1),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 128 + 9),
], ids=["exception", "killed-by-signal"])
def test_driver_crash_status_is_the_jobs(jobs, tmp_path, code, status):
    crash = tmp_path / "crash.py"
    crash.write_text(code + "\n")
    result = jobs.run(2, ["--num-cpus", "1", str(crash)])
    assert result.returncode == status, result.output
    cause = f"the driver exited with status {status}"
    if status == 1:  # it raised: the cause names its exception
        cause += "; its last exception: RuntimeError: driver bug (in driver.log)"
    assert result.run_record()["cause"] == cause
    assert_nothing_left(result)


def test_uncaught_exception_on_one_rank_aborts_without_a_hang(jobs, tmp_path):
    """Rank 1 cannot write its log (an unexpected error inside start_ray): it
    stops what it started and aborts the MPI job; rank 0 must not hang."""
    start_ray = [PYTHON, "-m", "start_ray", "--num-cpus", "1", DRIVER]
    cmd = [MPIRUN, "--oversubscribe", "-np", "1", *start_ray, ":",
           "-np", "1", "env", "START_RAY_LOG_DIR=/proc/no-such-dir", *start_ray]
    result = jobs.launch(cmd).wait(90)
    assert result.returncode != 0
    assert "start_ray failed on this rank" in result.output
    assert "MPI_ABORT" in result.output
    assert_nothing_left(result)


@pytest.mark.every_ray
def test_default_ports_taken_by_others_do_not_matter(jobs):
    taken = []
    for port in (6379, 8265, 10001, 52365):
        sock = socket.socket()
        try:
            sock.bind(("0.0.0.0", port))
            sock.listen()
            taken.append(sock)
        except OSError:
            sock.close()  # already taken by someone else: just as good
    try:
        result = jobs.run(2, ["--num-cpus", "1", DRIVER])
    finally:
        for sock in taken:
            sock.close()
    assert result.returncode == 0, result.output
    assert result.cluster_info()["alive_nodes"] == 2
    assert_nothing_left(result)


def test_long_tmpdir_falls_back_to_a_short_one(jobs, tmp_path):
    long_tmp = tmp_path / ("t" * 80)
    long_tmp.mkdir()
    result = jobs.run(None, ["--num-cpus", "1", DRIVER],
                      env={"TMPDIR": str(long_tmp), "START_RAY_TEMP_DIR": ""})
    assert result.returncode == 0, result.output
    log = result.rank_logs()["rank-0.log"]
    assert "is too long for Ray's unix sockets, using /tmp" in log
    assert_nothing_left(result)


# ------------------------------------------- signals as a scheduler sends them
def test_the_walltime_warning_to_every_process_twice_costs_nothing(jobs, tmp_path):
    """As Slurm's step signal (or `scancel --signal=USR1`) reaches them: every
    process of the job, twice. Only the driver acts on it; no helper of
    start_ray dies of it (one did, and the second warning ended the job),
    no Ray node is lost, and the job ends as its driver says."""
    warnings = tmp_path / "warnings"
    running, _, release = jobs.hold(2, driver_args=["--warnings", str(warnings)])
    rounds = step_signals.repeatedly(running, signal.SIGUSR1, times=2, gap=3.0)
    assert all(any("python" in struck for struck in one) for one in rounds), rounds
    deadline = time.monotonic() + 10
    while len(read(warnings)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    result = finish_held(running, release)
    logs = "".join(result.rank_logs().values())
    assert "killed by SIGUSR1" not in logs and "restarted it" not in logs, logs[-3000:]
    assert "received SIGUSR1: forwarding it to the driver" in result.rank0_log
    assert len(read(warnings)) >= 2, "the driver got each warning"
    assert not events_of(result, "node_lost")


def test_the_walltime_warning_at_the_steps_first_instant_means_not_done(jobs, tmp_path):
    """The warning reaches every process as the step starts (Slurm's timer
    with a short time limit): whatever each rank managed by then, the job
    ends at once, leaves nothing, and says "not done" by the chain's
    contract (75 from a rank that caught it; from one that had not yet a
    handler, 138 by Open MPI's mpirun, 10 or 11 by MPICH's mpiexec), so that
    a chain goes on instead of failing."""
    from start_ray.batch import chain
    running = jobs.start(2, ["--num-cpus", "1", DRIVER])
    struck = step_signals.at_first_instant(running, signal.SIGUSR1, ranks=2)
    result = running.wait(90)
    assert result.returncode in (75, *DEFAULT_MPI.killed_by(signal.SIGUSR1)), \
        (struck, result.output)
    assert chain.outcome(result.returncode, warned=True) == "continues"
    assert "CLUSTER_INFO" not in result.stdout
    assert_nothing_left(result)


def test_a_head_killed_while_the_workers_join_is_named_within_seconds(jobs, tmp_path):
    """The head's `ray start`, GCS and raylet SIGKILLed while two workers are
    still joining (their `ray start` held back): rank 0 says at once that the
    head is gone, instead of waiting out the join deadline and blaming the
    workers, and reaps what the head left (no zombies under it)."""
    slow = tmp_path / "slow_ray.sh"
    ray = os.path.join(os.path.dirname(DEFAULT_MPI.python), "ray")
    slow.write_text(f"#!/bin/sh\nsleep 25\nexec {ray} \"$@\"\n")
    slow.chmod(0o755)
    start_ray = [DEFAULT_MPI.python, "-m", "start_ray", "--num-cpus", "1",
                 "--join-timeout", "200", DRIVER]
    cmd = [*DEFAULT_MPI.command(1, start_ray), ":",
           "-n", "2", "env", f"START_RAY_RAY_COMMAND={slow}", *start_ray]
    running = jobs.launch(cmd)
    wait_for_rank0_log(running, "waiting for 2 worker node(s) to join", 120)
    head = [node_process(running, name, 0) for name in ("raylet", "gcs_server")]
    rank0 = rank_processes(running)[0]
    starter = [child for child in rank0.children()
               if "--head" in " ".join(found_by_cmdline(child.pid))]
    assert all(head) and starter, (head, starter)
    for proc in [*starter, *head]:
        proc.kill()
    killed = time.monotonic()
    result = running.wait(120)
    took = time.monotonic() - killed
    assert result.returncode == 1, result.output
    cause = result.run_record()["cause"]
    assert cause.startswith("the Ray head on ") and "(rank 0) ended" in cause, cause
    assert "did not join" not in result.output, "the workers were blamed"
    assert not events_of(result, "never_joined")
    assert took < 30, f"noticed after {took:.0f}s"
    assert_nothing_left(result)
