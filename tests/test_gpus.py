"""GPUs of every vendor on this CPU machine: each rank gets the variable its
scheduler would set (one device per rank, as Slurm's --gpu-bind or Aurora's
per-rank ZE_AFFINITY_MASK do), and, for AMD and Intel, a stand-in for the
vendor's device-query library (tests/gpu_standins) makes Ray take that
vendor's code path. Ray, MPI and the job are real. What is checked: what the
node offers, what start_ray logged, and what each GPU task saw."""

import os

import pytest

from jobs import MPICH, OPENMPI, ROOT, assert_nothing_left

DRIVER = os.path.join(ROOT, "tests", "drivers", "gpus.py")
STANDINS = os.path.join(ROOT, "tests", "gpu_standins")
# Sets the variable named by $0 to this rank's value (GPU_VALUE_<rank>), the
# rank read from the launcher's variable named by $1.
PER_RANK = ('rank=$(eval echo "\\$$1"); export "$0=$(eval echo "\\$GPU_VALUE_$rank")"; '
            'shift; exec "$@"')


def gpu_job(jobs, variable, values, standin=None, extra=None, mpi=OPENMPI):
    """Two ranks on this host (one Ray node) with `variable` set per rank."""
    env = {"START_RAY_NODE_PER_RANK": "0", **(extra or {}),
           **{f"GPU_VALUE_{rank}": value for rank, value in enumerate(values)}}
    if standin:
        env["PYTHONPATH"] = os.path.join(STANDINS, standin) + os.pathsep + ROOT
    cmd = jobs.command(len(values), [DRIVER], mpi=mpi)
    start_ray = cmd.index(mpi.python)
    cmd[start_ray:start_ray] = ["sh", "-c", PER_RANK, variable, mpi.rank_variable]
    result = jobs.launch(cmd, env).wait(240)
    assert result.returncode == 0, result.output
    assert "none left" in result.stdout
    assert_nothing_left(result)
    return result, result.report("GPU_INFO")


@pytest.mark.parametrize("mpi", [OPENMPI, MPICH], ids=["openmpi", "mpich"])
def test_amd_rocr_set_by_the_scheduler_reaches_ray_as_hip(jobs, mpi):
    """Ray refuses ROCR_VISIBLE_DEVICES on an AMD node ("Please use
    HIP_VISIBLE_DEVICES instead"; without start_ray `ray start` fails): the
    node gets its ranks' devices in HIP, and no ROCR."""
    mpi.skip_unless_here()
    result, info = gpu_job(jobs, "ROCR_VISIBLE_DEVICES", ["2", "3"], standin="amd", mpi=mpi)
    assert info["gpus"] == 2
    assert ("GPUs 2 (ROCR_VISIBLE_DEVICES=2 | 3 (AMD)), Ray gets HIP_VISIBLE_DEVICES=2,3, "
            "no ROCR_VISIBLE_DEVICES") in result.rank0_log
    # Ray's AMD path gave each task its own device in HIP: 2 and 3.
    assert [(t["gpu_ids"], t["HIP_VISIBLE_DEVICES"], t["ROCR_VISIBLE_DEVICES"])
            for t in info["tasks"]] == [(["2"], "2", None), (["3"], "3", None)]
    assert info["driver"]["HIP_VISIBLE_DEVICES"] == "2,3"
    assert info["driver"]["ROCR_VISIBLE_DEVICES"] is None


def test_intel_ze_affinity_mask_per_rank_is_the_nodes_union(jobs):
    """Aurora binds each rank to a GPU tile (ZE_AFFINITY_MASK=gpu.tile)."""
    result, info = gpu_job(jobs, "ZE_AFFINITY_MASK", ["0.0", "0.1"], standin="intel")
    assert info["gpus"] == 2
    assert "GPUs 2 (ZE_AFFINITY_MASK=0.0 | 0.1 (Intel)), Ray gets ZE_AFFINITY_MASK=0.0,0.1" \
        in result.rank0_log
    assert [(t["gpu_ids"], t["ZE_AFFINITY_MASK"]) for t in info["tasks"]] == [
        (["0.0"], "0.0"), (["0.1"], "0.1")]


def test_nvidia_cuda_visible_devices_per_rank_is_the_nodes_union(jobs):
    result, info = gpu_job(jobs, "CUDA_VISIBLE_DEVICES", ["1", "3"])
    assert info["gpus"] == 2
    assert "GPUs 2 (CUDA_VISIBLE_DEVICES=1 | 3 (NVIDIA)), Ray gets CUDA_VISIBLE_DEVICES=1,3" \
        in result.rank0_log
    assert [(t["gpu_ids"], t["CUDA_VISIBLE_DEVICES"]) for t in info["tasks"]] == [
        (["1"], "1"), (["3"], "3")]


@pytest.mark.parametrize("standin", ["amd", "intel"])
def test_without_vendor_variables_the_count_is_left_to_ray(jobs, standin):
    """No variables: Ray asks the vendor's library (here the stand-in, 3 GPUs)."""
    result, info = gpu_job(jobs, "UNRELATED", ["x", "y"], standin=standin,
                           extra={"START_RAY_TEST_GPUS": "3"})
    assert "GPUs left to Ray (no scheduler or GPU vendor variables)" in result.rank0_log
    assert info["gpus"] == 3
