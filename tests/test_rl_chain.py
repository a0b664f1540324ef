"""drivers/rl_chain.py in-process: what a chained experiment resumes from,
and its progress.csv across links (the real chain runs in test_slurm.py)."""

import csv
import os
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
