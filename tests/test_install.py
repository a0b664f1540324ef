"""A wheel, installed into a fresh virtualenv, runs the README's quick start
from a folder outside the checkout: no editable install, no PYTHONPATH, the
example drivers from the wheel's data files.

The wheel is built from a copy of the checkout's files (what git tracks or
would: no stale build/ folder), its dependencies come from the package
index (pip's cache, after `make venv`), with the `mpi` extra (Open MPI)."""

import os
import re
import shutil
import subprocess
import sys

import pytest
from requirements import skip_or_fail

from jobs import PYTHON, ROOT, assert_nothing_left

README = os.path.join(ROOT, "README.md")


def quick_start():
    """The runnable block of the README's "Quick start" section."""
    with open(README) as handle:
        text = handle.read()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found, "the README's quick start has a ```sh block"
    return found.group(1)


def run(cmd, timeout=600, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the wheel built from this checkout, and [mpi]."""
    where = tmp_path_factory.mktemp("install")
    source = where / "source"
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                cwd=ROOT).stdout.split("\0")
    for name in filter(None, files):
        if os.path.isfile(os.path.join(ROOT, name)):
            os.makedirs(source / os.path.dirname(name), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), source / name)
    done = run([PYTHON, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                "-w", str(where / "dist"), str(source)])
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = os.listdir(where / "dist")
    venv = where / "venv"
    base = os.path.join(sys.base_prefix, "bin", "python3")
    done = run([base, "-m", "venv", str(venv)])
    assert done.returncode == 0, done.stderr
    done = run([str(venv / "bin" / "pip"), "install", "-q",
                f"{where / 'dist' / wheel}[mpi]"], timeout=900)
    if done.returncode != 0:
        unreachable = ("Could not fetch URL", "Failed to establish a new connection",
                       "Temporary failure in name resolution", "Max retries exceeded")
        if any(sign in done.stderr for sign in unreachable):
            skip_or_fail("pypi", f"pip could not reach the package index: {done.stderr[-500:]}")
        raise AssertionError(done.stdout + done.stderr)
    return venv


def user_env(venv, home):
    """A user's shell with the fresh venv active, nothing of the checkout."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("START_RAY_", "RAY_", "PYTHON", "VIRTUAL_ENV"))}
    env.update({"PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}", "VIRTUAL_ENV": str(venv),
                "HOME": str(home), "OMPI_ALLOW_RUN_AS_ROOT": "1",
                "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_btl": "^ofi"})
    return env


def test_the_wheel_runs_the_readmes_quick_start_outside_the_checkout(jobs, installed,
                                                                      tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = user_env(installed, elsewhere)
    where = run([str(installed / "bin" / "python"), "-c",
                 "import start_ray, sys; print(start_ray.__file__)"], cwd=elsewhere, env=env)
    assert where.stdout.startswith(str(installed)), where.stdout + where.stderr
    example = run(["python", "-m", "start_ray.jobs", "example", "cluster_info"],
                  cwd=elsewhere, env=env)
    assert example.stdout.strip() == str(
        installed / "share" / "start_ray" / "drivers" / "cluster_info.py"), example
    wrong = run(["python", "-m", "start_ray.jobs", "example", "nope"], cwd=elsewhere, env=env)
    assert wrong.returncode == 2 and "one of " in wrong.stderr and "train_ppo" in wrong.stderr

    script = quick_start()
    result = jobs.launch(["bash", "-euo", "pipefail", "-c", script],
                         {**env, "START_RAY_NODE_PER_RANK": "", "PYTHONPATH": ""},
                         cwd=str(elsewhere)).wait(300)
    assert result.returncode == 0, f"{script}\n{result.output[-5000:]}"
    assert '"alive_nodes": 2' in result.stdout, result.output[-3000:]
    assert "dry run: nothing was started" in result.stdout, result.output[-3000:]
    assert_nothing_left(result)
