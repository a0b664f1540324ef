"""The batch scripts for schedulers this machine does not have (PBS with
aprun or mpiexec), run for real with a stub launcher and the variables the
scheduler would set: the script's arithmetic and command line reach
start_ray, which derives the node's CPUs and the run id from them. Every
script also has to parse (`bash -n`)."""

import os
import re
import subprocess

import pytest

from jobs import MPIRUN, PYTHON, ROOT, assert_nothing_left

JOBS = os.path.join(ROOT, "jobs")
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
MPIEXEC = """#!/bin/bash
echo "$0 $*" >> "$STUB_LOG"
unset PBS_NODEFILE; export PRTE_MCA_ras=^pbs
while [ $# -gt 0 ]; do case "$1" in
  -n) n=$2; shift 2 ;; --ppn|--depth|--cpu-bind) shift 2 ;; *) break ;; esac; done
exec {mpirun} --oversubscribe -np "$n" "$@"
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
    for name, text in (("aprun", APRUN), ("mpiexec", MPIEXEC)):
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
