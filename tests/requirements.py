"""What a test needs that a machine may lack (a real Slurm, a second MPI, a
Ray with token auth...), each by a name: a test whose need is missing is
skipped, saying why, unless CI names that need in START_RAY_TESTS_REQUIRE,
where it fails instead. No test skips without such a name (conftest.py
counts every skip at the end of a run)."""

from __future__ import annotations

import os
from typing import Optional

import pytest


def skip_or_fail(name: str, why: str) -> None:
    """Skip a test that needs something this machine lacks, unless CI said
    it must run here (START_RAY_TESTS_REQUIRE=netns,slurm): then fail."""
    required = os.environ.get("START_RAY_TESTS_REQUIRE", "").split(",")
    if name in required:
        pytest.fail(f"{name} is required here (START_RAY_TESTS_REQUIRE) but: {why}")
    pytest.skip(f"{name}: {why}")


def requires(name: str, missing: Optional[str]) -> pytest.MarkDecorator:
    """A test (or, as `pytestmark`, a file) that needs `name`: skipped when
    `missing` says why it is absent here, or failed where CI requires `name`
    (START_RAY_TESTS_REQUIRE). No test skips without such a name."""
    return pytest.mark.requires(name=name, missing=missing)
