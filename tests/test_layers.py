"""The house by layers: what each part of start_ray/ may import, read from
the code (ast), so that the layout stays the architecture.

    entry       the command line, the Python API, serve, attach, batch tools
    lifecycle   the job's phases and loop; agree/, head/ (rank 0), worker/
    batch       schedulers, job steps, chains
    node        one Ray node
    procs       the processes a rank owns
    host        one host: placement, resources, network, temp dirs
    record      logs, events, summary, Ray's logs, the card
    mpi         the channel, its messages, the launcher's environment
    foundation  errors, options, identity, polling (and the version)

A module imports only from its own layer or those below it: the low layers
(mpi, record, host, procs, node) never import lifecycle or entry, so they
are given a run folder, an identity or a NodePlan, never the Agreement.
No import circle between modules, counting the imports made for type
checking and those inside functions.
"""

import ast
import os
from typing import Dict, List, Set

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "start_ray")

pytestmark = pytest.mark.fast

# Lowest first. A module's layer is its subpackage; top-level modules are
# named here (the entry points of `python -m start_ray` and
# `python -m start_ray.jobs` belong to the entry layer).
LAYERS = ["foundation", "mpi", "record", "host", "procs", "node", "batch", "lifecycle",
          "entry"]
TOP_LEVEL = {"start_ray": "foundation", "start_ray.errors": "foundation",
             "start_ray.options": "foundation", "start_ray.identity": "foundation",
             "start_ray.polling": "foundation", "start_ray.__main__": "entry",
             "start_ray.jobs": "entry"}
LOW = {"mpi", "record", "host", "procs", "node"}
# The package's own __init__ imports lazily (importlib, by name): it names
# the public API without importing it.


def modules() -> Dict[str, str]:
    """start_ray.x.y -> its file."""
    found = {}
    for folder, _, names in os.walk(PACKAGE):
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = modules()


def layer(module: str) -> str:
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    return module.split(".")[1]


def imports(module: str) -> Set[str]:
    """The start_ray modules `module` imports, anywhere in it."""
    with open(MODULES[module]) as handle:
        tree = ast.parse(handle.read())
    found: Set[str] = set()
    package = module if MODULES[module].endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {module: imports(module) for module in MODULES}


def test_the_package_is_in_layers_by_responsibility():
    top = [m for m in MODULES if m.count(".") == 1 and not os.path.basename(
        MODULES[m]) == "__init__.py"]
    packages = {m.split(".")[1] for m in MODULES if m.count(".") >= 1} - {
        m.split(".")[1] for m in top}
    assert len(packages) >= 4, packages
    assert len(top) <= 15, sorted(top)
    assert packages <= set(LAYERS), f"a subpackage with no layer: {packages - set(LAYERS)}"
    for module in MODULES:
        assert layer(module) in LAYERS, f"{module}: name its layer in LAYERS or TOP_LEVEL"


def test_every_import_runs_down_the_layers():
    wrong = []
    for module, targets in GRAPH.items():
        if module == "start_ray":
            continue
        for target in targets:
            if target == "start_ray":  # the version, from the package itself
                continue
            if LAYERS.index(layer(target)) > LAYERS.index(layer(module)):
                wrong.append(f"{module} ({layer(module)}) imports {target} ({layer(target)})")
    assert not wrong, "\n".join(wrong)


def test_the_low_layers_never_see_the_lifecycle_or_the_agreement():
    for module in MODULES:
        if module == "start_ray" or layer(module) not in LOW:
            continue
        with open(MODULES[module]) as handle:
            text = handle.read()
        assert "Agreement" not in text, f"{module} speaks of the Agreement"
        for target in GRAPH[module]:
            assert layer(target) not in ("lifecycle", "entry"), f"{module} imports {target}"


def test_no_import_circle():
    """Tarjan's strongly connected components over every import found."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    circles: List[List[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in GRAPH[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    # The package's __init__ names everything lazily; it imports none of it.
    assert not [c for c in circles if c != ["start_ray"]], circles


def test_subpackages_import_nothing_when_a_helper_starts():
    """`python -m start_ray.procs.watchdog` imports start_ray and start_ray.procs
    first: their __init__ files are a docstring, nothing else."""
    for module, path in MODULES.items():
        if not path.endswith("__init__.py") or module == "start_ray":
            continue
        with open(path) as handle:
            tree = ast.parse(handle.read())
        assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr), \
            f"{module}/__init__.py holds more than its docstring"


def test_the_checker_sees_an_import_against_the_rules():
    """A rule that cannot fail checks nothing: a low module importing the
    lifecycle, found."""
    bad = "from start_ray.lifecycle.agree.agreement import Agreement\n"
    tree = ast.parse(bad)
    node = tree.body[0]
    assert isinstance(node, ast.ImportFrom)
    target = "start_ray.lifecycle.agree.agreement"
    assert target in MODULES and layer(target) == "lifecycle"
    assert LAYERS.index(layer(target)) > LAYERS.index(layer("start_ray.host.placement"))


# A module longer than this is doing more than one thing (lifecycle/job.py
# grew to 449 lines before its phases and its restarts got homes of their own).
MOST_LINES = 400


def test_no_module_is_longer_than_400_lines():
    """start_ray/'s modules, and the benchmarks' too."""
    benchmarks = os.path.join(ROOT, "benchmarks")
    paths = list(MODULES.values()) + [os.path.join(benchmarks, name)
                                      for name in os.listdir(benchmarks) if name.endswith(".py")]
    long = {os.path.relpath(path, ROOT): lines for path in paths
            if (lines := len(open(path).read().splitlines())) > MOST_LINES}
    assert not long, f"modules over {MOST_LINES} lines: {long}"
