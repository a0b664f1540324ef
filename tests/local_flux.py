"""A real Flux on this machine, for the tests of jobs/flux_batch.sh: flux-core
built from the source tarball beside the checkout (`../shared/vendor/`), once
per machine, into a cache keyed by the tarball's checksum; then
`flux start --test-size=N` is a real instance of N brokers on this host.

    python tests/local_flux.py build    # build if missing; prints the prefix
    python tests/local_flux.py where    # the prefix, or why there is none

No package registry carries flux-core (not Debian 12; PyPI's `flux-core` is
another project), so this builds it with Debian's build dependencies
(BUILD_PACKAGES, from flux-core's scripts/install-deps-deb.sh).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENDOR = os.path.join(os.path.dirname(ROOT), "shared", "vendor")

BUILD_PACKAGES = ("autoconf automake libtool make pkg-config gcc g++ libc6-dev libzmq3-dev "
                  "uuid-dev libjansson-dev liblz4-dev libarchive-dev libhwloc-dev "
                  "libsqlite3-dev lua5.1 liblua5.1-dev lua-posix python3-dev python3-cffi "
                  "python3-ply python3-setuptools python3-yaml jq").split()
BUILD_TIMEOUT = 40 * 60
BUILT = ".start_ray-built"  # written last: a prefix without it is a broken build


def tarball() -> Optional[str]:
    """The flux-core source: START_RAY_FLUX_TARBALL, else the newest in
    ../shared/vendor/."""
    given = os.environ.get("START_RAY_FLUX_TARBALL")
    if given:
        return given if os.path.exists(given) else None
    found = sorted(glob.glob(os.path.join(VENDOR, "flux-core-*.tar.gz")))
    return found[-1] if found else None


def _version(path: str) -> str:
    return os.path.basename(path)[len("flux-core-"):-len(".tar.gz")]


def _digest(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "start_ray")


def prefix(source: str) -> str:
    """Where this tarball's build is installed (its checksum in the name:
    another tarball, another build)."""
    return os.path.join(cache_root(), f"flux-core-{_version(source)}-{_digest(source)}")


def flux_binary() -> Optional[str]:
    """The built `flux`, or None when it is not built yet."""
    source = tarball()
    if source is None:
        return None
    done = os.path.exists(os.path.join(prefix(source), BUILT))
    return os.path.join(prefix(source), "bin", "flux") if done else None


def unavailable() -> Optional[str]:
    """Why no real Flux can run here, or None."""
    source = tarball()
    if source is None:
        return (f"no flux-core source tarball (looked in {VENDOR}; or set "
                "START_RAY_FLUX_TARBALL)")
    if flux_binary() is None:
        return (f"flux-core is not built: `python tests/local_flux.py build` builds it "
                f"into {prefix(source)} (about 7 minutes; needs: "
                f"apt-get install {' '.join(BUILD_PACKAGES)})")
    return None


def build(log=sys.stderr) -> str:
    """Build and install flux-core into its cache prefix unless it is there;
    the prefix. Raises RuntimeError with the build's last lines."""
    source = tarball()
    if source is None:
        raise RuntimeError(unavailable() or "no tarball")
    target = prefix(source)
    if os.path.exists(os.path.join(target, BUILT)):
        return target
    missing = [tool for tool in ("autoconf", "automake", "libtoolize", "make", "cc")
               if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"cannot build flux-core: {', '.join(missing)} missing "
                           f"(apt-get install {' '.join(BUILD_PACKAGES)})")
    shutil.rmtree(target, ignore_errors=True)  # a build that broke off
    with tempfile.TemporaryDirectory(prefix="flux-build-") as work:
        subprocess.run(["tar", "-C", work, "-xzf", source], check=True, timeout=300)
        (tree,) = glob.glob(os.path.join(work, "flux-core-*"))
        env = {**os.environ, "FLUX_VERSION": _version(source), "PYTHON": "/usr/bin/python3"}
        script = (f"./autogen.sh && ./configure --prefix={target} --disable-docs "
                  f"&& make -j{os.cpu_count() or 2} && make install")
        print(f"building flux-core {_version(source)} into {target} (several minutes)",
              file=log, flush=True)
        done = subprocess.run(["bash", "-c", script], cwd=tree, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=BUILD_TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError("flux-core build failed:\n" + done.stdout[-4000:])
    with open(os.path.join(target, BUILT), "w") as handle:
        handle.write(source + "\n")
    return target


if __name__ == "__main__":
    verb = sys.argv[1] if len(sys.argv) > 1 else "where"
    if verb == "build":
        try:
            print(build())
        except (RuntimeError, subprocess.SubprocessError) as err:
            print(err, file=sys.stderr)
            sys.exit(1)
    elif verb == "where":
        why = unavailable()
        print(why or os.path.dirname(os.path.dirname(flux_binary() or "")))
        sys.exit(1 if why else 0)
    else:
        sys.exit(__doc__)
