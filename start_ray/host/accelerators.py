"""Which GPUs a Ray node serves, from each vendor's variables, and the
variables that hand them to Ray in the form Ray accepts.

Schedulers select a task's GPUs with its vendor's variable: CUDA_VISIBLE_DEVICES
(NVIDIA), ROCR_VISIBLE_DEVICES or HIP_VISIBLE_DEVICES (AMD), ZE_AFFINITY_MASK
or ONEAPI_DEVICE_SELECTOR (Intel); Slurm's gres/gpu sets several of them at
once. A Ray node that stands for several ranks serves the union of their
devices, so each variable becomes that union in the node's environment.

Ray reads one variable per vendor and sets it per task, and which one
depends on its version (compat.gpu_variables). AMD: Ray 2.45 and newer read
HIP_VISIBLE_DEVICES and refuse ROCR_VISIBLE_DEVICES ("Please use
HIP_VISIBLE_DEVICES instead of ROCR_VISIBLE_DEVICES"), the variable that
Slurm and Cray's launchers set; older Rays read ROCR. So the node gets the
devices (ROCR's list narrowed by HIP's indices, per rank) in the variable its
Ray reads, and not the other, which would index a second time within what Ray
gives each task. Intel: ZE_AFFINITY_MASK (Ray 2.58 and newer) masks below
oneAPI's ONEAPI_DEVICE_SELECTOR (older Rays): a ZE mask is kept as the union,
and older Rays number the masked devices 0..n-1; a selector alone is handed on
in the form the Ray reads. All pure functions of the ranks' environments.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

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
    env: Dict[str, Optional[str]]  # the node's values (None: removed)

    def text(self) -> str:
        return f"{self.source} ({self.vendor})"


def _ids(value: str) -> List[str]:
    """The device ids a variable lists. CUDA and ROCm read them up to the
    first invalid one: `-1` (what Flux's gpubind writes for a task with no
    GPU) hides every device after it."""
    ids: List[str] = []
    for d in (part.strip() for part in value.split(",")):
        if d.startswith("-"):
            break
        if d and d != NO_DEVICES:
            ids.append(d)
    return ids


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


def _plain(vendor: str, name: str, envs: Sequence[Mapping[str, str]]) -> Optional[Devices]:
    """A vendor variable that lists device ids (CUDA, ZE_AFFINITY_MASK)."""
    lists = _every(envs, name)
    if lists is None:
        return None
    union = _union(lists)
    return Devices(vendor, tuple(union), _shown(name, envs), {name: ",".join(union)})


def _amd(envs: Sequence[Mapping[str, str]], reads: str) -> Optional[Devices]:
    """AMD: each rank's devices are ROCR's list narrowed by HIP's indices
    (either alone: that list); the node gets their union in `reads`, the
    variable its Ray reads, and not the other."""
    rocr, hip = _every(envs, ROCR), _every(envs, HIP)
    if rocr is None and hip is None:
        return None
    shown = "; ".join(_shown(n, envs) for n, lists in ((ROCR, rocr), (HIP, hip)) if lists)
    physical = []
    for i, selected in enumerate(rocr or hip or []):
        narrowed = hip[i] if rocr is not None and hip is not None else None
        if narrowed is not None and all(h.isdigit() and int(h) < len(selected)
                                        for h in narrowed):
            selected = [selected[int(h)] for h in narrowed]
        physical.append(selected)
    union = _union(physical)
    other = ROCR if reads == HIP else HIP
    return Devices("AMD", tuple(union), shown, {reads: ",".join(union), other: None})


def _selector_ids(value: str) -> Optional[List[str]]:
    """`level_zero:0,1` -> ['0', '1']; filters such as `level_zero:gpu` or
    `*:*` name no devices (None)."""
    if value.startswith(ONEAPI_BACKEND):
        value = value[len(ONEAPI_BACKEND):]
    ids = _ids(value)
    return ids if all(d.replace(".", "").isdigit() for d in ids) else None


def _intel(envs: Sequence[Mapping[str, str]], reads: str) -> Optional[Devices]:
    """Intel: a ZE mask on every rank becomes the union (it masks below
    whatever Ray sets); else oneAPI selectors that list devices, handed on
    in the variable this Ray reads."""
    if _every(envs, ZE) is not None:
        return _plain("Intel", ZE, envs)
    lists = [_selector_ids(env[ONEAPI]) if ONEAPI in env else None for env in envs]
    if not lists or any(ids is None for ids in lists):
        return None
    union = _union([ids or [] for ids in lists])
    env: Dict[str, Optional[str]] = (
        {ONEAPI: ONEAPI_BACKEND + ",".join(union)} if reads == ONEAPI
        else {ZE: ",".join(union), ONEAPI: None})
    return Devices("Intel", tuple(union), _shown(ONEAPI, envs), env)


def devices(envs: Sequence[Mapping[str, str]],
            reads: Tuple[str, str] = (HIP, ZE)) -> List[Devices]:
    """Every vendor's devices that the node's ranks select, by precedence:
    the first counts the node's GPUs (Slurm sets several to the same list).
    `reads`: the AMD and Intel variables the job's Ray reads."""
    amd, intel = reads
    found = [_plain("NVIDIA", CUDA, envs), _amd(envs, amd), _intel(envs, intel)]
    return [one for one in found if one is not None]


def node_environment(found: Sequence[Devices],
                     leader: Mapping[str, str]) -> Dict[str, Optional[str]]:
    """The variables the node's processes need that differ from the leading
    rank's own (which they inherit); None: remove it."""
    env: Dict[str, Optional[str]] = {}
    for one in found:
        env.update({k: v for k, v in one.env.items() if leader.get(k) != v})
    return env
