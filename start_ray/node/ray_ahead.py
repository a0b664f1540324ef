"""`ray` with its imports already done: `python -m start_ray.node.ray_ahead` imports
Ray's command line (~0.5 s of CPU, what every `ray start` pays first), then
waits for one line on stdin, `{"args": [...], "env": {...}}`, and runs
`ray ARGS` in the same process, exactly as the `ray` command would.

Rank 0 starts one before MPI initialises, so that the head's `ray start`
begins the moment the plan is agreed; a worker's is ready when the head's
address arrives. Its environment becomes `env` before `ray` runs (what Ray's
processes inherit); of what Ray reads at import, only the authentication
settings can differ, and they are re-read (compat.reload_auth). An empty
stdin (the job ended first) makes it exit quietly.

A worker gets the head's address as soon as the head's GCS serves, while
the head's raylet is still starting; `ray start --address` would then find
no head node yet and sleep 2 s (compat.head_registered). So a join first
waits, looking every HEAD_POLL seconds, until the head's raylet has
registered (at most HEAD_PATIENCE seconds; then Ray's own retries apply).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import List

HEAD_POLL = 0.05
HEAD_PATIENCE = 60.0


def main() -> int:
    from ray.scripts.scripts import main as ray_main  # the slow part, done ahead

    line = sys.stdin.readline()
    if not line.strip():
        return 0
    request = json.loads(line)
    if request.get("env") is not None:
        os.environ.clear()
        os.environ.update(request["env"])
        from ray import _raylet

        from start_ray.node.compat import reload_auth
        reload_auth(_raylet)
    if "--address" in request["args"]:
        wait_for_head(request["args"])
    sys.argv = ["ray", *request["args"]]
    name_process(sys.argv)
    return ray_main()


def name_process(argv: List[str]) -> None:
    """Look like the `ray start` it now is in `ps`: `ray start --head` or
    `ray start --address HOST:PORT` (Ray's own setproctitle, which has only
    the room of this process's command line; the whole command is in the
    rank's log)."""
    from ray import _raylet

    rename = getattr(_raylet, "setproctitle", None)
    role = argv[2:4] if argv[2:3] == ["--address"] else argv[2:3]
    if rename is not None:
        rename(" ".join(argv[:2] + role))


def wait_for_head(args: List[str]) -> None:
    """Until the head's raylet has registered with the GCS (see above)."""
    from start_ray.node.compat import head_registered

    address = args[args.index("--address") + 1]
    deadline = time.monotonic() + HEAD_PATIENCE
    try:
        registered = head_registered(address)
        while not registered() and time.monotonic() < deadline:
            time.sleep(HEAD_POLL)
    except Exception as err:  # an older Ray, or the GCS gone: Ray's own retries apply
        print(f"start_ray: not waiting for the head node ({type(err).__name__}: {err})",
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
