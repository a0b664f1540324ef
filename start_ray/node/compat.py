"""Everything that differs between the Rays start_ray supports, in one place.

Users rarely choose their Ray (a project pins it, a site module ships it), so
start_ray runs on a range of about two years, OLDEST to NEWEST. Each difference
below is one function that names the versions it tells apart; every other
module asks here instead of testing versions itself. tests/test_compat.py
has a test per difference; `make compat` runs the lifecycle, security and
fault tests on the oldest supported Ray and on 2.52.

The Ray version is read from the package metadata, not by importing Ray
(a second of CPU on every rank).
"""

from __future__ import annotations

import functools
import glob
import importlib.metadata
import importlib.util
import json
import os
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

Version = Tuple[int, ...]

# The oldest and the newest minor release tested (README: Compatibility).
OLDEST: Version = (2, 40)
NEWEST: Version = (2, 60)
# `ray start --labels k=v`; older Rays read only JSON (2.60 still reads JSON,
# with a deprecation warning), so the form follows the version.
LABEL_PAIRS_SINCE: Version = (2, 45)
# The first Ray with token authentication (found by its module, see below).
TOKEN_AUTH_SINCE: Version = (2, 52)
# A driver on a host with several Ray nodes (--node-per-rank) attaches to the
# head's raylet since 2.54; before, to any of them.
DRIVER_PREFERS_HEAD_SINCE: Version = (2, 54)
# Which variable Ray reads and sets for a node's and a task's GPUs. AMD:
# HIP_VISIBLE_DEVICES since 2.45 (ROCR_VISIBLE_DEVICES before; 2.45-2.51
# refuse ROCR even beside HIP). Intel: ZE_AFFINITY_MASK since 2.58
# (ONEAPI_DEVICE_SELECTOR before, and still read when ZE is unset).
AMD_HIP_SINCE: Version = (2, 45)
INTEL_ZE_SINCE: Version = (2, 58)
# A head started with `--port 0` writes the GCS's port into this file of its
# session dir as soon as the GCS serves (seen in 2.57 to 2.60; 2.52 and older
# pick the port in Python and write no such file): the workers can join from
# then on, ~3 s before `ray start --head` prints the address.
GCS_PORT_FILE = "session_*/gcs_server_port_*"
# The GCS can keep its state in an embedded RocksDB store (alpha, Linux only;
# `RAY_gcs_storage=rocksdb`, `RAY_gcs_storage_path=DIR`) since 2.57: a
# gcs_server started again on the same store and port picks the cluster up
# (ray-project/ray#63657; tried here on 2.60: the driver pauses ~1 s).
GCS_STORE_SINCE: Version = (2, 57)
GCS_STORE_VARIABLES = ("RAY_gcs_storage", "RAY_gcs_storage_path")


def parse(text: str) -> Version:
    """`2.52.1` -> (2, 52, 1); `2.60.0rc1` -> (2, 60, 0); '' -> ()."""
    return tuple(int(part) for part in re.findall(r"^\d+|(?<=\.)\d+", text)[:3])


def show(version: Version) -> str:
    return ".".join(str(part) for part in version)


@functools.lru_cache(maxsize=None)
def ray_version() -> Optional[str]:
    """The installed Ray's version (None: no Ray in this Python); it cannot
    change while this process runs."""
    try:
        return importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        return None


def gpu_variables(version: Optional[str] = None) -> Tuple[str, str]:
    """(AMD, Intel): the variable this Ray reads for each vendor's GPUs."""
    minor = _minor(version)
    return ("HIP_VISIBLE_DEVICES" if minor >= AMD_HIP_SINCE else "ROCR_VISIBLE_DEVICES",
            "ZE_AFFINITY_MASK" if minor >= INTEL_ZE_SINCE else "ONEAPI_DEVICE_SELECTOR")


def _minor(version: Optional[str]) -> Version:
    """(2, 52) for `2.52.1`; the installed Ray's when None; () if no Ray."""
    return parse(version if version is not None else ray_version() or "")[:2]


def support_problem(version: Optional[str]) -> Optional[str]:
    """Why start_ray cannot run on this Ray, or None. A newer Ray than the
    newest tested is allowed (see untested); an older one is refused, since
    its command line differs in ways nobody checked."""
    if version is None:
        return (f"this Python has no Ray: install Ray {show(OLDEST)} to {show(NEWEST)}.x "
                "(pip install 'ray[rllib]')")
    if _minor(version) < OLDEST:
        return (f"Ray {version} is older than the oldest Ray start_ray supports "
                f"({show(OLDEST)}); supported: Ray {show(OLDEST)} to {show(NEWEST)}.x")
    return None


def untested(version: Optional[str]) -> bool:
    """A Ray newer than the newest tested (it may work; the log says so)."""
    return version is not None and _minor(version) > NEWEST


def label_arg(labels: Mapping[str, str], version: Optional[str] = None) -> str:
    """The value of `ray start --labels` for this Ray: `k=v,k2=v2` since
    2.45, a JSON object before (`{"k": "v"}`; 2.40 fails on `k=v` with
    "`{}` is not a valid JSON string")."""
    found = _minor(version)
    if found and found < LABEL_PAIRS_SINCE:
        return json.dumps(dict(labels))
    return ",".join(f"{key}={value}" for key, value in labels.items())


def driver_prefers_head(version: Optional[str] = None) -> bool:
    """Whether a driver on the head's host attaches to the head's raylet
    when other Ray nodes share the host (ray.init's node choice, 2.54+).
    Before, it may attach to another rank's node, and dies if that node is
    lost although the job goes on."""
    found = _minor(version)
    return not found or found >= DRIVER_PREFERS_HEAD_SINCE


def gcs_store(version: Optional[str] = None) -> bool:
    """Whether this Ray's GCS can keep its state in RocksDB (2.57+)."""
    return _minor(version) >= GCS_STORE_SINCE


def gcs_store_env(path: str) -> Dict[str, str]:
    """The head's variables that put its GCS's state in the store at `path`."""
    return dict(zip(GCS_STORE_VARIABLES, ("rocksdb", path)))


def has_token_auth() -> bool:
    """Whether the installed Ray has token authentication. Found by its
    module (ray/_private/authentication, since 2.52), without importing Ray."""
    spec = importlib.util.find_spec("ray")
    locations = list(spec.submodule_search_locations or []) if spec else []
    return any(os.path.isdir(os.path.join(location, "_private", "authentication"))
               for location in locations)


def reload_auth(raylet: Any) -> None:
    """Make an imported Ray re-read RAY_AUTH_MODE and the token: it reads
    the mode at import and caches the token on first use (2.52 to 2.60:
    `Config.initialize` and `AuthenticationTokenLoader`). A Ray without token
    auth has neither, and nothing to reload."""
    loader = getattr(raylet, "AuthenticationTokenLoader", None)
    if loader is None:
        return
    raylet.Config.initialize("")
    loader.instance().reset_cache()


def gcs_port(temp_dir: str) -> Optional[int]:
    """The GCS port a head in `temp_dir` has published, if any yet."""
    for path in glob.glob(os.path.join(temp_dir, GCS_PORT_FILE)):
        try:
            with open(path) as handle:
                text = handle.read().strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
    return None


def head_registered(address: str) -> Callable[[], bool]:
    """A check whether the head's raylet has registered with the GCS at
    `address`. `ray start --address` asks the GCS for the head node (for its
    temp dir) and, finding none yet, sleeps 2 s before asking again (2.60:
    Node.__init__ -> get_all_node_info_until_retrieved; the session name
    alike), so a worker that starts while the head's raylet is starting
    loses up to 2 s. Private API, as Ray uses it: GcsClient and GcsNodeInfo's
    is_head_node; a Ray without them raises here, and its own retries apply."""
    from ray._raylet import GcsClient  # type: ignore[attr-defined]

    client = GcsClient(address=address)

    def registered() -> bool:
        return any(info.is_head_node for info in client.get_all_node_info(timeout=2).values())
    return registered


def node_table_reader(address: str) -> Callable[[], List[Dict[str, Any]]]:
    """A function that reads the GCS node table (ray.nodes()' rows) without
    registering a driver. Private API, the same from 2.40 to 2.60:
    `GlobalState._initialize_global_state(_get_gcs_client_options(address))`."""
    from ray._private.services import _get_gcs_client_options
    from ray._private.state import GlobalState

    state = GlobalState()
    state._initialize_global_state(_get_gcs_client_options(address))
    return state.node_table
