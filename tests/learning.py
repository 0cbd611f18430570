"""Shared helpers of the learning tests: a preset trained on 8 seeds in one vmapped call."""

import numpy as np

import jaxpo


def returns_at(
    algo: str, env_id: str, total: int, seeds: int = 8
) -> tuple[jaxpo.Config, np.ndarray]:
    """The preset of ``(algo, env_id)`` shortened to ``total`` steps: ``[seeds, updates]``."""
    config, hparams = jaxpo.presets.get(algo, env_id)
    config = config.replace(total_timesteps=total)
    result = jaxpo.sweep.run(config, hparams, seeds=seeds)
    return config, np.asarray(result.metrics["episode_return"])[0]


def value_within(config: jaxpo.Config, returns: np.ndarray, env_steps: int) -> np.ndarray:
    """Each seed's return at the last update that ends within ``env_steps``."""
    index = env_steps // config.batch_size - 1
    return returns[:, index]
