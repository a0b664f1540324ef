"""Pure functions: option parsing, temp dir lengths, environments, commands."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from start_ray.entry import cli
from start_ray.errors import NodeError, UsageError
from start_ray.host import tempdirs
from start_ray.mpi import launch_env
from start_ray.options import Options, make_options
from start_ray.procs import driver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.fast  # in-process: `make test-fast`


def test_options_precedence_explicit_over_environment_over_default():
    env = {"START_RAY_JOIN_TIMEOUT": "42", "START_RAY_NUM_CPUS": "3"}
    options = make_options(environ=env, num_cpus=1)
    assert options.join_timeout == 42.0
    assert options.num_cpus == 1.0
    assert options.stop_timeout == Options().stop_timeout


@pytest.mark.parametrize("env,needle", [
    ({"START_RAY_JOIN_TIMEOUT": "abc"}, "START_RAY_JOIN_TIMEOUT='abc'"),
    ({"START_RAY_JOIN_TIMEOUT": "-1"}, "greater than 0"),
    ({"START_RAY_KEEP_TEMP_DIR": "maybe"}, "START_RAY_KEEP_TEMP_DIR"),
    ({"START_RAY_RAY_ARGS": "--port 6379"}, "--port is set by start_ray"),
    ({"START_RAY_COLLECT_LOGS": "sometimes"}, "must be one of on-failure, always, never"),
])
def test_bad_environment_values_name_the_variable(env, needle):
    with pytest.raises(UsageError, match=needle):
        make_options(environ=env)


def test_cli_parse_keeps_driver_arguments_for_the_driver():
    options, cmd = cli.parse(["--num-cpus", "2", "train.py", "--num-cpus", "7", "--lr=1"])
    assert options.num_cpus == 2.0
    assert cmd == ["train.py", "--num-cpus", "7", "--lr=1"]
    _, cmd = cli.parse(["--", "train.py", "-x"])
    assert cmd == ["train.py", "-x"]


def test_cli_rejects_reserved_ray_arguments():
    with pytest.raises(UsageError, match="--head is set by start_ray"):
        cli.parse(["--ray-args=--head --num-cpus 1", "x.py"])
    options, _ = cli.parse(["--ray-args=--object-store-memory 100000000", "x.py"])
    assert options.ray_args == ["--object-store-memory", "100000000"]


def test_socket_path_limit_is_checked_up_front():
    tempdirs.check_explicit_root("/tmp", "abcd1234", 9999)
    long_root = "/scratch/" + "x" * 40
    with pytest.raises(UsageError, match="too long"):
        tempdirs.check_explicit_root(long_root, "abcd1234", 0)
    # Every path we accept leaves room for Ray's longest socket path.
    for rank in (0, 9, 99999):
        path = tempdirs.rank_dir("/tmp", "abcd1234", rank)
        assert len(path) + tempdirs.RAY_SOCKET_TAIL <= tempdirs.UNIX_PATH_MAX


def test_long_tmpdir_falls_back_to_tmp(tmp_path):
    deep = tmp_path / ("d" * 60)
    deep.mkdir()
    root, why = tempdirs.choose_root(None, "abcd1234", 0, {"TMPDIR": str(deep)})
    assert root == tempdirs.FALLBACK_ROOT and "too long" in why
    root, why = tempdirs.choose_root(None, "abcd1234", 0, {"TMPDIR": "/tmp"})
    assert (root, why) == ("/tmp", "from $TMPDIR")


def test_child_environment_drops_launcher_variables():
    env = {"OMPI_COMM_WORLD_RANK": "1", "PMIX_RANK": "1", "PRTE_X": "1", "PMI_RANK": "1",
           "HOME": "/root", "SLURM_JOB_ID": "7"}
    clean = launch_env.child_environment({"RAY_ADDRESS": "a:1"}, env)
    assert clean == {"HOME": "/root", "SLURM_JOB_ID": "7", "RAY_ADDRESS": "a:1"}
    # None in `extra`: the child goes without that variable (ROCR for Ray 2.45+).
    clean = launch_env.child_environment({"SLURM_JOB_ID": None, "NOT_SET": None}, env)
    assert clean == {"HOME": "/root"}


def test_rank_and_job_id_from_environment():
    assert launch_env.rank_from_environment({"OMPI_COMM_WORLD_RANK": "3"}) == 3
    assert launch_env.rank_from_environment({"SLURM_PROCID": "5"}) == 5
    assert launch_env.rank_from_environment({}) == 0
    assert not launch_env.under_launcher({})
    assert launch_env.job_id({"PBS_JOBID": "123.pbs01"}) == "123"


def test_driver_command_and_placeholder(tmp_path):
    script = tmp_path / "d.py"
    script.write_text("")
    assert driver.command(str(script), ["-a"]) == [sys.executable, str(script), "-a"]
    with pytest.raises(UsageError, match="driver not found"):
        driver.command(str(tmp_path / "missing.py"), [])
    with pytest.raises(UsageError, match="neither a .py file nor a command"):
        driver.command("no-such-command-xyz", [])
    assert driver.fill_in(["--ray-address", "{ray_address}"], "h:1") == ["--ray-address", "h:1"]


def test_exit_status_follows_the_shell_convention():
    assert driver.exit_status(3) == 3
    assert driver.exit_status(-signal.SIGKILL) == 128 + 9


@pytest.mark.parametrize("env, launcher_name, scheduler", [
    ({"PRTE_LAUNCHED": "1", "OMPI_COMM_WORLD_RANK": "0"}, "mpirun", None),
    ({"PMI_RANK": "0", "HYDI_CONTROL_FD": "7"}, "Hydra mpiexec", None),
    ({"SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0", "SLURM_PROCID": "3"}, "srun",
     "Slurm job 77"),
    ({"PBS_JOBID": "12.pbs01", "ALPS_APP_PE": "0"}, "Cray ALPS aprun", "PBS job 12"),
    ({"PBS_JOBID": "12.polaris", "PALS_RANKID": "0"}, "Cray PALS mpiexec", "PBS job 12"),
    ({}, "no launcher (a single process)", None),
])
def test_launcher_and_scheduler_are_named(env, launcher_name, scheduler):
    assert launch_env.launcher_name(env) == launcher_name
    assert launch_env.scheduler(env) == scheduler


def test_tasks_that_each_see_a_world_of_one_are_refused():
    srun = {"SLURM_JOB_ID": "5", "SLURM_STEP_ID": "0", "SLURM_PROCID": "2",
            "SLURM_STEP_NUM_TASKS": "4"}
    with pytest.raises(UsageError, match=r"srun started 4 tasks.*--mpi=pmix"):
        launch_env.check_world(1, srun)
    launch_env.check_world(4, srun)  # MPI sees them all: fine
    launch_env.check_world(1, {**srun, "SLURM_STEP_NUM_TASKS": "1"})
    launch_env.check_world(1, {})  # no launcher: one process is the whole job
    assert launch_env.launcher_rank(srun) == 2


def test_start_ray_imports_without_the_rl_stack():
    """The package needs Ray, mpi4py and psutil; TensorFlow, gymnasium and
    RLlib are the drivers' (the `rl` extra), and no module of start_ray
    pulls them in."""
    import configparser
    setup = configparser.ConfigParser()
    setup.read(os.path.join(ROOT, "setup.cfg"))
    required = setup["options"]["install_requires"].lower()
    for name in ("tensorflow", "gymnasium", "rllib", "tf_keras", "matplotlib", "torch"):
        assert name not in required, f"{name} is an install requirement"
    assert "tensorflow" in setup["options.extras_require"]["rl"]
    code = ("import importlib, pkgutil, sys, start_ray\n"
            "for m in pkgutil.walk_packages(start_ray.__path__, 'start_ray.'):\n"
            "    importlib.import_module(m.name)\n"
            "print(sorted(n for n in ('tensorflow', 'gymnasium', 'ray.rllib', 'torch',\n"
            "                         'matplotlib') if n in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_no_trace_function_is_set_by_start_ray():
    """The API skips no body with sys.settrace (it fought coverage and pdb)."""
    for folder, _, names in os.walk(os.path.join(ROOT, "start_ray")):
        for name in names:
            if name.endswith(".py"):
                with open(os.path.join(folder, name)) as handle:
                    assert "settrace" not in handle.read(), name


def test_a_slurm_output_path_becomes_a_pattern_again_in_its_file_name_only():
    from start_ray.batch.slurm import Slurm
    slurm = Slurm({"SLURM_JOB_ID": "2"})
    assert slurm.pattern("/tmp/pytest-32/out/link-2.log") == "/tmp/pytest-32/out/link-%j.log"
    assert slurm.pattern("/runs/2/slurm-2.out") == "/runs/2/slurm-%j.out"
    assert slurm.pattern("/runs/job-12.out") == "/runs/job-12.out", "12 is not job 2"
    slurm._fields = {"StdOut": "/o/x-2.out", "StdErr": "/o/x-2.out", "Account": "(null)",
                     "Partition": "debug", "NtasksPerN:B:S:C": "4:0:*:*", "NumTasks": "8",
                     "TresPerNode": "gres:gpu:4", "TimeLimit": "01:00:00", "QOS": "normal"}
    assert slurm.submit_options() == [
        "--partition=debug", "--qos=normal", "--time=01:00:00", "--ntasks-per-node=4",
        "--gres=gpu:4", "--output=/o/x-%j.out"]


def _recorded_pbs(name: str):
    """A Pbs that reads `qstat -f` recorded from a real OpenPBS (tests/data/pbs)."""
    from start_ray.batch.pbs import Pbs
    from start_ray.batch.scheduler import qstat_fields
    pbs = Pbs({"PBS_JOBID": "6.h0", "PBS_O_WORKDIR": "/home/me/project"})
    with open(os.path.join(ROOT, "tests", "data", "pbs", name)) as handle:
        pbs._fields = qstat_fields(handle.read())
    return pbs


def test_pbs_options_come_back_from_a_real_qstat(monkeypatch):
    """qstat -f of a running job, recorded from a real OpenPBS: what the
    next link of a chain is submitted with (the -o folder as given; PBS's
    own default error file left out), the script (Submit_arguments' last
    word, in the submit folder), the time left (walltime less the time
    since stime) and each host's CPUs (exec_host)."""
    import time as clock
    from start_ray.batch import pbs as pbs_module
    from start_ray.batch import scheduler
    pbs = _recorded_pbs("qstat-f-running.txt")
    assert pbs.fields["Variable_List"].endswith("PBS_O_QUEUE=workq,PBS_O_HOST=h0")
    assert pbs.submit_options() == [
        "-N", "mychain", "-A", "MY_PROJECT", "-q", "workq", "-j", "oe", "-m", "abe",
        "-M", "me@example.org", "-l", "place=scatter", "-l", "select=2:ncpus=2:mpiprocs=2",
        "-l", "walltime=00:02:00", "-o", "/home/me/project/out/"]
    assert pbs.script() == "/home/me/project/rec.sh"
    started = clock.mktime((2026, 12, 7, 19, 40, 4, 0, 0, -1))
    monkeypatch.setattr(pbs_module.time, "time", lambda: started + 30.5)
    assert pbs.time_limit() == 89
    monkeypatch.setattr(pbs_module.time, "time", lambda: started + 500)
    assert pbs.time_limit() == 0
    assert pbs.host_cpus() == 2 and pbs.step_env() == {scheduler.HOST_CPUS: "2"}
    assert scheduler.seconds("1-00:00:10") == 86410 and scheduler.seconds("30") == 1800
    finished = _recorded_pbs("qstat-xf-finished.txt")
    assert finished.fields["Exit_status"] == "0" and finished.fields["job_state"] == "F"


def test_pbs_host_cpus_are_each_hosts_chunks_or_none_when_they_differ():
    from start_ray.batch.pbs import Pbs
    pbs = Pbs({"PBS_JOBID": "7.pbs"})
    for exec_host, cpus in (("h0/0*2+h1/0*2", 2), ("h0/0+h0/1+h1/0*2", 2), ("n1/0*64", 64),
                            ("h0/0*2+h1/0*4", None), ("", None)):
        pbs._fields = {"exec_host": exec_host}
        assert pbs.host_cpus() == cpus, exec_host


def test_a_pbs_nodes_cpus_come_from_exec_host_not_from_a_ranks_threads():
    """PBS sets NCPUS and OMP_NUM_THREADS to a rank's threads (ompthreads;
    by default its chunk's ncpus). What the host holds is exec_host's, which
    start_ray.jobs gives the step; without it, NCPUS for the host."""
    from start_ray.host.resources import cpus
    pbs = {"PBS_JOBID": "7.h0", "NCPUS": "1", "OMP_NUM_THREADS": "1"}
    found = cpus({**pbs, "START_RAY_PBS_HOST_CPUS": "2"}, 2, 2, affinity=2, quota=None)
    assert (found.value, found.source) == (2, "PBS exec_host: 2 CPUs on each host")
    found = cpus({**pbs, "START_RAY_PBS_HOST_CPUS": "2"}, 1, 2, affinity=2, quota=None)
    assert found.value == 1 and "shared by 2 ranks" in found.source
    found = cpus({**pbs, "NCPUS": "2", "OMP_NUM_THREADS": "2"}, 2, 2, affinity=2, quota=None)
    assert (found.value, found.source) == (2, "NCPUS=2")


def test_the_kill_delay_of_a_pbs_queue_is_read_from_qstat(monkeypatch):
    import subprocess
    from start_ray.mpi import launch_env
    with open(os.path.join(ROOT, "tests", "data", "pbs", "qstat-Qf-workq.txt")) as handle:
        shown = handle.read()
    asked = []

    def qstat(cmd, **kwargs):
        asked.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, shown, "")
    monkeypatch.setattr(launch_env.subprocess, "run", qstat)
    env = {"PBS_JOBID": "6.h0", "PBS_QUEUE": "workq"}
    assert launch_env.kill_wait(env) == (10.0, "PBS's kill_delay")
    assert asked == [["qstat", "-Qf", "workq"]]
    shown = "Queue: workq\n    queue_type = Execution\n"
    assert launch_env.kill_wait(env) == (10.0, "PBS's kill_delay (its default)")
    assert launch_env.kill_wait({}) is None


def test_start_ray_tmrsh_runs_the_launchers_command_through_pbs_tmrsh(tmp_path):
    """mpiexec's rsh launcher hands the remote command quoted for a shell;
    pbs_tmrsh runs an argv: the wrapper gives it `/bin/sh -c LINE`."""
    from start_ray.batch import tmrsh
    from start_ray.errors import UsageError
    exec_dir = tmp_path / "pbs"
    (exec_dir / "bin").mkdir(parents=True)
    (exec_dir / "bin" / "pbs_tmrsh").write_text("#!/bin/sh\n")
    (exec_dir / "bin" / "pbs_tmrsh").chmod(0o755)
    conf = tmp_path / "pbs.conf"
    conf.write_text(f"PBS_SERVER=h0\nPBS_EXEC={exec_dir}\n")
    env = {"PBS_JOBID": "6.h0", "PATH": "/nowhere", "PBS_CONF_FILE": str(conf)}
    cmd = tmrsh.command(["-n", "h1", "/venv/bin/hydra_pmi_proxy", "--control-port",
                         "h0:4242", "--proxy-id", "1"], env)
    assert cmd == [str(exec_dir / "bin" / "pbs_tmrsh"), "h1", "/bin/sh", "-c",
                   "/venv/bin/hydra_pmi_proxy --control-port h0:4242 --proxy-id 1"]
    assert tmrsh.host_and_command(["-o", "StrictHostKeyChecking=no", "-x", "h2", "prted",
                                   "--x"]) == ("h2", "prted --x")
    for args, environ in ((["h1"], env), (["h1", "true"], {"PATH": "/nowhere"}),
                          (["h1", "true"], {"PBS_JOBID": "6", "PATH": "/nowhere",
                                            "PBS_CONF_FILE": str(tmp_path / "none")})):
        with pytest.raises(UsageError):
            tmrsh.command(args, environ)


def test_flux_reads_a_real_jobspec_and_queues_it_again(monkeypatch):
    """A jobspec and R recorded from a real Flux 0.88 (tests/data/flux): what
    the next link keeps, the time left, whether Flux's --signal is due, and
    the jobspec submitted again (the script's text, the environment, and a
    dependency on this job) to the parent instance."""
    import json
    import subprocess
    from start_ray.batch import flux as scheduler
    data = os.path.join(os.path.dirname(__file__), "data", "flux")
    flux = scheduler.Flux.__new__(scheduler.Flux)
    flux.env, flux.job_id = {"FLUX_URI": "local:///tmp/x"}, "ƒ2ArWm5hX"
    with open(os.path.join(data, "batch-jobspec.json")) as spec, \
            open(os.path.join(data, "batch-R.json")) as r:
        flux._fields = {"jobspec": spec.read(), "R": r.read()}
    assert flux.submit_options() == [
        "--nodes=2", "--nslots=2", "--cores-per-slot=1", "--time-limit=300s",
        "--job-name=start_ray", "--output=link-{{id}}.out", "--signal=10@60s"]
    assert flux.script() == flux.THIS_SCRIPT
    (caution,) = flux.cautions()  # recorded with -N2 --signal: the brokers after the first die
    assert "`flux batch --signal` and 2 nodes" in caution, caution
    expiration = json.loads(flux._fields["R"])["execution"]["expiration"]
    monkeypatch.setattr(scheduler.time, "time", lambda: expiration - 100)
    assert flux.time_limit() == 100 and not flux.warning_sent()
    monkeypatch.setattr(scheduler.time, "time", lambda: expiration - 58)
    assert flux.warning_sent(), "Flux's signal is due 60 s before the expiration"
    sent = {}

    def submit(cmd, input, **kwargs):
        sent.update(cmd=cmd, spec=json.loads(input))
        return subprocess.CompletedProcess(cmd, 0, "ƒ3xyz\n", "")
    monkeypatch.setattr(scheduler.subprocess, "run", submit)
    assert flux.submit_after(flux.THIS_SCRIPT, [], {"START_RAY_CHAIN_LINK": "2"}) == "ƒ3xyz"
    assert sent["cmd"] == ["flux", "--parent", "job", "submit"]
    system = sent["spec"]["attributes"]["system"]
    assert system["dependencies"] == [{"scheme": "afterany", "value": "ƒ2ArWm5hX"}]
    assert system["environment"]["START_RAY_CHAIN_LINK"] == "2"
    assert system["environment"]["DRIVER"] == "train.py", "the submitter's environment"
    assert system["files"]["script"]["data"].startswith("#!/bin/bash\n# flux: --job-name")
    assert sent["spec"]["resources"] == json.loads(flux._fields["jobspec"])["resources"]
    assert scheduler.seconds_of("10m") == 600 and scheduler.seconds_of("1.5h") == 5400


@pytest.mark.parametrize("printed,said", [
    ("ERR scripts.py:1307 -- Some Ray subprocesses exited unexpectedly:\n"
     "ERR scripts.py:87 -- raylet [exit code=-9]\n"
     "ERR scripts.py:128 -- ----- END raylet.out tail (exit code(s)=-9 (signal 9)) -----\n"
     "ERR scripts.py:1315 -- Remaining processes will be killed.\n",
     "raylet was killed by SIGKILL"),
    ("ValueError: bad resources: {}\nsome noise\n", "ValueError: bad resources: {}"),
    ("one\ntwo\n", "one / two"),
], ids=["a-process-died", "an-exception", "the-last-lines"])
def test_a_ray_node_that_ended_says_why_in_one_line(tmp_path, printed, said):
    from start_ray.node.raynode import RayNode
    script = tmp_path / "ray"
    script.write_text(f"#!/bin/sh\ncat <<'END'\n{printed}END\nexit 1\n")
    script.chmod(0o755)
    node = RayNode([], dict(os.environ), str(tmp_path), ray_command=[str(script)])
    with pytest.raises(NodeError, match="exited with status 1") as err:
        node.wait_started(time.monotonic() + 10, 0.01)
    assert str(err.value).endswith(said), err.value
    assert node.last_words() == said


def test_a_picked_port_is_free_and_outside_the_ephemeral_range(tmp_path):
    """The client server and dashboard ports: no port-0 bind (Ray's own
    processes, outgoing connections) can take them before Ray binds them."""
    import random
    import socket

    from start_ray.node import ports
    low, high = ports.ephemeral_range()
    assert 1024 < low < high
    for seed in range(20):
        port = ports.free_port(random.Random(seed))
        assert ports.LOWEST_PICK <= port < low
    # A taken port is never picked: with one candidate taken, the next is tried.
    with socket.socket() as taken:
        taken.bind(("", 0))
        busy = taken.getsockname()[1]
        taken.listen()
        picks = iter([busy, busy + 1 if busy + 1 < 65536 else busy - 1])
        rng = type("Scripted", (), {"randrange": lambda self, a, b: next(picks)})()
        assert ports.free_port(rng, ephemeral=(65000, 65535)) != busy
    # No room below the range: the OS picks.
    assert ports.free_port(ephemeral=(ports.LOWEST_PICK, 60999)) > 0
    unreadable = tmp_path / "missing"
    assert ports.ephemeral_range(str(unreadable)) == (32768, 60999)


# ------------------------------------------------- the walltime warning, early
def test_a_step_ended_by_the_walltime_signal_itself_is_not_done():
    from start_ray.batch import chain
    assert chain.outcome(128 + signal.SIGUSR1, warned=True) == "continues"
    assert chain.outcome(128 + signal.SIGUSR1, warned=False) == "continues"
    assert chain.outcome(128 + signal.SIGUSR2, warned=True, walltime_signal=signal.SIGUSR2) \
        == "continues"
    assert chain.outcome(128 + signal.SIGUSR2, warned=True) == "failed"
    assert chain.outcome(0, warned=True) == "continues"
    assert chain.outcome(75, warned=False) == "continues"
    assert chain.outcome(0, warned=False) == "done"
    assert chain.outcome(1, warned=True) == "failed"
    # MPICH's mpiexec: the OR of its tasks' statuses, a signal as its number
    assert chain.outcome(signal.SIGUSR1, warned=True) == "continues"  # every task died of it
    assert chain.outcome(signal.SIGUSR1 | signal.SIGKILL, warned=True) == "continues"
    assert chain.outcome(signal.SIGUSR1, warned=False) == "failed", "a driver's own exit 10"
    assert chain.outcome(signal.SIGUSR1 | 1, warned=True) == "continues"  # 11 either way
    assert chain.outcome(signal.SIGUSR1 | 4, warned=True) == "failed"


def test_the_walltime_signal_is_read_before_the_command_line_is_parsed():
    from start_ray.procs.signals import walltime_signal_given
    assert walltime_signal_given([], {}) == signal.SIGUSR1
    assert walltime_signal_given([], {"START_RAY_WALLTIME_SIGNAL": "USR2"}) == signal.SIGUSR2
    assert walltime_signal_given(["--walltime-signal", "SIGUSR2", "d.py"], {}) == signal.SIGUSR2
    assert walltime_signal_given(["--walltime-signal=12"], {}) == 12
    # the driver's own arguments are the driver's
    assert walltime_signal_given(["d.py", "--", "--walltime-signal", "USR2"], {}) == \
        signal.SIGUSR1
    assert walltime_signal_given(["--walltime-signal", "nonsense"], {}) == signal.SIGUSR1


def test_a_warning_caught_before_the_step_starts_makes_it_start_warned(tmp_path):
    """The batch shell (`exec python -m start_ray.jobs run -- ...`) may get
    the warning before the step exists. A signal sent to the step as it
    starts could find no handler yet (a task dies of it) or no job to reach
    (`flux run` before its job runs): the step starts warned instead
    (START_RAY_WARNED=1, which start_ray's ranks read at their first
    instant), and a warned step that ends well is not done."""
    from start_ray.batch import chain
    from start_ray.batch.step import Step
    from start_ray.procs.signals import SignalInbox
    inbox = SignalInbox([signal.SIGUSR1])
    inbox.record(signal.SIGUSR1)  # as its handler does, before the step exists
    seen = tmp_path / "seen"
    step = Step(["sh", "-c", f"echo $START_RAY_WARNED > {seen}"], signal.SIGUSR1, inbox)
    previous = signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGTERM)
    try:
        status = step.run()
    finally:
        signal.signal(signal.SIGUSR1, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    assert status == 0 and seen.read_text().strip() == "1"
    assert step.warned.is_set() and step.warned_at_start and not step.no_time
    assert chain.outcome(status, step.warned.is_set()) == "continues"


# ------------------------------------------------- the node-table helper's orders
def test_the_node_table_helper_follows_the_latest_order_even_when_two_come_at_once():
    """Rank 0 says "every 0.05 s" while nodes join and "every 2 s" once the
    cluster is ready, often in one breath. The helper read its stdin through
    a buffer that select() cannot see: it took the first line only and
    looked 20 times a second for the rest of the job (1.2 CPU-s a minute on
    rank 0's host at 4 ranks). It must look once at once, then at the
    latest interval."""
    import io
    import threading

    from start_ray.node import gcs_table
    looks = []

    def reader(address):
        assert address == "10.0.0.1:6379"
        return lambda: looks.append(time.monotonic()) or [
            {"NodeID": "ab", "Alive": True, "Labels": {}, "Resources": {"CPU": 1.0}}]

    read, write = os.pipe()
    out = io.StringIO()
    helper = threading.Thread(target=gcs_table.main, args=(read, reader, out), daemon=True)
    os.write(write, b"10.0.0.1:6379 0.01\n10.0.0.1:6379 30\n")  # in one write
    helper.start()
    time.sleep(0.5)
    assert len(looks) == 1, f"{len(looks)} looks in 0.5 s: the 30 s order was not read"
    os.write(write, b"10.0.0.1:6379 30\n")  # look_now: one more look, at once
    deadline = time.monotonic() + 5
    while len(looks) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(looks) == 2
    os.write(write, b"10.0.0.1:63")  # half a line: no order yet
    time.sleep(0.2)
    assert len(looks) == 2
    os.close(write)  # rank 0 is gone: the helper ends
    helper.join(5)
    assert not helper.is_alive()
    os.close(read)
    assert [json.loads(line)["alive"] for line in out.getvalue().splitlines()] == [[-1], [-1]]


@pytest.mark.parametrize("ancestors,found", [
    ([["/bin/bash"], ["hydra_pmi_proxy", "--control-port", "vm:1"],
      ["/v/bin/mpiexec", "-disable-auto-cleanup", "-n", "2", "python"]], True),
    ([["mpiexec.hydra", "--disable-auto-cleanup", "-n", "2"]], True),
    ([["mpiexec", "-n", "2", "python", "-disable-auto-cleanup"]], True),
    ([["mpiexec", "-n", "2", "python"]], False),
    ([["srun", "-disable-auto-cleanup"]], False),
    ([], False),
])
def test_hydra_without_auto_cleanup_is_found_among_the_ancestors(ancestors, found):
    from start_ray.mpi import launch_env
    assert launch_env.hydra_without_auto_cleanup(ancestors) is found


def test_a_rank_hydra_started_ignores_usr1_only_when_it_is_not_the_warning():
    import signal as sig

    from start_ray.procs.signals import ignore_hydras_failure_word
    before = sig.getsignal(sig.SIGUSR1)
    try:
        assert not ignore_hydras_failure_word(sig.SIGUSR1, {"HYDI_CONTROL_FD": "7"})
        assert not ignore_hydras_failure_word(sig.SIGUSR2, {})
        assert sig.getsignal(sig.SIGUSR1) == before
        assert ignore_hydras_failure_word(sig.SIGUSR2, {"HYDI_CONTROL_FD": "7"})
        assert sig.getsignal(sig.SIGUSR1) == sig.SIG_IGN
    finally:
        sig.signal(sig.SIGUSR1, before)


@pytest.mark.fast
def test_once_the_job_is_over_a_rank_exits_whatever_usr1_or_the_warning_says():
    """Rank 0 refused the job (exit 2) and Hydra, under -disable-auto-cleanup,
    sends SIGUSR1 to the ranks still exiting: they ended with "User defined
    signal 1" (exit 10) instead of 2."""
    import signal as sig

    from start_ray.procs.signals import ignore_after_the_job
    before = {signum: sig.getsignal(signum) for signum in (sig.SIGUSR1, sig.SIGUSR2)}
    try:
        assert ignore_after_the_job(sig.SIGUSR1, {"HYDI_CONTROL_FD": "7"}) == [sig.SIGUSR1]
        assert ignore_after_the_job(sig.SIGUSR2, {"HYDI_CONTROL_FD": "7"}) == [sig.SIGUSR2,
                                                                              sig.SIGUSR1]
        assert ignore_after_the_job(sig.SIGTERM, {}) == [], "a stopping signal still stops"
        assert all(sig.getsignal(signum) == sig.SIG_IGN for signum in before)
    finally:
        for signum, handler in before.items():
            sig.signal(signum, handler)


# ------------------------------------------------------------ chain links
def _link(monkeypatch, capsys, cmd, environ, fail_queries=False, **step_fields):
    """One link in process (the step a real command), against a scheduler
    whose commands all fail when `fail_queries`; (status, what it said)."""
    from start_ray.batch import chain, pbs
    from start_ray.batch.step import Step
    from start_ray.errors import UsageError

    def unreachable(cmd, env=None):
        raise UsageError(f"`{' '.join(cmd)}` failed: qstat: Unknown Job Id 4242.pbs01")
    if fail_queries:
        monkeypatch.setattr(pbs, "_run", unreachable)
    for name in (chain.LINK, chain.CHAIN_ID):
        monkeypatch.delenv(name, raising=False)
    step = Step(cmd)
    for key, value in step_fields.items():
        setattr(step, key, value)
    previous = signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGTERM)
    try:
        status = chain.link(cmd, 3, warn_before=60, environ=environ, step=step)
    finally:
        signal.signal(signal.SIGUSR1, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    return status, capsys.readouterr().out


def test_a_link_whose_scheduler_query_fails_still_runs_its_program(monkeypatch, capsys):
    """qstat fails (the server is down, the job unknown): the link cannot
    queue the next one, says so and that the chain stops there, and still
    runs the program to its end (the time limit is unknown too)."""
    status, said = _link(monkeypatch, capsys, ["sh", "-c", "echo RAN"],
                         {"PBS_JOBID": "4242.pbs01"}, fail_queries=True)
    assert status == 0
    assert re.search(r"could not queue the next link: .*qstat: Unknown Job Id 4242\.pbs01; "
                     r"this link runs alone and the chain stops after it", said), said
    assert "could not read the time limit from PBS" in said, said
    assert "chain 4242: done after 1 link(s)" in said


def test_a_dead_raylets_state_dump_goes_to_driver_log_not_the_console():
    """Ray's agents publish a dead raylet's last log lines to the driver
    (dozens of `[state-dump]` lines under --restarts): the console gets one
    line saying where they are; other output, a progress bar without its
    newline included, passes as it comes."""
    from start_ray.procs.driver_output import Console
    read_end, write_end = os.pipe()
    console = Console(write_end, "driver.log")
    console.write(b"iteration 1\nRaylet is terminated. Last 3 lines:\n    [state-dump] Node")
    console.write(b"Manager:\n    [state-dump] Node ID: ab\n    [state-dump] done\n")
    console.write(b"iteration 2\nprogress 50%")
    console.close()
    os.close(write_end)
    with os.fdopen(read_end, "rb") as handle:
        shown = handle.read().decode()
    assert shown == ("iteration 1\nRaylet is terminated. Last 3 lines:\n"
                     "start_ray: Ray's state dump of a dead raylet (3 lines) is in driver.log "
                     "only\niteration 2\nprogress 50%"), shown
