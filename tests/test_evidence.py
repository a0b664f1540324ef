"""The evidence stays honest: every results file in benchmarks/results/ names
the command that made it (a script that is in the repository), a commit that
exists, the date, the machine and the versions, with its raw output (JSON)
beside it; and no page of the docs cites a results file that is missing.
(benchmarks/evidence.py writes them.)"""

import glob
import json
import os
import re
import shlex
import subprocess

import pytest

from jobs import ROOT

pytestmark = pytest.mark.fast

RESULTS = os.path.join(ROOT, "benchmarks", "results")
REPORTS = sorted(glob.glob(os.path.join(RESULTS, "*.md")))
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
FIELDS = ("command", "commit", "date", "machine", "versions", "raw output")


def git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def header(path):
    with open(path) as handle:
        text = handle.read()
    return dict(re.findall(r"^- (command|commit|date|machine|versions|raw output): (.*)$",
                           text, re.M))


def test_there_is_evidence():
    assert REPORTS, "benchmarks/results/ holds the results the docs quote"


@pytest.mark.parametrize("path", REPORTS, ids=[os.path.basename(p) for p in REPORTS])
def test_a_results_file_says_how_to_make_it_again(path):
    found = header(path)
    missing = [field for field in FIELDS if field not in found]
    assert not missing, f"{os.path.basename(path)} lacks {missing}"
    command = re.fullmatch(r"`([^`]+)`.*", found["command"]).group(1)
    words = shlex.split(command)
    assert words[0] == "python" and os.path.isfile(os.path.join(ROOT, words[1])), command
    make = re.search(r"\(`make ([\w-]+)`\)", found["command"])
    if make:
        with open(os.path.join(ROOT, "Makefile")) as handle:
            assert re.search(rf"^{make.group(1)}:", handle.read(), re.M), make.group(0)
    sha = re.fullmatch(r"`([0-9a-f]{40})`.*", found["commit"]).group(1)
    exists = git("cat-file", "-e", f"{sha}^{{commit}}").returncode == 0
    shallow = git("rev-parse", "--is-shallow-repository").stdout.strip() == "true"
    assert exists or shallow, f"{os.path.basename(path)}: commit {sha} is not in the repository"
    raw = path[:-3] + ".json"
    assert found["raw output"] == f"[{os.path.basename(raw)}]({os.path.basename(raw)})"
    with open(raw) as handle:
        data = json.load(handle)
    assert data["meta"]["commit"]["sha"] == sha and data["meta"]["command"] == command
    assert "raw" in data


def test_the_docs_cite_only_results_that_exist():
    cited = set()
    for page in PAGES:
        with open(page) as handle:
            for name in re.findall(r"benchmarks/results/([\w.-]+\.(?:md|json|png))",
                                   handle.read()):
                cited.add(name)
                assert os.path.isfile(os.path.join(RESULTS, name)), \
                    f"{os.path.relpath(page, ROOT)} cites benchmarks/results/{name}"
    assert cited, "the docs quote the results files"
