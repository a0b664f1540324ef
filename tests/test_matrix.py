"""The behaviour matrix: every option that changes what a job does, run on
three emulated hosts (network namespaces, tests/emulated_hosts.py) with a
real MPI and a real Ray, together with the options users combine it with.
Separate hosts are the normal case: addresses, membership and placement
differ there from one host, and bugs hid in that difference (a late middle
node was checked against the wrong node's address).

One row per line of ROWS; to add a case, add a row. Each row names its MPI
(both appear), the ranks on each host, start_ray's options, the driver, what
to do while the job runs, and what must be true after it (`check`); every
row also checks that nothing of the job is left, found by the tests' own
method (tests/leftovers.py). docs/testing.md lists the rows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from typing import Callable, Dict, List, Optional, Tuple

import pytest
import step_signals
from requirements import skip_or_fail
from emulated_hosts import EmulatedHosts, unavailable

from jobs import (
    DRIVER,
    HOLD_DRIVER,
    MPICH,
    MPIS,
    OPENMPI,
    PYTHON,
    ROOT,
    Result,
    Running,
    assert_nothing_left,
    events_of,
    rank_processes,
    ray_process,
    wait_for_rank0_log,
)

ELASTIC = os.path.join(ROOT, "tests", "drivers", "elastic.py")
API_EXAMPLE = os.path.join(ROOT, "drivers", "api_example.py")
API_PROGRAM = os.path.join(ROOT, "tests", "drivers", "api_program.py")
HOSTS = 3


@dataclasses.dataclass
class Context:
    """What a row's actions and checks get: the hosts, the job, its folder."""

    hosts: EmulatedHosts
    tmp: str
    row: "Row"
    running: Optional[Running] = None
    notes: Dict[str, object] = dataclasses.field(default_factory=dict)

    def path(self, name: str) -> str:
        return os.path.join(self.tmp, name)


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    mpi: str  # "openmpi" or "mpich"
    per_host: int  # ranks on each host
    args: Tuple[str, ...]  # start_ray's options (an API program: its own arguments)
    driver: Callable[[Context], List[str]]  # the driver and its arguments
    check: Callable[[Result, Context], None]
    during: Optional[Callable[[Context], None]] = None  # while the job runs
    api: bool = False  # the program is an API program, run by the launcher itself
    env: Callable[[Context], Dict[str, str]] = lambda ctx: {}
    timeout: float = 300
    ends_itself: bool = False  # the job must end without the driver's release


# ------------------------------------------------------------------ drivers
def info(ctx: Context) -> List[str]:
    return [DRIVER]


def hold(ctx: Context) -> List[str]:
    return [HOLD_DRIVER, "--ready", ctx.path("ready"), "--until", ctx.path("until")]


def hold_warned(ctx: Context) -> List[str]:
    """The hold driver, acting on the walltime warning as a driver should."""
    return hold(ctx) + ["--warnings", ctx.path("warnings")]


def elastic(ctx: Context) -> List[str]:
    return [ELASTIC, "--ready", ctx.path("ready"), "--out", ctx.path("out.json"),
            "--ranks", str(HOSTS), "--replaced", "2"]


def api_example(ctx: Context) -> List[str]:
    return [API_EXAMPLE]


def api_with(ctx: Context) -> List[str]:
    return [API_PROGRAM, ctx.tmp, "--with"]


# ------------------------------------------------------------------ actions
def wait_ready(ctx: Context, timeout: float = 240) -> str:
    assert ctx.running is not None
    return ctx.running.wait_for_file(ctx.path("ready"), timeout=timeout)


def late_middle_host(ctx: Context) -> Dict[str, str]:
    """The middle host's `ray start` needs 30 s: longer than --join-timeout."""
    script = ctx.path("late-on-h1.sh")
    ray = os.path.join(os.path.dirname(PYTHON), "ray")
    with open(script, "w") as handle:
        handle.write(f'#!/bin/sh\nif [ "$(hostname)" = h1 ]; then sleep 30; fi\n'
                     f'exec {ray} "$@"\n')
    os.chmod(script, 0o755)
    return {"START_RAY_RAY_COMMAND": script}


def kill_h2_raylet_once_ready(ctx: Context) -> None:
    wait_ready(ctx)
    ray_process(ctx.running, "raylet", 2 * ctx.row.per_host).kill()
    ctx.notes["killed"] = time.monotonic()


def stop_serving(ctx: Context) -> None:
    """While it serves: the synced Ray logs are there (--sync-logs), then
    `--serve-timeout` ends it."""
    assert ctx.running is not None
    text = wait_for_rank0_log(ctx.running, "serving: the cluster stays up", 240)
    assert "serving: the cluster stays up" in text, text
    run_dir = text.split("logs in ")[1].split()[0]
    deadline = time.monotonic() + 20
    synced: List[str] = []
    while time.monotonic() < deadline and len(synced) < HOSTS:
        synced = [name for name in os.listdir(os.path.join(run_dir, "ray"))
                  if name.startswith("rank-")] if os.path.isdir(os.path.join(run_dir, "ray")) \
            else []
        time.sleep(0.5)
    ctx.notes["synced"] = sorted(synced)
    with open(os.path.join(run_dir, "cluster.json")) as handle:
        ctx.notes["card"] = json.load(handle)


def kill_the_leader_of_h1(ctx: Context) -> None:
    wait_ready(ctx)
    mpi = MPIS[ctx.row.mpi]
    leader = ctx.row.per_host  # h1's lowest rank
    victim = rank_processes(ctx.running, mpi)[leader]
    victim.kill()
    ctx.notes["killed"] = time.monotonic()


def warn_every_process_twice(ctx: Context) -> None:
    wait_ready(ctx)
    assert ctx.running is not None
    step_signals.repeatedly(ctx.running, signal.SIGUSR1, times=2, gap=2.0)
    time.sleep(1.0)
    open(ctx.path("until"), "w").close()


# ------------------------------------------------------------------- checks
def nodes_on_every_host(result: Result, ctx: Context, network: str = "eth0") -> dict:
    assert result.returncode == 0, result.output
    found = result.cluster_info()
    hosts = ctx.hosts
    assert found["alive_nodes"] == HOSTS
    assert found["task_hosts"] == hosts.names
    assert found["task_ips"] == [hosts.address(i, network) for i in range(HOSTS)]
    return found


def served_with_a_driver(result: Result, ctx: Context) -> None:
    """--serve DRIVER runs the driver, then serves (it never ran it)."""
    nodes_on_every_host(result, ctx)
    assert "the driver exited with status 0; the cluster stays up (--serve)" in result.stdout
    assert "--serve-timeout 6s passed: stopping the cluster" in result.stdout
    card = ctx.notes["card"]
    assert card["state"] == "serving" and card["dashboard_url"].startswith("http://127.0.0.1:")
    assert card["hosts"] == ["h0", "h1", "h2"]
    assert ctx.notes["synced"] == [f"rank-{r}-h{r}" for r in range(HOSTS)], \
        "--sync-logs copied every node's logs while it served"
    assert "dashboard    ssh -N -L 8265:127.0.0.1:" in result.stdout


def late_middle_node_joins(result: Result, ctx: Context) -> None:
    """--min-nodes with the middle host late (paired with the plans by rank,
    its first attempt let finish past the deadline), and a rejoin."""
    assert result.returncode == 0, result.output
    start = json.loads(open(ctx.path("ready")).read())["start"]
    assert sorted(start) == ["0", "2"], "the driver started without the late middle node"
    seen = json.loads(open(ctx.path("out.json")).read())
    assert not seen["timed_out"] and sorted(seen["end"]) == ["0", "1", "2"], seen
    assert seen["end"]["2"] not in start["2"], "rank 2's node rejoined"
    assert len(set(seen["tasks_ran_on"])) == 3
    assert "unexpected address" not in result.output
    assert [e["rank"] for e in events_of(result, "not_joined_yet")] == [1]
    assert [e["rank"] for e in events_of(result, "joined_late")] == [1]
    assert [(e["rank"], e["rejoin"]) for e in events_of(result, "rejoined")] == [(2, 1)]
    h1 = [text for name, text in result.rank_logs().items() if name == "rank-1.log"][0]
    assert "joined the cluster at" in h1 and "(attempt 1)" in h1 and "to join failed" not in h1


def fail_fast_names_the_node(result: Result, ctx: Context) -> None:
    assert result.returncode == 1, result.output
    cause = result.run_record()["cause"]
    assert cause == "stopping the job (--fail-fast): rank 2 (h2) lost its Ray node", cause
    assert time.monotonic() - float(ctx.notes["killed"]) < 90  # type: ignore[arg-type]


def interface_and_two_ranks_a_host(result: Result, ctx: Context) -> None:
    found = nodes_on_every_host(result, ctx, "hsn0")
    assert found["ranks"] == [0, 2, 4], "one node per host, by its lowest rank"
    assert "6 rank(s) on 3 host(s)" in result.stdout
    record = result.run_record()
    assert [host["ranks"] for host in record["hosts"]] == ["0-1", "2-3", "4-5"]
    # the same counts as rank 0 meets in the simulator (benchmarks/scale_sim.py)
    import sys
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import scale_sim
    counts: Dict[str, int] = {}
    for event in record["events"]:
        counts[event["event"]] = counts.get(event["event"], 0) + 1
    simulated = scale_sim.simulate(scale_sim.Shape(HOSTS, 2), ctx.path("sim"))
    assert counts == simulated["events"], (counts, simulated["events"])
    assert "3 other rank(s) on 3 host(s) (h[0-2]): served by their host's node" \
        in result.summary()


def dry_run_plans_per_host(result: Result, ctx: Context) -> None:
    assert result.returncode == 0, result.output
    out = result.stdout
    assert "placement: 3 Ray node(s), one per host" in out
    for i, host in enumerate(ctx.hosts.names):
        assert f"node of rank {2 * i} on {host}, for rank(s) {2 * i}-{2 * i + 1}:" in out
        assert f"address       {ctx.hosts.address(i)}" in out
    assert "dry run: nothing was started" in out and "Ray head" not in out


def api_executed_once(result: Result, ctx: Context) -> None:
    assert result.returncode == 0, result.output
    bodies = [line for line in result.stdout.splitlines() if line.startswith("API_BODY ")]
    assert len(bodies) == 1, result.output
    assert json.loads(bodies[0][len("API_BODY "):])["nodes"] == HOSTS


def api_with_on_every_rank(result: Result, ctx: Context) -> None:
    assert result.returncode == 0, result.output
    seen = [json.load(open(ctx.path(f"rank-{r}.json"))) for r in range(HOSTS * 2)]
    assert seen[0]["result"] == "result of rank 0" and seen[0]["alive"] == HOSTS
    assert all(one["error"] is None and one["world_sum"] == HOSTS * 2 for one in seen)


def a_dead_leader_ends_the_job(result: Result, ctx: Context) -> None:
    assert result.returncode != 0, result.output
    took = time.monotonic() - float(ctx.notes["killed"])  # type: ignore[arg-type]
    assert took < 60, f"the job ended {took:.0f}s after its host's leader died"


def warnings_cost_nothing(result: Result, ctx: Context) -> None:
    assert result.returncode == 0, result.output
    logs = "".join(result.rank_logs().values())
    assert "killed by SIGUSR1" not in logs and "restarted it" not in logs
    assert "STILL WORKS 1" in result.stdout
    assert not events_of(result, "node_lost")
    assert len(open(ctx.path("warnings")).read().splitlines()) >= 2


PER_HOST = {"START_RAY_NODE_PER_RANK": "0"}

ROWS = [
    Row("serve-driver-dashboard-sync-logs", "openmpi", 1,
        ("--serve", "--serve-timeout", "6", "--dashboard", "--sync-logs", "1"), info,
        served_with_a_driver, during=stop_serving),
    Row("min-nodes-late-middle-host-and-rejoin", "openmpi", 1,
        ("--min-nodes", "2", "--join-timeout", "15"), elastic, late_middle_node_joins,
        during=kill_h2_raylet_once_ready, env=late_middle_host),
    Row("min-nodes-with-fail-fast", "mpich", 1, ("--min-nodes", "2", "--fail-fast"), hold,
        fail_fast_names_the_node, during=kill_h2_raylet_once_ready, ends_itself=True),
    Row("interface-two-ranks-a-host", "mpich", 2, ("--interface", "hsn0"), info,
        interface_and_two_ranks_a_host),
    Row("dry-run-no-node-per-rank", "openmpi", 2, ("--dry-run", "--no-node-per-rank"), info,
        dry_run_plans_per_host),
    Row("api-execute", "openmpi", 1, (), api_example, api_executed_once, api=True),
    Row("api-with-two-ranks-a-host", "mpich", 2, (), api_with, api_with_on_every_rank,
        api=True),
    Row("a-hosts-leader-dies", "openmpi", 2, (), hold, a_dead_leader_ends_the_job,
        during=kill_the_leader_of_h1, ends_itself=True),
    Row("walltime-warning-to-every-process", "openmpi", 2, (), hold_warned,
        warnings_cost_nothing, during=warn_every_process_twice),
]


@pytest.fixture(scope="module")
def hosts():
    why = unavailable()
    if why:
        skip_or_fail("netns", f"no emulated hosts on this machine: {why}")
    with EmulatedHosts(HOSTS) as made:
        yield made


def launcher(row: Row, hosts: EmulatedHosts, program: List[str]) -> List[str]:
    """The MPI's own launcher, started on h0, `row.per_host` ranks on each host."""
    k, n = row.per_host, row.per_host * HOSTS
    if row.mpi == "openmpi":
        cmd = [OPENMPI.launcher, "--oversubscribe", "--map-by", f"ppr:{k}:node",
               "--host", ",".join(f"{name}:{k}" for name in hosts.names), "-np", str(n)]
    else:
        cmd = [MPICH.launcher, "-launcher", "ssh", "-launcher-exec", hosts.agent,
               "-iface", hosts.mpi_network, "-hosts", ",".join(hosts.names),
               "-ppn", str(k), "-n", str(n)]
    return hosts.command_on("h0", cmd + program)


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_a_documented_behaviour_holds_on_separate_hosts(jobs, hosts, tmp_path, row):
    mpi = MPIS[row.mpi]
    mpi.skip_unless_here()
    ctx = Context(hosts, str(tmp_path), row)
    program = [mpi.python, *row.driver(ctx), *row.args] if row.api else \
        [mpi.python, "-m", "start_ray", "--num-cpus", "1", *row.args, *row.driver(ctx)]
    ctx.running = jobs.launch(launcher(row, hosts, program),
                              {**PER_HOST, **hosts.mpirun_env(), **row.env(ctx)})
    if row.during is not None:
        row.during(ctx)
    if row.driver in (hold, hold_warned) and not row.ends_itself:
        open(ctx.path("until"), "w").close()
    result = ctx.running.wait(row.timeout)
    row.check(result, ctx)
    assert_nothing_left(result)
