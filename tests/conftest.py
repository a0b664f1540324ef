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
