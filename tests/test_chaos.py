"""Chaos under both MPIs (a representative subset; benchmarks/chaos.py runs
the randomized full matrix): every phase and every victim at least once, and
every case must end within the bound, leave nothing 5 s after the launcher
exits, and leave logs that say what happened; a killed helper or raylet must
be noticed within seconds and cost the job nothing (exit 0)."""

import chaos
import pytest
from requirements import skip_or_fail

from jobs import MPIS

SUBSET = [
    chaos.Case("openmpi", "rank0", "head"),
    chaos.Case("openmpi", "node-rank", "join"),
    chaos.Case("openmpi", "idle-rank", "driver"),
    chaos.Case("openmpi", "launcher", "driver"),
    chaos.Case("openmpi", "node-rank", "teardown"),
    chaos.Case("mpich", "node-rank", "head"),
    chaos.Case("mpich", "rank0", "join"),
    chaos.Case("mpich", "node-rank", "driver"),
    chaos.Case("mpich", "launcher", "teardown"),
    chaos.Case("mpich", "idle-rank", "teardown"),
    chaos.Case("openmpi", "table-helper", "join"),
    chaos.Case("mpich", "table-helper", "driver"),
    chaos.Case("openmpi", "watchdog", "driver"),
    chaos.Case("mpich", "ray-ahead", "start"),
    chaos.Case("openmpi", "raylet", "driver"),
    chaos.Case("mpich", "raylet", "teardown"),
    chaos.Case("openmpi", "head", "join"),
    chaos.Case("mpich", "head", "join"),
    chaos.Case("openmpi", "gcs", "driver"),
    chaos.Case("mpich", "gcs", "join"),
    chaos.Case("mpich", "head-raylet", "driver"),
]


@pytest.mark.parametrize("case", SUBSET, ids=[case.name for case in SUBSET])
def test_chaos_case_ends_bounded_and_clean(jobs, tmp_path, case):
    missing = MPIS[case.mpi].missing()
    if missing:
        skip_or_fail(case.mpi, missing)
    outcome = chaos.run(jobs, case, str(tmp_path))
    assert outcome.ok, outcome.explain()
    if case.victim in chaos.RANK_VICTIMS or case.noticed_by is not None:
        # the launcher too: a case whose SIGTERM found the job over tested nothing
        assert outcome.hit, f"the victim was gone before the strike: {outcome.explain()}"
    if case.victim in ("rank0", "node-rank", "idle-rank"):
        assert "(parent: prterun)" in outcome.struck or \
            "(parent: hydra_pmi_proxy)" in outcome.struck, outcome.struck
