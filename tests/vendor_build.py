"""Third-party programs that no package registry here carries (flux-core,
OpenPBS), built from their source tarballs beside the checkout
(`../shared/vendor/`) once per machine, into a cache keyed by the tarball's
checksum: another tarball, another build. A prefix without the BUILT file
is a build that broke off, and is built again.

tests/local_flux.py and tests/local_pbs.py each describe one such program
(a `Vendored`); this module finds, builds and caches it.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Callable, Dict, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENDOR = os.path.join(os.path.dirname(ROOT), "shared", "vendor")
BUILT = ".start_ray-built"  # written last: a prefix without it is a broken build


@dataclasses.dataclass(frozen=True)
class Vendored:
    """One program built from a vendored tarball `<name>-<version>.tar.gz`."""

    name: str                      # the tarball's stem before the version: flux-core
    module: str                    # the tests' module that builds it: local_flux
    tarball_variable: str          # a tarball elsewhere: START_RAY_FLUX_TARBALL
    packages: Sequence[str]        # Debian's build dependencies, for the messages
    tools: Sequence[str]           # what the build needs on PATH
    script: Callable[[str, str], str]  # (prefix, version) -> the shell build script
    env: Callable[[str], Dict[str, str]] = lambda version: {}
    after: Callable[[str], None] = lambda prefix: None  # after `make install`
    minutes: int = 7
    timeout: float = 40 * 60
    # Other users run it too (a PBS job's user runs qsub): as root, the
    # build goes to /var/cache/start_ray rather than into /root.
    shared: bool = False

    def tarball(self) -> Optional[str]:
        """The source: the variable's file, else the newest in ../shared/vendor/."""
        given = os.environ.get(self.tarball_variable)
        if given:
            return given if os.path.exists(given) else None
        found = sorted(glob.glob(os.path.join(VENDOR, f"{self.name}-*.tar.gz")))
        return found[-1] if found else None

    def version(self, path: str) -> str:
        return os.path.basename(path)[len(self.name) + 1:-len(".tar.gz")]

    def prefix(self, source: str) -> str:
        """Where this tarball's build is installed (its checksum in the name)."""
        return os.path.join(cache_root(self.shared),
                            f"{self.name}-{self.version(source)}-{digest(source)}")

    def installed(self) -> Optional[str]:
        """The prefix of a finished build, or None."""
        source = self.tarball()
        if source is None:
            return None
        target = self.prefix(source)
        return target if os.path.exists(os.path.join(target, BUILT)) else None

    def unavailable(self) -> Optional[str]:
        """Why this program cannot run here, or None."""
        source = self.tarball()
        if source is None:
            return (f"no {self.name} source tarball (looked in {VENDOR}; or set "
                    f"{self.tarball_variable})")
        if self.installed() is None:
            return (f"{self.name} is not built: `python tests/{self.module}.py build` builds "
                    f"it into {self.prefix(source)} (about {self.minutes} minutes; needs: "
                    f"apt-get install {' '.join(self.packages)})")
        return None

    def build(self, log=sys.stderr) -> str:
        """Build and install into the cache prefix unless it is there; the
        prefix. Raises RuntimeError with the build's last lines."""
        source = self.tarball()
        if source is None:
            raise RuntimeError(self.unavailable() or "no tarball")
        target = self.prefix(source)
        if os.path.exists(os.path.join(target, BUILT)):
            return target
        missing = [tool for tool in self.tools if shutil.which(tool) is None]
        if missing:
            raise RuntimeError(f"cannot build {self.name}: {', '.join(missing)} missing "
                               f"(apt-get install {' '.join(self.packages)})")
        shutil.rmtree(target, ignore_errors=True)  # a build that broke off
        version = self.version(source)
        with tempfile.TemporaryDirectory(prefix=f"{self.name}-build-") as work:
            subprocess.run(["tar", "-C", work, "-xzf", source], check=True, timeout=300)
            (tree,) = glob.glob(os.path.join(work, f"{self.name}-*"))
            print(f"building {self.name} {version} into {target} (several minutes)",
                  file=log, flush=True)
            done = subprocess.run(["bash", "-c", self.script(target, version)], cwd=tree,
                                  env={**os.environ, **self.env(version)}, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=self.timeout)
            if done.returncode != 0:
                raise RuntimeError(f"{self.name} build failed:\n" + done.stdout[-4000:])
        self.after(target)
        with open(os.path.join(target, BUILT), "w") as handle:
            handle.write(source + "\n")
        return target

    def main(self, argv: Sequence[str], doc: str) -> None:
        """`build` (if missing; prints the prefix) or `where` (the prefix, or why none)."""
        verb = argv[1] if len(argv) > 1 else "where"
        if verb == "build":
            try:
                print(self.build())
            except (RuntimeError, subprocess.SubprocessError) as err:
                print(err, file=sys.stderr)
                sys.exit(1)
        elif verb == "where":
            why = self.unavailable()
            print(why or self.installed())
            sys.exit(1 if why else 0)
        else:
            sys.exit(doc)


def digest(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def cache_root(shared: bool = False) -> str:
    """~/.cache/start_ray (XDG_CACHE_HOME); as root, for what other users
    run too, /var/cache/start_ray."""
    if shared and os.geteuid() == 0:
        return "/var/cache/start_ray"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "start_ray")
