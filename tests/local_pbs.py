"""A real OpenPBS on this machine, for the tests of the PBS job scripts:
OpenPBS built from the source tarball beside the checkout
(`../shared/vendor/openpbs-<commit>.tar.gz`, the openpbs/openpbs tree that
reports pbs_version 23.06.06), once per machine, into a cache keyed by the
tarball's checksum (vendor_build.py). tests/pbs_complex.py runs it: a
server and a mom per emulated host.

    python tests/local_pbs.py build    # build if missing; prints the prefix
    python tests/local_pbs.py where    # the prefix, or why there is none

No package registry carries OpenPBS (not Debian, not PyPI). Its server keeps
its state in a PostgreSQL of its own (Debian's `postgresql`, started by PBS).
"""

from __future__ import annotations

import os
import sys
from typing import Optional

from vendor_build import Vendored

BUILD_PACKAGES = ("build-essential autoconf automake libtool pkg-config libssl-dev libxt-dev "
                  "libpq-dev libexpat1-dev libedit-dev libncurses5-dev libical-dev "
                  "libhwloc-dev tcl-dev tk-dev python3-dev swig expat postgresql "
                  "postgresql-contrib libcjson-dev").split()
# What the running complex needs besides the build.
RUN_TOOLS = ("ip", "unshare", "runuser")
POSTGRES_BIN = "/usr/lib/postgresql/15/bin"


def _setuid(prefix: str) -> None:
    """A user's qsub/qstat authenticate through pbs_iff, which must be setuid
    root (as the RPM installs it)."""
    for name in ("pbs_iff", "pbs_rcp"):
        path = os.path.join(prefix, "sbin", name)
        if os.path.exists(path):
            os.chmod(path, 0o4755)


PBS = Vendored(
    name="openpbs", module="local_pbs", tarball_variable="START_RAY_PBS_TARBALL",
    packages=BUILD_PACKAGES, tools=("autoconf", "automake", "libtoolize", "make", "cc", "swig"),
    env=lambda version: {"PYTHON": "/usr/bin/python3"},
    # -j2 once; a parallel make that trips on its own ordering finishes serially
    script=lambda prefix, version: (
        f"./autogen.sh && ./configure --prefix={prefix} --with-python=/usr "
        f"&& {{ make -j{os.cpu_count() or 2} || make; }} && make install"),
    after=_setuid, shared=True)


def prefix() -> Optional[str]:
    """PBS_EXEC of the built OpenPBS, or None when it is not built yet."""
    return PBS.installed()


def unavailable() -> Optional[str]:
    """Why no real PBS can run here, or None."""
    why = PBS.unavailable()
    if why:
        return why
    if os.geteuid() != 0:
        return "a PBS complex on emulated hosts needs root"
    if not os.path.isdir(POSTGRES_BIN):
        return f"PostgreSQL 15 is not installed ({POSTGRES_BIN}): apt-get install postgresql"
    return None


if __name__ == "__main__":
    PBS.main(sys.argv, __doc__ or "")
