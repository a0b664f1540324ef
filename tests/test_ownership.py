"""How a rank finds what it started, in seconds, with real processes but no
MPI and no cluster: a process renamed the way Ray renames its agents, a
session whose leader PID now belongs to someone else, and the watchdog of a
rank that dies by SIGKILL."""

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import leftovers as found_by
import psutil
import pytest

from jobs import ROOT
from start_ray.options import Options
from start_ray.procs import proctree
from start_ray.procs.owner import ProcessOwner

MARK = "START_RAY_JOB"

# Renames itself with Ray's own setproctitle (as Ray's agents do), with a
# title long enough to overwrite its whole command line and environment
# (however large the environment the tests run in), then waits. The title
# fills only the contiguous area up to the first variable the process has set
# again since it started (`import ray` sets RAY_CLIENT_MODE, for one, so the
# environment's tail survives when the tests' own environment holds it):
# start_renamed puts the marker first, where the rename always reaches.
RENAMED = textwrap.dedent("""
    import sys, time, ray._raylet
    size = sum(len(open(f"/proc/self/{name}", "rb").read()) for name in ("cmdline", "environ"))
    ray._raylet.setproctitle("ray::FakeAgent" + " " * (size + 100))
    print("renamed", flush=True)
    time.sleep(120)
""")


@pytest.fixture
def owner():
    """A process owner that books the sessions it starts (no watchdog)."""
    return ProcessOwner(None, Options(), logging.getLogger("test_ownership"))


def start_renamed(value, owner=None):
    env = {MARK: value, **{k: v for k, v in os.environ.items() if k != MARK}}
    proc = (owner.popen if owner else proctree.popen)(
        [sys.executable, "-c", RENAMED], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "renamed"
    return proc


def test_a_renamed_process_is_found_by_its_session_and_by_the_tests_check(owner):
    sessions = owner.sessions
    before = found_by.snapshot()
    proc = start_renamed("job1/0", owner)
    try:
        assert psutil.Process(proc.pid).environ().get(MARK) is None, \
            "psutil is blind to the renamed process (the bug this guards against)"
        assert found_by.environ(proc.pid).get(MARK) is None, "the whole environ was overwritten"
        assert sessions == [(proc.pid, proctree.start_time(proc.pid))]
        assert [p.pid for p in proctree.owned(MARK, "job1/0", sessions)] == [proc.pid]
        assert proctree.owned(MARK, "job1/0", []) == [], "the marker alone misses it"
        assert proc.pid in [p.pid for p in found_by.find("NO_SUCH_MARK", "x", before)]
        assert proc.pid not in [p.pid for p in found_by.find("NO_SUCH_MARK", "x")], \
            "an old process is never taken for a leftover"
    finally:
        proc.kill()
        proc.wait()


def test_the_marker_is_matched_whole_in_the_raw_environment():
    child = subprocess.Popen(["sleep", "60"], env={MARK: "job2/10"})
    try:
        assert [p.pid for p in proctree.owned(MARK, "job2/10")] == [child.pid]
        assert proctree.owned(MARK, "job2/1") == [], "rank 1 is not rank 10"
    finally:
        child.kill()
        child.wait()


def test_a_session_whose_leader_pid_was_reused_is_not_ours():
    leader = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        began = proctree.start_time(leader.pid)
        assert [p.pid for p in proctree.owned(MARK, "none", [(leader.pid, began)])] == [leader.pid]
        # Same PID, another start time: a new session leader, not ours.
        assert proctree.owned(MARK, "none", [(leader.pid, began - 1)]) == []
    finally:
        leader.kill()
        leader.wait()


def test_a_killed_process_with_threads_is_reaped_not_left_a_zombie():
    """What a rank stopped is reaped before it exits (proctree.reap): a
    zombie it left would pass to init, and mpiexec as a container's init
    fails the job for it. A killed process with threads shows as a zombie
    before it can be reaped."""
    threads = ("import threading, time\n"
               "for _ in range(16): threading.Thread(target=time.sleep, args=(60,)).start()\n"
               "print(flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", threads], stdout=subprocess.PIPE)
    try:
        child.stdout.readline()
        proc = psutil.Process(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while proctree.running(proc):  # as the teardown's waits see it: ended
            assert time.monotonic() < deadline, "SIGKILL did not end it"
            time.sleep(0.001)
        assert proctree.reap([child.pid, os.getpid()]) == [child.pid]
        with pytest.raises(ChildProcessError):
            os.waitpid(child.pid, os.WNOHANG)
    finally:
        child.kill()
        child.stdout.close()


# Stands in for `ray start`: starts the renamed process (as the raylet starts
# Ray's agents: a grandchild of the rank, which does not die with it), prints
# its PID, and waits.
STARTER = textwrap.dedent("""
    import subprocess, sys, time
    agent = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE)
    agent.stdout.readline()
    print(agent.pid, flush=True)
    time.sleep(120)
""")

# A stand-in rank: starts its watchdog and the starter (in a session of its
# own, as every child of a rank), then waits to be killed.
RANK = textwrap.dedent("""
    import os, subprocess, sys, time
    sys.path.insert(0, {root!r})
    from start_ray.procs import proctree
    from start_ray.procs import watchdog
    proctree.become_subreaper()
    dog = watchdog.Watchdog({mark!r}, "job3/1", {log!r}, "rank 1 | host")
    starter = proctree.popen([sys.executable, "-c", {starter!r}, {renamed!r}],
                             env=dict(os.environ, **{{{mark!r}: "job3/1"}}),
                             stdout=subprocess.PIPE, text=True)
    dog.watch(starter.pid, proctree.start_time(starter.pid))  # as ProcessOwner.adopt does
    print(dog.pid, starter.stdout.readline().strip(), flush=True)
    time.sleep(120)
""")


def test_watchdog_kills_what_a_sigkilled_rank_left_and_says_so(tmp_path):
    log = tmp_path / "rank-1.log"
    rank = subprocess.Popen([sys.executable, "-c", RANK.format(
        root=ROOT, mark=MARK, log=str(log), starter=STARTER, renamed=RENAMED)],
        stdout=subprocess.PIPE, text=True)
    dog_pid, child_pid = map(int, rank.stdout.readline().split())
    dog, child = psutil.Process(dog_pid), psutil.Process(child_pid)
    try:
        assert psutil.Process(child.ppid()).ppid() == rank.pid
        dog.send_signal(signal.SIGTERM)  # as scancel sends to every process:
        time.sleep(0.5)                  # the watchdog does not act on it
        assert dog.is_running() and child.is_running()
        rank.kill()
        rank.wait()
        dog.wait(timeout=10)
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
        text = log.read_text()
        assert re.search(rf"watchdog: the rank \(pid {rank.pid}\) ended without its teardown; "
                         rf"killed \d process\(es\) it left: .*{child_pid} ray::FakeAgent", text)
        assert "none left" in text
        assert text.startswith(time.strftime("%Y-%m-%dT")) and "| rank 1 | host | ERROR |" in text
    finally:
        for proc in (child, dog):
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
