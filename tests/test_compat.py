"""start_ray on the Ray and the MPI that users already have.

The fast tests pin each difference between supported Rays (start_ray/compat.py)
and check it against the Ray this suite runs on; `make compat` runs this file
and the other tests marked every_ray on Ray 2.40 and 2.52 as well.
The job tests run real MPI jobs: ranks on different Rays, MPICH's launcher
variables, and an MPI that does not speak MPICH's PMI.
"""

import importlib.util
import os
import sys

import pytest
from requirements import requires, skip_or_fail

from jobs import DRIVER, MPICH, MPIRUN, PYTHON, assert_nothing_left, other_ray_python
from start_ray.lifecycle.agree import software
from start_ray.mpi import launch_env
from start_ray.node import compat

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "drivers"))
import rl_versions  # noqa: E402

pytestmark = pytest.mark.every_ray  # all of it: `make compat`
INSTALLED = compat.ray_version()


@pytest.fixture(autouse=True)
def keep_environment():
    """Importing Ray or RLlib here sets variables in os.environ (e.g.
    TF_CPP_MIN_LOG_LEVEL), which the later tests' jobs would inherit."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_versions_parse_and_order():
    assert compat.parse("2.52.1") == (2, 52, 1)
    assert compat.parse("2.60.0rc1") == (2, 60, 0)
    assert compat.parse("2.9.3") < compat.parse("2.40.0")
    assert compat.parse("") == ()


@pytest.mark.parametrize("version, expected", [
    ("2.40.0", '{"start_ray.rank": "3"}'),
    ("2.44.1", '{"start_ray.rank": "3"}'),
    ("2.45.0", "start_ray.rank=3"),
    ("2.60.0", "start_ray.rank=3"),
])
def test_labels_are_json_before_2_45_and_pairs_since(version, expected):
    assert compat.label_arg({"start_ray.rank": "3"}, version) == expected


def test_the_installed_ray_reads_the_labels_we_give_it():
    """The installed Ray's own parser, on what start_ray passes it."""
    arg = compat.label_arg({"start_ray.rank": "3"})
    if compat.parse(INSTALLED)[:2] >= compat.LABEL_PAIRS_SINCE:
        from ray._private.label_utils import parse_node_labels_string as parse
        assert parse(arg) == {"start_ray.rank": "3"}
    else:
        import json
        assert json.loads(arg) == {"start_ray.rank": "3"}
        assert importlib.util.find_spec("ray._private.label_utils") is None or \
            not hasattr(importlib.import_module("ray._private.label_utils"),
                        "parse_node_labels_string")


@pytest.mark.parametrize("version, expected", [
    ("2.40.0", ("ROCR_VISIBLE_DEVICES", "ONEAPI_DEVICE_SELECTOR")),
    ("2.45.0", ("HIP_VISIBLE_DEVICES", "ONEAPI_DEVICE_SELECTOR")),
    ("2.57.0", ("HIP_VISIBLE_DEVICES", "ONEAPI_DEVICE_SELECTOR")),
    ("2.58.0", ("HIP_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")),
])
def test_gpu_variables_follow_the_version(version, expected):
    assert compat.gpu_variables(version) == expected


def test_the_installed_ray_reads_the_gpu_variables_we_hand_it():
    """Bisected on the wheels (2.44.1/2.45.0, 2.57.0/2.58.0); checked here
    against the installed Ray's own accelerator managers."""
    from ray._private.accelerators import amd_gpu, intel_gpu
    amd, intel = compat.gpu_variables()
    assert hasattr(amd_gpu, "HIP_VISIBLE_DEVICES_ENV_VAR") == (amd == "HIP_VISIBLE_DEVICES")
    assert hasattr(intel_gpu, "ZE_AFFINITY_MASK_ENV_VAR") == (intel == "ZE_AFFINITY_MASK")
    assert intel_gpu.IntelGPUAcceleratorManager.get_visible_accelerator_ids_env_var() == intel


def test_token_auth_is_found_exactly_where_the_version_says():
    has = compat.parse(INSTALLED)[:2] >= compat.TOKEN_AUTH_SINCE
    assert compat.has_token_auth() == has


def test_reloading_auth_in_a_process_matches_the_installed_ray():
    import ray._raylet as raylet
    compat.reload_auth(raylet)  # must not raise on any supported Ray
    assert hasattr(raylet, "AuthenticationTokenLoader") == compat.has_token_auth()

    class OldRaylet:  # a Ray without token auth: nothing to reload
        pass
    compat.reload_auth(OldRaylet)


def test_the_private_node_table_api_exists_in_the_installed_ray():
    from ray._private import services, state
    assert callable(services._get_gcs_client_options)
    assert callable(state.GlobalState()._initialize_global_state)
    assert callable(state.GlobalState.node_table)


def test_the_driver_prefers_the_head_exactly_where_the_version_says():
    """ray.init() on a host with several Ray nodes: the head's since 2.54."""
    import inspect

    from ray._private import services
    source = inspect.getsource(services.get_node_to_connect_for_driver)
    assert compat.driver_prefers_head() == ("prioritize the head node" in source)
    assert not compat.driver_prefers_head("2.53.0") and compat.driver_prefers_head("2.54.0")


def test_supported_range_and_what_is_said_outside_it():
    assert compat.support_problem("2.40.0") is None
    assert compat.support_problem("2.60.0") is None
    assert compat.support_problem(INSTALLED) is None, "this suite runs on a supported Ray"
    old = compat.support_problem("2.39.0")
    assert old and "Ray 2.39.0 is older" in old and "2.40 to 2.60" in old
    assert "no Ray" in compat.support_problem(None)
    assert compat.untested("2.61.0") and not compat.untested("2.60.3")


def test_train_ppo_names_the_versions_it_runs_on():
    assert rl_versions.problem("torch", "2.40.0") is None
    assert rl_versions.problem("tf2", "2.60.0") is None
    assert rl_versions.problem("torch", INSTALLED) is None
    message = rl_versions.problem("tf2", "2.39.1")
    assert message and "2.40 to 2.60" in message and "2.39.1" in message
    assert rl_versions.callback_base().__name__ in ("RLlibCallback", "DefaultCallbacks")
    assert rl_versions.checkpoint_config()(num_to_keep=2).num_to_keep == 2


def test_differing_software_is_one_message_naming_ranks_hosts_and_what():
    same = software.Software("3.11.2", "2.60.0", "0.1.0", "/v/bin/ray")
    odd = software.Software("3.11.2", "2.52.1", "0.1.0", "/w/bin/ray")
    hosts = ["a", "b", "c", "c"]

    def groups(runs, hosts):  # as the host leaders send them: grouped per host
        ranks = range(len(runs))
        return [group for host in dict.fromkeys(hosts)
                for group in software.host_groups(
                    *zip(*[(r, i, h) for r, i, h in zip(runs, ranks, hosts) if h == host]))]

    assert software.differences(groups([same] * 4, hosts)) is None
    message = software.differences(groups([same, odd, same, same], hosts))
    assert message is not None
    assert "Ray: 2.60.0 on ranks 0,2-3 (a, c); 2.52.1 on rank 1 (b)" in message
    assert "the `ray` command: /v/bin/ray on ranks 0,2-3 (a, c); /w/bin/ray on rank 1 (b)" \
        in message
    assert "Python" not in message.split(":")[1], "what is the same is not named"
    # At scale the line stays a line.
    many = software.differences(groups([same] * 999 + [odd], [f"h{i}" for i in range(1000)]))
    assert many is not None and len(many) < 700


def test_mpich_family_launcher_variables_are_removed():
    env = {"HYDI_CONTROL_FD": "7", "PMI_RANK": "1", "PMI_SIZE": "2", "PMI_FD": "8",
           "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2", "HYDRA_LAUNCHER": "ssh",
           "I_MPI_HYDRA_TOPOLIB": "hwloc", "PALS_RANKID": "1", "PALS_APID": "x",
           "ALPS_APP_PE": "1", "OPAL_PREFIX": "/opt/ompi", "PMI_CONTROL_PORT": "1",
           "I_MPI_FABRICS": "shm:ofi", "SLURM_JOB_ID": "7", "HOME": "/root"}
    clean = launch_env.child_environment({}, env)
    assert clean == {"I_MPI_FABRICS": "shm:ofi", "SLURM_JOB_ID": "7", "HOME": "/root"}


@pytest.mark.parametrize("text, name", [
    ("Open MPI v5.0.11, package: Open MPI Distribution, ident: 5.0.11", "Open MPI 5.0.11"),
    ("MPICH Version:      5.0.2\nMPICH Release date: x", "MPICH 5.0.2"),
    ("Intel(R) MPI Library 2021.13 for Linux* OS\n", "Intel MPI 2021.13"),
    ("MPI VERSION    : CRAY MPICH version 8.1.28.29 (ANL base 3.4a2)", "Cray MPICH 8.1.28.29"),
    ("MVAPICH2 Version      :\t2.3.7", "MVAPICH 2.3.7"),
])
def test_mpi_libraries_are_named_shortly(text, name):
    assert launch_env.library_name(text) == name


# -- real jobs ---------------------------------------------------------------

def test_ranks_on_different_rays_stop_with_one_message(jobs):
    other = other_ray_python()
    if other is None:
        skip_or_fail("other-ray", "no venv with another Ray (make .venv-ray-2.52.1/.installed)")
    start_ray = ["-m", "start_ray", "--num-cpus", "1", DRIVER]
    cmd = [MPIRUN, "--oversubscribe", "-np", "2", PYTHON, *start_ray, ":",
           "-np", "1", other, *start_ray]
    result = jobs.launch(cmd).wait(90)
    assert result.returncode == 2, result.output
    assert result.stderr.count("start_ray: error:") == 1, result.output
    assert f"Ray: {INSTALLED} on ranks 0-1 (" in result.stderr
    assert "on rank 2 (" in result.stderr
    assert "Ray head" not in result.stdout, "nothing started"
    assert result.seconds < 60, "not a join timeout"
    assert_nothing_left(result)


def test_under_mpich_the_driver_and_ray_see_no_launcher_variable(jobs):
    MPICH.skip_unless_here()
    result = jobs.start(2, ["--num-cpus", "1", DRIVER], mpi=MPICH).wait(240)
    assert result.returncode == 0, result.output
    info = result.cluster_info()
    assert info["alive_nodes"] == 2
    assert info["driver_mpi_vars"] == [] and info["worker_mpi_vars"] == []
    assert "started by Hydra mpiexec (MPICH " in result.stdout
    assert_nothing_left(result)


def test_an_mpi_that_does_not_speak_mpichs_pmi_is_refused(jobs):
    """Open MPI's mpi4py under MPICH's mpiexec: each task sees a world of one."""
    MPICH.skip_unless_here()
    cmd = MPICH.command(2, [PYTHON, "-m", "start_ray", "--num-cpus", "1", DRIVER])
    result = jobs.launch(cmd).wait(90)
    assert result.returncode == 2, result.output
    assert result.output.count("Hydra mpiexec started 2 tasks, but MPI sees a world of 1") == 1
    assert "Ray head" not in result.stdout
    assert_nothing_left(result)


@requires("ray-before-2.52", "this Ray has token authentication (make compat runs it on "
          "Ray 2.40.0)" if compat.has_token_auth() else None)
def test_a_ray_without_token_auth_is_refused_unless_no_auth(jobs):
    result = jobs.run(2, ["--num-cpus", "1", DRIVER], env={"START_RAY_NO_AUTH": "0"},
                      timeout=60)
    assert result.returncode == 2, result.output
    assert f"Ray {INSTALLED} has no token authentication" in result.stderr
    assert "or pass --no-auth" in result.stderr
    assert_nothing_left(result)


@pytest.mark.parametrize("version,restarts,ray_command,on,words", [
    ("2.60.0", 3, None, True, "started again in place if it dies, at most 3 time(s)"),
    ("2.57.0", 1, None, True, "at most 1 time(s)"),
    ("2.56.1", 3, None, False, "Ray 2.56.1 has no GCS store; Ray 2.57+ does"),
    ("2.52.1", 3, None, False, "has no GCS store"),
    ("2.60.0", 0, None, False, "(--gcs-restarts 0)"),
    ("2.60.0", 3, ["apptainer", "exec", "ray.sif", "ray"], False, "--ray-command"),
])
def test_the_gcs_comes_back_in_place_on_ray_2_57_and_newer_only(version, restarts, ray_command,
                                                                 on, words):
    from start_ray.lifecycle.agree.gcs_policy import GcsPolicy
    from start_ray.options import Options
    policy = GcsPolicy.of(Options(gcs_restarts=restarts, ray_command=ray_command), version)
    assert policy.in_place is on and words in policy.why
    assert ("a GCS death ends the job" in policy.why) is not on
    assert policy.limit == (restarts if on else 0)


def test_a_gcs_started_again_gets_the_port_it_took_not_port_0():
    from start_ray.node import gcs_server
    command = ["gcs_server", "--log_dir=/tmp/sr-1/0/session_x/logs", "--gcs_server_port=0",
               "--node-ip-address=10.0.0.1"]
    assert gcs_server.fixed_port(command, 41234)[2] == "--gcs_server_port=41234"
    assert gcs_server.belongs_to(command, "/tmp/sr-1/0")
    assert not gcs_server.belongs_to(command, "/tmp/sr-1/1"), "another rank's node"
    assert not gcs_server.belongs_to(["--log_dir=/tmp/sr-1/01/logs"], "/tmp/sr-1/0"), \
        "a prefix of its temp dir is not the node's"
    assert compat.gcs_store_env("/t/gcs_store") == {"RAY_gcs_storage": "rocksdb",
                                                    "RAY_gcs_storage_path": "/t/gcs_store"}
