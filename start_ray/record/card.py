"""The connection card of a running cluster: LOG_DIR/<run-id>/cluster.json,
and the job's token beside it (token), both readable by their owner alone.

Rank 0 writes the card once every node is alive; `python -m start_ray
attach` and `stop` read it, from any host that sees the run folder. At the
end of the job the card is marked stopped and the token file removed (the
cluster it opened is gone).

    {"state": "running" | "serving" | "stopped", "address": "10.0.0.1:41234",
     "nodes": 4, "dashboard_url": null, "token_file": ".../token",
     "head_host": "nid001", "run_dir": ..., "run_id": ..., "job_id": "1234",
     "started": "2026-12-02T19:05:06Z", "stop_file": ".../stop", ...}
"""

from __future__ import annotations

import glob
import json
import os
import time
from typing import Any, Dict, List, Optional

CARD = "cluster.json"
TOKEN = "token"
STOP = "stop"  # `python -m start_ray stop` makes it; a serving job watches for it


def path(run_dir: str) -> str:
    return os.path.join(run_dir, CARD)


def iso(at: Optional[float] = None) -> str:
    """ISO-8601 in UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def write_private(file: str, text: str) -> None:
    """Write `text` into `file` readable by its owner alone (mode 0600 from
    the start, then moved into place: never readable by others, even briefly)."""
    temp = f"{file}.{os.getpid()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(temp, 0o600)  # whatever the umask did
    os.replace(temp, file)


def publish(run_dir: str, fields: Dict[str, Any], token: Optional[str]) -> Dict[str, Any]:
    """Write the token file (if the job has a token) and the card."""
    token_file = os.path.join(run_dir, TOKEN) if token else None
    if token_file and token:
        write_private(token_file, token + "\n")
    card = {**fields, "token_file": token_file, "run_dir": run_dir,
            "stop_file": os.path.join(run_dir, STOP), "card_written": iso()}
    write_private(path(run_dir), json.dumps(card, indent=1) + "\n")
    return card


def update(run_dir: str, **fields: Any) -> None:
    """Change fields of the card (its state, say), if there is one."""
    try:
        card = read(run_dir)
    except (OSError, ValueError):
        return
    card.update(fields)
    write_private(path(run_dir), json.dumps(card, indent=1) + "\n")


def retire(run_dir: str, status: int) -> None:
    """The job has ended: the card says so, and the token goes."""
    update(run_dir, state="stopped", stopped=iso(), status=status)
    for name in (TOKEN, STOP):
        try:
            os.remove(os.path.join(run_dir, name))
        except FileNotFoundError:
            pass


def read(run_dir: str) -> Dict[str, Any]:
    with open(path(run_dir)) as handle:
        return json.load(handle)


def runs(log_dir: str) -> List[str]:
    """The run folders under `log_dir` that have a card, newest first."""
    found = [os.path.dirname(card) for card in glob.glob(os.path.join(log_dir, "*", CARD))]
    return sorted(found, key=lambda folder: os.path.getmtime(path(folder)), reverse=True)
