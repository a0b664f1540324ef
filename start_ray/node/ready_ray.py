"""`ray` with its imports done, started ahead and waiting for its arguments
(`python -m start_ray.node.ray_ahead`): the handle the rank keeps on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

from start_ray.mpi import launch_env
from start_ray.procs import proctree
from start_ray.procs.proctree import Spawn


def ray_beside_python() -> Optional[str]:
    """The `ray` of this Python's environment, if it has one."""
    beside = os.path.join(os.path.dirname(sys.executable), "ray")
    return beside if os.access(beside, os.X_OK) else None


class ReadyRay:
    """`ray` with its imports done (`python -m start_ray.node.ray_ahead`), started
    ahead and waiting for its arguments: `ray start` then begins ~0.5 s
    sooner. Rank 0 and the ranks likely to start a node start one before
    MPI initialises (`early`); the environment it runs with is sent with
    the arguments. Only for the `ray` of this Python (not --ray-command)."""

    def __init__(self, env: Dict[str, str], ignored_signals: Sequence[int] = (),
                 spawn: Spawn = proctree.popen) -> None:
        self.used = False
        self.env = env  # what it imported Ray with
        self.process = spawn(
            [sys.executable, "-m", "start_ray.node.ray_ahead"], ignored_signals, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    @staticmethod
    def possible(ray_command: Optional[List[str]]) -> bool:
        """Whether the `ray` that would run is the one of this Python."""
        return not ray_command and ray_beside_python() is not None

    @classmethod
    def early(cls, ray_command: Optional[List[str]], node_per_rank: bool,
              ignored_signals: Sequence[int]) -> Optional["ReadyRay"]:
        """Before MPI starts: one for rank 0 (the head) and for each host's
        first task (the node's leader by default; every task with
        --node-per-rank), as the launcher numbers them. A wrong guess costs
        one discarded import."""
        first_here = launch_env.rank_from_environment() == 0 or launch_env.local_rank() == 0
        if not cls.possible(ray_command) or not (first_here or node_per_rank):
            return None
        return cls(launch_env.child_environment({"RAY_ADDRESS": None}), ignored_signals)

    def differs(self, env: Dict[str, str], ignored: Sequence[str]) -> List[str]:
        """The variables, besides `ignored`, whose value in `env` is not the
        one Ray was imported with (device libraries may read them at import)."""
        names = (set(self.env) | set(env)) - set(ignored)
        return sorted(name for name in names if self.env.get(name) != env.get(name))

    def run(self, args: List[str], env: Optional[Dict[str, str]] = None) -> "subprocess.Popen[str]":
        """`ray ARGS` now, in the waiting process, with `env` as its environment."""
        assert self.process.stdin is not None
        self.used = True
        try:
            self.process.stdin.write(json.dumps({"args": args, "env": env}) + "\n")
            self.process.stdin.close()
        except OSError:
            pass  # it died: RayNode sees it end and says what it printed
        return self.process

    def discard(self) -> None:
        """Not needed after all (this rank starts no node)."""
        self.process.kill()
        self.process.wait()
