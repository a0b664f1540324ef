"""The processes of benchmarks/scale_sim.py's simulated world: a Ray node
that starts nothing (SimNode), the node-table helper's looks (SimTable), the
owner and launcher stand-ins, and the driver, all on the world's clock."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    List,
    Optional,
    Sequence,
    Tuple,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from start_ray.lifecycle.contracts import Running  # noqa: E402
from start_ray.node import gcs_table  # noqa: E402
from start_ray.node.gcs_table import NodeInfo, parse_look  # noqa: E402
from start_ray.options import Options  # noqa: E402
from start_ray.procs import helpers  # noqa: E402

from sim_world import World  # noqa: E402


class SimNode:
    """The head's `ray start`, up at once."""

    command = ["ray", "start", "--head", "--block"]

    def __init__(self, world: World) -> None:
        self.world = world
        self.process = self
        self.pid = 1

    def poll(self) -> Optional[int]:
        return None

    @property
    def started(self) -> bool:
        return True

    def wait_started(self, deadline: float, interval: float,
                     look: Callable[[], None] = lambda: None,
                     need_address: bool = False) -> None:
        look()

    def wait_address(self, deadline: float, interval: float,
                     look: Callable[[], None] = lambda: None, ip: Optional[str] = None) -> str:
        look()
        assert self.world.head is not None
        return f"{self.world.head.ip}:6379"

    def alive(self) -> bool:
        return True

    def last_words(self, lines: int = 4) -> str:
        return ""

    def session_dir(self) -> str:
        return "/nonexistent/session_sim"

    def gone(self, but_gcs: bool = False) -> Optional[str]:
        return None

    # its GCS never dies here (the store costs the real head, not the protocol)
    block = True

    def keep_gcs(self, port: int) -> bool:
        return True

    def gcs_ended(self) -> Optional[str]:
        return None

    def restart_gcs(self, deadline: float, number: int) -> float:
        raise AssertionError("the simulated GCS never dies")

    def store_failed(self) -> bool:
        return False

    def kill(self) -> None:
        pass

    def stop_in_order(self, timeout: float) -> None:
        pass


class SimTable:
    """The GCS's node table as rank 0 reads it: the helper's lines, parsed
    here (node/gcs_table.parse_look), one per look, on the helper's clock."""

    what = "the simulated node-table helper"
    pid = 2
    look_took: Optional[float] = None
    looked_at: Optional[float] = None

    def __init__(self, world: World) -> None:
        self.world = world
        self.version = 0
        self._look: Optional[gcs_table.Look] = None
        self._nodes: Optional[Dict[int, NodeInfo]] = None
        self._generation = 0  # a new watch() cancels the looks planned before

    def returncode(self) -> Optional[int]:
        return None

    def restart(self) -> None:
        pass

    def watch(self, address: str, interval: float) -> None:
        """A look now, then one every `interval` (the looks planned before go)."""
        self._generation += 1
        self._every(self._generation, interval)

    def _every(self, generation: int, interval: float) -> None:
        if generation == self._generation:
            self.look_now()
            self.world.clock.at(time.monotonic() + interval,
                                lambda: self._every(generation, interval))

    def look_now(self) -> None:
        with self.world.time:
            line = self.world.look()
        with self.world.time.rank0():  # rank 0's reader thread parses it
            look = parse_look(line)
            self.world.looks_parsed += 1
        assert look is not None
        self._look, self._nodes, self.look_took = look, None, look.took
        self.looked_at = time.monotonic()
        self.version += 1

    def alive(self) -> Optional[FrozenSet[int]]:
        return self._look.alive if self._look is not None else None

    def nodes(self) -> Dict[int, NodeInfo]:
        if self._nodes is None:
            self._nodes = self._look.nodes() if self._look is not None else {}
        return self._nodes

    def close(self) -> None:
        self._generation += 1


class SimOwner:
    """procs/owner.ProcessOwner that starts nothing."""

    def __init__(self, me: Any, options: Options, log: logging.Logger) -> None:
        self.helpers = helpers.Helpers(log)
        self.temp_dir: Optional[str] = None

    def set_up(self) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="sim-")

    def popen(self, cmd: Sequence[str], ignored_signals: Sequence[int] = (),
              walltime_warning: bool = False, **kwargs: Any) -> Any:
        raise AssertionError("the simulation starts no process")

    def adopt(self, pid: int) -> None:
        pass

    def watch_helper(self, helper: Any) -> None:
        self.helpers.add(helper)

    def forget_helper(self, helper: Any) -> None:
        self.helpers.remove(helper)

    def check_helpers(self, doing: str) -> None:
        self.helpers.check(doing)

    def stop(self, node: Optional[Any]) -> Tuple[int, List[str]]:
        return (14 if node is not None else 0), []

    def finish(self, clean: bool) -> None:
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


class SimLauncher:
    """node/starter.NodeLauncher whose `ray start` is a SimNode."""

    def __init__(self, world: World, me: Any, plan: Any, token: Optional[str],
                 options: Options, log: logging.Logger, owner: SimOwner) -> None:
        self.world, self.owner = world, owner
        self.node: Optional[SimNode] = None

    def ray_env(self) -> Dict[str, str]:
        return {}

    def adopt(self, ready: Any) -> None:
        pass

    def prepare(self) -> None:
        pass

    def start_head(self, role_args: List[str], gcs_store: bool) -> SimNode:
        return self.start_node(role_args)

    def start_node(self, role_args: List[str], gcs_store: bool = False) -> SimNode:
        self.node = SimNode(self.world)
        return self.node

    def node_table(self) -> SimTable:
        table = SimTable(self.world)
        self.world.table = table
        self.owner.watch_helper(table)
        return table

    def close_node_table(self, table: Any) -> None:
        self.owner.forget_helper(table)
        table.close()


def driver(world: World, interval: float) -> Callable[[Running], int]:
    """The payload: a driver that runs for the shape's run_seconds, the watch
    ticking between polls as it does around a real driver."""
    def run(running: Running) -> int:
        until = time.monotonic() + world.shape.run_seconds
        while time.monotonic() < until:
            time.sleep(interval)
            running.tick()
        return 0
    return run
