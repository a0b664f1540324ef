"""Who may use a job's cluster: only the processes that hold its token.

A Ray cluster without authentication runs code for anyone who can reach its
ports, as the job's owner; on a shared HPC node that is every other user.
Rank 0 makes a fresh token per job and shares it over MPI (private to the
job); every process the job starts gets it through its environment, never
on a command line (visible to all in `ps`), never in a file or a log.
"""

from __future__ import annotations

import os
import secrets
import sys
from typing import Dict, Optional

from start_ray.errors import UsageError
from start_ray.node import compat

# Every variable through which Ray can be told an auth mode or token. All
# are set or removed explicitly: an inherited one, or ~/.ray/auth_token, must
# not give the head one setting and the workers another.
VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def new_token() -> str:
    return secrets.token_hex(32)


def environment(token: Optional[str]) -> Dict[str, str]:
    """The auth variables for every process of the job (None: auth off)."""
    if token:
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    return {"RAY_AUTH_MODE": "disabled"}


def apply(env: Dict[str, str], token: Optional[str]) -> Dict[str, str]:
    """`env` with the job's auth settings in place of any inherited ones."""
    clean = {key: value for key, value in env.items() if key not in VARIABLES}
    clean.update(environment(token))
    return clean


def check(no_auth: bool) -> None:
    if not no_auth and not compat.has_token_auth():
        raise UsageError(
            f"Ray {compat.ray_version()} has no token authentication, so the cluster "
            "would accept anyone who can reach its ports; install a Ray that has it "
            f"(Ray {compat.show(compat.TOKEN_AUTH_SINCE)} or newer), or pass --no-auth "
            "to run without")


def use_in_this_process(token: Optional[str]) -> None:
    """Make Ray in this process (rank 0's GCS client, an API user's
    ray.init()) authenticate with the job's token.

    Ray reads the auth mode when it is imported and caches the token when it
    first loads it; a program that imported ray before start_ray made the
    token would otherwise keep talking without it. So re-read both.
    """
    for name in VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(environment(token))
    raylet = sys.modules.get("ray._raylet")
    if raylet is not None:
        compat.reload_auth(raylet)
