import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import leftovers  # noqa: E402

from jobs import Jobs  # noqa: E402

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


def skip_or_fail(name: str, why: str) -> None:
    """Skip a test that needs something this machine lacks, unless CI said
    it must run here (START_RAY_TESTS_REQUIRE=netns,slurm): then fail."""
    required = os.environ.get("START_RAY_TESTS_REQUIRE", "").split(",")
    if name in required:
        pytest.fail(f"{name} is required here (START_RAY_TESTS_REQUIRE) but: {why}")
    pytest.skip(f"{name}: {why}")
