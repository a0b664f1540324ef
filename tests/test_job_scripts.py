"""The batch scripts for machines this one is not (PBS with aprun or
mpiexec, Frontier's AMD GPUs, Aurora's Intel GPUs), run for real with a stub
launcher and the variables the scheduler would set: the script's arithmetic
and command line reach start_ray, which derives the node's CPUs, GPUs and the
run id from them. GPU nodes also get a stand-in for the vendor's device
library (tests/gpu_standins), so that Ray takes that vendor's path. Every
script also has to parse (`bash -n`)."""

import os
import re
import subprocess
import sys

import psutil
import pytest

from jobs import MPIRUN, PYTHON, ROOT, assert_nothing_left

sys.path.insert(0, os.path.join(ROOT, "drivers"))
import rl_chain  # noqa: E402

JOBS = os.path.join(ROOT, "jobs")
STANDINS = os.path.join(ROOT, "tests", "gpu_standins")
SHORT = "--train-batch-size 400 --minibatch-size 64 --num-epochs 1"

# Stand-ins for aprun / mpiexec: record the command line, then start the same
# ranks with Open MPI, each with the variables the real launcher would set.
APRUN = """#!/bin/bash
echo "$0 $*" >> "$STUB_LOG"
# Open MPI must not read the (fake) PBS allocation: the real launcher places ranks.
unset PBS_NODEFILE; export PRTE_MCA_ras=^pbs
while [ $# -gt 0 ]; do case "$1" in
  -n) n=$2; shift 2 ;; -N) per=$2; shift 2 ;; -d) depth=$2; shift 2 ;;
  -cc) shift 2 ;; -b) shift ;; *) break ;; esac; done
exec {mpirun} --oversubscribe -np "$n" -x ALPS_APP_DEPTH="$depth" \\
    sh -c 'ALPS_APP_PE=$OMPI_COMM_WORLD_RANK exec "$@"' sh "$@"
"""
# PALS numbers each host's ranks (PALS_LOCAL_RANKID), as Cray's mpiexec does.
MPIEXEC = """#!/bin/bash
echo "$0 $*" >> "$STUB_LOG"
unset PBS_NODEFILE; export PRTE_MCA_ras=^pbs
while [ $# -gt 0 ]; do case "$1" in
  -n) n=$2; shift 2 ;; --ppn|--depth|--cpu-bind) shift 2 ;; *) break ;; esac; done
exec {mpirun} --oversubscribe -np "$n" sh -c \
    'export PALS_RANKID=$OMPI_COMM_WORLD_RANK PALS_LOCAL_RANKID=$OMPI_COMM_WORLD_LOCAL_RANK
     exec "$@"' sh "$@"
"""
# PBS's queue commands for the chain script: qsub queues 4243.pbs01, 4244.pbs01...
QSUB = """#!/bin/bash
echo "$0 $*" >> "$STUB_LOG"
n=$(( $(cat "$STUB_LOG.jobs" 2>/dev/null || echo 4242) + 1 )); echo "$n" > "$STUB_LOG.jobs"
echo "$n.pbs01"
"""
QDEL = """#!/bin/bash
echo "$0 $*" >> "$STUB_LOG"
"""
QSTAT = """#!/bin/bash
echo "    Resource_List.walltime = $STUB_WALLTIME"
"""
# srun inside the batch script: its tasks get the batch's Slurm variables.
SRUN = """#!/bin/bash
echo "$0 $*" >> "$STUB_LOG"
while [ $# -gt 0 ]; do case "$1" in --*) shift ;; -*) shift 2 ;; *) break ;; esac; done
exec {mpirun} --oversubscribe -np "$SLURM_NTASKS" "$@"
"""


@pytest.mark.parametrize("script", sorted(os.listdir(JOBS)))
def test_every_script_parses(script):
    done = subprocess.run(["bash", "-n", os.path.join(JOBS, script)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def stubs(tmp_path):
    """A fake venv whose activate puts the stub launchers first on PATH."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in (("aprun", APRUN), ("mpiexec", MPIEXEC), ("srun", SRUN),
                       ("qsub", QSUB), ("qdel", QDEL), ("qstat", QSTAT)):
        path = bin_dir / name
        path.write_text(text.format(mpirun=MPIRUN))
        path.chmod(0o755)
    (bin_dir / "activate").write_text(
        f'export PATH="{bin_dir}:{os.path.dirname(PYTHON)}:$PATH"\n')
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("node01\nnode01\n")
    return {"VENV": str(tmp_path / "venv"), "STUB_LOG": str(tmp_path / "stub.log"),
            "PBS_NODEFILE": str(nodefile), "PBS_O_WORKDIR": ROOT,
            "START_RAY_NODE_PER_RANK": "0", "STOP_ITERS": "1", "EXTRA_ARGS": SHORT}


def run_script(jobs, script, env, timeout=420):
    result = jobs.launch(["bash", os.path.join(JOBS, script)], env).wait(timeout)
    assert result.returncode == 0, result.output
    assert "train_ppo.py: TERMINATED after 1 iteration(s)" in result.stdout
    assert "none left" in result.stdout
    assert_nothing_left(result)
    return result


def test_pbs_aprun_script_on_a_stub_alps(jobs, stubs):
    """Theta style (Cobalt + aprun): 2 PEs per host, depth 1 each."""
    result = run_script(jobs, "pbs_aprun.sh", {
        **stubs, "COBALT_JOBID": "777", "NODES": "1", "PER_NODE": "2", "DEPTH": "1",
        "INTERFACE": "lo", "FRAMEWORK": "tf2"})
    with open(stubs["STUB_LOG"]) as handle:
        assert re.search(r"aprun -n 2 -N 2 -d 1 -cc depth -b python -m start_ray "
                         r"--interface lo drivers/train_ppo.py", handle.read())
    assert "CPUs 2 (ALPS_APP_DEPTH=1 (aprun -d) x 2 tasks)" in result.stdout
    assert "in Cobalt job 777" in result.stdout and result.run_dir.endswith("-777")


def test_pbs_mpiexec_script_on_a_stub_pbs(jobs, stubs):
    """Polaris style: NODES from $PBS_NODEFILE, OMP_NUM_THREADS per rank."""
    result = run_script(jobs, "pbs_mpiexec.sh", {
        **stubs, "PBS_JOBID": "4242.pbs01", "NCPUS": "64", "PER_NODE": "2", "DEPTH": "1",
        "FRAMEWORK": "torch"})
    with open(stubs["STUB_LOG"]) as handle:
        assert re.search(r"mpiexec -n 2 --ppn 2 --depth 1 --cpu-bind depth python -m "
                         r"start_ray drivers/train_ppo.py --framework torch", handle.read())
    assert "CPUs 2 (OMP_NUM_THREADS=1 x 2 tasks (PBS NCPUS=64))" in result.stdout
    assert "in PBS job 4242" in result.stdout and result.run_dir.endswith("-4242")


def an_interface():
    """A network interface of this machine other than loopback, as a GPU
    cluster's INTERFACE=hsn0 (None: the test leaves INTERFACE empty)."""
    stats = psutil.net_if_stats()
    return next((name for name, addresses in sorted(psutil.net_if_addrs().items())
                 if name != "lo" and name in stats and stats[name].isup
                 and any(a.family == 2 and not a.address.startswith("127.") for a in addresses)),
                None)


def test_slurm_amd_gpu_script_on_a_stub_frontier(jobs, stubs):
    """Frontier style: --gpus-per-node makes Slurm set SLURM_GPUS_ON_NODE and
    ROCR_VISIBLE_DEVICES in every task; Ray (here on the AMD stand-in) would
    refuse ROCR alone, and the script's INTERFACE reaches gloo and RCCL."""
    interface = an_interface()
    result = run_script(jobs, "slurm_amd_gpu.sbatch", {
        **stubs, "SLURM_JOB_ID": "9191", "SLURM_SUBMIT_DIR": ROOT, "SLURM_NTASKS": "2",
        "SLURM_CPUS_PER_TASK": "1", "SLURM_GPUS_ON_NODE": "2", "ROCR_VISIBLE_DEVICES": "0,1",
        "INTERFACE": interface or "", "LEARNER_GPUS": "0", "TRAIN_BATCH_SIZE": "400",
        "PYTHONPATH": os.path.join(STANDINS, "amd") + os.pathsep + ROOT,
        "START_RAY_TEST_GPUS": "2"})
    with open(stubs["STUB_LOG"]) as handle:
        assert re.search(r"srun --kill-on-bad-exit=1 --gpus-per-node=2 --cpus-per-task=1 "
                         r"python -m start_ray (--interface \S+ )?drivers/train_ppo.py "
                         r"--framework torch --num-gpus 0", handle.read())
    assert ("GPUs 2 (SLURM_GPUS_ON_NODE=2), Ray gets HIP_VISIBLE_DEVICES=0,1, "
            "no ROCR_VISIBLE_DEVICES;") in result.stdout
    if interface:
        assert f"collectives: GLOO_SOCKET_IFNAME, NCCL_SOCKET_IFNAME={interface}" \
            in result.stdout
    assert "in Slurm job 9191" in result.stdout and result.run_dir.endswith("-9191")
    assert "start_ray exited with status 0" in result.stdout


def test_pbs_intel_gpu_script_on_a_stub_aurora(jobs, stubs):
    """Aurora style: one GPU tile per rank (ZE_AFFINITY_MASK from PALS's
    local rank); the host's Ray node offers the union (here on the Intel
    stand-in, so Ray's Intel path reads it)."""
    result = run_script(jobs, "pbs_intel_gpu.sh", {
        **stubs, "PBS_JOBID": "5151.aurora-pbs", "NCPUS": "208", "PER_NODE": "2",
        "DEPTH": "1", "INTERFACE": "", "FRAMEWORK": "torch",
        "PYTHONPATH": os.path.join(STANDINS, "intel") + os.pathsep + ROOT,
        "START_RAY_TEST_GPUS": "12"})
    with open(stubs["STUB_LOG"]) as handle:
        assert re.search(r"mpiexec -n 2 --ppn 2 --depth 1 --cpu-bind depth bash -c .* tile "
                         r"python -m start_ray drivers/train_ppo.py", handle.read())
    assert "GPUs 2 (ZE_AFFINITY_MASK=0 | 1 (Intel)), Ray gets ZE_AFFINITY_MASK=0,1;" \
        in result.stdout
    assert "CPUs 2 (OMP_NUM_THREADS=1 x 2 tasks (PBS NCPUS=208))" in result.stdout
    assert "in PBS job 5151" in result.stdout


def test_pbs_chain_script_warns_queues_the_next_link_and_resumes(jobs, stubs, tmp_path):
    """PBS has no walltime warning: the script sends USR1 itself WARNING
    seconds before the walltime qstat reports. Link 1 queues link 2
    (afterany), is warned, checkpoints and leaves the chain to it; link 2
    resumes and meets the criterion, so it deletes the link it queued (4244)."""
    experiment = tmp_path / "experiment"
    chain = {**stubs, "PBS_JOBID": "4242.pbs01", "NCPUS": "64", "PER_NODE": "2", "DEPTH": "1",
             "EXPERIMENT": str(experiment), "STOP_ITERS": "1000", "STUB_WALLTIME": "00:01:00",
             "WARNING": "35", "EXTRA_ARGS": "--train-batch-size 400 --minibatch-size 64 "
                                           "--num-epochs 1 --checkpoint-frequency 0"}
    script = ["bash", os.path.join(JOBS, "pbs_chain.sh")]
    first = jobs.launch(script, chain).wait(300)
    assert first.returncode == 0, first.output
    with open(stubs["STUB_LOG"]) as handle:
        log = handle.read()
    assert (f"qsub -V -W depend=afterany:4242.pbs01 -v EXPERIMENT={experiment},LINK=2 "
            "jobs/pbs_chain.sh") in log
    assert "the walltime warning (USR1) after 25s" in first.stdout
    assert "walltime warning (USR1): asking the driver" in first.stdout
    assert "train_ppo.py: got SIGUSR1" in first.stdout
    assert "chain: not done; job 4243.pbs01 continues it" in first.stdout
    assert "qdel" not in log
    assert_nothing_left(first)
    done = rl_chain.read(str(experiment))["links"][0]["last_iteration"]

    second = jobs.launch(script, {**chain, "PBS_JOBID": "4243.pbs01", "LINK": "2",
                                  "STOP_ITERS": str(done + 1),
                                  "STUB_WALLTIME": "01:00:00"}).wait(300)
    assert second.returncode == 0, second.output
    assert f"resuming after iteration {done}" in second.stdout
    assert f"chain: done after 2 link(s); experiment folder: {experiment}" in second.stdout
    with open(stubs["STUB_LOG"]) as handle:
        assert re.search(r"qdel 4244\.pbs01$", handle.read(), re.M)
    assert_nothing_left(second)
