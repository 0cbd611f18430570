"""Algorithms, one module each; :data:`ALGORITHMS` maps ``config.algo`` to its description."""

from .base import Algorithm, Batch, UpdateRule
from .npg import NPG, NPGHParams
from .ppo import PPO, PPOHParams
from .trpo import TRPO, TRPOHParams

ALGORITHMS: dict[str, Algorithm] = {algo.name: algo for algo in (PPO, TRPO, NPG)}

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "Batch",
    "NPGHParams",
    "PPOHParams",
    "TRPOHParams",
    "UpdateRule",
]
