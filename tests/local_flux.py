"""A real Flux on this machine, for the tests of jobs/flux_batch.sh: flux-core
built from the source tarball beside the checkout (`../shared/vendor/`), once
per machine, into a cache keyed by the tarball's checksum (vendor_build.py);
then `flux start --test-size=N` is a real instance of N brokers on this host.

    python tests/local_flux.py build    # build if missing; prints the prefix
    python tests/local_flux.py where    # the prefix, or why there is none

No package registry carries flux-core (not Debian 12; PyPI's `flux-core` is
another project), so this builds it with Debian's build dependencies
(BUILD_PACKAGES, from flux-core's scripts/install-deps-deb.sh).
"""

from __future__ import annotations

import os
import sys
from typing import Optional

from vendor_build import Vendored

BUILD_PACKAGES = ("autoconf automake libtool make pkg-config gcc g++ libc6-dev libzmq3-dev "
                  "uuid-dev libjansson-dev liblz4-dev libarchive-dev libhwloc-dev "
                  "libsqlite3-dev lua5.1 liblua5.1-dev lua-posix python3-dev python3-cffi "
                  "python3-ply python3-setuptools python3-yaml jq").split()

FLUX = Vendored(
    name="flux-core", module="local_flux", tarball_variable="START_RAY_FLUX_TARBALL", packages=BUILD_PACKAGES,
    tools=("autoconf", "automake", "libtoolize", "make", "cc"),
    # FLUX_VERSION: the tree has no git history to describe
    env=lambda version: {"FLUX_VERSION": version, "PYTHON": "/usr/bin/python3"},
    script=lambda prefix, version: (
        f"./autogen.sh && ./configure --prefix={prefix} --disable-docs "
        f"&& make -j{os.cpu_count() or 2} && make install"))


def flux_binary() -> Optional[str]:
    """The built `flux`, or None when it is not built yet."""
    prefix = FLUX.installed()
    return os.path.join(prefix, "bin", "flux") if prefix else None


def unavailable() -> Optional[str]:
    """Why no real Flux can run here, or None."""
    return FLUX.unavailable()


def build() -> str:
    return FLUX.build()


if __name__ == "__main__":
    FLUX.main(sys.argv, __doc__ or "")
