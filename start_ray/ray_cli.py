"""`ray` with its imports already done: `python -m start_ray.ray_cli` imports
Ray's command line (~0.5 s of CPU, what every `ray start` pays first), then
waits for one line on stdin, `{"args": [...], "env": {...}}`, and runs
`ray ARGS` in the same process, exactly as the `ray` command would.

Rank 0 starts one before MPI initialises, so that the head's `ray start`
begins the moment the plan is agreed; a worker's is ready when the head's
address arrives. Its environment becomes `env` before `ray` runs (what Ray's
processes inherit); of what Ray reads at import, only the authentication
settings can differ, and they are re-read (compat.reload_auth). An empty
stdin (the job ended first) makes it exit quietly.
"""

from __future__ import annotations

import json
import os
import sys


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

        from .compat import reload_auth
        reload_auth(_raylet)
    sys.argv = ["ray", *request["args"]]
    return ray_main()


if __name__ == "__main__":
    sys.exit(main())
