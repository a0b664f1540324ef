"""Working with a cluster a job holds (`--serve`, or while its driver runs):

    python -m start_ray attach [RUN] [-- COMMAND ...]
    python -m start_ray stop [RUN]

RUN is a run folder or a run id under --log-dir; by default the newest run
there whose cluster is up. `attach` runs COMMAND (default: your shell) with
RAY_ADDRESS and the job's token in its environment, and this Python's
environment first on PATH, so `ray.init()`, `ray status`, `ray list nodes`
and `ray job submit` reach the job's cluster and nobody else's; its exit
status is COMMAND's. `stop` asks a serving job to end
(a file in the run folder, which the job watches: it works from any host that
sees the folder) and waits until it has. Both read the run's card
(card.py), which only its owner can read.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from typing import Any, Dict, List, Optional

from start_ray.host import network
from start_ray.node import auth
from start_ray.options import SPECS_BY_NAME
from start_ray.record import card

EXAMPLES = """\
examples:
  python -m start_ray attach                          # a shell on the newest cluster
  python -m start_ray attach -- ray status
  python -m start_ray attach logs/20261202-101500-1234 -- python my_analysis.py
  python -m start_ray attach -- jupyter lab --no-browser --ip 127.0.0.1 --port 8888
  srun --jobid 1234 --overlap -w nid001 python -m start_ray attach -- ray status
  python -m start_ray stop                            # end the newest serving run
"""


class Refused(Exception):
    """The run cannot be attached to or stopped; the message says why."""


def find_run(run: Optional[str], log_dir: str) -> str:
    """The run folder RUN names (a folder, or a run id under `log_dir`), or
    the newest run under `log_dir` whose cluster is up."""
    if run:
        for folder in (run, os.path.join(log_dir, run)):
            if os.path.isfile(card.path(folder)):
                return os.path.abspath(folder)
        raise Refused(f"no run {run!r} with a cluster card ({card.CARD}) here or under "
                      f"{log_dir}")
    for folder in card.runs(log_dir):
        try:
            if card.read(folder).get("state") in ("running", "serving"):
                return folder
        except (OSError, ValueError):
            continue
    raise Refused(f"no run under {log_dir} has its cluster up (start one with "
                  "`python -m start_ray --serve`, or give RUN)")


def up(folder: str) -> Dict[str, Any]:
    """The card of a run whose cluster is up, else Refused with why not."""
    try:
        found = card.read(folder)
    except PermissionError:
        raise Refused(f"cannot read {card.path(folder)}: the run belongs to another "
                      "user") from None
    if found.get("state") == "stopped":
        raise Refused(f"run {found.get('run_id')} is not serving: it stopped at "
                      f"{found.get('stopped')} with status {found.get('status')}")
    ip, _, port = found["address"].rpartition(":")
    why = network.reach(ip.strip("[]"), int(port), timeout=5.0)
    if why:
        raise Refused(f"the cluster of run {found.get('run_id')} does not answer at "
                      f"{found['address']} ({why}): it may have ended without its teardown")
    return found


def token_of(found: Dict[str, Any]) -> Optional[str]:
    if not found.get("token_file"):
        return None
    try:
        with open(found["token_file"]) as handle:
            return handle.read().strip()
    except PermissionError:
        raise Refused(f"cannot read the token of run {found.get('run_id')} "
                      f"({found['token_file']}): it belongs to another user") from None
    except OSError as err:
        raise Refused(f"cannot read the token of run {found.get('run_id')}: {err}") from None


def attach(folder: str, command: List[str]) -> int:
    """Run `command` against the run's cluster (in place of this process)."""
    found = up(folder)
    env = {key: value for key, value in os.environ.items() if key not in auth.VARIABLES}
    env.update(auth.environment(token_of(found)))
    env.update({"RAY_ADDRESS": found["address"], "START_RAY_RUN_DIR": folder})
    # The `ray`, `jupyter`, `python` of start_ray's own environment come first,
    # activated or not: the same Ray as the cluster's.
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    here = socket.gethostname()
    if here not in found.get("hosts", [here]):
        print(f"start_ray attach: note: {here} runs no Ray node of this job, and ray.init() "
              "needs one on its host; attach on a node of the job: "
              f"{found.get('attach_command', '')}", file=sys.stderr)
    if not command:
        command = [os.environ.get("SHELL") or "/bin/sh"]
        print(f"start_ray attach: a shell on run {found.get('run_id')} ({found.get('nodes')} "
              f"node(s) at {found['address']}); `exit` leaves the cluster up", file=sys.stderr)
    sys.stdout.flush()
    try:
        os.execvpe(command[0], command, env)
    except OSError as err:
        raise Refused(f"cannot run {command[0]}: {err}") from None
    return 0  # not reached


def stop(folder: str, wait: float) -> int:
    """Ask the run's job to end; 0 once its card says it stopped."""
    found = up(folder)
    if found.get("state") != "serving":
        raise Refused(f"run {found.get('run_id')} runs a driver, it is not serving: it ends "
                      "with its driver (or scancel/Ctrl-C)")
    with open(found["stop_file"], "w") as handle:
        handle.write(f"{socket.gethostname()} pid {os.getpid()} at {card.iso()}\n")
    print(f"start_ray stop: asked run {found.get('run_id')} to stop; waiting (at most "
          f"{wait:g}s)", flush=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        now = card.read(folder)
        if now.get("state") == "stopped":
            print(f"start_ray stop: run {now.get('run_id')} stopped (exit status "
                  f"{now.get('status')})", flush=True)
            return 0
        time.sleep(0.5)
    raise Refused(f"run {found.get('run_id')} did not stop within {wait:g}s; see "
                  f"{os.path.join(folder, 'rank-0.log')}")


def parser(verb: str) -> argparse.ArgumentParser:
    """`attach` or `stop`'s command line (docs/options.md is made from it)."""
    parser = argparse.ArgumentParser(prog=f"python -m start_ray {verb}", description=__doc__,
                                     epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", metavar="RUN", help="a run folder or run id")
    parser.add_argument("--log-dir", metavar="DIR",
                        help=f"where the runs are (default: ${SPECS_BY_NAME['log_dir'].env}, "
                             f"else {SPECS_BY_NAME['log_dir'].default})")
    if verb == "stop":
        parser.add_argument("--wait", type=float, default=120.0, metavar="SECONDS",
                            help="how long to wait for the job to end (default: %(default)s)")
    return parser


def main(verb: str, argv: List[str]) -> int:
    command: List[str] = []
    if "--" in argv:
        command, argv = argv[argv.index("--") + 1:], argv[:argv.index("--")]
    args = parser(verb).parse_args(argv)
    try:
        log_dir = args.log_dir or os.environ.get(SPECS_BY_NAME["log_dir"].env) or \
            SPECS_BY_NAME["log_dir"].default
        folder = find_run(args.run, log_dir)
        return attach(folder, command) if verb == "attach" else stop(folder, args.wait)
    except Refused as err:
        print(f"start_ray {verb}: error: {err}", file=sys.stderr)
        return 1
