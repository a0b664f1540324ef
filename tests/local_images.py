"""The project's own container recipe (containers/Containerfile), built for
real with podman on this machine, from a Debian 12 base made locally (no
image registry is reachable here):

1. the base: `debootstrap --variant=minbase bookworm` from Debian's packages
   (about a minute), `podman import`ed as localhost/start-ray-base:bookworm;
2. the image: `podman build -f containers/Containerfile --build-arg
   BASE=localhost/start-ray-base:bookworm --build-arg EXTRAS=`, its context
   a clean copy of the commit (`git archive HEAD`), built every time (podman
   reuses the layers whose inputs did not change: the system packages).
   EXTRAS is empty by default here: start_ray and Ray without the RL stack
   (~4 GB more; `python tests/local_images.py build rl` builds it all).

pip inside the build must trust this machine's CA bundle (it checks TLS
against its own): the bundle and a pip.conf naming it are lent to the build
as read-only volumes, the recipe unchanged. A site with TLS inspection does
the same.

    python tests/local_images.py build [EXTRAS]   # base and image; prints its name
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BASE = "localhost/start-ray-base:bookworm"
IMAGE = "localhost/start-ray:test"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                     "start_ray")
# What a Debian base needs for the recipe: Debian's Python is python3 (the
# recipe makes it `python` for the venv it builds), with venv and headers.
BASE_PACKAGES = "python3,python3-venv,python3-dev,ca-certificates"


def _run(cmd, timeout: float, env: Optional[Dict[str, str]] = None, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          **kwargs)


def podman_env(folder: str) -> Dict[str, str]:
    """podman as it runs here: runc, and a containers.conf without the
    default ulimits (crun fails on this machine's hybrid cgroups)."""
    conf = os.path.join(folder, "containers.conf")
    with open(conf, "w") as handle:
        handle.write("[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = \"runc\"\n")
    return dict(os.environ, CONTAINERS_CONF=conf)


def unavailable() -> Optional[str]:
    """Why the recipe cannot be built here, or None."""
    if os.geteuid() != 0:
        return "building images here needs root (debootstrap, podman import)"
    missing = [tool for tool in ("podman", "runc", "debootstrap", "git")
               if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}")]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install podman runc debootstrap)"
    if _run(["git", "-C", ROOT, "rev-parse", "HEAD"], 30).returncode != 0:
        return "the checkout is not a git repository (the build context is `git archive HEAD`)"
    return None


def _mirror() -> str:
    """The Debian mirror this machine's apt uses."""
    try:
        with open("/etc/apt/sources.list.d/debian.sources") as handle:
            found = re.search(r"^URIs:\s*(\S+)", handle.read(), re.M)
            if found:
                return found.group(1)
    except OSError:
        pass
    return "http://deb.debian.org/debian"


def _exists(image: str, env: Dict[str, str]) -> bool:
    return _run(["podman", "image", "exists", image], 60, env).returncode == 0


def base(env: Dict[str, str], log=sys.stderr) -> str:
    """The Debian 12 base image, made once per machine."""
    if _exists(BASE, env):
        return BASE
    with tempfile.TemporaryDirectory(prefix="sr-base-") as work:
        root = os.path.join(work, "root")
        print(f"debootstrap bookworm for {BASE} (about a minute)", file=log, flush=True)
        done = _run(["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}",
                     "bookworm", root, _mirror()], 900)
        if done.returncode != 0:
            raise RuntimeError("debootstrap failed:\n" + (done.stdout + done.stderr)[-3000:])
        sources = "/etc/apt/sources.list.d/debian.sources"
        if os.path.exists(sources):
            shutil.copy(sources, root + sources)
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        done = _run(["podman", "import", "-", BASE], 600, env, stdin=tar.stdout)
        tar.wait(timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"podman import failed: {done.stderr.strip()}")
    return BASE


def build(env: Dict[str, str], extras: str = "", log=sys.stderr) -> str:
    """containers/Containerfile built from a clean copy of HEAD on the local
    base; the image's name. Raises RuntimeError with the build's last lines."""
    image = IMAGE
    base_image = base(env, log)
    with tempfile.TemporaryDirectory(prefix="sr-image-") as work:
        context = os.path.join(work, "context")
        os.makedirs(context)
        archive = subprocess.Popen(["git", "-C", ROOT, "archive", "HEAD"],
                                   stdout=subprocess.PIPE)
        done = _run(["tar", "-C", context, "-x"], 300, stdin=archive.stdout)
        archive.wait(timeout=300)
        if done.returncode != 0 or archive.returncode != 0:
            raise RuntimeError(f"git archive HEAD failed: {done.stderr.strip()}")
        pip_conf = os.path.join(work, "pip.conf")
        with open(pip_conf, "w") as handle:
            handle.write("[global]\ncert = /etc/ssl/certs/host-ca.crt\n")
        print(f"podman build {image} (a few minutes)", file=log, flush=True)
        done = _run(["podman", "build", "--runtime", "runc", "-f",
                     os.path.join(context, "containers", "Containerfile"),
                     "--build-arg", f"BASE={base_image}", "--build-arg", f"EXTRAS={extras}",
                     "--volume", f"{CA_BUNDLE}:/etc/ssl/certs/host-ca.crt:ro",
                     "--volume", f"{pip_conf}:/etc/pip.conf:ro",
                     "-t", image, context], 1800, env)
        if done.returncode != 0:
            raise RuntimeError("podman build failed:\n" + (done.stdout + done.stderr)[-4000:])
    return image


@contextlib.contextmanager
def _locked():
    """One build at a time on this machine (test files on two xdist
    workers may both want the image)."""
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, "images.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def image_id(image: str, env: Dict[str, str]) -> str:
    done = _run(["podman", "image", "inspect", "--format", "{{.Id}}", image], 60, env)
    if done.returncode != 0:
        raise RuntimeError(f"podman image inspect {image}: {done.stderr.strip()}")
    return done.stdout.strip()[:16]


def built(env: Dict[str, str], log=sys.stderr) -> str:
    """The image, built once per test session and machine state (locked)."""
    with _locked():
        return build(env, log=log)


def charliecloud(env: Dict[str, str], log=sys.stderr) -> str:
    """The same image as a Charliecloud directory image (`ch-convert -i
    podman`), converted once per image id; its path."""
    with _locked():
        image = build(env, log=log)
        target = os.path.join(CACHE, f"ch-{image_id(image, env)}")
        if os.path.exists(os.path.join(target, "ch", "environment")):
            return target
        for old in os.listdir(CACHE):  # earlier images' conversions
            if old.startswith("ch-"):
                shutil.rmtree(os.path.join(CACHE, old), ignore_errors=True)
        print(f"ch-convert {image} -> {target} (about a minute)", file=log, flush=True)
        done = _run(["ch-convert", "-i", "podman", "-o", "dir", image, target], 1200,
                    {**env, "USER": env.get("USER", "root")})
        if done.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            raise RuntimeError("ch-convert failed:\n" + (done.stdout + done.stderr)[-3000:])
        return target


if __name__ == "__main__":
    why = unavailable()
    if why:
        sys.exit(why)
    with tempfile.TemporaryDirectory() as folder:
        try:
            print(build(podman_env(folder), sys.argv[2] if len(sys.argv) > 2 else ""))
        except (RuntimeError, subprocess.SubprocessError) as err:
            sys.exit(str(err))
