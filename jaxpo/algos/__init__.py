"""Algorithms, one module each; :data:`ALGORITHMS` maps ``config.algo`` to its description."""

from .a2c import A2C
from .actor_critic import ActorCriticHParams
from .adaptive_ppo import ADAPTIVE_PPO, AdaptivePPOHParams
from .base import Algorithm, Batch, UpdateRule
from .grpo import GRPO, TIC_GRPO, GRPOHParams
from .mcpo import MCPO, MCPOHParams
from .mdpo import MDPO, MDPOHParams
from .npg import NPG, NPGHParams
from .ppo import PPO, PPOHParams
from .ppo_kl import PPO_KL, PPOKLHParams
from .trpo import TRPO, TRPOHParams

ALGORITHMS: dict[str, Algorithm] = {
    algo.name: algo
    for algo in (PPO, PPO_KL, A2C, MDPO, MCPO, TRPO, NPG, ADAPTIVE_PPO, GRPO, TIC_GRPO)
}

__all__ = [
    "ALGORITHMS",
    "ActorCriticHParams",
    "AdaptivePPOHParams",
    "Algorithm",
    "Batch",
    "GRPOHParams",
    "MCPOHParams",
    "MDPOHParams",
    "NPGHParams",
    "PPOHParams",
    "PPOKLHParams",
    "TRPOHParams",
    "UpdateRule",
]
