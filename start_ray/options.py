"""The settings of one start_ray job: one table serves the command line, the
environment variables batch scripts prefer, and the Python API."""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
import signal
from typing import Any, Callable, Dict, List, Mapping, Optional

from start_ray.errors import UsageError

# Arguments start_ray sets itself on every `ray start`; letting users pass them
# would break the handshake, the teardown or the port policy.
RESERVED_RAY_ARGS = (
    "--head", "--address", "--port", "--block", "--temp-dir",
    "--labels", "--ray-client-server-port", "--node-ip-address",
    "--num-cpus", "--num-gpus",  # start_ray's own options of the same names
)


def _bounded(kind: Callable[[str], Any], least: float, inclusive: bool) -> Callable[[str], Any]:
    """A parser of `kind` numbers of at least `least` (or above it)."""
    if kind is int:
        said = f"must be {int(least) + (0 if inclusive else 1)} or more"
    else:
        said = f"must be {least:g} or more" if inclusive else f"must be greater than {least:g}"

    def parse(text: str) -> Any:
        value = kind(text)
        if value < least or (value == least and not inclusive):
            raise ValueError(said)
        return value
    return parse


_positive_float = _bounded(float, 0, inclusive=False)
_non_negative_float = _bounded(float, 0, inclusive=True)
_positive_int = _bounded(int, 0, inclusive=False)
_non_negative_int = _bounded(int, 0, inclusive=True)


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be one of 1/0, true/false, yes/no, on/off")


def signal_number(text: str) -> int:
    """`USR1`, `SIGUSR1` or `10` -> 10; ValueError for anything else."""
    name = text.strip().upper()
    if name.isdigit():
        return signal.Signals(int(name)).value
    try:
        return signal.Signals[name if name.startswith("SIG") else "SIG" + name].value
    except KeyError:
        raise ValueError("not a signal name or number, e.g. USR1") from None


def _min_nodes(text: str) -> float:
    """A count of nodes (`3`) or a share of them (`0.9`)."""
    value = float(text)
    if "." in text.strip():
        if not 0 < value <= 1:
            raise ValueError("a share of the nodes is more than 0 and at most 1, e.g. 0.9")
        return value
    if value < 1:
        raise ValueError("must be 1 or more (or a share such as 0.9)")
    return int(value)


def nodes_needed(min_nodes: Optional[float], nodes: int) -> int:
    """How many of `nodes` must be alive for the driver to start."""
    if min_nodes is None:
        return nodes
    if isinstance(min_nodes, float):
        return max(1, min(nodes, math.ceil(min_nodes * nodes - 1e-9)))
    return max(1, min(nodes, int(min_nodes)))


COLLECT_LOGS = ("on-failure", "always", "never")


def _collect_logs(text: str) -> str:
    value = text.strip().lower()
    if value not in COLLECT_LOGS:
        raise ValueError(f"must be one of {', '.join(COLLECT_LOGS)}")
    return value


def _ray_args(text: str) -> List[str]:
    args = shlex.split(text)
    for arg in args:
        if arg.split("=", 1)[0] in RESERVED_RAY_ARGS:
            raise ValueError(
                f"{arg.split('=', 1)[0]} is set by start_ray itself and cannot be "
                "passed through")
    return args


@dataclasses.dataclass(frozen=True)
class Spec:
    """One setting: its option, its environment variable, how to parse it,
    and whether most people need it (`advanced` ones come later in --help)."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    metavar: Optional[str]  # None: a yes/no setting (--x and --no-x)
    help: str
    advanced: bool = False

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def negative(self) -> str:
        """The option that turns a yes/no setting off (`--no-x`; `--auth`
        for `--no-auth`)."""
        if self.name.startswith("no_"):
            return "--" + self.name[3:].replace("_", "-")
        return "--no-" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "START_RAY_" + self.name.upper()


SPECS: List[Spec] = [
    # ------------------------------------------------ what most people set
    Spec("num_cpus", _positive_int, None, "N",
         "CPUs each Ray node offers (default: what the job was given on the host: "
         "Slurm/PBS/ALPS variables, else the ranks' CPU affinity and cgroup quota)"),
    Spec("num_gpus", _non_negative_int, None, "N",
         "GPUs each Ray node offers (default: Slurm's GPU variables, else "
         "CUDA_VISIBLE_DEVICES, ROCR/HIP_VISIBLE_DEVICES, ZE_AFFINITY_MASK or "
         "ONEAPI_DEVICE_SELECTOR (the union over the node's ranks), else what "
         "Ray detects)"),
    Spec("interface", str, None, "NAME",
         "network interface whose address every Ray node uses, e.g. ib0, hsn0, "
         "ipogif0 (default: the address a worker uses to reach the head; the "
         "head's host name's address). Gloo and NCCL get the interface of "
         "that address too (GLOO_SOCKET_IFNAME, NCCL_SOCKET_IFNAME), unless set"),
    Spec("node_per_rank", _flag, False, None,
         "one Ray node per MPI rank instead of one per host (the ranks of a host "
         "otherwise share one node with all their resources); handy to try the "
         "multi-node path on a laptop"),
    Spec("dry_run", _flag, False, None,
         "probe every rank, print the plan (hosts, nodes, each node's CPUs, GPUs "
         "and memory and where each number came from, addresses, join slots, "
         "warnings) and exit 0, starting no Ray process and no driver: the first "
         "thing to run on a new site"),
    Spec("serve", _flag, False, None,
         "keep the cluster up (after DRIVER, if one is given) for programs that "
         "attach to it (`python -m start_ray attach`), until `python -m start_ray "
         "stop RUN`, SIGTERM, the walltime signal or --serve-timeout"),
    Spec("serve_timeout", _positive_float, None, "SECONDS",
         "with --serve: stop the cluster after this long"),
    Spec("dashboard", _flag, False, None,
         "start Ray's dashboard (needs ray[default]: the dashboard extra), "
         "bound to 127.0.0.1 on the head's host; the READY block prints the ssh "
         "tunnel command, and it asks for the job's token"),
    Spec("fail_fast", _flag, False, None,
         "stop the job (exit status 1) when a Ray node is lost; by default the "
         "loss is logged and the job goes on with the remaining nodes (RLlib "
         "restarts lost env runners)"),
    Spec("join_timeout", _positive_float, 300.0, "SECONDS",
         "deadline for the head to start and every node to join; failed joins "
         "are retried with backoff until then (default: %(default)s)"),
    Spec("min_nodes", _min_nodes, None, "M",
         "start the driver at the join deadline if at least M nodes are alive (a "
         "count, or a share such as 0.9); the missing ones keep trying to join and "
         "are counted in when they do (default: all nodes, or the job fails)"),
    Spec("rejoins", _non_negative_int, 3, "N",
         "when a worker node dies while its rank lives (OOM killer, a crash in Ray), "
         "the rank starts it anew and it rejoins the cluster, at most N times per "
         "node; 0: never (default: %(default)s). --fail-fast: never"),
    Spec("gcs_restarts", _non_negative_int, 3, "N",
         "when the head's GCS (gcs_server) dies while its raylet lives, start it "
         "again in place (same port, same token, its state kept in RocksDB in the "
         "head's node-local temp dir; Ray 2.57+): the raylets and the driver "
         "reconnect and the job goes on; at most N times per job; 0: off, the GCS "
         "keeps its state in memory as before (default: %(default)s)"),
    Spec("restarts", _non_negative_int, 0, "N",
         "when the head is lost (its raylet dies, or its GCS and it cannot come "
         "back in place), stop every node, start the cluster again on the same "
         "ranks (a new token, a fresh temp dir) and run the driver again with "
         "START_RAY_RESTART=k, at most N times; a driver that checkpoints resumes "
         "(default: %(default)s: the job ends)"),
    Spec("log_dir", str, "logs", "DIR",
         "where each run gets its folder LOG_DIR/<run-id>/: one log per rank, the "
         "driver's output, the summary, the cluster's card (default: %(default)s)"),
    # ----------------------------------------------------------- advanced
    Spec("head_num_cpus", _non_negative_int, None, "N",
         "CPUs the head's node offers to Ray's scheduler (default: like every node, "
         "but 0 in jobs of 32 nodes or more, as Ray's guide advises: the head's GCS "
         "and the driver keep its CPUs)", advanced=True),
    Spec("join_slots", _positive_int, None, "N",
         "at most N Ray nodes join (register with the head) at once; the others "
         "wait for a free slot (default: all up to 16 nodes, else 4 x sqrt(nodes), "
         "at most 128)", advanced=True),
    Spec("grace", _non_negative_float, 30.0, "SECONDS",
         "after SIGTERM, SIGINT or SIGHUP (scancel, Ctrl-C) the driver gets the "
         "signal and this long to finish (e.g. checkpoint) before SIGKILL; the "
         "walltime signal starts no such timer (default: %(default)s)", advanced=True),
    Spec("walltime_signal", signal_number, signal.SIGUSR1.value, "SIGNAL",
         "the scheduler's walltime warning (Slurm: #SBATCH --signal=B:USR1@120): "
         "passed to the driver, which should checkpoint and exit (default: USR1)",
         advanced=True),
    Spec("stop_timeout", _positive_float, 10.0, "SECONDS",
         "how long Ray processes get to exit at teardown before SIGKILL "
         "(default: %(default)s)", advanced=True),
    Spec("collect_logs", _collect_logs, "on-failure", "WHEN",
         "copy each node's Ray logs (raylet, GCS, agents, workers, `ray start`'s "
         "output) into LOG_DIR/<run-id>/ray/ at the end of the job, since a "
         "node's /tmp is gone or out of reach afterwards: on-failure (a non-zero "
         "exit status, or the node died during the job), always, or never; at most 50 MB per node "
         "(default: %(default)s)", advanced=True),
    Spec("sync_logs", _non_negative_float, 30.0, "SECONDS",
         "while the job runs, copy each node's new Ray log lines into "
         "LOG_DIR/<run-id>/ray/ every SECONDS, so that a job the scheduler kills "
         "(walltime, node crash) still leaves them; 0: only at the end "
         "(default: %(default)s)", advanced=True),
    Spec("temp_dir", str, None, "DIR",
         "node-local folder under which each rank's Ray temp dir is made and "
         "removed; must be short: Ray's unix sockets must fit in 107 bytes "
         "(default: $TMPDIR when short enough, else /tmp)", advanced=True),
    Spec("keep_temp_dir", _flag, False, None,
         "keep the Ray temp dirs (Ray's own session logs) on the nodes after the "
         "job; by default each goes once the job succeeded or its logs are copied "
         "into the run folder, and stays when that copy failed or a process "
         "would not stop", advanced=True),
    Spec("ray_args", _ray_args, [], "'ARGS'",
         "extra arguments for every `ray start`, as one quoted string, e.g. "
         "'--object-store-memory 2000000000'", advanced=True),
    Spec("ray_command", shlex.split, None, "'COMMAND'",
         "the command that runs Ray, for Ray in a container, e.g. "
         "'apptainer exec ray.sif ray' (default: the `ray` beside this Python, "
         "else the one on PATH)", advanced=True),
    Spec("no_auth", _flag, False, None,
         "turn Ray's token authentication off (--auth: on, the default). Every job "
         "gets a fresh random token and Ray refuses any process without it; "
         "without it, anyone who can reach the nodes' ports can run code as you",
         advanced=True),
    Spec("poll_interval", _positive_float, 0.2, "SECONDS",
         "how often waiting ranks look for news; waiting costs almost no CPU "
         "(default: %(default)s)", advanced=True),
]

SPECS_BY_NAME: Dict[str, Spec] = {spec.name: spec for spec in SPECS}


def _default(name: str) -> Any:
    return SPECS_BY_NAME[name].default


@dataclasses.dataclass(frozen=True)
class Options:
    """Everything a job needs to know; identical on every rank. The
    defaults are the option table's (SPECS), said once."""

    num_cpus: Optional[int] = _default("num_cpus")
    head_num_cpus: Optional[int] = _default("head_num_cpus")
    num_gpus: Optional[int] = _default("num_gpus")
    node_per_rank: bool = _default("node_per_rank")
    interface: Optional[str] = _default("interface")
    join_timeout: float = _default("join_timeout")
    min_nodes: Optional[float] = _default("min_nodes")
    rejoins: int = _default("rejoins")
    gcs_restarts: int = _default("gcs_restarts")
    restarts: int = _default("restarts")
    join_slots: Optional[int] = _default("join_slots")
    stop_timeout: float = _default("stop_timeout")
    grace: float = _default("grace")
    walltime_signal: int = _default("walltime_signal")
    fail_fast: bool = _default("fail_fast")
    log_dir: str = _default("log_dir")
    temp_dir: Optional[str] = _default("temp_dir")
    collect_logs: str = _default("collect_logs")
    sync_logs: float = _default("sync_logs")
    ray_args: List[str] = dataclasses.field(default_factory=list)
    ray_command: Optional[List[str]] = _default("ray_command")
    no_auth: bool = _default("no_auth")
    dry_run: bool = _default("dry_run")
    serve: bool = _default("serve")
    serve_timeout: Optional[float] = _default("serve_timeout")
    dashboard: bool = _default("dashboard")
    keep_temp_dir: bool = _default("keep_temp_dir")
    poll_interval: float = _default("poll_interval")


def parse_value(spec: Spec, text: str, source: str) -> Any:
    """Parse one setting's text, naming where it came from when it is bad."""
    try:
        return spec.parse(text)
    except ValueError as err:
        raise UsageError(f"{source}={text!r}: {err}") from None


def env_defaults(environ: Mapping[str, str]) -> Dict[str, Any]:
    """The settings given through START_RAY_* environment variables."""
    values: Dict[str, Any] = {}
    for spec in SPECS:
        if spec.env in environ:
            values[spec.name] = parse_value(spec, environ[spec.env], spec.env)
    return values


def make_options(environ: Optional[Mapping[str, str]] = None, **given: Any) -> Options:
    """Options from keyword arguments, falling back to the environment, then
    to the defaults: explicit beats environment beats default."""
    unknown = sorted(set(given) - set(SPECS_BY_NAME))
    if unknown:
        raise UsageError(f"unknown option(s): {', '.join(unknown)}")
    values = env_defaults(os.environ if environ is None else environ)
    for name, value in given.items():
        if value is None:
            continue
        spec = SPECS_BY_NAME[name]
        text = shlex.join(value) if isinstance(value, (list, tuple)) else str(value)
        values[name] = parse_value(spec, text, spec.option)
    return Options(**values)


def markdown() -> str:
    """docs/options.md, from the table above (`make docs` writes it; a test
    fails when the two disagree)."""
    lines = ["# Options", "",
             "Generated from `start_ray/options.py` by `make docs`; `python -m start_ray "
             "--help` prints the same. Every option can also be set through its environment "
             "variable; the command line wins over the variable. A yes/no option has a form "
             "that turns it off (`--no-serve`; `--auth` for `--no-auth`).", ""]
    for advanced, title in ((False, "Options most jobs use"), (True, "Advanced options")):
        lines += [f"## {title}", "", "| option | variable | default | what it does |",
                  "|---|---|---|---|"]
        for spec in SPECS:
            if spec.advanced != advanced:
                continue
            option = (f"`{spec.option}`, `{spec.negative}`" if spec.metavar is None
                      else f"`{spec.option} {spec.metavar}`")
            default = ("off" if spec.default is False else "-" if spec.default in (None, [])
                       else f"`{'USR1' if spec.name == 'walltime_signal' else spec.default}`")
            text = (spec.help.replace("%(default)s", str(spec.default)).replace("|", "\\|")
                    .replace("<", "&lt;"))
            text = text.split(" (default: ")[0] if "(default: " in text and \
                spec.default not in (None, [], False) else text
            lines.append(f"| {option} | `{spec.env}` | {default} | {text} |")
        lines.append("")
    return "\n".join(lines)
