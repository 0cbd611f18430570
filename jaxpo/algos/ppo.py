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
    make_actor_critic_loss,
)
from .base import Algorithm, UpdateRule
from .first_order import make_first_order_rule


@struct.dataclass
class PPOHParams(ActorCriticHParams):
    """PPO's traced hyperparameters (beyond :class:`~jaxpo.algos.actor_critic.ActorCriticHParams`).

    Attributes:
        clip_eps: ε of the ratio clip (and of the value clip), > 0.
    """

    clip_eps: jax.Array

    BOUNDS: ClassVar = {"clip_eps": (0.0, None, False, False)}


DEFAULTS = {**ACTOR_CRITIC_DEFAULTS, "clip_eps": 0.2}


def make_ppo_rule(config: Config, hparams: PPOHParams, actor: Actor, critic: Critic) -> UpdateRule:
    """PPO's update rule: epochs × minibatches on ppo_clip + c_v·value_loss − c_e·H."""

    def policy_term(inputs: PolicyInputs, _: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
        log_ratio = jax.lax.stop_gradient(inputs.log_prob - inputs.batch.log_prob)
        loss = ppo_clip(inputs.log_prob, inputs.batch.log_prob, inputs.advantages, hparams.clip_eps)
        return loss, {"clip_frac": health.clip_fraction(log_ratio, hparams.clip_eps)}

    v_clip = hparams.clip_eps if config.clip_value_loss else None
    loss_fn = make_actor_critic_loss(config, hparams, actor, critic, policy_term, v_clip)
    return make_first_order_rule(config, hparams, loss_fn)


PPO = Algorithm(
    name="ppo",
    hparams_cls=PPOHParams,
    defaults=DEFAULTS,
    make_update_rule=make_ppo_rule,
)

__all__ = ["PPO", "PPOHParams", "make_ppo_rule"]
