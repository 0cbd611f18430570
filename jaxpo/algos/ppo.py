"""PPO-clip: clipped surrogate + value loss − entropy bonus, epochs × minibatches of Adam."""

from __future__ import annotations

from typing import Any, ClassVar

import jax
from flax import struct

from ..config import Config
from ..losses import health
from ..losses.ppo import ppo_clip
from ..networks import Actor, Critic
from .actor_critic import (
    ACTOR_CRITIC_DEFAULTS,
    ActorCriticHParams,
    PolicyInputs,
    make_actor_critic_rule,
)
from .base import Algorithm, UpdateRule


@struct.dataclass
class PPOHParams(ActorCriticHParams):
    """PPO's traced hyperparameters (beyond :class:`~jaxpo.algos.actor_critic.ActorCriticHParams`).

    Attributes:
        clip_eps: ε of the ratio clip (and of the value clip), > 0.
    """

    clip_eps: jax.Array

    BOUNDS: ClassVar = {"clip_eps": (0.0, None, False, False)}


DEFAULTS = {**ACTOR_CRITIC_DEFAULTS, "clip_eps": 0.2}


def clipped_term(inputs: PolicyInputs, clip_eps: jax.Array) -> tuple[jax.Array, dict]:
    """PPO's per-sample policy term ``ppo_clip`` with ε = ``clip_eps``, and its clip fraction."""
    log_ratio = jax.lax.stop_gradient(inputs.log_prob - inputs.batch.log_prob)
    loss = ppo_clip(inputs.log_prob, inputs.batch.log_prob, inputs.advantages, clip_eps)
    return loss, {"clip_frac": health.clip_fraction(log_ratio, clip_eps)}


def make_ppo_rule(config: Config, hparams: PPOHParams, actor: Actor, critic: Critic) -> UpdateRule:
    """PPO's update rule: epochs × minibatches on ppo_clip + c_v·value_loss − c_e·H."""

    def policy_term(inputs: PolicyInputs, _: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
        return clipped_term(inputs, hparams.clip_eps)

    return make_actor_critic_rule(
        config, hparams, actor, critic, policy_term, value_clip=lambda _: hparams.clip_eps
    )


PPO = Algorithm(
    name="ppo",
    hparams_cls=PPOHParams,
    defaults=DEFAULTS,
    make_update_rule=make_ppo_rule,
)

__all__ = ["PPO", "PPOHParams", "clipped_term", "make_ppo_rule"]
