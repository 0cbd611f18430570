"""Algorithms, one module each; :data:`ALGORITHMS` maps ``config.algo`` to its description."""

from .base import Algorithm, Batch, UpdateRule
from .ppo import PPO, PPOHParams

ALGORITHMS: dict[str, Algorithm] = {PPO.name: PPO}

__all__ = ["ALGORITHMS", "Algorithm", "Batch", "PPOHParams", "UpdateRule"]
