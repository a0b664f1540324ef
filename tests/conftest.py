import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from jobs import Jobs  # noqa: E402


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
