"""The README and docs/ say what exists, and their examples run as printed.

Every fenced code block says what it is, by its info string:

    sh               runs on a laptop, in the project folder, its venv active:
                     this test runs it (bash -euo pipefail) and wants exit 0
    sh once          installs or builds (run once per machine): its `make`
                     targets and pip extras must exist
    sh ci            CI runs it (.ci/run)
    sh cluster       needs a cluster or a scheduler: not run here
    python mpirun    written to a file, run with `mpirun -np 2 python FILE`
    python cluster   a program for a cluster job: compiled, not run
    text, json       output or data

So are the laptop examples of `python -m start_ray --help`. A command printed
in several places (the README, a page of docs/, --help) runs once. docs/options.md
must be what `make docs` makes of the option table.
"""

import configparser
import os
import re
import subprocess
import sys

import pytest

from jobs import PYTHON, ROOT, assert_nothing_left
from start_ray import __version__, options
from start_ray.entry import cli

BIN = os.path.dirname(PYTHON)
DOCS = ["README.md"] + sorted(os.path.join("docs", name)
                              for name in os.listdir(os.path.join(ROOT, "docs"))
                              if name.endswith(".md"))
KINDS = {"sh", "sh once", "sh ci", "sh cluster", "python mpirun", "python cluster", "text",
         "json"}
RUN_TIMEOUT = 420


def blocks(path):
    """(info string, code) of every fenced block in a markdown file."""
    with open(os.path.join(ROOT, path)) as handle:
        text = handle.read()
    return re.findall(r"^```([^\n`]*)\n(.*?)^```$", text, re.M | re.S)


ALL = [(path, kind.strip(), code) for path in DOCS for kind, code in blocks(path)]
RUNNABLE = [block for block in ALL if block[1] in ("sh", "python mpirun")]


@pytest.mark.fast
def test_every_block_says_what_it_is():
    for path, kind, _ in ALL:
        assert kind in KINDS, f"{path}: a ``` block of kind {kind!r}; known: {sorted(KINDS)}"
    assert len(RUNNABLE) >= 8, "the docs show commands that run"


@pytest.mark.fast
def test_the_option_reference_is_the_option_table():
    from start_ray.entry import reference
    with open(os.path.join(ROOT, "docs", "options.md")) as handle:
        text = handle.read()
    assert text == reference.markdown(), "docs/options.md is stale: make docs"
    assert options.markdown().split("\n", 1)[1] in text.replace("\n### ", "\n## ")


@pytest.mark.fast
def test_the_reference_names_every_command_and_every_option_of_each():
    """Each command's --help, run for real: every option it lists is in
    docs/options.md (a hand-written reference left four out)."""
    with open(os.path.join(ROOT, "docs", "options.md")) as handle:
        text = handle.read()
    for command in (["-m", "start_ray"], ["-m", "start_ray", "attach"],
                    ["-m", "start_ray", "stop"], ["-m", "start_ray.jobs"],
                    ["-m", "start_ray.jobs", "run"], ["-m", "start_ray.jobs", "chain"],
                    ["-m", "start_ray.jobs", "example"]):
        shown = subprocess.run([sys.executable, *command, "--help"], capture_output=True,
                               text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        rows = re.findall(r"^\s+(--[a-z][\w-]+)(?=[ ,]|$)(?:[ A-Z_']*,\s+(--[a-z][\w-]+))?",
                          shown.stdout, re.M)
        flags = {flag for row in rows for flag in row if flag} - {"--help"}
        assert flags or command[-1] in ("example", "start_ray.jobs"), shown.stdout
        missing = sorted(flag for flag in flags if f"`{flag}" not in text and
                         f"start_ray {flag}`" not in text)
        assert not missing, f"{' '.join(command)} --help lists {missing}, options.md does not"
    assert "`start-ray`" in text and "`python -m start_ray --version`" in text


@pytest.mark.fast
def test_the_readme_is_a_first_page_and_the_project_files_exist():
    with open(os.path.join(ROOT, "README.md")) as handle:
        assert len(handle.read().splitlines()) <= 200
    for name in ("LICENSE", "CHANGELOG.md", "CITATION.cff"):
        assert os.path.isfile(os.path.join(ROOT, name)), name
    with open(os.path.join(ROOT, "CITATION.cff")) as handle:
        assert f"version: {__version__}" in handle.read()
    with open(os.path.join(ROOT, "CHANGELOG.md")) as handle:
        assert f"## {__version__} " in handle.read()
    with open(os.path.join(ROOT, "LICENSE")) as handle:
        assert "Apache License" in handle.read()


@pytest.mark.fast
def test_links_between_the_docs_lead_somewhere():
    for path in DOCS:
        with open(os.path.join(ROOT, path)) as handle:
            text = handle.read()
        for target in re.findall(r"\]\(([^)#\s]+)\)", text):
            if target.startswith("http"):
                continue
            where = os.path.normpath(os.path.join(ROOT, os.path.dirname(path), target))
            assert os.path.exists(where), f"{path} links to {target}, which is not there"


@pytest.mark.fast
def test_install_and_ci_blocks_name_what_exists():
    with open(os.path.join(ROOT, "Makefile")) as handle:
        targets = set(re.findall(r"^([\w-]+):", handle.read(), re.M))
    setup = configparser.ConfigParser()
    setup.read(os.path.join(ROOT, "setup.cfg"))
    extras = set(setup["options.extras_require"])
    with open(os.path.join(ROOT, ".ci", "run")) as handle:
        ci = handle.read()
    for path, kind, code in ALL:
        if kind not in ("sh once", "sh ci"):
            continue
        for target in re.findall(r"\bmake ([\w-]+)", code):
            assert target in targets, f"{path}: make {target} is no Makefile target"
            if kind == "sh ci":
                assert f"make {target}" in ci, f"{path}: CI does not run make {target}"
        for group in re.findall(r"\[([\w,]+)\]'", code):
            assert set(group.split(",")) <= extras, f"{path}: extras {group}"


def env_for_docs(tmp_path):
    """A user's shell: the venv active, Open MPI allowed as root, logs aside."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("START_RAY_", "RAY_"))}
    env.update({"PATH": BIN + os.pathsep + env["PATH"], "VIRTUAL_ENV": os.path.dirname(BIN),
                "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                "OMPI_MCA_btl": "^ofi", "PYTHONUNBUFFERED": "1",
                "START_RAY_LOG_DIR": str(tmp_path / "logs"),
                "PYTHONPATH": ROOT})
    return env


def laptop_examples():
    """The commands under --help's 'examples on a laptop'."""
    part = cli.EPILOG.split("examples on a laptop")[1].split("\n\n")[0]
    return [line.strip() for line in part.splitlines()[1:] if line.startswith("  ")]


# A line that shares state with the next (a here-document, a job in the
# background, a loop, a variable, a folder): its block runs as one script.
SHARED_STATE = re.compile(r"<<|&\s*$|\\$|^\s*(cd|export|source|until|while|for|if)\b|^\s*\w+=")


def commands(kind, code):
    """A sh block of independent one-line commands: each line, comments
    dropped (the README and --help print the same command: it runs once);
    otherwise the block as one script."""
    lines = [line.split("  #")[0].strip() for line in code.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if kind == "sh" and not any(SHARED_STATE.search(line) for line in lines):
        return lines
    return [code]


def examples():
    """(kind, script) -> where it is printed: every runnable block or line
    of the docs and --help's laptop examples, each script once."""
    found = {}
    for path, kind, code in RUNNABLE:
        for script in commands(kind, code):
            found.setdefault((kind, script), []).append(path)
    for command in laptop_examples():
        found.setdefault(("sh", command), []).append("--help")
    return found


EXAMPLES = examples()


@pytest.mark.fast
def test_each_example_runs_once_and_every_printed_one_is_among_them():
    assert len(EXAMPLES) < len(RUNNABLE) + len(laptop_examples()), "the same command is shared"
    for command in laptop_examples():
        assert ("sh", command) in EXAMPLES
    assert commands("sh", "a  # x\nb\n") == ["a", "b"]
    assert commands("sh", "a &\nb\n") == ["a &\nb\n"]


@pytest.mark.parametrize("kind,script", list(EXAMPLES),
                         ids=[f"{places[0]}-{i}" for i, places in enumerate(EXAMPLES.values())])
def test_a_printed_example_runs_as_printed(jobs, tmp_path, kind, script):
    if kind == "python mpirun":
        program = tmp_path / "program.py"
        program.write_text(script)
        cmd = ["mpirun", "-np", "2", "python", str(program)]
    else:
        cmd = ["bash", "-euo", "pipefail", "-c", script]
    result = jobs.launch(cmd, {**env_for_docs(tmp_path), "START_RAY_NODE_PER_RANK": ""},
                         cwd=ROOT).wait(RUN_TIMEOUT)
    where = ", ".join(EXAMPLES[(kind, script)])
    assert result.returncode == 0, f"{where}:\n{script}\n{result.output[-6000:]}"
    assert "Traceback" not in result.output
    assert_nothing_left(result)


@pytest.mark.fast
def test_cluster_programs_at_least_compile():
    for path, kind, code in ALL:
        if kind == "python cluster":
            compile(code, path, "exec")


# What a row that says "real" names, and the fixture of its test that runs
# the real thing (tests/local_slurm.py, local_flux.py, pbs_complex.py,
# local_images.py).
REAL_FIXTURES = [(r"Slurm|srun", "slurm"), (r"Flux|flux run", "flux"),
                 (r"PBS|pbs_tmrsh", "pbs"), (r"podman 4", "podman"),
                 (r"Charliecloud", "charliecloud"), (r"Containerfile", "podman")]


def fixtures_of(test_file: str, name: str):
    """The fixtures (arguments) of tests/TEST_FILE::NAME, or None if it is gone."""
    import ast
    with open(os.path.join(ROOT, "tests", test_file)) as handle:
        tree = ast.parse(handle.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return [arg.arg for arg in node.args.args]
    return None


@pytest.mark.fast
def test_every_scheduler_launcher_and_runtime_says_how_it_is_tested():
    """docs/compatibility.md's table: a row for each scheduler, launcher and
    container runtime the docs name, each real / stand-in / recipe, and
    each test it names exists."""
    with open(os.path.join(ROOT, "docs", "compatibility.md")) as handle:
        text = handle.read()
    section = text.split("## Schedulers, launchers and container runtimes", 1)[1]
    rows = [line.split(" | ") for line in section.splitlines()
            if line.startswith("| ") and not line.startswith(("| what", "|---"))]
    assert len(rows) >= 20, rows
    named = " ".join(row[0] for row in rows)
    for thing in ("Slurm", "Flux", "PBS Pro", "Cobalt", "LSF", "Open MPI", "MPICH", "srun",
                  "flux run", "aprun", "PALS", "jsrun", "podman 4.3", "Charliecloud",
                  "Apptainer", "podman-hpc", "pyxis", "Shifter", "Containerfile",
                  "apptainer.def"):
        assert thing in named, f"no row for {thing}"
    for row in rows:
        label = row[1].split(":")[0]
        assert label in ("real", "stand-in", "recipe") or row[1].startswith("built and run"), row
        for test_file, name in re.findall(r"`(test_\w+\.py)::(test_\w+)`", row[2]):
            fixtures = fixtures_of(test_file, name)
            assert fixtures is not None, f"{test_file}::{name} is gone"
            # The label is what the test runs: a stand-in row's test uses the
            # stand-ins (the `site` fixture of test_job_scripts.py); a real
            # row's test none of them, and the real thing's own fixture.
            if label == "stand-in":
                assert "site" in fixtures, (row[0], name, fixtures)
            if label == "real":
                assert "site" not in fixtures, (row[0], name, fixtures)
                needed = [fixture for word, fixture in REAL_FIXTURES
                          if re.search(word, row[0])]
                assert all(any(f.startswith(n) or n in f for f in fixtures) for n in needed), \
                    (row[0], name, fixtures, needed)
        if row[1] == "real":
            assert "::" in row[2] or "make test-mpich" in row[2], row
    with open(os.path.join(ROOT, "README.md")) as handle:
        compat = handle.read().split("## Compatibility", 1)[1].split("##", 1)[0]
    for thing in re.findall(r"(Slurm|Flux|PBS|Cobalt|LSF|Apptainer|podman-hpc|pyxis|Shifter|"
                            r"Charliecloud|podman)", compat):
        assert thing in named, f"the README names {thing}: no row says how it is tested"
