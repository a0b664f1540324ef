"""Training that spans several batch jobs ("links"), in one stable experiment
folder, so that each job resumes where the last one stopped.

    EXPERIMENT/
      chain.json       the links, the complete checkpoints, whether it is done
      progress.csv     one row per iteration of the whole chain (column `link`)
      tensorboard/     one TensorBoard run for the whole chain
      links/NNN-JOB/   each link's Tune folder (its own progress.csv, checkpoints)

A checkpoint counts only once Tune has said it is saved (Callback.on_checkpoint
records it in chain.json, written atomically): a folder that a killed job left
half-written is not in the record and is skipped, with a warning. Resuming
from iteration k drops the rows after k from progress.csv (those iterations
run again) and TensorBoard's events after k (purge_step), so iterations
continue with no gap and no repeat.

    python drivers/rl_chain.py done EXPERIMENT   # exit 0 when the chain is done
"""

from __future__ import annotations

import csv
import glob
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

RECORD = "chain.json"
PROGRESS = "progress.csv"
CHECKPOINT_FILE = "rllib_checkpoint.json"  # RLlib writes it into every checkpoint


def read(folder: str) -> Dict[str, Any]:
    """The chain's record ({} for a new experiment)."""
    try:
        with open(os.path.join(folder, RECORD)) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}


def write(folder: str, record: Dict[str, Any]) -> None:
    """Atomically: a job killed while writing leaves the previous record."""
    path = os.path.join(folder, RECORD)
    with open(path + ".tmp", "w") as handle:
        json.dump(record, handle, indent=1)
    os.replace(path + ".tmp", path)


def resume_point(folder: str) -> Tuple[Optional[str], int, List[str]]:
    """(checkpoint to resume from, its iteration, warnings): the newest
    recorded checkpoint that still exists whole; (None, 0, ...) for a fresh start."""
    record = read(folder)
    recorded = {c["path"]: c["iteration"] for c in record.get("checkpoints", [])}
    warnings = []
    for path in sorted(glob.glob(os.path.join(folder, "links", "*", "*", "checkpoint_*"))):
        if path not in recorded:
            warnings.append(f"skipping {path}: not recorded as complete (its job was "
                            "probably killed while saving it)")
    usable = [(iteration, path) for path, iteration in recorded.items()
              if os.path.isfile(os.path.join(path, CHECKPOINT_FILE))]
    if not usable:
        return None, 0, warnings
    iteration, path = max(usable)
    return path, iteration, warnings


def start_link(folder: str, job: Optional[str], resumed_from: Optional[str],
               iteration: int) -> str:
    """Record a new link; its Tune folder name (`003-4242`)."""
    record = read(folder)
    links = record.setdefault("links", [])
    name = f"{len(links) + 1:03d}-{job or time.strftime('%H%M%S')}"
    links.append({"name": name, "job": job, "started": time.time(),
                  "resumed_from": resumed_from, "first_iteration": iteration + 1})
    record["done"] = False
    write(folder, record)
    truncate_progress(folder, iteration)
    return name


def truncate_progress(folder: str, iteration: int) -> None:
    """Keep progress.csv's rows up to `iteration` (the resume point)."""
    path = os.path.join(folder, PROGRESS)
    if not os.path.exists(path):
        return
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
        fields = rows[0].keys() if rows else []
    kept = [row for row in rows if int(float(row["training_iteration"])) <= iteration]
    with open(path + ".tmp", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(kept)
    os.replace(path + ".tmp", path)


def add_checkpoint(folder: str, path: str, iteration: int) -> None:
    record = read(folder)
    record.setdefault("checkpoints", []).append({"path": path, "iteration": iteration})
    write(folder, record)


def finish_link(folder: str, done: bool, why: str, iteration: Optional[int]) -> None:
    record = read(folder)
    record["done"] = done
    if record.get("links"):
        record["links"][-1].update({"ended": time.time(), "why": why,
                                    "last_iteration": iteration})
    write(folder, record)


def append_progress(folder: str, link: str, row: Dict[str, Any]) -> None:
    """One iteration's numbers into the chain's progress.csv (the columns of
    its first row; new columns are not added later)."""
    path = os.path.join(folder, PROGRESS)
    fresh = not os.path.exists(path) or os.path.getsize(path) == 0
    if fresh:
        fields = ["link", *row]
    else:
        with open(path, newline="") as handle:
            fields = next(csv.reader(handle))
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        if fresh:
            writer.writeheader()
        writer.writerow({"link": link, **row})


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "done":
        print(__doc__, file=sys.stderr)
        return 2
    record = read(args[1])
    links = record.get("links", [])
    why = links[-1].get("why", "?") if links else "no link yet"
    print(f"rl_chain.py: {args[1]}: {len(links)} link(s); "
          f"{'done' if record.get('done') else 'not done'} ({why})")
    return 0 if record.get("done") else 1


if __name__ == "__main__":
    sys.exit(main())
