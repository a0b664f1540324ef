"""jobs/flux_batch.sh on a real Flux: flux-core built from the source
beside the checkout (tests/local_flux.py), an instance of 2 brokers on this
machine (`flux start --test-size=2`, as Flux users try a workflow), the
batch script submitted as a user does (`flux batch ... jobs/flux_batch.sh`
from their folder), tasks launched by Flux's own `flux run` and its PMI,
with MPICH (the MPI family Flux's PMI serves). No stand-in: what Flux says
of each job (`flux jobs`) is what the tests read.

Each test runs its own instance (`flux start` is the job the test
launches): when it ends, every broker, job shell and task is gone, so
whatever is left was left by start_ray (tests/leftovers.py).
"""

import os
import re
import shlex
import shutil
from typing import Dict, List

import pytest
from requirements import skip_or_fail

import local_flux
from jobs import MPIS, ROOT, assert_nothing_left

JOBS = os.path.join(ROOT, "jobs")
SCRIPT = os.path.join(JOBS, "flux_batch.sh")
WHOAMI = os.path.join(ROOT, "tests", "drivers", "whoami.py")
COUNTER = os.path.join(ROOT, "tests", "drivers", "counter.py")
MPICH = MPIS["mpich"]


@pytest.fixture(scope="module")
def flux():
    """The built `flux` (skip, with why, where it cannot be had)."""
    why = local_flux.unavailable()
    if why:
        skip_or_fail("flux", why)
    missing = MPICH.missing()
    if missing:
        skip_or_fail("mpich", missing)
    return local_flux.flux_binary()


@pytest.fixture
def submit(tmp_path):
    """A user's folder: a relative .venv (the MPICH venv: Flux's PMI serves
    MPICH) and their own driver."""
    folder = tmp_path / "submit"
    folder.mkdir()
    os.symlink(os.path.dirname(os.path.dirname(MPICH.python)), folder / ".venv")
    shutil.copy(WHOAMI, folder / "my_driver.py")
    (folder / "failing.py").write_text("import sys\nprint('FAILING', flush=True)\n"
                                       "sys.exit(3)\n")
    return folder


def in_flux(jobs, flux, folder, batch_args: List[str], env: Dict[str, str],
            timeout: float = 420):
    """`flux batch BATCH_ARGS jobs/flux_batch.sh` in a fresh instance of 2
    brokers, from `folder`; waits until the queue is empty (every link of a
    chain), then prints what Flux says of each job and each job's output."""
    batch = " ".join(shlex.quote(arg) for arg in [*batch_args, SCRIPT])
    # The instance's exit status is whether the batch job was submitted and
    # every job drained in time (not the output listing's).
    inside = (f"flux batch {batch} >/dev/null && flux queue drain --timeout={timeout - 60:.0f}; "
              "drained=$?; flux jobs -a --no-header -o 'JOB {t_submit:.3f} {id.f58} {status} "
              "{returncode} {name} {nnodes} {duration:.0f}' | sort -n -k2; "
              "for f in flux-*.out; do echo \"=== $f\"; cat \"$f\"; done; exit $drained")
    path = os.path.dirname(flux) + os.pathsep + os.environ["PATH"]
    return jobs.launch([flux, "start", "--test-size=2", "bash", "-c", inside],
                       {"PATH": path, **env}, cwd=str(folder)).wait(timeout)


def flux_jobs(result) -> List[List[str]]:
    """[id, status, returncode, name, nnodes, duration] of each job, as Flux
    reports them, in the order they were submitted."""
    rows = [line.split()[2:] for line in result.stdout.splitlines() if line.startswith("JOB ")]
    assert rows, result.output
    return rows


def test_a_batch_job_runs_the_users_driver_on_both_brokers(jobs, flux, submit):
    """flux batch -N2 jobs/flux_batch.sh: Flux's `flux run` starts one task
    per broker, MPICH speaks Flux's PMI, the two brokers of one machine
    share a host name (a node per rank: START_RAY_OPTIONS), each node
    offers the cores Flux bound its task to, the user's driver runs with
    its arguments in their folder, and Flux reports the job COMPLETED, 0."""
    result = in_flux(jobs, flux, submit, [
        "-N2", "--env=MAX_LINKS=1", "--env=START_RAY_OPTIONS=--node-per-rank",
        "--env=DRIVER=my_driver.py", "--env=DRIVER_ARGS=--epochs 5"],
        {"START_RAY_NODE_PER_RANK": "0"})
    assert result.returncode == 0, result.output
    (job,) = flux_jobs(result)
    assert job[1:4] == ["COMPLETED", "0", "start_ray"], job
    assert re.search(r"^WHOAMI .*\"argv\": \[\"--epochs\", \"5\"\], \"cwd\": "
                     rf"\"{re.escape(str(submit))}\"", result.stdout, re.M), result.stdout
    assert re.search(r"started by flux run \(MPICH [\d.]+\) in Flux job ƒ", result.stdout)
    assert "READY: 2 node(s), CPU 4, GPU 0" in result.stdout, result.stdout
    # Each task is bound to 2 of its broker's cores (flux run -c2): each node offers them.
    assert result.rank0_log.count("CPUs 2 (CPU affinity of this host's ranks: 2)") == 2, \
        result.rank0_log
    assert "all Ray processes stopped (" in result.stdout and "none left" in result.stdout
    assert_nothing_left(result)


def test_the_jobs_status_as_flux_reports_it_is_the_drivers(jobs, flux, submit):
    result = in_flux(jobs, flux, submit, ["-N2", "--env=MAX_LINKS=1",
                                          "--env=DRIVER=failing.py"], {})
    assert result.returncode == 0, result.output
    (job,) = flux_jobs(result)
    assert job[1:3] == ["FAILED", "3"], (job, result.output)
    assert "FAILING" in result.stdout
    assert re.search(r"chain ƒ\w+: link 1 failed \(status 3\)", result.stdout), result.stdout
    assert_nothing_left(result)


def test_a_chain_resumes_link_after_link_and_cancels_the_last_queued(jobs, flux, submit,
                                                                     tmp_path):
    """The counter (tests/drivers/counter.py) as a chain: each link has
    100 s, and start_ray warns it 70 s before the end (WARNING=70), so it
    counts for ~30 s, saves and exits 0; the next link (this job's jobspec
    again, queued in the outer instance with afterany) resumes where it
    stopped; the link that reaches the target ends the chain and cancels
    the link it had queued."""
    state = tmp_path / "count"
    result = in_flux(jobs, flux, submit, [
        "-N2", "-t", "100s", "--env=WARNING=70", "--env=MAX_LINKS=4",
        f"--env=DRIVER={COUNTER}", f"--env=DRIVER_ARGS=--state {state} --target 60"], {},
        timeout=600)
    assert result.returncode == 0, result.output
    rows = flux_jobs(result)
    counted = [m.groups() for m in re.finditer(
        r"^COUNTER link=(\d+) chain=(\S+) from=(\d+) to=(\d+) warned=(\d)$", result.stdout,
        re.M)]
    assert len(counted) >= 2, result.output
    counted.sort(key=lambda found: int(found[0]))
    first_id = rows[0][0]
    for number, (link, chain, began, ended, warned) in enumerate(counted, 1):
        assert int(link) == number and chain == first_id, counted
        assert int(began) == (0 if number == 1 else int(counted[number - 2][3])), counted
    assert all(found[4] != "0" for found in counted[:-1]) and counted[-1][4] == "0", counted
    assert int(counted[-1][3]) == 60
    assert f"chain {first_id}: done after {len(counted)} link(s)" in result.stdout
    cancelled = re.search(rf"chain {first_id}: cancelled the queued link \(job (\S+)\)",
                          result.stdout)
    assert cancelled, result.stdout
    by_id = {row[0]: row for row in rows}
    assert by_id[cancelled.group(1)][1] == "CANCELED", rows
    # Every link is the first job again: its size, time limit and name.
    assert all(row[3:] == ["start_ray", "2", "100"] for row in rows), rows
    assert "walltime warning (SIGUSR1, from start_ray, before the time limit)" in result.stdout
    assert_nothing_left(result)


def test_fluxs_own_signal_reaches_the_driver_and_the_chain_goes_on(jobs, flux, submit,
                                                                  tmp_path):
    """`flux batch --signal=SIGUSR1@40s` with a 70 s limit, on one broker
    (two tasks, a Ray node each), start_ray's own warning off (WARNING=0):
    Flux sends SIGUSR1 40 s before the end, rank 0 passes it to the driver
    alone, which saves and exits 0: not done, and the next link resumes."""
    state = tmp_path / "count"
    result = in_flux(jobs, flux, submit, [
        "-N1", "-t", "70s", "--signal=SIGUSR1@40s", "--env=PER_NODE=2", "--env=WARNING=0",
        "--env=MAX_LINKS=2", f"--env=DRIVER={COUNTER}",
        f"--env=DRIVER_ARGS=--state {state} --target 100000"], {}, timeout=420)
    assert result.returncode == 0, result.output
    rows = flux_jobs(result)
    assert len(rows) == 2 and all(row[1] == "COMPLETED" for row in rows), (rows, result.output)
    # The driver gets Flux's warning twice (the job's signal, and the link's
    # through `flux run`); the second can end it as it prints its line, with
    # a rank's log line glued after it: the line is read up to "warned=N".
    first = re.search(r"^COUNTER link=1 chain=\S+ from=0 to=(\d+) warned=[1-9]", result.stdout,
                      re.M)
    assert first, result.output
    assert re.search(rf"^COUNTER link=2 chain=\S+ from={first.group(1)} to=\d+ warned=[1-9]",
                     result.stdout, re.M), result.output
    assert "signal: job will expire in 40.0s, sending SIGUSR1 to job" in result.stdout
    assert f"job {rows[1][0]} continues it" in result.stdout
    assert "READY: 2 node(s)" in result.stdout
    assert_nothing_left(result)


def test_fluxs_own_signal_ends_a_batch_job_of_two_brokers(jobs, flux, submit):
    """What Flux 0.88 does with `flux batch -N2 --signal`: the signal goes to
    every broker of the batch job, and the second one shuts down on it, so
    the step loses its second node (exit 1). Why the script warns by itself
    (WARNING), and docs/flux-lsf.md says to use --signal only on one node."""
    result = in_flux(jobs, flux, submit, [
        "-N2", "-t", "60s", "--signal=SIGUSR1@40s", "--env=WARNING=0", "--env=MAX_LINKS=1",
        f"--env=DRIVER={COUNTER}", "--env=DRIVER_ARGS=--state count --target 100000"], {})
    rows = flux_jobs(result)
    assert rows[0][1] == "FAILED", (rows, result.output)
    assert "dead to Flux" in result.stdout, result.stdout
    assert "warning: this job has `flux batch --signal` and 2 nodes: Flux sends the signal " \
           "to every broker" in result.stdout, result.stdout
    assert_nothing_left(result)


def test_a_time_limit_shorter_than_the_warnings_lead_still_runs_the_driver(
        jobs, flux, submit):
    """-t 40s with the script's WARNING of 600 s (a new user's first short
    job): the lead does not fit, so the warning comes at a fifth of the time
    left before the end instead, said at the start; the driver runs, ends
    unwarned, and the chain is done. (Flux's own --signal would kill the
    batch job's broker here: exit 138, before the script runs.)"""
    result = in_flux(jobs, flux, submit, ["-N2", "-t", "40s", "--env=MAX_LINKS=3",
                                          "--env=DRIVER=my_driver.py"], {})
    assert result.returncode == 0, result.output
    rows = flux_jobs(result)
    assert rows[0][1:3] == ["COMPLETED", "0"], rows
    assert rows[1][1] == "CANCELED" and len(rows) == 2, rows
    assert re.search(r"\d+s left, less than the warning's lead \(--warn-before 600\): the "
                     r"walltime warning comes \d+s before the end instead", result.stdout), \
        result.stdout
    assert "WHOAMI" in result.stdout, result.stdout
    assert re.search(r"chain ƒ\w+: done after 1 link\(s\)", result.stdout), result.stdout
    assert_nothing_left(result)


def test_open_mpi_under_flux_is_refused_with_the_flux_way(jobs, flux, submit):
    """Pip's Open MPI under `flux run`: every task a world of 1. The refusal
    names what works under Flux."""
    venv = submit / ".venv"
    venv.unlink()
    os.symlink(os.path.dirname(os.path.dirname(MPIS["openmpi"].python)), venv)
    result = in_flux(jobs, flux, submit, ["-N2", "--env=MAX_LINKS=1",
                                          "--env=DRIVER=my_driver.py"], {})
    (job,) = flux_jobs(result)
    assert job[1:3] == ["FAILED", "2"], (job, result.output)
    assert "Under Flux, use an MPICH-family MPI" in result.stdout, result.stdout
    assert "flux run -o pmi=pmix" in result.stdout
    assert_nothing_left(result)


