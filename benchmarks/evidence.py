"""Every results file says how to make it again.

A study writes benchmarks/results/NAME.md (a header, then its tables) and
NAME.json beside it (the same header as `meta`, and the raw measurements).
The header names the exact command, the commit (and whether the tree had
changes), the date, the machine (cores, memory, CPU) and the versions (Python,
Ray, Open MPI, MPICH, start_ray, and the RL stack where it is installed).
tests/test_evidence.py checks that every results file has them, that the
commit exists and the command's script is in the repository, and that no doc
cites a results file that is missing.

    from evidence import publish
    publish("log_sync", "What --sync-logs costs", table_text, raw_dict)
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import re
import shlex
import subprocess
import sys
from typing import Any, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
MPICH_VENV = os.environ.get("START_RAY_MPICH_VENV") or os.path.join(ROOT, ".venv-mpich")


def _run(cmd: List[str], cwd: str = ROOT) -> str:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                              timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def command(argv: Optional[List[str]] = None) -> str:
    """The command as a user types it from the checkout."""
    argv = sys.argv if argv is None else argv
    script = os.path.relpath(os.path.abspath(argv[0]), ROOT)
    return shlex.join(["python", script, *argv[1:]])


def commit() -> Dict[str, Any]:
    sha = _run(["git", "rev-parse", "HEAD"])
    changed = _run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                    "start_ray", "benchmarks", "drivers", "tests", "setup.cfg",
                    ":!benchmarks/results"])  # not what the study itself just wrote
    return {"sha": sha, "clean": not changed,
            "changed": changed.splitlines()[:20]}


def _first_line(cmd: List[str]) -> str:
    return (_run(cmd).splitlines() or [""])[0]


def _mpi_version(launcher: str) -> str:
    text = _run([launcher, "--version"]) if os.path.exists(launcher) else ""
    found = (re.search(r"Open MPI\)? v?([\d.]+)", text)
             or re.search(r"Version:\s*([\d.]+)", text))
    return found.group(1) if found else ""


def _start_ray_version() -> str:
    """The checkout's own version: an editable install's metadata keeps the
    version it was installed with (0.2.0 after the bump to 0.3.0, here)."""
    with open(os.path.join(ROOT, "start_ray", "__init__.py")) as handle:
        found = re.search(r'^__version__ = "([^"]+)"', handle.read(), re.M)
    return found.group(1) if found else ""


def versions() -> Dict[str, str]:
    found = {"python": platform.python_version(), "start_ray": _start_ray_version()}
    for package in ("ray", "mpi4py", "tensorflow", "torch", "gymnasium"):
        try:  # from the installed metadata: importing TensorFlow takes seconds
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    bin_dir = os.path.dirname(sys.executable)
    found["open_mpi"] = _mpi_version(os.path.join(bin_dir, "mpirun"))
    found["mpich"] = _mpi_version(os.path.join(MPICH_VENV, "bin", "mpiexec"))
    return {key: value for key, value in found.items() if value}


def machine() -> Dict[str, Any]:
    memory = 0
    try:
        with open("/proc/meminfo") as handle:
            memory = int(handle.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    model = ""
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle
                          if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cores": os.cpu_count(), "memory_gib": round(memory / 2**30, 1), "cpu": model,
            "kernel": platform.release(),
            "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"])}


def meta(argv: Optional[List[str]] = None, make_target: str = "") -> Dict[str, Any]:
    return {"command": command(argv), "make": make_target, "commit": commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": machine(), "versions": versions()}


def header(info: Dict[str, Any], name: str) -> str:
    sha = info["commit"]["sha"]
    state = "the tree had no other changes" if info["commit"]["clean"] else \
        "with uncommitted changes: " + ", ".join(info["commit"]["changed"])
    cpu = info["machine"]
    made = f" (`make {info['make']}`)" if info.get("make") else ""
    return "\n".join([
        f"- command: `{info['command']}`{made}",
        f"- commit: `{sha}` ({state})",
        f"- date: {info['date']}",
        f"- machine: {cpu['cores']} cores ({cpu['cpu']}), {cpu['memory_gib']} GiB, "
        f"{cpu['os']}, Linux {cpu['kernel']}",
        "- versions: " + ", ".join(f"{key} {value}" for key, value in info["versions"].items()),
        f"- raw output: [{name}.json]({name}.json)"])


def publish(name: str, title: str, body: str, raw: Any, make_target: str = "",
            argv: Optional[List[str]] = None, folder: str = RESULTS) -> str:
    """Write NAME.md and NAME.json in `folder`; the .md path."""
    info = meta(argv, make_target)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + ".md")
    with open(path, "w") as handle:
        handle.write(f"# {title}\n\n{header(info, name)}\n\n{body.rstrip()}\n")
    with open(os.path.join(folder, name + ".json"), "w") as handle:
        json.dump({"meta": info, "raw": raw}, handle, indent=1, default=str)
        handle.write("\n")
    print(f"wrote {os.path.relpath(path, ROOT)} and {name}.json", file=sys.stderr)
    return path


def median(values: List[float]) -> float:
    clean = sorted(v for v in values if v is not None and v == v)
    if not clean:
        return float("nan")
    middle = len(clean) // 2
    return clean[middle] if len(clean) % 2 else (clean[middle - 1] + clean[middle]) / 2
