"""The PBS job scripts on a real OpenPBS: built from the source beside the
checkout (tests/local_pbs.py), a server and a mom on one emulated host and a
mom on another (tests/pbs_complex.py), jobs submitted as a user submits them
(`qsub jobs/pbs_mpiexec.sh` from their own folder, as a user of their own:
PBS's moms track a user's processes and leave root's alone), the ranks
started by MPICH's Hydra through the moms (start-ray-tmrsh, pbs_tmrsh). No
stand-in: what PBS says of each job (`qstat -xf`) is what the tests read.

PBS's daemons are this test process's descendants (it is a subreaper), so
every process a job starts on either host is too: whatever is left after a
job was left by it (tests/leftovers.py), found without start_ray's method.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import pytest
from requirements import skip_or_fail

import emulated_hosts
import leftovers as found_by
import local_pbs
from jobs import MARKER, ROOT, Result, assert_nothing_left, python_has
from pbs_complex import PbsComplex, ensure_user

JOBS = os.path.join(ROOT, "jobs")
MPIEXEC_SCRIPT = os.path.join(JOBS, "pbs_mpiexec.sh")
CHAIN_SCRIPT = os.path.join(JOBS, "pbs_chain.sh")
DRIVERS = os.path.join(ROOT, "tests", "drivers")
USER = "srtest"
# MPICH on Debian's python3: a job's user cannot run a Python under /root.
USER_VENV = os.environ.get("START_RAY_USER_VENV", os.path.join(ROOT, ".venv-user"))
SIZE = ["-l", "select=2:ncpus=2:mpiprocs=1", "-l", "place=scatter"]


@pytest.fixture(scope="module")
def pbs():
    """A PBS complex on two emulated hosts, for the whole file."""
    why = local_pbs.unavailable() or emulated_hosts.unavailable()
    if why:
        skip_or_fail("pbs", why)
    python = os.path.join(USER_VENV, "bin", "python")
    if not (os.access(os.path.join(USER_VENV, "bin", "mpiexec"), os.X_OK)
            and python_has(python, "start_ray")):
        skip_or_fail("pbs", f"no MPICH venv on Debian's python3 at {USER_VENV}: "
                            "`make venv-user` builds it")
    ensure_user(USER)
    with emulated_hosts.EmulatedHosts(2, networks={"eth0": "10.200.0"}, cut={}) as hosts, \
            PbsComplex(hosts, local_pbs.prefix() or "") as complex:
        yield complex


@pytest.fixture
def submit():
    """The user's folder (not the checkout): a relative .venv and their own
    drivers. Theirs, so that their jobs may write there."""
    folder = tempfile.mkdtemp(prefix="srpbs-submit-", dir="/var/tmp")
    os.symlink(USER_VENV, os.path.join(folder, ".venv"))
    for name in ("whoami.py", "signals.py", "counter.py"):
        shutil.copy(os.path.join(DRIVERS, name), folder)
    with open(os.path.join(folder, "failing.py"), "w") as handle:
        handle.write("import sys\nprint('FAILING', flush=True)\nsys.exit(3)\n")
    user = pwd.getpwnam(USER)
    for path in [folder] + [os.path.join(folder, name) for name in os.listdir(folder)]:
        os.lchown(path, user.pw_uid, user.pw_gid)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


class Submitted:
    """A job as the user submitted it: its id, marker and the processes before."""

    def __init__(self, pbs: PbsComplex, folder: str, job: str, mark: str,
                 before: found_by.Snapshot) -> None:
        self.pbs, self.folder, self.job, self.mark, self.before = pbs, folder, job, mark, before
        self.began = time.monotonic()

    def wait(self, timeout: float = 300) -> Dict[str, str]:
        """`qstat -xf` of the job once PBS has finished it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fields = self.pbs.qstat(self.job)
            if fields.get("job_state") == "F":
                return fields
            time.sleep(1)
        raise AssertionError(f"{self.job} not finished within {timeout}s: "
                             f"{self.pbs.qstat(self.job)}\n{self.output()}")

    def output(self, job: Optional[str] = None) -> str:
        """The job's output file, where PBS delivered it (-j oe)."""
        fields = self.pbs.qstat(job or self.job)
        path = fields.get("Output_Path", ":").split(":", 1)[1]
        if path.endswith("/"):
            path = os.path.join(path, f"{job or self.job}.OU")
        try:
            with open(path) as handle:
                return handle.read()
        except OSError:
            return f"(no output at {path})"

    def result(self, text: str, status: int) -> Result:
        return Result(status, text, "", time.monotonic() - self.began, self.mark,
                      os.path.join(self.folder, "logs"), None, self.before)


def qsub(pbs: PbsComplex, folder: str, script: str, options: Sequence[str],
         variables: Dict[str, str], user: Optional[str] = USER) -> Submitted:
    """`qsub OPTIONS -v VARIABLES SCRIPT` as the user (None: root), from
    their folder; the job carries the test's marker (tests/leftovers.py)."""
    import uuid
    mark = uuid.uuid4().hex
    given = {MARKER: mark, **variables}
    before = found_by.snapshot()
    out = pbs.on(pbs.server, ["qsub", *options, "-v", ",".join(
        f"{key}={value}" for key, value in given.items()), script], user=user, cwd=folder)
    return Submitted(pbs, folder, out.strip(), mark, before)


def test_a_job_runs_the_users_driver_with_one_ray_node_per_host(pbs, submit):
    """qsub jobs/pbs_mpiexec.sh: 2 chunks of 2 CPUs and 2 MPI processes,
    one per host. Hydra starts the 4 ranks through the moms; one Ray node
    per host offers its chunk's 2 CPUs, from PBS's exec_host: NCPUS is 1
    here (ompthreads=1: a rank's threads, not its host's CPUs). The user's
    driver runs with its arguments in their folder; Exit_status is 0."""
    job = qsub(pbs, submit, MPIEXEC_SCRIPT, [
        "-l", "select=2:ncpus=2:mpiprocs=2:ompthreads=1", "-l", "place=scatter",
        "-l", "walltime=00:05:00"], {"DRIVER": "whoami.py", "DRIVER_ARGS": "--epochs 5"})
    fields = job.wait()
    output = job.output()
    assert fields.get("Exit_status") == "0", output
    assert fields["exec_host"] == "h0/0*2+h1/0*2", fields
    assert re.search(r"^WHOAMI .*\"argv\": \[\"--epochs\", \"5\"\], \"cwd\": "
                     rf"\"{re.escape(submit)}\"", output, re.M), output
    assert "started by Hydra mpiexec (MPICH " in output and "in PBS job " in output
    assert "4 rank(s) on 2 host(s)" in output, output
    assert "READY: 2 node(s), CPU 4, GPU 0" in output, output
    result = job.result(output, 0)
    assert result.rank0_log.count("CPUs 2 (PBS exec_host: 2 CPUs on each host)") == 2, \
        result.rank0_log
    assert_nothing_left(result)


def test_a_failing_link_under_open_mpi_ends_the_chain_with_the_drivers_status(pbs, submit):
    """jobs/pbs_chain.sh with LAUNCH=openmpi: Open MPI's mpirun reads the
    hosts from PBS_NODEFILE and starts its daemons through the moms (its ssh
    agent: start-ray-tmrsh). The driver exits 3: so does the job, as PBS
    reports it, and the chain ends there, its queued link deleted. (As
    root: the Open MPI venv is on this machine's own Python, which only
    root can run.)"""
    job = qsub(pbs, submit, CHAIN_SCRIPT, [*SIZE, "-l", "walltime=00:05:00"], {
        "DRIVER": "failing.py", "LAUNCH": "openmpi", "VENV": os.path.join(ROOT, ".venv"),
        "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}, user=None)
    pbs.wait_all_finished(timeout=300)
    links = links_of(pbs, job.job)
    output = job.output()
    assert links[0][1].get("Exit_status") == "3", output
    assert "started by mpirun (Open MPI " in output, output
    assert "2 rank(s) on 2 host(s)" in output, output
    assert "FAILING" in output and "exit status 3" in output, output
    chain = job.job.split(".")[0]
    assert f"chain {chain}: link 1 failed (status 3): the chain ends here" in output, output
    assert len(links) == 2 and "stime" not in links[1][1], links  # deleted, never ran
    assert f"cancelled the queued link (job {links[1][0]})" in output, output
    assert_nothing_left(job.result(output, 3))


def test_the_warning_before_the_walltime_reaches_the_driver_which_saves_and_exits_75(
        pbs, submit):
    """PBS sends no warning: start_ray.jobs sends SIGUSR1 WARNING (40) s
    before the walltime that the real qstat reports (60 s, less the time
    since the job began). The driver proves the cluster still works on both
    nodes, saves, and exits 75: not done, as PBS reports it."""
    events = os.path.join(submit, "events")
    job = qsub(pbs, submit, MPIEXEC_SCRIPT, [*SIZE, "-l", "walltime=00:01:00"], {
        "WARNING": "40", "DRIVER": "signals.py",
        "DRIVER_ARGS": f"--ready {submit}/ready --events {events} --exit-code 75"})
    fields = job.wait()
    output = job.output()
    assert fields.get("Exit_status") == "75", output
    assert re.search(r"time limit (5\d|60)s: the walltime warning in (1\d|20)s", output), output
    with open(events) as handle:
        assert handle.read().split("\n")[:3] == [
            "signal SIGUSR1", "tasks ran on 2 nodes after the signal", "checkpointed"]
    assert "walltime" not in fields.get("comment", ""), fields  # it ended before PBS's kill
    assert_nothing_left(job.result(output, 75))


def test_at_the_walltime_pbs_ends_the_job_and_nothing_is_left_on_either_host(pbs, submit):
    """A driver that ignores the warning (at a fifth of the 40 s, since the
    lead of 1000 s does not fit) and SIGTERM: at the walltime
    the mom sends SIGTERM to every process of the job, start_ray fits its
    teardown into the queue's kill_delay (10 s) and stops every Ray process
    on both hosts; PBS SIGKILLs what is left of the job after that."""
    job = qsub(pbs, submit, MPIEXEC_SCRIPT, [*SIZE, "-l", "walltime=00:00:40"], {
        "WARNING": "1000", "DRIVER": "signals.py",
        "DRIVER_ARGS": f"--ready {submit}/ready --events {submit}/events --ignore-term "
                       "--ignore-warning --max-seconds 600"})
    fields = job.wait()
    output = job.output()
    assert fields.get("Exit_status") == "-29", (fields, output)  # JOB_EXEC_KILL_WALLTIME
    assert "PBS: job killed: walltime" in output, output
    assert "the scheduler kills the job 10s (PBS's kill_delay (its default)) after " \
           "SIGTERM" in output, output
    assert "SIGTERM at the time limit" in output, output
    assert re.search(r"less than the warning's lead \(--warn-before 1000\): the walltime "
                     r"warning comes \d+s before the end instead \(20% of the time left\)",
                     output), output
    assert "received SIGTERM: forwarding it to the driver" in output, output
    assert_nothing_left(job.result(output, 1))


def links_of(pbs: PbsComplex, first: str) -> List[Tuple[str, Dict[str, str]]]:
    """(job, qstat -xf) of the chain's links, in order."""
    number = int(first.split(".")[0])
    return [(job, pbs.qstat(job)) for job in pbs.jobs() if int(job.split(".")[0]) >= number]


def test_a_chain_resumes_link_after_link_and_deletes_the_last_queued(pbs, submit):
    """qsub -N mychain -o out/ jobs/pbs_chain.sh, each link with 70 s and
    start_ray's warning 40 s before the end: the counter counts, saves and
    exits 0 on the warning; each link is queued by the last with
    depend=afterany and the first job's options as qstat reports them;
    the link that reaches the target ends the chain and deletes the link it
    had queued (qdel). Every link's output lands in out/."""
    out = os.path.join(submit, "out")
    os.mkdir(out)
    os.chown(out, pwd.getpwnam(USER).pw_uid, pwd.getpwnam(USER).pw_gid)
    state = os.path.join(submit, "count")
    job = qsub(pbs, submit, CHAIN_SCRIPT, [
        "-N", "mychain", "-o", out + "/", *SIZE, "-l", "walltime=00:01:10"], {
        "WARNING": "40", "MAX_LINKS": "5", "DRIVER": "counter.py",
        "DRIVER_ARGS": f"--state {state} --target 60"})
    pbs.wait_all_finished(timeout=600)
    links = links_of(pbs, job.job)
    outputs = {name: job.output(name) for name, _ in links}
    text = "\n".join(f"=== {name}\n{outputs[name]}" for name, _ in links)
    counted = [m.groups() for m in re.finditer(
        r"^COUNTER link=(\d+) chain=(\S+) from=(\d+) to=(\d+) warned=(\d)$", text, re.M)]
    assert len(counted) >= 2, text
    chain = job.job.split(".")[0]
    for number, (link, chain_id, began, ended, warned) in enumerate(counted, 1):
        assert int(link) == number and chain_id == chain, counted
        assert int(began) == (0 if number == 1 else int(counted[number - 2][3])), counted
    assert all(found[4] == "1" for found in counted[:-1]) and counted[-1][4] == "0", counted
    assert int(counted[-1][3]) == 60
    ran, deleted = links[:len(counted)], links[len(counted):]
    assert len(deleted) == 1, [name for name, _ in links]
    for number, (name, fields) in enumerate(ran, 1):
        assert fields["Exit_status"] == "0", text
        assert fields["Job_Name"] == "mychain" and fields["Output_Path"].endswith(out + "/")
        assert fields["Resource_List.select"] == "2:ncpus=2:mpiprocs=1", fields
        assert fields["Resource_List.walltime"] == "00:01:10", fields
        assert os.path.exists(os.path.join(out, f"{name}.OU")), os.listdir(out)
        # Each link queued the next to run after it, whatever its end (PBS
        # shows it from this side once this link has ended).
        assert f"beforeany:{links[number][0]}" in fields.get("depend", ""), fields
    last_queued, fields = deleted[0]
    assert "stime" not in fields, fields  # never started
    assert f"chain {chain}: cancelled the queued link (job {last_queued})" in text, text
    assert f"chain {chain}: done after {len(counted)} link(s)" in text
    assert_nothing_left(job.result(text, 0))


def test_qdel_of_a_running_link_stops_every_ray_process_and_ends_the_chain(pbs, submit):
    """qdel while the driver runs: every process of the job on both hosts
    gets SIGTERM (PBS), start_ray stops its Ray nodes, the chain's wrapper
    sees a SIGTERM before the time limit and deletes the queued link at once:
    the chain ends there, and nothing of the job is left on either host."""
    ready = os.path.join(submit, "ready")
    job = qsub(pbs, submit, CHAIN_SCRIPT, [*SIZE, "-l", "walltime=00:05:00"], {
        "WARNING": "60", "MAX_LINKS": "3", "DRIVER": "signals.py",
        "DRIVER_ARGS": f"--ready {ready} --events {submit}/events --max-seconds 600"})
    deadline = time.monotonic() + 180
    while not os.path.exists(ready) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert os.path.exists(ready), job.output()
    pbs.on(pbs.server, ["qdel", job.job], user=USER)
    pbs.wait_all_finished(timeout=120)
    links = links_of(pbs, job.job)
    output = job.output()
    assert len(links) == 2, (links, output)
    assert links[0][1]["Exit_status"] == "271", (links[0][1], output)  # 256 + SIGTERM: qdel
    assert "stime" not in links[1][1], links[1][1]  # the queued link never ran
    assert "SIGTERM before the time limit: the job was cancelled" in output, output
    assert f"cancelled the queued link (job {links[1][0]})" in output, output
    assert_nothing_left(job.result(output, 271))
