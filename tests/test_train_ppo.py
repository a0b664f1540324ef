"""drivers/train_ppo.py under `mpirun -np 2 python -m start_ray`, short runs
(the quality bar lives in benchmarks/train_ppo.py). PyTorch on SimpleCorridor
runs as docs/train-ppo.md prints it (test_docs.py) and checkpoints and resumes
in the Slurm chain, and the walltime warning comes from a real Slurm
(test_slurm.py).

Each Ray node offers 2 CPUs, so 2 env runners plus the learner fit and the
runners land on both nodes."""

import csv
import glob
import os
import re
import subprocess
import sys
import time

import pytest

from jobs import PYTHON, ROOT, assert_nothing_left, ray_process

sys.path.insert(0, os.path.join(ROOT, "drivers"))
import rl_chain  # noqa: E402
import train_ppo  # noqa: E402

TRAIN = os.path.join(ROOT, "drivers", "train_ppo.py")
PLOT = os.path.join(ROOT, "drivers", "plot_rewards.py")
SHORT = ["--stop-iters", "2", "--train-batch-size", "400", "--minibatch-size", "64",
         "--num-epochs", "2", "--num-env-runners", "2", "--checkpoint-frequency", "1"]


def train(jobs, results, *args, timeout=420):
    result = jobs.run(2, ["--num-cpus", "2", TRAIN, "--results-dir", str(results), *args],
                      timeout=timeout)
    assert result.returncode == 0, result.output
    assert_nothing_left(result)
    return result


def progress(results, name):
    (path,) = glob.glob(os.path.join(results, name, "*", "progress.csv"))
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def checkpoints(results, name):
    return sorted(glob.glob(os.path.join(results, name, "*", "checkpoint_*")))


def placement_nodes(results, name):
    with open(os.path.join(results, f"{name}.placement.txt")) as handle:
        return {line.split()[0] for line in handle if line.strip()}


def test_trains_checkpoints_restores_and_plots(jobs, tmp_path):
    framework, env = "tf2", "CartPole-v1"
    name = f"PPO_{env}_{framework}"
    first = tmp_path / "first"
    result = train(jobs, first, "--framework", framework, "--env", env, *SHORT)
    rows = progress(first, name)
    assert [int(row["training_iteration"]) for row in rows] == [1, 2]
    assert all(row["env_runners/episode_return_mean"] not in ("", "nan") for row in rows)
    assert glob.glob(os.path.join(first, name, "*", "result.json"))
    assert glob.glob(os.path.join(first, name, "*", "events.out.tfevents.*"))
    saved = checkpoints(first, name)
    assert saved, "a checkpoint was written"
    assert len(placement_nodes(first, name)) == 2, "env runners ran on both Ray nodes"
    assert f"results: {first}" in result.stdout
    # One line per iteration, no tables, no worker start-up logs.
    assert re.search(r"train_ppo.py: iteration 2/2, 800 env steps \(\d+/s\), mean return ",
                     result.stdout), result.stdout
    assert "Configuration for experiment" not in result.output
    assert "Trial status" not in result.output

    # Restoring goes on from the checkpoint's iteration; --verbose: Tune's tables.
    second = tmp_path / "second"
    result = train(jobs, second, "--framework", framework, "--env", env, *SHORT[2:],
                   "--stop-iters", "3", "--restore", saved[-1], "--verbose")
    assert [int(row["training_iteration"]) for row in progress(second, name)] == [3]
    assert "Configuration for experiment" in result.output

    png = tmp_path / "rewards.png"
    plot = subprocess.run([PYTHON, PLOT, str(first), str(second), "-o", str(png)],
                          capture_output=True, text=True, timeout=120)
    assert plot.returncode == 0, plot.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args,message", [
    (["--env", "NoSuchEnv-v9"], "unknown environment 'NoSuchEnv-v9'"),
    (["--framework", "jax"], "argument --framework: invalid choice: 'jax'"),
    (["--restore", "x", "--experiment-dir", "y"], "--restore and --experiment-dir: give one"),
])
def test_bad_input_is_one_clear_error(args, message):
    stop = [] if not args else ["--stop-iters", "1"]
    run = subprocess.run([PYTHON, TRAIN, *args, *stop], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.fast
def test_no_stop_criterion_means_the_envs_threshold_or_200_iterations(capsys):
    """`python -m start_ray drivers/train_ppo.py` alone is a sensible run,
    not an error after the cluster has started."""
    args = train_ppo.parse_args([])
    assert (args.stop_iters, args.stop_reward) == (200, 475.0)  # CartPole-v1's threshold
    assert "no stop criterion given: stopping after 200 iterations or at a mean return " \
        "of 475" in capsys.readouterr().out
    corridor = train_ppo.parse_args(["--env", "SimpleCorridor"])
    assert (corridor.stop_iters, corridor.stop_reward) == (200, None)


@pytest.mark.fast
def test_the_progress_line_says_where_training_stands_and_when_it_ends():
    args = train_ppo.parse_args(["--stop-iters", "200", "--stop-reward", "475"])
    assert train_ppo.progress_line(12, 48000, 45.2, args, 38.0, (3.1, 1290.0)) == (
        "iteration 12/200, 48000 env steps (1290/s), mean return 45.2 (target 475), "
        "elapsed 0:38, ETA 9:42")
    assert train_ppo.progress_line(1, 4000, None, args, 6.0, None) == (
        "iteration 1/200, 4000 env steps, mean return n/a (target 475), elapsed 0:06")



def test_a_restarted_trial_repeats_no_iteration_in_the_chains_progress(tmp_path, capsys):
    """Tune restarts a failed trial from its last checkpoint (--max-failures,
    e.g. after the node of the algorithm's actor was lost): the iterations
    it does again replace the old rows of the chain's progress.csv."""
    import rl_chain
    chain = str(tmp_path)
    args = train_ppo.parse_args(["--stop-iters", "9"])
    link = rl_chain.start_link(chain, "7", None, 0)
    progress = train_ppo.progress_callback(args, chain, link, 1)
    progress.setup()
    for it in (1, 2, 3, 4, 3, 4, 5):  # failed after 4; its checkpoint was at 2
        progress.on_trial_result(0, [], None, {"training_iteration": it,
                                               train_ppo.STEP_KEYS[0]: it * 100})
    with open(os.path.join(chain, "progress.csv"), newline="") as handle:
        assert [int(row["training_iteration"]) for row in csv.DictReader(handle)] == \
            [1, 2, 3, 4, 5]


def test_a_head_raylet_killed_mid_training_with_restarts_1_ends_in_one_job(jobs, tmp_path):
    """The head's raylet SIGKILLed after PPO's first checkpoint, under
    `--restarts 1`: start_ray forms the cluster again and runs train_ppo
    again, which resumes from that checkpoint; the job reaches --stop-iters
    with exit 0, and the experiment's progress.csv is contiguous (no
    iteration missing or twice)."""
    experiment = tmp_path / "experiment"
    running = jobs.start(2, ["--num-cpus", "2", "--restarts", "1", TRAIN, "--framework",
                             "torch", "--experiment-dir", str(experiment), *SHORT[2:],
                             "--stop-iters", "5"])
    deadline = time.monotonic() + 300
    while not rl_chain.read(str(experiment)).get("checkpoints"):
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        assert running.proc.poll() is None, "the job ended before its first checkpoint"
        time.sleep(0.2)
    ray_process(running, "raylet", 0).kill()
    result = running.wait(420)
    assert result.returncode == 0, result.output
    with open(experiment / rl_chain.PROGRESS, newline="") as handle:
        iterations = [int(float(row["training_iteration"])) for row in csv.DictReader(handle)]
    assert iterations == [1, 2, 3, 4, 5], iterations
    links = rl_chain.read(str(experiment))["links"]
    assert len(links) == 2 and links[1]["resumed_from"], links
    assert links[1]["first_iteration"] >= 2, links
    assert "restart 1 of at most 1 (--restarts)" in result.rank_logs()["rank-0.log"]
    assert result.output.count("READY:") == 2, "two attempts, each announced"
    # The first driver gave up its iteration at once: it cannot finish
    # without its Ray node, and waiting cost the stop timeout.
    assert "this driver's Ray node is gone: the iteration cannot finish" in result.output, \
        result.output
    # The dead raylet's state dump that Ray publishes to the driver: in driver.log only.
    assert "[state-dump]" not in result.output, result.output
    assert_nothing_left(result)
