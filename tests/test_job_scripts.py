"""The batch scripts in jobs/, run for real with stand-in launchers (aprun,
Cray PALS's mpiexec, srun, jsrun, LSF's commands) and the variables the
scheduler would set,
the way a user submits them: from a folder of their own, with a relative
VENV and their own DRIVER and DRIVER_ARGS; PBS starts the job in $HOME. Each
run checks which Python ran which driver, with which arguments, from which
folder, and what the launcher was asked. GPU nodes also get a stand-in for
the vendor's device library (tests/gpu_standins), so that Ray takes that
vendor's path. Every script also has to parse (`bash -n`). The Slurm
scripts run on a real Slurm in test_slurm.py, the PBS scripts on a real
OpenPBS in test_pbs.py and the Flux script on a real Flux in test_flux.py."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import psutil
import pytest

from jobs import MPIRUN, PYTHON, ROOT, assert_nothing_left

JOBS = os.path.join(ROOT, "jobs")
STANDINS = os.path.join(ROOT, "tests", "gpu_standins")
WHOAMI = os.path.join(ROOT, "tests", "drivers", "whoami.py")
COUNTER = os.path.join(ROOT, "tests", "drivers", "counter.py")
REAL_VENV = os.path.dirname(os.path.dirname(PYTHON))

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
# srun inside the batch script: its tasks get the batch's Slurm variables.
SRUN = """#!/bin/bash
echo "$0 $*" >> "$STUB_LOG"
while [ $# -gt 0 ]; do case "$1" in --*) shift ;; -*) shift 2 ;; *) break ;; esac; done
exec {mpirun} --oversubscribe -np "$SLURM_NTASKS" "$@"
"""
# LSF: jsrun starts NRS x TASKS_PER_RS tasks with jsrun's variables; bsub
# reads the script on stdin and queues 5002, ...; bjobs -json says what a
# real bjobs -json says (its records' fields).
JSRUN = """#!/bin/bash
echo "$0 $*" >> "$STUB_LOG"
while [ $# -gt 0 ]; do case "$1" in
  --nrs) nrs=$2; shift 2 ;; --tasks_per_rs) per=$2; shift 2 ;;
  --rs_per_host|--cpu_per_rs|--gpu_per_rs|--bind) shift 2 ;; *) break ;; esac; done
exec {mpirun} --oversubscribe -np $((nrs * per)) sh -c \
    'export JSM_NAMESPACE_RANK=$OMPI_COMM_WORLD_RANK JSM_NAMESPACE_SIZE=$OMPI_COMM_WORLD_SIZE
     export JSM_NAMESPACE_LOCAL_RANK=$OMPI_COMM_WORLD_LOCAL_RANK; exec "$@"' sh "$@"
"""
BSUB = """#!/bin/bash
echo "$0 $* < $(head -c 60 | head -1)" >> "$STUB_LOG"
n=$(( $(cat "$STUB_LOG.jobs" 2>/dev/null || echo 5001) + 1 )); echo "$n" > "$STUB_LOG.jobs"
echo "Job <$n> is submitted to queue <batch>."
"""
BJOBS = """#!/bin/bash
echo "$0 $*" >> "$STUB_LOG"
cat <<END
{{"COMMAND": "bjobs", "JOBS": 1, "RECORDS": [{{"JOB_NAME": "start_ray", "QUEUE": "batch",
  "PROJ_NAME": "MY_PROJECT", "OUTPUT_FILE": "out.$LSB_JOBID", "ERROR_FILE": ""}}]}}
END
"""
BKILL = """#!/bin/bash
echo "$0 $*" >> "$STUB_LOG"
"""
# A container runtime (apptainer, podman-hpc, shifter): records its command
# line, then runs the command after the image on the host, in the working
# folder it was given. Pyxis is srun's own option (the srun stand-in skips it).
CONTAINER_RUNTIME = """#!/bin/bash
echo "$0 $*" >> "$STUB_LOG"
dir=$PWD
while [ $# -gt 0 ]; do case "$1" in
  "$IMAGE"|--image="$IMAGE") shift; break ;; --pwd|-w) dir=$2; shift 2 ;; *) shift ;;
  esac; done
[ "${{1:-}}" = -- ] && shift
cd "$dir" && exec "$@"
"""
ARGS = "--epochs 5 --name x"


@pytest.mark.parametrize("script", sorted(os.listdir(JOBS)))
def test_every_script_parses_and_stops_on_the_first_error(script):
    done = subprocess.run(["bash", "-n", os.path.join(JOBS, script)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    with open(os.path.join(JOBS, script)) as handle:
        text = handle.read()
    assert "set -euo pipefail" in text
    assert "jobs/walltime.sh" not in text and "drivers/rl_chain.py" not in text
    assert 'DRIVER_ARGS' in text or script == "template.sbatch"


@pytest.fixture
def site(tmp_path):
    """A user's submit folder (a relative .venv: the real Python and the stub
    launchers; their driver, my_driver.py) and a separate $HOME."""
    submit, home = tmp_path / "submit", tmp_path / "home"
    home.mkdir()
    bin_dir = submit / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in (("aprun", APRUN), ("mpiexec", MPIEXEC), ("srun", SRUN),
                       ("jsrun", JSRUN), ("bsub", BSUB), ("bjobs", BJOBS), ("bkill", BKILL),
                       ("apptainer", CONTAINER_RUNTIME), ("singularity", CONTAINER_RUNTIME),
                       ("podman-hpc", CONTAINER_RUNTIME),
                       ("shifter", CONTAINER_RUNTIME)):
        path = bin_dir / name
        path.write_text(text.format(mpirun=MPIRUN))
        path.chmod(0o755)
    # A venv of its own (bin/python, pyvenv.cfg) over the real one's packages.
    for name in ("python", "python3", "ray", "mpirun"):
        os.symlink(os.path.join(REAL_VENV, "bin", name), bin_dir / name)
    shutil.copy(os.path.join(REAL_VENV, "pyvenv.cfg"), submit / ".venv" / "pyvenv.cfg")
    os.symlink(os.path.join(REAL_VENV, "lib"), submit / ".venv" / "lib")
    (bin_dir / "activate").write_text(f'export PATH="{bin_dir}:$PATH"\n')
    shutil.copy(WHOAMI, submit / "my_driver.py")
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("node01\nnode01\n")
    env = {"VENV": ".venv", "STUB_LOG": str(tmp_path / "stub.log"),
           "PBS_NODEFILE": str(nodefile), "PBS_O_WORKDIR": str(submit),
           "SLURM_SUBMIT_DIR": str(submit), "HOME": str(home),
           "START_RAY_NODE_PER_RANK": "0", "DRIVER": "my_driver.py", "DRIVER_ARGS": ARGS}
    return {"submit": str(submit), "home": str(home), "env": env, "python": str(bin_dir / "python")}


def run_script(jobs, site, script, env, timeout=300):
    """The script run from the user's $HOME; what my_driver.py said."""
    result = jobs.launch(["bash", os.path.join(JOBS, script)], {**site["env"], **env},
                         cwd=site["home"]).wait(timeout)
    assert result.returncode == 0, result.output
    assert "none left" in result.stdout
    assert_nothing_left(result)
    return result, whoami(result)


def whoami(result):
    found = re.search(r"^WHOAMI (.*)$", result.stdout, re.M)
    assert found, result.output
    return json.loads(found.group(1))


def launched(site):
    with open(site["env"]["STUB_LOG"]) as handle:
        return handle.read()


def ran_the_users_driver(site, seen):
    """The activated relative venv's Python ran the user's driver, with its
    arguments, in the submit folder."""
    assert seen["python"] == site["python"], seen
    assert seen["argv"] == ARGS.split() and seen["cwd"] == site["submit"], seen


def test_pbs_aprun_script_on_a_stub_alps(jobs, site):
    """Theta style (Cobalt + aprun): 2 PEs per host, depth 1 each."""
    result, seen = run_script(jobs, site, "pbs_aprun.sh", {
        "COBALT_JOBID": "777", "COBALT_WORKDIR": site["submit"], "PBS_O_WORKDIR": "",
        "NODES": "1", "PER_NODE": "2", "DEPTH": "1", "INTERFACE": "lo"})
    ran_the_users_driver(site, seen)
    assert re.search(rf"aprun -n 2 -N 2 -d 1 -cc depth -b python -m start_ray "
                     rf"--interface lo my_driver.py {ARGS}$", launched(site), re.M)
    assert "CPUs 2 (ALPS_APP_DEPTH=1 (aprun -d) x 2 tasks)" in result.rank0_log
    assert "in Cobalt job 777" in result.stdout and result.run_dir.endswith("-777")
    assert "Cobalt sends no walltime warning" in result.stdout, result.stdout


def an_interface():
    """A network interface of this machine other than loopback, as a GPU
    cluster's INTERFACE=hsn0 (None: the test leaves INTERFACE empty)."""
    stats = psutil.net_if_stats()
    return next((name for name, addresses in sorted(psutil.net_if_addrs().items())
                 if name != "lo" and name in stats and stats[name].isup
                 and any(a.family == 2 and not a.address.startswith("127.") for a in addresses)),
                None)


def test_slurm_amd_gpu_script_on_a_stub_frontier(jobs, site):
    """Frontier style: --gpus-per-node makes Slurm set SLURM_GPUS_ON_NODE and
    ROCR_VISIBLE_DEVICES in every task; Ray (here on the AMD stand-in) would
    refuse ROCR alone, and the script's INTERFACE reaches gloo and RCCL."""
    interface = an_interface()
    result, seen = run_script(jobs, site, "slurm_amd_gpu.sbatch", {
        "SLURM_JOB_ID": "9191", "SLURM_NTASKS": "2", "SLURM_CPUS_PER_TASK": "1",
        "SLURM_GPUS_ON_NODE": "2", "ROCR_VISIBLE_DEVICES": "0,1", "INTERFACE": interface or "",
        "PYTHONPATH": os.path.join(STANDINS, "amd") + os.pathsep + ROOT,
        "START_RAY_TEST_GPUS": "2"})
    ran_the_users_driver(site, seen)
    assert seen["ppo"] == {"PPO_FRAMEWORK": "torch", "PPO_NUM_GPUS": "1"}, \
        "the example's variables are there, for the example alone to read"
    assert re.search(r"srun --kill-on-bad-exit=1 --gpus-per-node=2 --cpus-per-task=1 "
                     rf"python -m start_ray (--interface \S+ )?my_driver.py {ARGS}$",
                     launched(site), re.M)
    assert ("GPUs 2 (SLURM_GPUS_ON_NODE=2), Ray gets HIP_VISIBLE_DEVICES=0,1, "
            "no ROCR_VISIBLE_DEVICES;") in result.rank0_log
    if interface:
        assert f"collectives: GLOO_SOCKET_IFNAME, NCCL_SOCKET_IFNAME={interface}" \
            in result.rank0_log
    assert "in Slurm job 9191" in result.stdout and result.run_dir.endswith("-9191")
    assert "start_ray.jobs: the step ended with status 0" in result.stdout


@pytest.mark.parametrize("script", ["slurm_cpu.sbatch", "slurm_hetjob_gpu.sbatch"])
def test_slurm_scripts_on_a_stub_srun(jobs, site, script):
    result, seen = run_script(jobs, site, script, {
        "SLURM_JOB_ID": "9292", "SLURM_NTASKS": "2", "SLURM_CPUS_PER_TASK": "1"})
    ran_the_users_driver(site, seen)
    assert re.search(rf"srun --mpi=pmix --kill-on-bad-exit=1 (--het-group=0,1 )?python -m "
                     rf"start_ray my_driver.py {ARGS}$", launched(site), re.M)


@pytest.mark.parametrize("container,image,launch", [
    ("apptainer", "start_ray.sif", "apptainer exec --bind {s} --pwd {s} start_ray.sif"),
    ("singularity", "start_ray.sif", "singularity exec --bind {s} --pwd {s} start_ray.sif"),
    ("podman-hpc", "start_ray:1",
     "podman-hpc run --rm --net host --shm-size 16g -v {s}:{s} -w {s} --mpi start_ray:1"),
    ("pyxis", "./start_ray.sqsh", "--container-image=./start_ray.sqsh "
                                  "--container-mounts={s} --container-workdir={s}"),
    ("shifter", "docker:me/start_ray:1", "shifter --image=docker:me/start_ray:1"),
])
def test_container_script_on_stand_in_runtimes(jobs, site, container, image, launch):
    """jobs/slurm_container.sbatch: srun starts one container per task, on the
    host's network, the submit folder mounted where it is; start_ray and the
    driver run in it. The runtimes are stand-ins here (they run the command
    on the host); Charliecloud and podman run for real in test_containers.py.
    pyxis is srun's own option, which the srun stand-in drops: for it only
    the launch line is checked (a recipe)."""
    options = "--mpi" if container == "podman-hpc" else ""
    # No venv on the host: the image has start_ray (here the stand-ins find
    # the venv's python on PATH, as the image's would be).
    path = os.path.dirname(site["python"]) + os.pathsep + os.environ["PATH"]
    result, seen = run_script(jobs, site, "slurm_container.sbatch", {
        "SLURM_JOB_ID": "9494", "SLURM_NTASKS": "2", "CONTAINER": container,
        "IMAGE": image, "CONTAINER_OPTIONS": options, "PATH": path})
    ran_the_users_driver(site, seen)
    expected = launch.format(s=site["submit"])
    assert re.search(rf"srun --mpi=pmi2 --kill-on-bad-exit=1 (\S+ )?{re.escape(expected)} "
                     rf"python -m start_ray my_driver.py {ARGS}$", launched(site), re.M), \
        launched(site)
    assert "in Slurm job 9494" in result.stdout


def test_container_script_refuses_an_unknown_runtime(jobs, site):
    result = jobs.launch(["bash", os.path.join(JOBS, "slurm_container.sbatch")], {
        **site["env"], "CONTAINER": "docker", "IMAGE": "x"}, cwd=site["home"]).wait(60)
    assert result.returncode == 2
    assert "CONTAINER=docker: one of apptainer" in result.stderr


def test_the_template_runs_the_users_program(jobs, site):
    shutil.copy(WHOAMI, os.path.join(site["submit"], "my_training.py"))
    result, seen = run_script(jobs, site, "template.sbatch", {
        "SLURM_JOB_ID": "9393", "SLURM_NTASKS": "2", "SLURM_CPUS_PER_TASK": "1"})
    assert seen["python"] == site["python"] and seen["argv"] == ["--epochs", "10"]
    assert seen["cwd"] == site["submit"]


def test_pbs_intel_gpu_script_on_a_stub_aurora(jobs, site):
    """Aurora style: one GPU tile per rank (ZE_AFFINITY_MASK from PALS's
    local rank); the host's Ray node offers the union (here on the Intel
    stand-in, so Ray's Intel path reads it)."""
    result, seen = run_script(jobs, site, "pbs_intel_gpu.sh", {
        "PBS_JOBID": "5151.aurora-pbs", "NCPUS": "208", "PER_NODE": "2",
        "DEPTH": "1", "INTERFACE": "",
        "PYTHONPATH": os.path.join(STANDINS, "intel") + os.pathsep + ROOT,
        "START_RAY_TEST_GPUS": "12"})
    ran_the_users_driver(site, seen)
    assert re.search(r"mpiexec -n 2 --ppn 2 --depth 1 --cpu-bind depth bash -c .* tile "
                     rf"python -m start_ray my_driver.py {ARGS}$", launched(site), re.M)
    assert "GPUs 2 (ZE_AFFINITY_MASK=0 | 1 (Intel)), Ray gets ZE_AFFINITY_MASK=0,1;" \
        in result.rank0_log
    assert "CPUs 2 (OMP_NUM_THREADS=1 x 2 tasks (PBS NCPUS=208))" in result.rank0_log
    assert "in PBS job 5151" in result.stdout


def test_local_script_runs_from_anywhere(jobs, site):
    result, seen = run_script(jobs, site, "local_mpirun.sh", {
        "NP": "2", "DRIVER": os.path.join(site["submit"], "my_driver.py"),
        "VENV": os.path.join(site["submit"], ".venv")})
    assert seen["python"] == site["python"] and seen["argv"] == ARGS.split()
    assert seen["ppo"]["PPO_STOP_ITERS"] == "3"


def test_the_default_driver_is_the_ppo_example_with_its_variables(jobs, site):
    """No DRIVER: the example of this checkout, found through the package
    from any folder, with its options from PPO_* variables."""
    env = {key: value for key, value in site["env"].items()
           if key not in ("DRIVER", "DRIVER_ARGS")}
    result = jobs.launch(["bash", os.path.join(JOBS, "slurm_cpu.sbatch")], {
        **env, "SLURM_JOB_ID": "9595", "SLURM_NTASKS": "2", "SLURM_CPUS_PER_TASK": "1",
        "PPO_FRAMEWORK": "tf2", "PPO_STOP_ITERS": "1", "PPO_TRAIN_BATCH_SIZE": "400",
        "PPO_MINIBATCH_SIZE": "64", "PPO_NUM_EPOCHS": "1"},
        cwd=site["home"]).wait(420)
    assert result.returncode == 0, result.output
    assert f"python -m start_ray {ROOT}/drivers/train_ppo.py" in launched(site)
    assert "train_ppo.py: TERMINATED after 1 iteration(s)" in result.stdout
    assert_nothing_left(result)


def test_lsf_script_from_another_folder_runs_and_says_how_to_chain(jobs, site):
    """bsub < /path/to/jobs/lsf_jsrun.sh from a folder that is not the
    checkout: LSF does not say where the script was, so the link runs the
    program alone and says to set CHAIN_SCRIPT (no traceback)."""
    host = socket.gethostname()
    result, seen = run_script(jobs, site, "lsf_jsrun.sh", {
        "LSB_JOBID": "5001", "LS_SUBCWD": site["submit"], "NODES": "1", "PER_NODE": "2",
        "LSB_MCPU_HOSTS": f"batch1 1 {host} 2", "CORES": "2", "MAX_LINKS": "3"})
    ran_the_users_driver(site, seen)
    assert "LSF does not say which script this job runs: set CHAIN_SCRIPT" in result.stdout
    assert "Traceback" not in result.output and "bsub" not in launched(site)


# ---------------------- LSF, with stand-ins (Flux: test_flux.py, PBS: test_pbs.py)
def warn_once_counted(running, state, at_least=2, timeout=240):
    """The scheduler's walltime warning to the batch script (LSF's -wa USR1
    -wt T), once the driver counted a bit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running.proc.poll() is None:
        if state.exists() and state.read_text().strip().isdigit() and \
                int(state.read_text()) >= at_least:
            running.proc.send_signal(signal.SIGUSR1)
            return
        time.sleep(0.2)
    raise AssertionError("the driver never counted")


def test_lsf_jsrun_script_chains_on_a_stub_lsf(jobs, site, tmp_path):
    """bsub < jobs/lsf_jsrun.sh: jsrun starts one resource set per host
    (jsrun's variables), the host's Ray node offers its LSF slots
    (LSB_MCPU_HOSTS, the batch node's first entry ignored), the link queues
    the next with bsub -w "ended(ID)" and the options bjobs reports, and
    LSF's own warning (-wa USR1) reaches the counter."""
    state = tmp_path / "count"
    host = socket.gethostname()
    env = {**site["env"], "LSB_JOBID": "5001", "LS_SUBCWD": site["submit"],
           "LSB_MCPU_HOSTS": f"batch1 1 {host} 2", "NODES": "1", "PER_NODE": "2",
           "CORES": "2", "CHAIN_SCRIPT": os.path.join(JOBS, "lsf_jsrun.sh"),
           "DRIVER": COUNTER, "DRIVER_ARGS": f"--state {state} --target 1000"}
    running = jobs.launch(["bash", os.path.join(JOBS, "lsf_jsrun.sh")], env,
                          cwd=site["home"])
    warn_once_counted(running, state)
    result = running.wait(240)
    assert result.returncode == 0, result.output
    log = launched(site)
    assert re.search(r"jsrun --nrs 1 --rs_per_host 1 --tasks_per_rs 2 --cpu_per_rs 2 "
                     rf"--gpu_per_rs 0 --bind none python -m start_ray {COUNTER}", log), log
    assert ("bsub -w ended(5001) -J start_ray -q batch -P MY_PROJECT -o out.%J -env "
            "all,START_RAY_CHAIN_LINK=2,START_RAY_CHAIN_ID=5001 < #!/bin/bash") in log, log
    assert re.search(r"started by LSF jsrun \(Open MPI [\d.]+\) in LSF job 5001",
                     result.stdout), result.stdout
    assert f"CPUs 2 (LSB_MCPU_HOSTS: 2 slots on {host.split('.')[0]})" in result.rank0_log
    assert result.run_dir.endswith("-5001")
    assert "chain 5001: not done; job 5002 continues it" in result.stdout
    assert_nothing_left(result)


def test_an_lsf_link_that_reaches_the_target_ends_the_chain_and_bkills_the_queued(
        jobs, site, tmp_path):
    """Link 2 of an LSF chain: it queues link 3 (bsub -w "ended(5002)"),
    the counter reaches its target unwarned, so the chain is done and the
    queued link is killed (bkill 5003)."""
    state = tmp_path / "count"
    state.write_text("5")
    with open(site["env"]["STUB_LOG"] + ".jobs", "w") as handle:
        handle.write("5002")  # LSF's job ids so far: this link's is the last
    host = socket.gethostname()
    running = jobs.launch(["bash", os.path.join(JOBS, "lsf_jsrun.sh")], {
        **site["env"], "LSB_JOBID": "5002", "LS_SUBCWD": site["submit"],
        "LSB_MCPU_HOSTS": f"{host} 2", "NODES": "1", "PER_NODE": "2", "CORES": "2",
        "START_RAY_CHAIN_LINK": "2", "START_RAY_CHAIN_ID": "5001",
        "CHAIN_SCRIPT": os.path.join(JOBS, "lsf_jsrun.sh"), "DRIVER": COUNTER,
        "DRIVER_ARGS": f"--state {state} --target 7"}, cwd=site["home"])
    result = running.wait(240)
    assert result.returncode == 0, result.output
    assert "COUNTER link=2 chain=5001 from=5 to=7 warned=0" in result.stdout, result.stdout
    log = launched(site)
    assert 'bsub -w ended(5002)' in log and re.search(r"^\S*bkill 5003$", log, re.M), log
    assert "chain 5001: cancelled the queued link (job 5003): link 2 done" in result.stdout
    assert "chain 5001: done after 2 link(s)" in result.stdout
    assert_nothing_left(result)
