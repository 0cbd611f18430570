"""A2C: the ratio-free policy gradient −E[log π_θ·Â] + c_v·L_V − c_e·H.

One Adam step per rollout: the section sets ``update_epochs = num_minibatches = 1`` for
every ``Config(algo="a2c")`` that does not set them; more epochs or minibatches are
allowed. The value loss is never clipped (A2C has no ε).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
from flax import struct

from ..config import Config
from ..losses.policy_gradient import policy_gradient
from ..networks import Networks
from .actor_critic import (
    ActorCriticConfig,
    ActorCriticHParams,
    PolicyInputs,
    actor_critic_algorithm,
    make_actor_critic_loss,
)
from .base import LossFn, register


@dataclasses.dataclass(frozen=True)
class A2CConfig(ActorCriticConfig):
    """A2C's section: one full-batch step per rollout by default; no ratio in the loss."""

    CONFIG_DEFAULTS: ClassVar = {"update_epochs": 1, "num_minibatches": 1}
    IMPORTANCE_WEIGHTED: ClassVar[bool] = False


@struct.dataclass
class A2CHParams(ActorCriticHParams):
    """A2C's traced hyperparameters: the family's, with its own learning rate."""

    DEFAULTS: ClassVar = {"learning_rate": 7e-4}


def make_a2c_loss(config: Config, hparams: A2CHParams, networks: Networks) -> LossFn:
    """−E[log π_θ(a|s)·Â] + c_v·value_loss − c_e·H."""

    def policy_term(inputs: PolicyInputs, _: Any) -> tuple[jax.Array, dict]:
        return policy_gradient(inputs.log_prob, inputs.advantages), {}

    return make_actor_critic_loss(config, hparams, networks, policy_term)


A2C = register(actor_critic_algorithm("a2c", A2CHParams, make_a2c_loss, config_cls=A2CConfig))

__all__ = ["A2C", "A2CConfig", "A2CHParams", "make_a2c_loss"]
