"""A start_ray cluster accepts only the job's own processes.

While a job holds its cluster (tests/drivers/hold.py), outsiders try to use
it with the public API (`ray.init(address=...)`), the way another user on
the node would, and the token is looked for everywhere others could see it.
"""

import glob
import os
import stat
import subprocess

import leftovers as found_by
import pytest
from requirements import requires

from jobs import DEFAULT_MPI, PYTHON, finish_all_held, finish_held, needs_dashboard
from start_ray.node import compat

# Ray before 2.52 has no token auth: jobs there run with --no-auth, and what
# start_ray does instead (refuse to start without it) is in test_compat.py.
needs_token_auth = requires(
    "token-auth", None if compat.has_token_auth() else
    f"Ray {compat.ray_version()} has no token authentication")

PROBE = """
import sys, ray
try:
    ray.init(address=sys.argv[1], log_to_driver=False)
    print("CONNECTED", len(ray.nodes()))
except Exception as err:
    print("REFUSED", type(err).__name__, err)
"""


def start_probe(address, token=None, mode=None):
    """Another process trying to use the cluster, with or without a token."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("RAY_", "START_RAY_"))}
    env["HOME"] = "/nonexistent"  # no ~/.ray/auth_token to fall back on
    if mode:
        env["RAY_AUTH_MODE"] = mode
    if token:
        env["RAY_AUTH_TOKEN"] = token
    return subprocess.Popen([PYTHON, "-c", PROBE, address], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def probe_result(proc):
    out, _ = proc.communicate(timeout=120)
    lines = [line for line in out.splitlines() if line.startswith(("CONNECTED", "REFUSED"))]
    assert lines, out
    return lines[-1]


def job_tokens(running):
    """The auth settings of every Ray process of the job, read from the
    process environment (as only the job's owner or root can). A renamed
    agent's environ may have lost its auth entries and kept the marker (the
    raylet orders the entries arbitrarily): it is judged only if they survived."""
    settings = set()
    for proc in running.processes():
        env = found_by.environ(proc.pid)  # raw bytes: Ray's renamed agents too
        if "START_RAY_JOB" not in env:
            continue
        mode = env.get("RAY_AUTH_MODE")
        whole = mode == "disabled" or (mode is not None and "RAY_AUTH_TOKEN" in env)
        if found_by.renamed(proc.pid) and not whole:
            continue
        settings.add((env.get("RAY_AUTH_MODE"), env.get("RAY_AUTH_TOKEN")))
    return settings


def one_token(running):
    settings = job_tokens(running)
    assert len(settings) == 1, f"the job's processes disagree on auth: {settings}"
    return next(iter(settings))[1]


def option_of(running, option, program=""):
    """The value of `option` (`--opt V` or `--opt=V`) on the command line of
    one of the job's processes (that runs `program`, if given)."""
    for proc in running.processes():
        cmdline = proc.cmdline()
        if program not in " ".join(cmdline):
            continue
        for i, arg in enumerate(cmdline):
            if arg == option and i + 1 < len(cmdline):
                return cmdline[i + 1]
            if arg.startswith(option + "="):
                return arg.split("=", 1)[1]
    raise AssertionError(f"no process of the job was given {option}")


def files_under(*roots):
    for root in roots:
        for path in glob.glob(os.path.join(root, "**"), recursive=True):
            if os.path.isfile(path) and not os.path.islink(path):
                yield path


@pytest.mark.every_ray
@needs_token_auth
def test_outsiders_are_refused_and_the_token_is_nowhere_to_be_seen(jobs):
    running, address, release = jobs.hold(2)
    settings = job_tokens(running)
    assert len(settings) == 1, "head, workers and driver share one token"
    mode, token = settings.pop()
    assert mode == "token" and len(token) >= 32

    outsiders = [start_probe(address), start_probe(address, "0" * 64, "token")]
    insider = start_probe(address, token, "token")
    assert probe_result(insider).startswith("CONNECTED 2")
    for proc in outsiders:
        assert probe_result(proc).startswith("REFUSED"), "no token, no cluster"

    # Not on any command line (world-readable through ps / /proc).
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(path, "rb") as handle:
                assert token.encode() not in handle.read(), path
        except OSError:
            pass
    # Not in any file the job wrote (logs, Ray's temp dirs, ~/.ray), but the
    # run folder's token file for `attach`: its owner's alone, while it runs.
    token_files = [path for path in files_under(running.log_root) if
                   os.path.basename(path) == "token"]
    assert len(token_files) == 1, token_files
    assert stat.S_IMODE(os.stat(token_files[0]).st_mode) == 0o600
    for path in files_under(running.log_root, running.temp_root, os.path.expanduser("~/.ray")):
        if path in token_files:
            continue
        try:
            with open(path, "rb") as handle:
                assert token.encode() not in handle.read(), path
        except OSError:
            pass
    # Ray's temp dirs are private to the job's user.
    job_dirs = glob.glob(os.path.join(running.temp_root, "sr-*"))
    assert job_dirs
    for job_dir in job_dirs:
        assert stat.S_IMODE(os.stat(job_dir).st_mode) == 0o700

    result = finish_held(running, release)  # the job went on after the refusals
    assert token not in result.output
    assert not os.path.exists(token_files[0]), "the token file goes with the cluster"
    for path in files_under(running.log_root):
        with open(path, "rb") as handle:
            assert token.encode() not in handle.read(), path


@needs_token_auth
def test_two_jobs_on_one_host_have_their_own_cluster_and_token(jobs):
    """Two jobs of 2 ranks each at once on one host: each its own cluster
    (2 nodes, its own address), each its own token, useless on the other."""
    first, first_address, release_first = jobs.hold(2, name="first")
    second, second_address, release_second = jobs.hold(2, name="second")
    assert first_address != second_address
    first_token, second_token = one_token(first), one_token(second)
    assert first_token != second_token
    assert probe_result(start_probe(second_address, first_token, "token")).startswith("REFUSED")
    finish_all_held([(first, release_first), (second, release_second)])


@pytest.mark.every_ray
def test_no_auth_opts_out_with_a_warning(jobs):
    running, address, release = jobs.hold(None, "--no-auth")
    assert job_tokens(running) == {("disabled", None)}
    assert probe_result(start_probe(address)).startswith("CONNECTED 1")
    result = finish_held(running, release)
    assert "authentication is OFF (--no-auth)" in result.stdout


@pytest.mark.every_ray
@needs_dashboard
def test_dashboard_listens_on_loopback_only(jobs):
    running, _, release = jobs.hold(None, "--dashboard")
    port = int(option_of(running, "--port", "dashboard.py"))
    listening = set()
    for proc in running.processes():
        try:
            listening |= {conn.laddr.ip for conn in proc.net_connections(kind="inet")
                          if conn.status == "LISTEN" and conn.laddr.port == port}
        except Exception:
            pass
    result = finish_held(running, release)
    assert port != 8265, "not the fixed default port"
    assert listening == {"127.0.0.1"}, listening
    assert f"ssh -N -L 8265:127.0.0.1:{port} " in result.stdout


CLIENT_PROBE = """
import sys, ray
try:
    ray.init(sys.argv[1], log_to_driver=False)
    print("CONNECTED", len(ray.nodes()))
except Exception as err:
    print("REFUSED", type(err).__name__, err)
"""


@pytest.mark.every_ray
@needs_token_auth
@requires("grpc", None if DEFAULT_MPI.has("grpc") else
          "needs ray[client] (grpcio): without it no client server runs")
def test_ray_client_server_refuses_outsiders(jobs):
    running, address, release = jobs.hold(None)
    port = option_of(running, "--port", "ray.util.client.server")
    assert port != "10001", "the client server is not on the fixed default port"
    url = f"ray://{address.split(':')[0]}:{port}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env["HOME"] = "/nonexistent"
    out = subprocess.run([PYTHON, "-c", CLIENT_PROBE, url], env=env, text=True,
                         capture_output=True, timeout=180).stdout
    finish_held(running, release)
    assert "REFUSED" in out and "CONNECTED" not in out, out
