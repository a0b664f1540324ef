"""What the drivers need to know about RLlib versions: which Rays they run
on (the range start_ray supports, tested with `make compat`), and the RLlib
names that moved inside it. The metric names that moved are in rl_metrics."""

from typing import Optional

from start_ray.node import compat

# (framework: oldest, newest Ray minor tested): start_ray's range. torch runs on
# RLlib's new API stack, tf2 on the old one (the new stack is PyTorch only).
SUPPORTED = {"torch": (compat.OLDEST, compat.NEWEST), "tf2": (compat.OLDEST, compat.NEWEST)}


def problem(framework: str, version: Optional[str] = None) -> Optional[str]:
    """Why this driver would not run `framework` on this Ray, or None."""
    version = compat.ray_version() if version is None else version
    low, high = SUPPORTED[framework]
    shown = f"{compat.show(low)} to {compat.show(high)}"
    if not version:
        return f"this Python has no Ray: pip install 'ray[rllib]' (tested: Ray {shown})"
    if not low <= compat.parse(version)[:2] <= high:
        return (f"--framework {framework} is supported on Ray {shown}, and this is "
                f"Ray {version}: install a Ray in that range")
    return None


def callback_base() -> type:
    """RLlib's callback base class: RLlibCallback since Ray 2.41
    (ray.rllib.callbacks), DefaultCallbacks before."""
    try:
        from ray.rllib.callbacks.callbacks import RLlibCallback
        return RLlibCallback
    except ImportError:
        from ray.rllib.algorithms.callbacks import DefaultCallbacks
        return DefaultCallbacks


def checkpoint_config() -> type:
    """Tune's CheckpointConfig: ray.tune.CheckpointConfig since Ray 2.41,
    ray.train.CheckpointConfig (the same options) before."""
    from ray import tune
    if hasattr(tune, "CheckpointConfig"):
        return tune.CheckpointConfig
    from ray.train import CheckpointConfig
    return CheckpointConfig
