"""start_ray inside real containers on this machine, with Debian's runtimes:

- our own image: containers/Containerfile built with podman on a Debian 12
  base made locally (tests/local_images.py; no registry is reachable here),
  a 2-rank job with the image's own MPICH in it under podman, and the same
  image converted for Charliecloud (`ch-convert -i podman`) running the
  same job under ch-run (and, in test_slurm.py, under a real Slurm through
  jobs/slurm_container.sbatch);
- podman (runc): the whole job in one container with podman's default 64 MB
  /dev/shm, MPI from the host's venv bound in (mpirun inside); the driver
  puts an object larger than that /dev/shm and reads it on every node;
- Charliecloud (ch-run): jobs/slurm_container.sbatch with srun's stand-in
  (Open MPI's mpirun, as in test_job_scripts.py) starting one ch-run per
  task, MPI from the host.

The bound images are an empty root filesystem with the host's /usr, /lib,
/etc, the Python and the checkout (its venv) bound in, which is how a site
binds a venv into a container too.

podman needs `--runtime runc` and a containers.conf with
`default_ulimits = []` on this machine (crun fails on its hybrid cgroups):
the test writes its own.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import uuid

import pytest
from requirements import skip_or_fail
from test_job_scripts import ARGS, launched, ran_the_users_driver, run_script, site

import local_images
from jobs import PYTHON, ROOT, assert_nothing_left

BIG_OBJECT = os.path.join(ROOT, "tests", "drivers", "big_object.py")
IMAGE = "localhost/start-ray-test:bound"
SHM_MB = 64
__all__ = ["site"]  # a fixture, used below


def host_binds():
    """What the bound image needs from the host: the system, the Python the
    venv was made from, and the checkout (with its venv)."""
    prefix = os.path.realpath(sys.base_prefix)
    binds = ["/usr", "/lib", "/lib64", "/bin", "/etc"]
    if not any(prefix == b or prefix.startswith(b + "/") for b in binds):
        binds.append(prefix)
    return [b for b in binds if os.path.exists(b)], ROOT


def run(cmd, env=None, timeout=120, **kwargs):
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                          **kwargs)


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    """podman with runc and this machine's containers.conf, and the bound image."""
    if not shutil.which("podman") or not shutil.which("runc"):
        skip_or_fail("podman", "podman or runc is not installed (Debian: podman runc)")
    folder = tmp_path_factory.mktemp("podman")
    conf = folder / "containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n")
    env = dict(os.environ, CONTAINERS_CONF=str(conf))
    empty = folder / "empty.tar"
    done = run(["tar", "-cf", str(empty), "--files-from", "/dev/null"])
    assert done.returncode == 0, done.stderr
    done = run(["podman", "import", str(empty), IMAGE], env=env)
    if done.returncode != 0:
        skip_or_fail("podman", f"podman import failed: {done.stderr.strip()}")
    yield env
    run(["podman", "rmi", "-f", IMAGE], env=env)


@pytest.fixture(scope="module")
def our_image(podman):
    """containers/Containerfile, built from a clean copy of HEAD."""
    why = local_images.unavailable()
    if why:
        skip_or_fail("podman", why)
    try:
        return local_images.built(podman)
    except (RuntimeError, subprocess.SubprocessError) as err:
        pytest.fail(f"the project's recipe did not build: {err}")


# The same job in each runtime: the image's MPICH (Hydra), two ranks, a Ray
# node each, the example driver installed in the image.
IN_THE_IMAGE = ('mpiexec -n 2 python -m start_ray --node-per-rank --num-cpus 1 '
                '"$(python -m start_ray.jobs example cluster_info)"')


def ran_in_our_image(result):
    assert result.returncode == 0, result.output
    found = re.search(r"^CLUSTER_INFO (.*)$", result.stdout, re.M)
    assert found, result.output
    assert json.loads(found.group(1))["alive_nodes"] == 2
    assert re.search(r"started by Hydra mpiexec \(MPICH 4[\d.]+\)", result.stdout), \
        result.stdout  # Debian 12's MPICH, the image's own
    assert "/opt/venv/bin/ray)" in result.stdout, "start_ray and Ray from the image"
    assert "none left" in result.stdout
    assert_nothing_left(result)


def test_our_image_runs_a_two_rank_job_under_podman(jobs, podman, our_image, tmp_path):
    name = f"srt-{uuid.uuid4().hex[:8]}"
    cmd = ["podman", "--runtime", "runc", "run", "--rm", "--name", name, "--network", "host",
           "-e", f"START_RAY_LOG_DIR={tmp_path}/logs", "-v", f"{tmp_path}:{tmp_path}",
           "-w", str(tmp_path), our_image, "bash", "-c", IN_THE_IMAGE]
    try:
        result = jobs.launch(cmd, {"CONTAINERS_CONF": podman["CONTAINERS_CONF"]}).wait(300)
    finally:
        run(["podman", "rm", "-f", name], env=podman)
    ran_in_our_image(result)


@pytest.fixture(scope="module")
def our_charliecloud_image(podman, our_image):
    if not shutil.which("ch-run") or not shutil.which("ch-convert"):
        skip_or_fail("charliecloud", "ch-run or ch-convert is not installed (Debian: "
                                     "charliecloud-runtime, charliecloud-builders)")
    try:
        return local_images.charliecloud(podman)
    except (RuntimeError, subprocess.SubprocessError) as err:
        pytest.fail(f"ch-convert failed: {err}")


def test_our_image_runs_the_same_job_under_charliecloud(jobs, our_charliecloud_image,
                                                        tmp_path):
    """The podman image converted (`ch-convert -i podman`): ch-run, the
    image's environment (--set-env), the host's network and process table."""
    cmd = ["ch-run", "--set-env", "--unset-env=PYTHONPATH", "-b", str(tmp_path),
           "-c", str(tmp_path), our_charliecloud_image, "--", "bash", "-c", IN_THE_IMAGE]
    result = jobs.launch(cmd, {"USER": os.environ.get("USER", "root"),
                               "START_RAY_LOG_DIR": f"{tmp_path}/logs"}).wait(300)
    ran_in_our_image(result)


def test_a_job_in_a_podman_container_with_a_64mb_dev_shm(jobs, podman, tmp_path):
    """podman's default /dev/shm (64 MB, made explicit) cannot hold Ray's
    object store: start_ray puts the store in files under each node's temp
    dir, says so with the fix, and a 100 MiB object goes through it to
    every node."""
    name = f"srt-{uuid.uuid4().hex[:8]}"
    system, checkout = host_binds()
    volumes = [f"{path}:{path}:ro" for path in system]
    volumes += [f"{checkout}:{checkout}", f"{tmp_path}:{tmp_path}"]
    mpirun = os.path.join(os.path.dirname(PYTHON), "mpirun")
    inside = [mpirun, "--oversubscribe", "-np", "2", PYTHON, "-m", "start_ray",
              "--node-per-rank", "--num-cpus", "1", BIG_OBJECT, "--megabytes", "100"]
    cmd = ["podman", "--runtime", "runc", "run", "--rm", "--name", name, "--network", "host",
           f"--shm-size={SHM_MB}m", "--env-host", "-e", "START_RAY_TEMP_DIR=",
           "-e", f"START_RAY_LOG_DIR={tmp_path}/logs", "-w", str(tmp_path),
           *sum((["-v", volume] for volume in volumes), []), IMAGE, *inside]
    try:
        result = jobs.launch(cmd, {"CONTAINERS_CONF": podman["CONTAINERS_CONF"]}).wait(300)
    finally:
        run(["podman", "--runtime", "runc", "rm", "-f", name], env=podman)
    assert result.returncode == 0, result.output
    found = re.search(r"^BIG_OBJECT (.*)$", result.stdout, re.M)
    assert found, result.output
    seen = json.loads(found.group(1))
    assert seen["shm_bytes"] == SHM_MB * 2**20, "the container's /dev/shm is podman's 64 MB"
    assert seen["bytes"] > seen["shm_bytes"] and seen["right"] and seen["sums_equal"], seen
    assert seen["nodes"] == 2
    assert all(store > seen["shm_bytes"] for store in seen["store_bytes"]), seen
    assert "/dev/shm is too small for the object store" in result.stdout
    assert "podman or docker --shm-size=16g" in result.stdout
    log = result.rank0_log
    assert "in files under the node's temp dir" in log, log[-3000:]
    assert_nothing_left(result)


@pytest.fixture
def charliecloud_image(tmp_path, site):
    """An empty image directory for ch-run with mount points for the binds."""
    if not shutil.which("ch-run"):
        skip_or_fail("charliecloud", "ch-run is not installed (Debian: charliecloud)")
    image = tmp_path / "image"
    system, checkout = host_binds()
    for path in ["/dev", "/proc", "/sys", "/tmp", "/home", "/root", "/run", "/var/tmp",
                 *system, checkout, site["submit"]]:
        os.makedirs(str(image) + path, exist_ok=True)
    for name in ("passwd", "group", "hosts", "resolv.conf", "machine-id"):
        (image / "etc" / name).touch()
    binds = " ".join(f"-b {path}" for path in [*system, checkout])
    return str(image), binds


def test_container_script_under_charliecloud(jobs, site, charliecloud_image):
    """jobs/slurm_container.sbatch with CONTAINER=charliecloud: the srun
    stand-in (Open MPI) starts one real ch-run per task, MPI from the host,
    start_ray and the user's driver inside, the submit folder bound."""
    image, binds = charliecloud_image
    path = os.path.dirname(site["python"]) + os.pathsep + os.environ["PATH"]
    result, seen = run_script(jobs, site, "slurm_container.sbatch", {
        "SLURM_JOB_ID": "9595", "SLURM_NTASKS": "2", "CONTAINER": "charliecloud",
        "IMAGE": image, "CONTAINER_OPTIONS": binds, "PATH": path, "SRUN_MPI": "--mpi=pmix",
        "USER": os.environ.get("USER", "root")})
    ran_the_users_driver(site, seen)
    assert re.search(rf"srun --mpi=pmix --kill-on-bad-exit=1 ch-run --join "
                     rf"-b {site['submit']} "
                     rf"-c {site['submit']} {re.escape(binds)} {image} -- python -m start_ray "
                     rf"my_driver.py {ARGS}$", launched(site), re.M), launched(site)
    assert "in Slurm job 9595" in result.stdout
