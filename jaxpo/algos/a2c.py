"""A2C: the ratio-free policy gradient −E[log π_θ·Â] + c_v·L_V − c_e·H.

One Adam step per rollout (``update_epochs = num_minibatches = 1``, applied by
``presets.get`` for every env); more epochs or minibatches are allowed. The value loss is
never clipped (A2C has no ε).
"""

from __future__ import annotations

from typing import Any

import jax

from ..config import Config
from ..losses.policy_gradient import policy_gradient
from ..networks import Actor, Critic
from .actor_critic import (
    ACTOR_CRITIC_DEFAULTS,
    ActorCriticHParams,
    PolicyInputs,
    make_actor_critic_rule,
)
from .base import Algorithm, UpdateRule

DEFAULTS = {**ACTOR_CRITIC_DEFAULTS, "learning_rate": 7e-4}


def make_a2c_rule(
    config: Config, hparams: ActorCriticHParams, actor: Actor, critic: Critic
) -> UpdateRule:
    """A2C's update rule: the first-order rule on the policy-gradient loss."""

    def policy_term(inputs: PolicyInputs, _: Any) -> tuple[jax.Array, dict]:
        return policy_gradient(inputs.log_prob, inputs.advantages), {}

    return make_actor_critic_rule(config, hparams, actor, critic, policy_term)


A2C = Algorithm(
    name="a2c",
    hparams_cls=ActorCriticHParams,
    defaults=DEFAULTS,
    make_update_rule=make_a2c_rule,
    config_defaults={"update_epochs": 1, "num_minibatches": 1},
)

__all__ = ["A2C", "make_a2c_rule"]
