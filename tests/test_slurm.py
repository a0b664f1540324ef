"""jobs/slurm_cpu.sbatch, jobs/slurm_chain.sbatch and `srun python -m
start_ray` on a real Slurm (tests/local_slurm.py: slurmctld + slurmd on this
machine, one node). The scripts are submitted from a folder of the test's
own, as a user would, not from the checkout.

Jobs run in the test's marked environment (sbatch and srun pass it on), so
`leftovers` finds anything they leave."""

import csv
import glob
import json
import os
import re
import subprocess
import time

import leftovers as found_by
import pytest
from requirements import skip_or_fail
from local_slurm import LocalSlurm, unavailable

from jobs import DRIVER, PYTHON, ROOT, assert_nothing_left, leftovers

SCRIPT = os.path.join(ROOT, "jobs", "slurm_cpu.sbatch")
CHAIN = os.path.join(ROOT, "jobs", "slurm_chain.sbatch")
PLOT = os.path.join(ROOT, "drivers", "plot_rewards.py")
VENV = os.path.dirname(os.path.dirname(PYTHON))
# 2 tasks x 1 CPU on the one node: one Ray node with 2 CPUs (1 env runner).
SIZE = ["-N", "1", "--ntasks-per-node=2", "--cpus-per-task=1"]
SHORT = "--minibatch-size 64 --num-epochs 2 --checkpoint-frequency 1"
COUNTER = os.path.join(ROOT, "tests", "drivers", "counter.py")


@pytest.fixture(scope="module")
def slurm():
    why = unavailable()
    if why:
        skip_or_fail("slurm", why)
    with LocalSlurm() as made:
        yield made


def submit(jobs, slurm, tmp_path, stop_iters, extra=SHORT):
    """The PPO example (the script's default driver), submitted from tmp_path."""
    mark, env, _ = jobs.new_job({"START_RAY_NODE_PER_RANK": "0", "VENV": VENV,
                                 "PPO_FRAMEWORK": "tf2", "PPO_STOP_ITERS": str(stop_iters),
                                 "PPO_TRAIN_BATCH_SIZE": "500", "DRIVER_ARGS": extra})
    before = found_by.snapshot()
    job_id = slurm.sbatch(SCRIPT, [*SIZE, f"--output={tmp_path}/slurm-%j.out"], env,
                          str(tmp_path))
    return job_id, (mark, before), os.path.join(tmp_path, f"slurm-{job_id}.out")


def read(path):
    with open(path) as handle:
        return handle.read()


def run_dir(output):
    found = re.search(r"logs in (\S+)", output)
    assert found, output
    return found.group(1)


def iterations(output_path):
    """Training iterations written so far by the job's driver."""
    if not os.path.exists(output_path) or "logs in " not in read(output_path):
        return 0
    found = glob.glob(os.path.join(run_dir(read(output_path)), "results", "*", "*",
                                   "progress.csv"))
    return len(read(found[0]).splitlines()) - 1 if found else 0


def wait_for_training(slurm, job_id, output_path, timeout=300):
    deadline = time.monotonic() + timeout
    while iterations(output_path) < 1:
        assert slurm.running(job_id), f"job ended before training:\n{read(output_path)}"
        assert time.monotonic() < deadline, f"no iteration in {timeout}s"
        time.sleep(1)


def assert_job_left_nothing(job):
    """Nothing with the job's marker, nothing new that looks like Ray or MPI."""
    mark, before = job
    deadline = time.monotonic() + 10
    while leftovers(mark, since=before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not leftovers(mark, since=before)


def test_sbatch_script_trains_until_the_walltime_warning_and_leaves_nothing(
        jobs, slurm, tmp_path):
    """The PPO example as sbatch runs it; at the warning time, what
    `#SBATCH --signal=B:USR1@300` does (now): USR1 to the batch shell, which
    passes it to srun, then to every task, and the driver saves and exits 0."""
    assert "#SBATCH --signal=B:USR1@" in read(SCRIPT)
    job_id, job, out = submit(jobs, slurm, tmp_path, stop_iters=1000)
    wait_for_training(slurm, job_id, out)
    slurm.scancel(job_id, "--batch", "--signal=USR1")
    record = slurm.wait(job_id, timeout=180)
    output = read(out)
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", output
    assert "start_ray.jobs: the step ended with status 0" in output
    assert re.search(rf"started by srun \(Open MPI [\d.]+\) in Slurm job {job_id}\b", output)
    assert run_dir(output).endswith(f"-{job_id}"), "the run id names the Slurm job"
    assert "2 rank(s) on 1 host(s)" in output and "placement: 1 Ray node(s)" in output
    assert "CPUs 2 (SLURM_CPUS_PER_TASK=1 x 2 tasks" in read(os.path.join(run_dir(output),
                                                                      "rank-0.log"))
    assert "walltime warning (SIGUSR1, from the scheduler)" in output
    assert "train_ppo.py: got SIGUSR1: saving a checkpoint" in output
    assert "resume with --restore" in output
    assert glob.glob(os.path.join(run_dir(output), "results", "*", "*", "checkpoint_*"))
    assert f"TensorBoard: tensorboard --logdir {run_dir(output)}/results" in output
    assert "none left" in output
    assert_job_left_nothing(job)


def test_srun_starts_one_cluster_over_all_tasks(jobs, slurm):
    result = jobs.launch(["srun", "-n", "4", PYTHON, "-m", "start_ray", DRIVER],
                         {"START_RAY_NODE_PER_RANK": "0", **slurm.env}).wait(240)
    assert result.returncode == 0, result.output
    info = result.cluster_info()
    assert info["alive_nodes"] == 1 and info["cpus"] == 4  # SLURM_CPUS_ON_NODE
    assert re.search(r"started by srun \(Open MPI [\d.]+\) in Slurm job \d+", result.stdout)
    assert "4 rank(s) on 1 host(s)" in result.stdout
    assert_nothing_left(result)


def test_srun_with_a_pmi_this_mpi_does_not_speak_is_refused(jobs, slurm):
    """Open MPI under --mpi=pmi2: four singletons. One message, exit 2."""
    result = jobs.launch(["srun", "--mpi=pmi2", "-n", "4", PYTHON, "-m", "start_ray", DRIVER],
                         slurm.env).wait(120)
    assert result.returncode == 2, result.output
    assert result.output.count("srun started 4 tasks, but MPI sees a world of 1") == 1
    assert "--mpi=pmix" in result.output
    assert "Ray head" not in result.output
    assert_nothing_left(result)


def test_scancel_during_training_ends_within_kill_wait(jobs, slurm, tmp_path):
    """scancel sends SIGTERM to every process of the job (Ray's own too) and
    SIGKILL KillWait (here 30 s) later. start_ray fits the driver's grace
    into KillWait, so its own teardown, not Slurm's SIGKILL, ends the job."""
    job_id, job, out = submit(jobs, slurm, tmp_path, stop_iters=1000)
    wait_for_training(slurm, job_id, out)
    cancelled = time.monotonic()
    slurm.scancel(job_id)
    record = slurm.wait(job_id, timeout=120)
    took = time.monotonic() - cancelled
    output = read(out)
    assert record["JobState"] == "CANCELLED", output
    rank0 = read(os.path.join(run_dir(output), "rank-0.log"))
    assert "the driver's grace is 15s, not 30s: the scheduler kills the job 30s (Slurm's KillWait)" in rank0
    assert "received SIGTERM: forwarding it to the driver" in rank0
    assert "which has 15s to finish" in rank0
    # start_ray's own teardown ran to its end: Slurm's SIGKILL came too late
    # to matter (the driver itself cannot finish: its Ray workers got SIGTERM too).
    assert "none left" in rank0 and "exit status" in rank0, rank0[-3000:]
    assert took < 60
    assert glob.glob(os.path.join(run_dir(output), "results", "*", "*", "checkpoint_*"))
    assert_job_left_nothing(job)


# ------------------------------------------------------------- chained jobs
def submit_chain(jobs, slurm, tmp_path, env, options=()):
    """jobs/slurm_chain.sbatch from tmp_path, each link limited to 5 minutes
    (Slurm's own warning, 30 s before that, never comes: the test warns each
    link), every link's output in tmp_path/out/ as the first sbatch says."""
    (tmp_path / "out").mkdir()
    mark, env, _ = jobs.new_job({"START_RAY_NODE_PER_RANK": "0", "VENV": VENV,
                                 "MAX_LINKS": "6", "SBATCH_SIGNAL": "B:USR1@30", **env})
    before = found_by.snapshot()
    first = slurm.sbatch(CHAIN, [*SIZE, "--time=5", f"--output={tmp_path}/out/link-%j.log",
                                 *options], env, str(tmp_path))
    return first, (mark, before)


def warn_each_link(slurm, progress, timeout):
    """What the script's `#SBATCH --signal=B:USR1@600` does at each link's
    warning time, done once `progress()` says the link has done its share
    (Slurm sends it up to a minute early, too coarse for a test): USR1 to
    the batch shell (scancel --batch). Returns when no job is queued."""
    warned = set()
    deadline = time.monotonic() + timeout
    while slurm.queue():
        assert time.monotonic() < deadline, f"the chain still runs after {timeout}s"
        for job_id in progress():
            if job_id not in warned and slurm.running(job_id):
                slurm.scancel(job_id, "--batch", "--signal=USR1")
                warned.add(job_id)
        time.sleep(0.5)


def link_outputs(tmp_path):
    """(job id, output) of every link that ran, in order."""
    found = glob.glob(os.path.join(tmp_path, "out", "link-*.log"))
    ids = sorted(int(re.search(r"link-(\d+)\.log", path).group(1)) for path in found)
    return [(str(i), read(os.path.join(tmp_path, "out", f"link-{i}.log"))) for i in ids]


def test_any_driver_chains_over_links_with_the_first_jobs_options(jobs, slurm, tmp_path):
    """A driver with no Ray in it (tests/drivers/counter.py) keeps the
    chain's contract: warned, it saves its count and exits 0, and the next
    link (queued by the link itself, with the first sbatch's options: here
    --output, which only the command line gave) goes on from there; at the
    target it exits 0 unwarned, and the chain ends."""
    state = tmp_path / "count"
    first, job = submit_chain(jobs, slurm, tmp_path, {
        "DRIVER": COUNTER, "DRIVER_ARGS": f"--state {state} --target 8 --step-seconds 1.5"})
    share = {}

    def progress():  # a link is warned once it counted 2 more
        count = int(state.read_text()) if state.exists() else 0
        running = slurm.running_now()
        for job_id in running:
            share.setdefault(job_id, count)
        return [job_id for job_id in running if count >= share[job_id] + 2]

    warn_each_link(slurm, progress, timeout=600)
    links = link_outputs(tmp_path)
    assert len(links) >= 2 and links[0][0] == first, links
    for number, (job_id, output) in enumerate(links, 1):
        record = slurm.record(job_id)
        assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", output
        assert re.search(rf"COUNTER link={number} chain={first} from=\d+ to=\d+", output), output
        assert "none left" in output
    for job_id, output in links[:-1]:
        assert "walltime warning (SIGUSR1, from the scheduler)" in output
        assert f"chain {first}: not done; job" in output
    last = links[-1][1]
    assert f"chain {first}: done after {len(links)} link(s)" in last
    assert state.read_text() == "8"
    # The link queued after the last one was cancelled: it never ran.
    queued = re.search(r"cancelled the queued link \(job (\d+)\)", last).group(1)
    assert slurm.record(queued)["JobState"] == "CANCELLED"
    assert_job_left_nothing(job)


def test_the_ppo_example_chains_to_its_stop_criterion(jobs, slurm, tmp_path):
    """train_ppo's side of the contract: each link is warned after 2
    iterations, so 4 do not fit in one; the next link resumes from the last
    one's checkpoint (chains/ppo-<first job>), and the iterations go on with
    no gap and no repeat."""
    assert "#SBATCH --signal=B:USR1@" in read(CHAIN)
    first, job = submit_chain(jobs, slurm, tmp_path, {
        "PPO_FRAMEWORK": "torch", "PPO_STOP_ITERS": "4", "PPO_TRAIN_BATCH_SIZE": "1000",
        "DRIVER_ARGS": "--minibatch-size 128 --num-epochs 1"})
    experiment = os.path.join(tmp_path, "chains", f"ppo-{first}")

    def progress():  # links warned after 2 iterations of their own, unless all 4 are done
        trained = {}
        if os.path.exists(os.path.join(experiment, "progress.csv")):
            with open(os.path.join(experiment, "progress.csv"), newline="") as handle:
                for row in csv.DictReader(handle):
                    job_id = row["link"].split("-", 1)[1]
                    trained[job_id] = trained.get(job_id, 0) + 1
        # A link warned as it finishes would be one more (short) link: the
        # contract reads exit 0 after a warning as "go on".
        if sum(trained.values()) >= 4:
            return []
        return [job_id for job_id, count in trained.items() if count >= 2]

    warn_each_link(slurm, progress, timeout=600)
    links = link_outputs(tmp_path)
    with open(os.path.join(experiment, "chain.json")) as handle:
        chain = json.load(handle)
    assert len(links) >= 2, (chain, links and links[0][1])
    for job_id, output in links:
        record = slurm.record(job_id)
        assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", output
    last = links[-1][1]
    assert f"chain {first}: done after {len(links)} link(s)" in last
    assert "train_ppo.py: experiment" in last and "done: --stop-iters 4 reached" in last
    assert "resuming after iteration" in links[1][1]
    # One progress.csv for the whole chain: 1..4, each link continuing.
    with open(os.path.join(experiment, "progress.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["training_iteration"]) for row in rows] == list(range(1, 5))
    assert len({row["link"] for row in rows}) == len(links)
    steps = [float(row["num_env_steps_sampled_lifetime"]) for row in rows]
    assert steps == sorted(steps) and steps[-1] == 4000, "env steps go on across jobs"
    assert chain["done"] and [link["job"] for link in chain["links"]] == \
        [job_id for job_id, _ in links]
    assert len(glob.glob(os.path.join(experiment, "tensorboard", "events.out.tfevents.*"))) \
        == len(links)
    plot = subprocess.run([PYTHON, PLOT, experiment, "-o", str(tmp_path / "chain.png")],
                          capture_output=True, text=True, timeout=120)
    assert plot.returncode == 0, plot.stderr
    assert f"1 run(s), {len(links)} job(s) of chained runs marked" in plot.stdout
    assert_job_left_nothing(job)


def test_a_warning_as_a_link_starts_does_not_end_the_chain(jobs, slurm, tmp_path):
    """The walltime warning reaches the first link the moment its step exists
    (Slurm's coarse timer with a short time limit), to every process of the
    job, batch shell and step alike (scancel --full), twice: whatever the
    tasks managed by then, the link says "not done" and the next one counts
    to the target. Before, the step died of SIGUSR1 (srun: 138) and the
    chain ended as failed."""
    state = tmp_path / "count"
    first, job = submit_chain(jobs, slurm, tmp_path, {
        "DRIVER": COUNTER, "DRIVER_ARGS": f"--state {state} --target 3 --step-seconds 0.5"})
    deadline = time.monotonic() + 120
    while not slurm.steps(first):
        assert slurm.queue(), "the chain ended before its first step"
        assert time.monotonic() < deadline, "the first link's step never started"
        time.sleep(0.01)
    for _ in range(2):
        slurm.scancel(first, "--full", "--signal=USR1")
        time.sleep(1)
    slurm.wait_for_empty_queue(timeout=300)
    links = link_outputs(tmp_path)
    assert len(links) >= 2 and links[0][0] == first, links
    output = links[0][1]
    assert slurm.record(first)["ExitCode"] == "0:0", output
    assert f"chain {first}: not done; job {links[1][0]} continues it" in output, output
    assert f"chain {first}: done after {len(links)} link(s)" in links[-1][1]
    assert state.read_text() == "3"
    assert_job_left_nothing(job)


def test_a_link_that_fails_ends_the_chain(jobs, slurm, tmp_path):
    """A real failure (here the driver's exit 2 for bad input), not the
    walltime: the queued link is cancelled instead of looping."""
    first, job = submit_chain(jobs, slurm, tmp_path, {
        "DRIVER": COUNTER, "DRIVER_ARGS": "--no-such-option"})
    slurm.wait_for_empty_queue(timeout=300)
    (job_id, output), = link_outputs(tmp_path)
    assert job_id == first
    record = slurm.record(first)
    assert record["JobState"] == "FAILED" and record["ExitCode"] == "2:0", output
    assert f"chain {first}: link 1 failed (status 2): the chain ends here" in output
    queued = re.search(r"cancelled the queued link \(job (\d+)\)", output).group(1)
    assert slurm.record(queued)["JobState"] == "CANCELLED"
    assert_job_left_nothing(job)


def test_the_container_script_runs_our_image_under_slurm(jobs, slurm, tmp_path):
    """jobs/slurm_container.sbatch as documented for our image: the recipe
    (containers/Containerfile) built with podman and converted for
    Charliecloud, CONTAINER=charliecloud, the script's default --mpi=pmi2,
    which the image's MPICH speaks: one ch-run per task, one cluster over
    both tasks, the example driver from the image, exit 0."""
    import local_images
    why = local_images.unavailable()
    if why:
        skip_or_fail("podman", why)
    folder = tmp_path / "podman"
    folder.mkdir()
    image = local_images.charliecloud(local_images.podman_env(str(folder)))
    mark, env, _ = jobs.new_job({
        "CONTAINER": "charliecloud", "IMAGE": image, "USER": os.environ.get("USER", "root"),
        "DRIVER": "/opt/venv/share/start_ray/drivers/cluster_info.py"})
    before = found_by.snapshot()
    job_id = slurm.sbatch(os.path.join(ROOT, "jobs", "slurm_container.sbatch"),
                          [*SIZE, "--time=00:10:00", f"--output={tmp_path}/slurm-%j.out"], env,
                          str(tmp_path))
    record = slurm.wait(job_id, timeout=300)
    output = read(os.path.join(tmp_path, f"slurm-{job_id}.out"))
    assert record["JobState"] == "COMPLETED", output
    assert re.search(r"started by srun \(MPICH 4[\d.]+\) in Slurm job", output), output
    info = json.loads(re.search(r"^CLUSTER_INFO (.*)$", output, re.M).group(1))
    assert info["alive_nodes"] == 2 and info["ranks"] == [0, 1], info
    assert "/opt/venv/bin/ray)" in output and "none left" in output
    assert_job_left_nothing((mark, before))
