"""start_ray beside the other ways of starting Ray, on separate (emulated)
hosts, in one run.

    python benchmarks/peers.py [--hosts 2 3] [--rounds 3] [--limit 30]
    python benchmarks/peers.py --hosts 1 2 4 8 16 --peers start_ray floor --rounds 1 \\
        --name scale-curve                                  (the start-up curve)

Hosts are network namespaces on this machine (tests/emulated_hosts.py: a
network and a host name each; CPUs, /tmp and processes shared), one Ray node
per host, 1 CPU each. Each peer runs a driver (benchmarks/peer_driver.py)
on the first host that connects and waits until it sees every node; measured:
launch -> that moment ("connected"), and launch -> the launcher's exit after
the driver ended ("exit"). The peers:

- start_ray: `mpirun --host h0,h1,... python -m start_ray DRIVER` (Open MPI),
  token authentication on (its default);
- symmetric-run: `mpirun ... ray symmetric-run --address H0:PORT --min-nodes N
  -- DRIVER` (the Ray in this venv; it polls for the nodes every 5 s, and runs
  `ray stop` on every host at the end, which stops every Ray on a machine);
  each rank in a PID namespace of its own (`unshare --pid --fork
  --mount-proc`): the emulated hosts share one process table, and
  symmetric-run refuses to start a node where it sees a gcs_server already;
- nemo-ray-sub: the pattern of NVIDIA NeMo's `ray.sub`, written from its public
  description (not its code): one launch per host (as `srun --nodes=1 -w
  HOST`), the head with `ray start --head --block`, a `ray status` poll every
  2 s until the head answers, the workers with `ray start --address --block`,
  a `ray status` poll every 2 s until every node is there, then the driver;
- theta-script: the sleep recipe of ALCF's Theta-era examples and many Slurm
  scripts: the head `--block &`, `sleep 10`, each worker `--block &` and
  `sleep 5`, then the driver;
- floor: `ray start --head` on h0, one `ray start --address` on h1, and the
  driver's connection, each timed alone, summed (no launcher, no MPI).

The last three never exit on their own (their `ray start --block` stay up
until the scheduler ends the job): they are stopped --limit seconds after
their driver ended, and reported as such. Every process of a run carries
BENCH_MARK and is stopped by it (never `ray stop`, except symmetric-run's
own). Peers run in turn within a round, rounds alternate the order. The
auth settings of the peers other than start_ray are Ray's defaults turned
off explicitly (benchmarks/baselines.py). Publishes benchmarks/results/NAME.md
(--name, default peers) and NAME.json. Needs root (namespaces).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(ROOT, "tests"), HERE]

import baselines  # noqa: E402
import evidence  # noqa: E402
from emulated_hosts import EmulatedHosts, unavailable  # noqa: E402

BIN = os.path.dirname(sys.executable)
RAY, MPIRUN = os.path.join(BIN, "ray"), os.path.join(BIN, "mpirun")
DRIVER = os.path.join(HERE, "peer_driver.py")
PEERS = ("start_ray", "symmetric-run", "nemo-ray-sub", "theta-script", "floor")
PORT = 6380
COMMON = ["--num-cpus", "1", "--disable-usage-stats"]


class Run:
    """One peer's run on the first `n` hosts: its marked environment, temp
    dir, the processes it launched, and the times it reached."""

    def __init__(self, hosts: EmulatedHosts, n: int, auth_off: bool = True) -> None:
        self.hosts, self.n = hosts, n
        self.names = hosts.names[:n]
        self.mark = uuid.uuid4().hex
        self.tmp = tempfile.mkdtemp(prefix="srpeer-", dir="/tmp")
        self.report = os.path.join(self.tmp, "report.json")
        base = baselines._env(self.mark) if auth_off else dict(
            os.environ, BENCH_MARK=self.mark, PYTHONUNBUFFERED="1")
        self.env = {**base, **hosts.mpirun_env(), "OMPI_ALLOW_RUN_AS_ROOT": "1",
                    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_btl": "^ofi",
                    "START_RAY_LOG_DIR": os.path.join(self.tmp, "logs"),
                    "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
        self.head = hosts.address(0)
        self.address = f"{self.head}:{PORT}"
        self.procs: List[subprocess.Popen] = []
        self.launched = time.time()

    def on(self, host: str, cmd: List[str], **env: str) -> subprocess.Popen:
        with open(os.path.join(self.tmp, f"out-{len(self.procs)}.log"), "w") as out:
            proc = subprocess.Popen(self.hosts.command_on(host, cmd), env={**self.env, **env},
                                    stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def outputs(self) -> str:
        """The end of what the launched processes printed (for a failed run)."""
        text = ""
        for index in range(len(self.procs)):
            with open(os.path.join(self.tmp, f"out-{index}.log"), errors="replace") as handle:
                text += f"[{index}] " + handle.read()[-1500:] + "\n"
        return text

    def wait_on(self, host: str, cmd: List[str], timeout: float = 180, **env: str) -> str:
        done = subprocess.run(self.hosts.command_on(host, cmd), env={**self.env, **env},
                              capture_output=True, text=True, timeout=timeout)
        return done.stdout if done.returncode == 0 else ""

    def driver(self) -> List[str]:
        return [sys.executable, DRIVER, "--nodes", str(self.n), "--report", self.report]

    def connected(self) -> Optional[float]:
        try:
            with open(self.report) as handle:
                return json.load(handle)["connected"] - self.launched
        except (OSError, ValueError, KeyError):
            return None

    def node_args(self, index: int) -> List[str]:
        return ["--node-ip-address", self.hosts.address(index), "--temp-dir",
                os.path.join(self.tmp, f"h{index}"), *COMMON]

    def close(self) -> int:
        """Stop everything the run started; how many of its processes were
        still there after three rounds of stopping (0: none)."""
        for _ in range(3):
            baselines.kill_marked(self.mark)
            if not baselines.marked(self.mark):
                break
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return len(baselines.marked(self.mark))


def mpirun(run: Run, program: List[str]) -> List[str]:
    return [MPIRUN, "--oversubscribe", "--map-by", "ppr:1:node",
            "--host", ",".join(f"{h}:1" for h in run.names), "-np", str(run.n), *program]


def launcher_exit(run: Run, proc: subprocess.Popen, limit: float) -> Dict[str, object]:
    """When the launcher exited after the driver ended, or that it did not
    within `limit` seconds of the driver's end."""
    ended = time.time()
    try:
        proc.wait(timeout=limit + 300 if run.connected() is None else limit)
        return {"exit": time.time() - run.launched, "exited": True, "rc": proc.returncode}
    except subprocess.TimeoutExpired:
        return {"exit": None, "exited": False, "rc": None,
                "note": f"still running {time.time() - ended:.0f}s after the driver ended: "
                        "stopped"}


def start_ray(run: Run, limit: float) -> Dict[str, object]:
    proc = run.on(run.names[0], mpirun(run, [sys.executable, "-m", "start_ray",
                                             "--num-cpus", "1", *run.driver()]))
    return launcher_exit(run, proc, limit)


def symmetric_run(run: Run, limit: float) -> Dict[str, object]:
    # Each host's Ray in a temp dir of its own (the hosts share /tmp here),
    # and a process table of its own (a PID namespace), as on a real host:
    # symmetric-run refuses to start where it sees a gcs_server, and its
    # `ray stop` stops every Ray it sees.
    program = ["unshare", "--pid", "--fork", "--mount-proc",
               "sh", "-c", f'exec {RAY} symmetric-run --address {run.address} '
               f'--min-nodes {run.n} --num-cpus 1 --disable-usage-stats '
               f'--temp-dir {run.tmp}/$(hostname) -- "$@"', "sh", *run.driver()]
    proc = run.on(run.names[0], mpirun(run, program), RAY_ADDRESS=run.address)
    return launcher_exit(run, proc, limit)


def _nodes_in_status(run: Run) -> int:
    text = run.wait_on(run.names[0], [RAY, "status", "--address", run.address], timeout=60)
    active = text.split("Active:", 1)[1].split("Pending:", 1)[0] if "Active:" in text else ""
    return active.count("node_")


def _after_driver(run: Run, driver: subprocess.Popen, limit: float) -> Dict[str, object]:
    """The script ends with its driver; its `ray start --block` stay up."""
    driver.wait(timeout=300)
    time.sleep(limit)  # what a scheduler's job would do with them: nothing, until its end
    alive = sum(proc.poll() is None for proc in run.procs if proc is not driver)
    return {"exit": None, "exited": False, "rc": driver.returncode,
            "note": f"{alive} `ray start --block` still running {limit:g}s after the driver "
                    "ended: stopped"}


def nemo_ray_sub(run: Run, limit: float) -> Dict[str, object]:
    run.on(run.names[0], [RAY, "start", "--head", "--port", str(PORT), "--block",
                          "--include-dashboard", "false", *run.node_args(0)])
    deadline = time.monotonic() + 180
    while _nodes_in_status(run) < 1 and time.monotonic() < deadline:
        time.sleep(2)
    for index, host in enumerate(run.names[1:], 1):
        run.on(host, [RAY, "start", "--address", run.address, "--block", *run.node_args(index)])
    while _nodes_in_status(run) < run.n and time.monotonic() < deadline:
        time.sleep(2)
    driver = run.on(run.names[0], run.driver(), RAY_ADDRESS=run.address)
    return _after_driver(run, driver, limit)


def theta_script(run: Run, limit: float) -> Dict[str, object]:
    run.on(run.names[0], [RAY, "start", "--head", "--port", str(PORT), "--block",
                          "--include-dashboard", "false", *run.node_args(0)])
    time.sleep(10)
    for index, host in enumerate(run.names[1:], 1):
        run.on(host, [RAY, "start", "--address", run.address, "--block", *run.node_args(index)])
        time.sleep(5)
    driver = run.on(run.names[0], run.driver(), RAY_ADDRESS=run.address)
    return _after_driver(run, driver, limit)


def floor(run: Run, limit: float) -> Dict[str, object]:
    """Each step alone: head, one join (the others would join at the same
    time on their own hosts), the driver's connection to those two nodes."""
    began = time.time()
    run.wait_on(run.names[0], [RAY, "start", "--head", "--port", str(PORT),
                               "--include-dashboard", "false", *run.node_args(0)])
    head = time.time() - began
    join = 0.0
    if run.n > 1:
        began = time.time()
        run.wait_on(run.names[1], [RAY, "start", "--address", run.address,
                                   *run.node_args(1)])
        join = time.time() - began
    began = time.time()
    run.wait_on(run.names[0], [sys.executable, DRIVER, "--nodes", str(min(run.n, 2)),
                               "--report", run.report], RAY_ADDRESS=run.address)
    connect = time.time() - began
    return {"exit": None, "exited": False, "rc": 0, "floor": True, "head": head,
            "join": join, "connect": connect, "connected": head + join + connect,
            "note": "each step timed alone; no launcher"}


RUNNERS = {"start_ray": start_ray, "symmetric-run": symmetric_run,
           "nemo-ray-sub": nemo_ray_sub, "theta-script": theta_script, "floor": floor}


def one(peer: str, hosts: EmulatedHosts, n: int, limit: float) -> Dict[str, object]:
    run = Run(hosts, n, auth_off=peer != "start_ray")
    try:
        found = RUNNERS[peer](run, limit)
        if not found.get("floor"):
            found["connected"] = run.connected()
        if found["connected"] is None:
            found["output"] = run.outputs()
    except Exception as err:  # a peer that failed is a result, not a crash
        found = {"connected": None, "exit": None, "exited": False, "rc": None,
                 "note": f"failed: {err}"}
    finally:
        left = run.close()
    if left:
        found["note"] = f"{found.get('note', '')}; {left} process(es) left after stopping"
    return {"peer": peer, "hosts": n, **found}


def median_of(rows: List[dict], key: str) -> Optional[float]:
    values = [row[key] for row in rows if row.get(key) is not None]
    return evidence.median(values) if values else None


def table(runs: List[dict], args: argparse.Namespace) -> str:
    lines = [f"{args.rounds} round(s), peers in turn, the order rotated each round; "
             f"medians. One Ray node per emulated host, 1 CPU each, on a "
             f"{os.cpu_count()}-core machine (every host's processes share its cores). "
             f"A launcher that had not exited {args.limit:g}s after its driver ended was "
             "stopped.", ""]
    for n in args.hosts:
        rows = [r for r in runs if r["hosts"] == n]
        floor_connected = median_of([r for r in rows if r["peer"] == "floor"], "connected")
        symmetric = median_of([r for r in rows if r["peer"] == "symmetric-run"], "connected")
        lines += [f"**{n} host(s)**", "",
                  "| peer | launch -> connected driver (s) | / floor | / symmetric-run "
                  "| launch -> launcher exit (s) | runs ok | notes |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for peer in args.peers:
            mine = [r for r in rows if r["peer"] == peer]
            if not mine:
                continue
            connected = median_of(mine, "connected")
            exits = median_of(mine, "exit")
            ok = sum(r["connected"] is not None for r in mine)
            notes = sorted({str(r.get("note", "")) for r in mine if r.get("note")})
            lines.append(
                f"| {peer} | {fmt(connected)} | {ratio(connected, floor_connected)} "
                f"| {ratio(connected, symmetric)} "
                f"| {fmt(exits) if exits is not None else 'never'} | {ok}/{len(mine)} "
                f"| {'; '.join(notes)[:200]} |")
        lines.append("")
    return "\n".join(lines)


def fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"


def ratio(value: Optional[float], base: Optional[float]) -> str:
    return "-" if value is None or not base else f"{value / base:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=float, default=30.0,
                        help="seconds after the driver ends before a launcher is stopped")
    parser.add_argument("--name", default="peers")
    parser.add_argument("--make", default="bench-peers", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    why = unavailable()
    if why:
        parser.error(f"emulated hosts: {why}")
    runs: List[dict] = []
    order = list(args.peers)
    random.Random(args.seed).shuffle(order)
    with EmulatedHosts(count=max(args.hosts)) as hosts:
        for round_ in range(args.rounds):
            turn = order[round_ % len(order):] + order[:round_ % len(order)]
            for n in args.hosts:
                for peer in turn:
                    runs.append({"round": round_, **one(peer, hosts, n, args.limit)})
                    print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    text = table(runs, args)
    print(text)
    evidence.publish(args.name, "start_ray beside its peers on separate (emulated) hosts",
                     text, runs, args.make)
    return 0


if __name__ == "__main__":
    sys.exit(main())
