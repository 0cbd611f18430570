"""PPO-clip (Schulman et al. 2017): clipped surrogate + value loss − entropy bonus.

Epochs × minibatches of Adam steps on each rollout.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import struct

from ..config import Config
from ..hparams import hparam
from ..losses import health
from ..losses.ppo import ppo_clip
from ..networks import Networks
from .actor_critic import (
    ActorCriticHParams,
    PolicyInputs,
    actor_critic_algorithm,
    make_actor_critic_loss,
)
from .base import LossFn, register


@struct.dataclass
class PPOHParams(ActorCriticHParams):
    """PPO's traced hyperparameters (beyond the actor-critic family's)."""

    clip_eps: jax.Array = hparam(0.2, "ε of the ratio clip (and of the value clip)", gt=0.0)


def clipped_term(inputs: PolicyInputs, clip_eps: jax.Array) -> tuple[jax.Array, dict]:
    """PPO's per-sample policy term ``ppo_clip`` with ε = ``clip_eps``, and its clip fraction."""
    log_ratio = jax.lax.stop_gradient(inputs.log_prob - inputs.batch.log_prob)
    loss = ppo_clip(inputs.log_prob, inputs.batch.log_prob, inputs.advantages, clip_eps)
    return loss, {"clip_frac": health.clip_fraction(log_ratio, clip_eps)}


def make_ppo_loss(config: Config, hparams: PPOHParams, networks: Networks) -> LossFn:
    """−E[min(r·Â, clip(r, 1 ± ε)·Â)] + c_v·value_loss (clipped by ε) − c_e·H."""

    def policy_term(inputs: PolicyInputs, _: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
        return clipped_term(inputs, hparams.clip_eps)

    return make_actor_critic_loss(
        config, hparams, networks, policy_term, value_clip=lambda _: hparams.clip_eps
    )


PPO = register(actor_critic_algorithm("ppo", PPOHParams, make_ppo_loss))

__all__ = ["PPO", "PPOHParams", "clipped_term", "make_ppo_loss"]
