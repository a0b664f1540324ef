"""Plot mean episode return against environment steps for one or more runs
of drivers/train_ppo.py (e.g. 1 node against 4 nodes), into one PNG.

    python drivers/plot_rewards.py logs/<run-a> logs/<run-b> -o rewards.png
    python drivers/plot_rewards.py logs/<run> --label "4 nodes" -o rewards.png

Each RUN is a folder searched for Tune's progress.csv files (one line per
file); --label names the lines in order (default: the experiment names).
A chained experiment (train_ppo.py --experiment-dir, jobs/slurm_chain.sbatch)
is one line across all its jobs, from its own progress.csv, with a dotted
mark where each job began.
"""

import argparse
import csv
import glob
import os
import sys
from typing import List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rl_metrics import RETURN_KEYS, STEP_KEYS  # noqa: E402


def read_curve(path: str) -> Tuple[List[float], List[float], List[Tuple[float, str]]]:
    """(env steps, mean return, where each link of a chain began) from one
    progress.csv (a chain's has a `link` column)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return [], [], []
    step_col = next((c for c in STEP_KEYS if rows[0].get(c) not in (None, "")), None)
    ret_col = next((c for c in RETURN_KEYS if c in rows[0]), None)
    if step_col is None or ret_col is None:
        raise SystemExit(f"plot_rewards.py: error: {path} has no step or return column")
    steps, returns, starts, link, before = [], [], [], None, 0.0
    for row in rows:
        if row.get("link") and row["link"] != link:  # a job resumed after `before` steps
            link = row["link"]
            starts.append((before, link))
        before = float(row[step_col] or before)
        if row.get(ret_col) not in (None, "", "nan"):
            steps.append(float(row[step_col]))
            returns.append(float(row[ret_col]))
    return steps, returns, starts


def find_progress(run: str) -> List[str]:
    if os.path.exists(os.path.join(run, "chain.json")):  # one chain: its own file
        return [os.path.join(run, "progress.csv")]
    found = sorted(glob.glob(os.path.join(run, "**", "progress.csv"), recursive=True))
    if os.path.isfile(run):
        found = [run]
    if not found:
        raise SystemExit(f"plot_rewards.py: error: no progress.csv under {run}")
    return found


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN")
    parser.add_argument("-o", "--output", default="rewards.png")
    parser.add_argument("--label", action="append", default=[])
    parser.add_argument("--title", default="Mean episode return")
    args = parser.parse_args(argv)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = [path for run in args.runs for path in find_progress(run)]
    fig, ax = plt.subplots(figsize=(8, 5))
    links = 0
    for index, path in enumerate(files):
        steps, returns, starts = read_curve(path)
        chained = bool(starts)
        label = (args.label[index] if index < len(args.label)
                 else os.path.basename(os.path.dirname(path if chained
                                                       else os.path.dirname(path))))
        line, = ax.plot(steps, returns, marker=".", label=label)
        for step, link in starts[1:]:  # the first job begins at 0
            ax.axvline(step, color=line.get_color(), linestyle=":", alpha=0.6)
            ax.annotate(f"job {link.split('-', 1)[-1]}", (step, 1),
                        xycoords=("data", "axes fraction"), rotation=90, va="top",
                        ha="right", fontsize=7, color=line.get_color())
        links += len(starts)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("mean episode return")
    ax.set_title(args.title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"plot_rewards.py: wrote {args.output} ({len(files)} run(s)"
          + (f", {links} job(s) of chained runs marked)" if links else ")"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
