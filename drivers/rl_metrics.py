"""Where RLlib reports the numbers the drivers care about. The names moved
between RLlib's API stacks and versions, so each is a list of candidates,
best first; the same keys name progress.csv's columns (Tune flattens nested
results with '/')."""

RETURN_KEYS = ("env_runners/episode_return_mean", "env_runners/episode_reward_mean",
               "episode_return_mean", "episode_reward_mean")
STEP_KEYS = ("num_env_steps_sampled_lifetime", "env_runners/num_env_steps_sampled_lifetime",
             "timesteps_total", "num_env_steps_sampled")
