"""The Python API (`with start_ray.cluster() as info:`) under real mpirun."""

import json
import os

from jobs import MPIRUN, PYTHON, ROOT, assert_nothing_left

PROGRAM = os.path.join(ROOT, "tests", "drivers", "api_program.py")
EXAMPLE = os.path.join(ROOT, "drivers", "api_example.py")


def outcomes(outdir, np):
    found = {}
    for rank in range(np):
        with open(os.path.join(outdir, f"rank-{rank}.json")) as handle:
            found[rank] = json.load(handle)
    return found


def test_worked_example_runs_the_body_once_on_three_nodes(jobs):
    result = jobs.launch([MPIRUN, "--oversubscribe", "-np", "3", PYTHON, EXAMPLE]).wait(240)
    assert result.returncode == 0, result.output
    bodies = [line for line in result.stdout.splitlines() if line.startswith("API_BODY ")]
    assert len(bodies) == 1, result.output
    body = json.loads(bodies[0][len("API_BODY "):])
    assert body["nodes"] == 3 and body["cpus"] == 3 and body["sum"] == sum(i * i for i in range(12))
    assert "API_AFTER ranks=3" in result.stdout
    assert "none left" in result.stdout
    assert_nothing_left(result)


def test_exception_in_the_body_fails_every_rank(jobs, tmp_path):
    cmd = [MPIRUN, "--oversubscribe", "-np", "3", PYTHON, PROGRAM, str(tmp_path), "--fail"]
    result = jobs.launch(cmd).wait(240)
    assert result.returncode != 0, result.output
    seen = outcomes(tmp_path, 3)
    assert [seen[r]["body_ran"] for r in range(3)] == [True, False, False]
    assert seen[0]["error"] == "RuntimeError"
    assert seen[1]["error"] == seen[2]["error"] == "ClusterError"
    assert all(seen[r]["world_sum"] == 3 for r in range(3)), "every rank got past teardown"
    assert_nothing_left(result)


def test_cluster_on_a_sub_communicator_while_others_use_mpi(jobs, tmp_path):
    cmd = [MPIRUN, "--oversubscribe", "-np", "4", PYTHON, PROGRAM, str(tmp_path), "--split"]
    result = jobs.launch(cmd).wait(240)
    assert result.returncode == 0, result.output
    seen = outcomes(tmp_path, 4)
    assert seen[0]["body_ran"] and seen[0]["nodes"] == 2 and seen[0]["alive"] == 2
    assert not seen[1]["body_ran"]
    assert seen[2]["side_sum"] == seen[3]["side_sum"] == 2 * sum(range(200))
    assert all(seen[r]["world_sum"] == 4 and seen[r]["error"] is None for r in range(4))
    assert "2 rank(s) on 1 host(s)" in result.stdout
    assert_nothing_left(result)
