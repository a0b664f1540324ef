"""Custom environments for drivers/train_ppo.py: the worked example of how to
plug in your own simulator.

An environment here is a plain gymnasium.Env (modern API: reset returns
(obs, info), step returns (obs, reward, terminated, truncated, info)),
registered under a name that `--env` accepts. The driver ships this package
to every Ray node (runtime_env py_modules), so remote env runners can import
it even where the code is not on a shared file system: the classic
`ModuleNotFoundError` on remote workers does not happen.
"""

from typing import Any, Dict, Optional, Tuple

import gymnasium as gym
import numpy as np


class SimpleCorridor(gym.Env):
    """Walk right along a corridor of `corridor_length` cells to its end.

    Observation: the position (a float in [0, length]). Actions: 0 = left,
    1 = right. Reward: -0.1 per step, +1 at the end; episodes stop at the end
    or after `max_steps`. The best return is 1 - 0.1 * (length - 1).
    """

    def __init__(self, config: Optional[Dict[str, Any]] = None) -> None:
        config = config or {}
        self.length = int(config.get("corridor_length", 10))
        self.max_steps = int(config.get("max_steps", 100))
        self.action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.spaces.Box(0.0, float(self.length), (1,), np.float32)
        self.position = 0
        self.steps = 0

    def reset(self, *, seed: Optional[int] = None,
              options: Optional[dict] = None) -> Tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.position, self.steps = 0, 0
        return self._obs(), {}

    def step(self, action: int) -> Tuple[np.ndarray, float, bool, bool, dict]:
        self.steps += 1
        self.position = max(0, self.position + (1 if action == 1 else -1))
        terminated = self.position >= self.length
        truncated = not terminated and self.steps >= self.max_steps
        reward = 1.0 if terminated else -0.1
        return self._obs(), reward, terminated, truncated, {}

    def _obs(self) -> np.ndarray:
        return np.array([self.position], dtype=np.float32)


# Name -> creator(env_config). `--env` accepts these besides gymnasium's ids.
ENVIRONMENTS = {
    "SimpleCorridor": lambda config: SimpleCorridor(config),
}


def register_all() -> None:
    """Make the custom environments known to RLlib by name."""
    from ray.tune.registry import register_env

    for name, creator in ENVIRONMENTS.items():
        register_env(name, creator)
