"""A cluster you can work with (--serve, attach, stop), on real MPI and Ray:
several programs attached at once, `ray status`, `ray list nodes`, `ray job
submit`, a notebook executed through attach, the dashboard in a real browser
behind the job's token, another user refused, and every way a serving job
ends. The job's token is read only from the run's card files."""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time

import pytest
from requirements import skip_or_fail

from jobs import (
    MPICH,
    PYTHON,
    ROOT,
    Jobs,
    assert_nothing_left,
    needs_dashboard,
    rank_processes,
)

TASKS = """
import ray
ray.init()
nodes = len([n for n in ray.nodes() if n["Alive"]])
hosts = set(ray.get([ray.remote(lambda: __import__("socket").gethostname()).remote()
                     for _ in range(4)]))
print("ATTACHED", nodes, len(hosts), flush=True)
"""


def serve(jobs, np, *args, log_dir=None):
    """A serving job; (running job, its run folder, its card) once it serves."""
    env = {"START_RAY_LOG_DIR": log_dir} if log_dir else None
    running = jobs.start(np, ["--serve", "--num-cpus", "1", *args], env=env)
    root = log_dir or running.log_root
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert running.proc.poll() is None, running.proc.communicate()
        for name in (os.listdir(root) if os.path.isdir(root) else []):
            path = os.path.join(root, name, "cluster.json")
            if os.path.exists(path):
                with open(path) as handle:
                    card = json.load(handle)
                if card["state"] == "serving":
                    return running, os.path.join(root, name), card
        time.sleep(0.2)
    raise AssertionError("the job never served")


SITE_PACKAGES = sysconfig.get_paths()["purelib"]
# Another local user: `nobody`, through the system's Python of the same minor
# version (the venv's own Python may sit in a folder only its owner can enter,
# as under /root here) with the venv's packages on PYTHONPATH.
OTHER_PYTHON = "/usr/bin/python3"


def other_user_python():
    """The command prefix that runs Python as `nobody`, or skip (or fail)."""
    if os.getuid() != 0 or shutil.which("runuser") is None:
        skip_or_fail("other-user", "needs root and runuser to act as a second user")
    version = subprocess.run(["runuser", "-u", "nobody", "--", OTHER_PYTHON, "-c",
                              "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=60).stdout.strip()
    if version != str(sys.version_info[:2]):
        skip_or_fail("other-user", f"{OTHER_PYTHON} as nobody gives {version or 'nothing'}, "
                     f"not Python {sys.version_info[:2]}")
    return ["runuser", "-u", "nobody", "--", OTHER_PYTHON]


def start_ray(*args, user=None, timeout=180, env=None):
    """`python -m start_ray ARGS` (attach, stop) as a user would run it;
    `user="nobody"`: as another local user."""
    cmd = [*(other_user_python() if user else [PYTHON]), "-m", "start_ray", *args]
    full = {key: value for key, value in os.environ.items()
            if not key.startswith(("RAY_", "START_RAY_"))}
    full.update({"PYTHONPATH": ROOT + (os.pathsep + SITE_PACKAGES if user else ""),
                 "PYTHONUNBUFFERED": "1", **(env or {})})
    if user:
        full["HOME"] = "/nonexistent"
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full)


def owner_only(path):
    return stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One serving job (2 nodes, the dashboard) for the tests that only use
    it, in a log folder open to all (0755) as a shared file system is; the
    last test stops it (and if it did not, the job is killed here)."""
    shared = tempfile.mkdtemp(prefix="srshared-", dir="/tmp")
    os.chmod(shared, 0o755)
    runner = Jobs(str(tmp_path_factory.mktemp("served")))
    try:
        yield serve(runner, 2, "--dashboard", log_dir=shared)
    finally:
        runner.cleanup()
        shutil.rmtree(shared, ignore_errors=True)


@needs_dashboard
def test_programs_ray_tools_and_a_notebook_attach(served, tmp_path):
    _, run_dir, card = served
    assert card["nodes"] == 2 and card["dashboard_url"].startswith("http://127.0.0.1:")
    assert owner_only(card["token_file"]) and owner_only(os.path.join(run_dir, "cluster.json"))
    # Two programs attached at once, each reaching every node.
    attached = [subprocess.Popen([PYTHON, "-m", "start_ray", "attach", run_dir, "--",
                                  PYTHON, "-c", TASKS], stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONPATH": ROOT})
                for _ in range(2)]
    for proc in attached:
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0 and "ATTACHED 2 1" in out, out
    # Ray's own tools, through attach: the newest serving run by default.
    status = start_ray("attach", "--log-dir", os.path.dirname(run_dir), "--", "ray", "status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.count("node_") >= 2, status.stdout
    listed = start_ray("attach", run_dir, "--", "ray", "list", "nodes", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert [node["state"] for node in json.loads(listed.stdout)] == ["ALIVE", "ALIVE"]
    submitted = start_ray("attach", run_dir, "--", "ray", "job", "submit", "--", PYTHON,
                          "-c", "print('JOB SAYS', 6 * 7)")
    assert submitted.returncode == 0 and "JOB SAYS 42" in submitted.stdout, submitted.stdout
    assert start_ray("attach", run_dir, "--", "sh", "-c", "exit 7").returncode == 7
    # A notebook, executed through attach: its kernel's ray.init() reaches the cluster.
    notebook = tmp_path / "cluster.ipynb"
    notebook.write_text(json.dumps({
        "cells": [{"cell_type": "code", "metadata": {}, "execution_count": None,
                   "outputs": [], "source": TASKS}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}))
    executed = start_ray("attach", run_dir, "--", "jupyter", "execute", "--inplace",
                         str(notebook), timeout=300)
    assert executed.returncode == 0, executed.stderr
    outputs = json.loads(notebook.read_text())["cells"][0]["outputs"]
    printed = "".join("".join(o["text"]) if isinstance(o.get("text"), list)
                      else o.get("text", "") for o in outputs)
    assert "ATTACHED 2 1" in printed, outputs


@needs_dashboard
def test_another_user_can_neither_attach_nor_reach_the_dashboard(served):
    """The run folder is open to all (0755 up to it); the card and the token
    are not. A second uid gets one clear line, and a connection without the
    token is refused by the GCS and by the dashboard."""
    other = other_user_python()
    _, run_dir, card = served
    mine = start_ray("attach", run_dir, "--", "true")
    assert mine.returncode == 0, mine.stderr
    theirs = start_ray("attach", run_dir, "--", "ray", "status", user="nobody")
    assert theirs.returncode == 1, theirs.stdout + theirs.stderr
    assert "cannot read" in theirs.stderr and "belongs to another user" in theirs.stderr
    assert "Traceback" not in theirs.stderr
    direct = start_ray("attach", "--log-dir", os.path.dirname(run_dir), user="nobody")
    assert direct.returncode == 1, "the card itself is unreadable to others"
    # Without start_ray's help: the address alone (visible to all in ps) is refused.
    outsider = subprocess.run([*other, "-c", (
        "import sys, ray\ntry:\n    ray.init(sys.argv[1], log_to_driver=False)\n"
        "    print('CONNECTED', len(ray.nodes()))\nexcept Exception as err:\n"
        "    print('REFUSED', type(err).__name__)\n"), card["address"]],
        capture_output=True, text=True, timeout=180,
        env={"PATH": os.environ["PATH"], "HOME": "/nonexistent", "PYTHONPATH": SITE_PACKAGES})
    assert "REFUSED" in outsider.stdout and "CONNECTED" not in outsider.stdout, \
        outsider.stdout + outsider.stderr[-2000:]
    # The dashboard answers 401 to a request without the token.
    probe = subprocess.run([PYTHON, "-c", (
        "import sys, urllib.request, urllib.error\n"
        "try:\n    urllib.request.urlopen(sys.argv[1] + '/nodes?view=summary', timeout=30)\n"
        "    print('OPEN')\nexcept urllib.error.HTTPError as err:\n"
        "    print('HTTP', err.code)\n"), card["dashboard_url"]],
        capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "HTTP 401", probe.stdout + probe.stderr


LOGIN = """
import re, sys, time
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.chrome.service import Service

url, token = sys.argv[1], sys.argv[2]
options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
    options.add_argument(flag)
browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    browser.get(url)
    deadline = time.monotonic() + 60
    while not browser.find_elements(By.CSS_SELECTOR, "input[type=password]"):
        assert time.monotonic() < deadline, "no token field: " + browser.page_source[:500]
        time.sleep(0.5)
    field = browser.find_element(By.CSS_SELECTOR, "input[type=password]")
    field.send_keys(token)
    field.submit() if not browser.find_elements(By.XPATH, "//button") else \\
        browser.find_elements(By.XPATH, "//button")[-1].click()
    time.sleep(3)
    browser.get(url + "/#/cluster")
    statistic, rows, text = "0", 0, ""  # "ALIVE x N" in Node Statistics; an ALIVE cell a node
    deadline = time.monotonic() + (60 if token != "not-the-token" else 15)
    while time.monotonic() < deadline:
        text = browser.find_element(By.TAG_NAME, "body").text
        found = re.search(r"ALIVE\\s*x\\s*(\\d+)", text)
        rows = len([cell for cell in browser.find_elements(By.TAG_NAME, "td")
                    if cell.text.strip() == "ALIVE"])
        if found and rows:
            statistic = found.group(1)
            break
        time.sleep(1)
    print("ALIVE", statistic, rows, flush=True)
finally:
    browser.quit()
"""


@needs_dashboard
def test_a_person_logs_into_the_dashboard_with_the_cards_token(served):
    for tool in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not os.path.exists(tool):
            skip_or_fail("browser", f"{tool} missing: apt-get install chromium chromium-driver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        skip_or_fail("browser", "selenium missing: pip install -e '.[test]'")
    _, _, card = served
    with open(card["token_file"]) as handle:
        token = handle.read().strip()
    seen = {}
    for name, given in (("right", token), ("wrong", "not-the-token")):
        login = subprocess.run([PYTHON, "-c", LOGIN, card["dashboard_url"], given],
                               capture_output=True, text=True, timeout=240)
        assert login.returncode == 0, login.stdout + login.stderr[-3000:]
        seen[name] = login.stdout.split()[-2:]
    assert seen == {"right": ["2", "2"], "wrong": ["0", "0"]}, seen


@needs_dashboard
def test_stop_from_another_shell_by_its_run_folder_ends_the_served_cluster(served):
    """Last of the tests on `served`: only the run folder is needed."""
    running, run_dir, card = served
    stopped = start_ray("stop", run_dir)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped (exit status 0)" in stopped.stdout
    result = running.wait(60)
    assert result.returncode == 0, result.output
    with open(os.path.join(run_dir, "cluster.json")) as handle:
        assert json.load(handle)["state"] == "stopped"
    assert not os.path.exists(card["token_file"]), "the token goes with the cluster"
    refused = start_ray("attach", run_dir, "--", "ray", "status")
    assert refused.returncode == 1 and "is not serving" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert_nothing_left(result)


@pytest.mark.parametrize("ending,status", [
    ("SIGTERM", 128 + signal.SIGTERM), ("walltime", 0), ("timeout", 0)])
def test_a_serving_job_ends_cleanly(jobs, ending, status):
    args = ["--serve-timeout", "5"] if ending == "timeout" else []
    running, run_dir, _ = serve(jobs, 2, *args)
    if ending == "SIGTERM":  # as scancel: every task gets it
        for rank in rank_processes(running).values():
            rank.send_signal(signal.SIGTERM)
    elif ending == "walltime":  # mpirun passes it on to every rank
        running.proc.send_signal(signal.SIGUSR1)
    result = running.wait(90)
    assert result.returncode == status, result.output
    record = result.run_record()
    assert record["status"] == status
    with open(os.path.join(run_dir, "cluster.json")) as handle:
        assert json.load(handle)["state"] == "stopped"
    assert_nothing_left(result)


def test_serve_needs_no_driver_but_something_to_do(jobs):
    result = jobs.run(2, ["--num-cpus", "1"], timeout=60)
    assert result.returncode == 2
    assert "give a DRIVER to run, or --serve" in result.stderr
    assert_nothing_left(result)


def test_attach_with_nothing_serving_says_so_in_one_line(tmp_path):
    out = start_ray("attach", "--log-dir", str(tmp_path), "--", "true")
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "no run under" in out.stderr


def test_the_dashboard_needs_ray_default_or_is_refused_up_front(jobs):
    """In the MPICH venv, which has no ray[default]."""
    MPICH.skip_unless_here()
    if MPICH.has("aiohttp"):
        skip_or_fail("mpich-without-dashboard", "the MPICH venv has ray[default]")
    result = jobs.start(None, ["--dashboard", "--serve"], mpi=MPICH).wait(60)
    assert result.returncode == 2, result.output
    assert "--dashboard needs Ray's dashboard" in result.stderr
    assert_nothing_left(result)

