"""Which GPUs a Ray node serves, from each vendor's variables, and the
variables that hand them to Ray in the form Ray accepts.

Schedulers select a task's GPUs with its vendor's variable: CUDA_VISIBLE_DEVICES
(NVIDIA), ROCR_VISIBLE_DEVICES or HIP_VISIBLE_DEVICES (AMD), ZE_AFFINITY_MASK
or ONEAPI_DEVICE_SELECTOR (Intel); Slurm's gres/gpu sets several of them at
once. A Ray node that stands for several ranks serves the union of their
devices, so each variable becomes that union in the node's environment.

Ray reads HIP_VISIBLE_DEVICES on AMD nodes and refuses ROCR_VISIBLE_DEVICES
alone ("Please use HIP_VISIBLE_DEVICES instead of ROCR_VISIBLE_DEVICES"), the
variable that Slurm and Cray's launchers set. ROCR selects devices below HIP,
and HIP indexes the devices ROCR left visible; so the node keeps ROCR (the
union) and gets HIP_VISIBLE_DEVICES=0..n-1, which Ray accepts and narrows per
task. All pure functions of the ranks' environments (unit-tested per vendor).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

CUDA = "CUDA_VISIBLE_DEVICES"
HIP = "HIP_VISIBLE_DEVICES"
ROCR = "ROCR_VISIBLE_DEVICES"
ZE = "ZE_AFFINITY_MASK"
ONEAPI = "ONEAPI_DEVICE_SELECTOR"
ONEAPI_BACKEND = "level_zero:"
VARIABLES = (CUDA, HIP, ROCR, ZE, ONEAPI)  # gathered from every rank
NO_DEVICES = "NoDevFiles"  # what some Slurm versions write for none


@dataclasses.dataclass(frozen=True)
class Devices:
    """One vendor's devices for a Ray node: the union over its ranks."""

    vendor: str  # NVIDIA, AMD, Intel
    ids: Tuple[str, ...]
    source: str  # what the ranks had, e.g. `ROCR_VISIBLE_DEVICES=2,3`
    env: Dict[str, str]  # the node's values of the vendor's variables

    def text(self) -> str:
        return f"{self.source} ({self.vendor})"


def _ids(value: str) -> List[str]:
    return [d.strip() for d in value.split(",") if d.strip() and d.strip() != NO_DEVICES]


def _union(lists: Sequence[Sequence[str]]) -> List[str]:
    union: List[str] = []
    for ids in lists:
        union += [d for d in ids if d not in union]
    return union


def _every(envs: Sequence[Mapping[str, str]], name: str) -> Optional[List[List[str]]]:
    """Each rank's device list from `name`, or None unless every rank has it."""
    if not envs or any(name not in env for env in envs):
        return None
    return [_ids(env[name]) for env in envs]


def _shown(name: str, envs: Sequence[Mapping[str, str]]) -> str:
    values = _union([[env[name]] for env in envs])
    return f"{name}=" + (" | ".join(v or "''" for v in values))


def _plain(vendor: str, name: str) -> Callable[[Sequence[Mapping[str, str]]], Optional[Devices]]:
    """A vendor whose one variable lists device ids (CUDA, ZE_AFFINITY_MASK)."""
    def found(envs: Sequence[Mapping[str, str]]) -> Optional[Devices]:
        lists = _every(envs, name)
        if lists is None:
            return None
        union = _union(lists)
        return Devices(vendor, tuple(union), _shown(name, envs), {name: ",".join(union)})
    return found


def _amd(envs: Sequence[Mapping[str, str]]) -> Optional[Devices]:
    """AMD: each rank's devices are ROCR's list narrowed by HIP's indices
    (either alone: that list). With ROCR, the node keeps ROCR as the union
    and HIP counts within it; with HIP alone, HIP is the union."""
    rocr, hip = _every(envs, ROCR), _every(envs, HIP)
    if rocr is None and hip is None:
        return None
    shown = "; ".join(_shown(n, envs) for n, lists in ((ROCR, rocr), (HIP, hip)) if lists)
    if rocr is None:
        union = _union(hip or [])
        return Devices("AMD", tuple(union), shown, {HIP: ",".join(union)})
    physical = []
    for i, selected in enumerate(rocr):
        narrowed = hip[i] if hip is not None else None
        if narrowed is not None and all(h.isdigit() and int(h) < len(selected)
                                        for h in narrowed):
            selected = [selected[int(h)] for h in narrowed]
        physical.append(selected)
    union = _union(physical)
    return Devices("AMD", tuple(union), shown,
                   {ROCR: ",".join(union), HIP: ",".join(str(i) for i in range(len(union)))})


def _oneapi(envs: Sequence[Mapping[str, str]]) -> Optional[Devices]:
    """Intel's older selector, `level_zero:0,1`. Filters such as
    `level_zero:gpu` or `*:*` name no devices: left to Ray."""
    lists = []
    for env in envs:
        value = env.get(ONEAPI)
        if value is None:
            return None
        if value.startswith(ONEAPI_BACKEND):
            value = value[len(ONEAPI_BACKEND):]
        ids = _ids(value)
        if not all(d.replace(".", "").isdigit() for d in ids):
            return None
        lists.append(ids)
    union = _union(lists)
    return Devices("Intel", tuple(union), _shown(ONEAPI, envs),
                   {ONEAPI: ONEAPI_BACKEND + ",".join(union)})


# In order of precedence: the first vendor whose variables every rank has
# counts the node's GPUs (Slurm sets several to the same list).
VENDORS = (_plain("NVIDIA", CUDA), _amd, _plain("Intel", ZE), _oneapi)


def devices(envs: Sequence[Mapping[str, str]]) -> List[Devices]:
    """Every vendor's devices that the node's ranks select, by precedence."""
    return [found for found in (vendor(envs) for vendor in VENDORS) if found is not None]


def node_environment(found: Sequence[Devices], leader: Mapping[str, str]) -> Dict[str, str]:
    """The variables the node's processes need that differ from the leading
    rank's own (which they inherit)."""
    env: Dict[str, str] = {}
    for one in found:
        env.update({k: v for k, v in one.env.items() if leader.get(k) != v})
    return env
