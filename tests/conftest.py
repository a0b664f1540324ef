import collections
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import leftovers  # noqa: E402

from jobs import Jobs  # noqa: E402
from requirements import skip_or_fail  # noqa: E402

# Every orphan of what a test starts stays in this process's tree, where the
# tests look for what a job left (leftovers.py): so tests can run beside
# each other (xdist workers, another pytest) without seeing each other's.
leftovers.become_subreaper()


@pytest.fixture
def jobs(tmp_path):
    """Runs start_ray jobs in a scratch folder; kills whatever they leave."""
    runner = Jobs(str(tmp_path))
    yield runner
    runner.cleanup()


def pytest_runtest_setup(item):
    for mark in item.iter_markers("requires"):
        if mark.kwargs["missing"]:
            skip_or_fail(mark.kwargs["name"], mark.kwargs["missing"])


def pytest_terminal_summary(terminalreporter):
    """Every skip this run met, by reason, with its count: CI prints it at the
    end, so a green run shows what it did not run."""
    reasons = collections.Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.replace("Skipped: ", "")] += 1
    if not reasons:
        return
    lines = [f"{count:4d} x {reason}" for reason, count in reasons.most_common()]
    terminalreporter.write_sep("-", f"skips met: {sum(reasons.values())}")
    for line in lines:
        terminalreporter.write_line(line)
    log = os.environ.get("START_RAY_SKIP_LOG")
    if log:  # one line per skip: .ci/run counts them over all its runs
        with open(log, "a") as handle:
            handle.write("".join(f"{reason}\n" * count for reason, count in reasons.items()))
