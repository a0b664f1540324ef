"""drivers/rl_chain.py in-process: what a chained experiment resumes from,
and its progress.csv across links (the real chain runs in test_slurm.py)."""

import csv
import json
import os
import re
import subprocess
import sys

import pytest

from jobs import PYTHON, ROOT

sys.path.insert(0, os.path.join(ROOT, "drivers"))
import rl_chain  # noqa: E402


def checkpoint(folder, link, index, complete=True):
    path = os.path.join(folder, "links", link, "PPO_trial", f"checkpoint_{index:06d}")
    os.makedirs(path)
    if complete:
        open(os.path.join(path, rl_chain.CHECKPOINT_FILE), "w").close()
    return path


def rows(folder):
    with open(os.path.join(folder, "progress.csv"), newline="") as handle:
        return [(row["link"], int(row["training_iteration"])) for row in csv.DictReader(handle)]


@pytest.mark.fast
def test_an_empty_folder_starts_fresh(tmp_path):
    assert rl_chain.resume_point(str(tmp_path)) == (None, 0, [])


@pytest.mark.fast
def test_the_newest_recorded_checkpoint_wins_and_unrecorded_ones_are_skipped(tmp_path):
    folder = str(tmp_path)
    old = checkpoint(folder, "001-1", 0)
    new = checkpoint(folder, "001-1", 1)
    rl_chain.add_checkpoint(folder, old, 5)
    rl_chain.add_checkpoint(folder, new, 10)
    # A job killed while saving: the folder exists, Tune never reported it.
    torn = checkpoint(folder, "002-2", 0, complete=False)
    path, iteration, warnings = rl_chain.resume_point(folder)
    assert (path, iteration) == (new, 10)
    assert len(warnings) == 1 and torn in warnings[0] and "not recorded as complete" in warnings[0]
    # A recorded checkpoint that Tune deleted since (num_to_keep) or that lost
    # its files is passed over for the next newest.
    os.remove(os.path.join(new, rl_chain.CHECKPOINT_FILE))
    assert rl_chain.resume_point(folder)[:2] == (old, 5)


@pytest.mark.fast
def test_resuming_drops_the_iterations_after_the_checkpoint(tmp_path):
    """Link 1 ran iterations 1-4 but its last checkpoint is at 3: link 2
    redoes 4, and progress.csv has no repeat and no gap."""
    folder = str(tmp_path)
    first = rl_chain.start_link(folder, "11", None, 0)
    for it in range(1, 5):
        rl_chain.append_progress(folder, first, {"training_iteration": it, "steps": it * 10})
    rl_chain.finish_link(folder, done=False, why="stopped by SIGUSR1", iteration=4)
    second = rl_chain.start_link(folder, "12", "/x/checkpoint_000002", 3)
    assert (first, second) == ("001-11", "002-12")
    for it in range(4, 6):
        rl_chain.append_progress(folder, second, {"training_iteration": it, "steps": it * 10})
    assert rows(folder) == [("001-11", 1), ("001-11", 2), ("001-11", 3),
                            ("002-12", 4), ("002-12", 5)]
    record = rl_chain.read(folder)
    assert [link["first_iteration"] for link in record["links"]] == [1, 4]
    assert record["links"][0]["why"] == "stopped by SIGUSR1" and record["done"] is False


@pytest.mark.fast
def test_done_says_whether_the_chain_is_over(tmp_path):
    folder = str(tmp_path)
    def done():
        return subprocess.run([PYTHON, os.path.join(ROOT, "drivers", "rl_chain.py"), "done",
                               folder], capture_output=True, text=True, timeout=60)
    assert done().returncode == 1 and "0 link(s)" in done().stdout
    rl_chain.start_link(folder, "7", None, 0)
    rl_chain.finish_link(folder, done=True, why="--stop-iters 3 reached", iteration=3)
    finished = done()
    assert finished.returncode == 0
    assert "1 link(s); done (--stop-iters 3 reached)" in finished.stdout


def test_a_finished_chain_run_again_does_nothing(jobs, tmp_path):
    """A link that starts after the criterion was met (queued twice, or run
    by hand) trains no further iteration."""
    folder = str(tmp_path)
    path = checkpoint(folder, "001-1", 0)
    rl_chain.start_link(folder, "1", None, 0)
    rl_chain.add_checkpoint(folder, path, 3)
    result = subprocess.run([PYTHON, os.path.join(ROOT, "drivers", "train_ppo.py"),
                             "--experiment-dir", folder, "--stop-iters", "3"],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "RAY_ADDRESS": "127.0.0.1:1"})
    assert result.returncode == 0, result.stderr
    assert "already at iteration 3 (--stop-iters 3): nothing to do" in result.stdout
    assert rl_chain.read(folder)["done"] is True


# ------------------------------------- the whole state across a link (rl_state)
import rl_state  # noqa: E402

TRAIN = os.path.join(ROOT, "drivers", "train_ppo.py")
CHECK = os.path.join(ROOT, "drivers", "rl_state.py")
SMALL = ["--train-batch-size", "400", "--minibatch-size", "64", "--num-epochs", "2",
         "--checkpoint-frequency", "1", "--seed", "3", "--num-env-runners", "1"]


def link(jobs, folder, framework, *stop):
    """One link of a chained experiment: start_ray (1 rank, 2 CPUs) and
    train_ppo.py --experiment-dir FOLDER; its output."""
    from jobs import assert_nothing_left
    result = jobs.run(1, ["--num-cpus", "2", TRAIN, "--framework", framework,
                          "--experiment-dir", folder, *SMALL, *stop], timeout=420)
    assert result.returncode == 0, result.output
    assert_nothing_left(result)
    return result.stdout


@pytest.mark.every_ray  # train_ppo.py on every supported Ray, both stacks (make compat)
@pytest.mark.parametrize("framework", ["torch", "tf2"])
def test_a_chain_carries_the_whole_algorithm_and_stops_at_the_chains_totals(
        jobs, tmp_path, framework):
    """Link 1 trains 2 iterations (800 env steps). Link 2 is given
    --stop-timesteps 1600: it counts from the restored 800, so it stops at
    iteration 4 with 1600 steps, as one run would. What crossed the link is
    the whole state: rl_state.py finds nothing differing between the state
    saved with link 1's checkpoint and the state just after link 2 restored
    it (weights, optimizer moments, the KL coefficient, schedules, lifetime
    counters, connectors, the seeded generators), read from the live
    objects. torch: RLlib's new API stack (its Learner does not save the KL
    coefficient); tf2: the old stack (its policy restores its optimizer only
    in part)."""
    folder = str(tmp_path / "experiment")
    first = link(jobs, folder, framework, "--stop-iters", "2")
    assert "iteration 2/2, 800 env steps" in first, first
    second = link(jobs, folder, framework, "--stop-timesteps", "1600")
    assert "resuming after iteration 2" in second, second
    assert re.search(r"iteration 4, 1600 env steps/1600", second), second
    assert "iteration 5" not in second and "--stop-timesteps 1600 reached" in second, second
    checked = subprocess.run([PYTHON, CHECK, folder], capture_output=True, text=True,
                             timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert re.search(r"link 002-\S+: resumed from .*checkpoint_\d+ \(iteration 2\), \d+ "
                     r"pieces: the same state", checked.stdout), checked.stdout
    (restored,) = [os.path.join(root, rl_state.RESTORED)
                   for root, _, names in os.walk(folder) if rl_state.RESTORED in names]
    with open(restored) as handle:
        pieces = json.load(handle)["state"]
    wanted = ({"learner0/kl_coeff/default_policy", "learner0/entropy_coeff/default_policy",
               "metrics/env_runners/num_env_steps_sampled_lifetime", "rng/learner0/numpy"}
              if framework == "torch" else
              {"policy/default_policy/kl_coeff", "policy/default_policy/optimizer",
               "counters/num_env_steps_sampled", "env_runner1/rng/numpy",
               "episodes/for_the_mean"})
    assert wanted <= set(pieces), sorted(pieces)
    if framework == "tf2":  # the mean return's window came back whole, not empty
        assert not pieces["episodes/for_the_mean"].startswith("0 episodes"), pieces
    if framework == "torch":  # the reward criterion too counts from where the chain is
        third = link(jobs, folder, framework, "--stop-reward", "0")
        assert re.search(r"iteration 5, 2000 env steps", third), third
        assert "iteration 6" not in third and "--stop-reward 0 reached" in third, third
        assert "no stop criterion given" not in third, "0 is a criterion"


@pytest.mark.fast
def test_the_state_check_names_what_differs_and_what_differs_by_design(tmp_path):
    """A link whose KL coefficient came back at its starting value is named,
    piece and values; an environment's generator (episodes start anew at a
    link) is reported apart; the tool exits 1."""
    saved = {"learner0/kl_coeff/default_policy": 0.3, "learner0/module/w": "ab12",
             "env_runner1/env_rng/0": "x1", "training_iteration": 6}
    restored = {**saved, "learner0/kl_coeff/default_policy": 0.2,
                "env_runner1/env_rng/0": "y2"}
    differs, expected = rl_state.compare(saved, restored)
    assert differs == ["learner0/kl_coeff/default_policy: 0.3 at the save, 0.2 after the "
                       "restore"]
    assert len(expected) == 1 and "an episode in flight is cut" in expected[0]
    folder = tmp_path / "experiment"
    checkpoint = folder / "links" / "001-1" / "trial" / "checkpoint_000005"
    checkpoint.mkdir(parents=True)
    (checkpoint / rl_state.SAVED).write_text(json.dumps(saved))
    (folder / "links" / "002-2").mkdir()
    (folder / "links" / "002-2" / rl_state.RESTORED).write_text(
        json.dumps({"checkpoint": str(checkpoint), "state": restored}))
    rl_chain.start_link(str(folder), "1", None, 0)
    rl_chain.start_link(str(folder), "2", str(checkpoint), 6)
    checked = subprocess.run([PYTHON, CHECK, str(folder)], capture_output=True, text=True,
                             timeout=60)
    assert checked.returncode == 1, checked.stdout
    assert "link 002-2: resumed from" in checked.stdout and "1 differ" in checked.stdout
    assert "DIFFERS learner0/kl_coeff/default_policy: 0.3 at the save, 0.2" in checked.stdout


class _Learner:
    """What rl_state reads of an RLlib Learner (the new API stack)."""

    def __init__(self):
        import types
        self.module = {"default_policy": None}
        self.curr_kl_coeffs_per_module = {"default_policy": 0.3}
        self.config = types.SimpleNamespace(seed=None)

    def get_state(self, components=None):
        return {"should_module_be_updated": None, "weights_seq_no": 4}


@pytest.mark.fast
def test_a_checkpoint_without_the_pieces_rllib_leaves_out_is_refused_naming_them():
    import types
    learner = _Learner()
    group = types.SimpleNamespace(foreach_learner=lambda fn: [fn(learner)])
    synced = []
    runners = types.SimpleNamespace(foreach_env_runner=lambda fn, local_env_runner: [],
                                    sync_weights=lambda **given: synced.append(given))
    algorithm = types.SimpleNamespace(
        config=types.SimpleNamespace(enable_rl_module_and_learner=True, seed=None),
        learner_group=group, env_runner_group=runners)
    extra = rl_state.extra(algorithm)
    assert extra["learners"] == [{"coefficients": {"kl_coeff/default_policy": 0.3},
                                  "schedulers": {}}]
    with pytest.raises(RuntimeError, match=r"checkpoint /c lacks learner0/coefficients"):
        rl_state.put_back(algorithm, None, "/c")
    learner.curr_kl_coeffs_per_module = {"default_policy": _Variable(0.2)}
    rl_state.put_back(algorithm, extra, "/c")
    assert learner.curr_kl_coeffs_per_module["default_policy"].value == 0.3
    # the env runners act with the learner's weights from the first sample on
    assert [call["from_worker_or_learner_group"] for call in synced] == [group]
    # An RLlib that saves the KL coefficient itself: not written twice.
    learner.get_state = lambda components=None: {"curr_kl_coeffs_per_module": {}}
    assert "coefficients" not in rl_state.extra(algorithm)["learners"][0]


class _Variable:
    def __init__(self, value):
        self.value = value

    def assign(self, value):
        self.value = value

    def __float__(self):
        return float(self.value)
