"""Algorithms, one module each; :data:`ALGORITHMS` maps ``config.algo`` to its description.

Importing this package registers the built-in algorithms; :func:`register` adds one from
any module (see README, "Adding an algorithm").
"""

from ..registry import ALGORITHMS
from .a2c import A2C, A2CConfig, A2CHParams
from .actor_critic import ActorCriticConfig, ActorCriticHParams, actor_critic_algorithm
from .adaptive_ppo import ADAPTIVE_PPO, AdaptivePPOConfig, AdaptivePPOHParams
from .base import Algorithm, LossFn, UpdateRule, register
from .grpo import GRPO, TIC_GRPO, GRPOConfig, GRPOHParams, TICGRPOHParams
from .mcpo import MCPO, MCPOConfig, MCPOHParams
from .mdpo import MDPO, MDPOConfig, MDPOHParams
from .npg import NPG, NPGConfig, NPGHParams
from .ppo import PPO, PPOHParams
from .ppo_kl import PPO_KL, PPOKLHParams
from .trpo import TRPO, TRPOConfig, TRPOHParams

#: The algorithms jaxpo ships, in registration order.
BUILTIN = tuple(ALGORITHMS)

__all__ = [
    "A2C",
    "ADAPTIVE_PPO",
    "ALGORITHMS",
    "BUILTIN",
    "GRPO",
    "MCPO",
    "MDPO",
    "NPG",
    "PPO",
    "PPO_KL",
    "TIC_GRPO",
    "TRPO",
    "A2CConfig",
    "A2CHParams",
    "ActorCriticConfig",
    "ActorCriticHParams",
    "AdaptivePPOConfig",
    "AdaptivePPOHParams",
    "Algorithm",
    "GRPOConfig",
    "GRPOHParams",
    "LossFn",
    "MCPOConfig",
    "MCPOHParams",
    "MDPOConfig",
    "MDPOHParams",
    "NPGConfig",
    "NPGHParams",
    "PPOHParams",
    "PPOKLHParams",
    "TICGRPOHParams",
    "TRPOConfig",
    "TRPOHParams",
    "UpdateRule",
    "actor_critic_algorithm",
    "register",
]
