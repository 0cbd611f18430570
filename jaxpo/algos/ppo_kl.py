"""PPO-KL (Schulman et al. 2017, §4): the surrogate with an adaptive KL(π_old ‖ π_θ) penalty.

L = −E[r·Â] + β·E_s[KL(π_old ‖ π_θ)] + c_v·L_V − c_e·H over epochs × minibatches. β is
algorithm state: after each update, with d = E_s[KL(π_old ‖ π_new)] on the batch, β doubles
if d > 1.5·d_targ and halves if d < d_targ/1.5.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from ..config import Config
from ..losses.kl import kl_divergence
from ..losses.penalty import BETA_MAX, BETA_MIN, adapt_kl_coef, ppo_kl
from ..networks import Actor, Critic
from .actor_critic import (
    ACTOR_CRITIC_DEFAULTS,
    ActorCriticHParams,
    PolicyInputs,
    make_actor_critic_rule,
    mean_kl_after,
    record_old_outputs,
)
from .base import Algorithm, Batch, UpdateRule
from .first_order import Adaptation


@struct.dataclass
class PPOKLHParams(ActorCriticHParams):
    """PPO-KL's traced hyperparameters.

    Attributes:
        kl_target: d_targ, the KL each update aims at, > 0.
        kl_coef_init: β at the first update, in [1e-6, 1e6] (the range β stays in).
    """

    kl_target: jax.Array
    kl_coef_init: jax.Array

    BOUNDS: ClassVar = {
        "kl_target": (0.0, None, False, False),
        "kl_coef_init": (BETA_MIN, BETA_MAX, True, True),
    }


DEFAULTS = {**ACTOR_CRITIC_DEFAULTS, "kl_target": 0.01, "kl_coef_init": 1.0}


def make_ppo_kl_rule(
    config: Config, hparams: PPOKLHParams, actor: Actor, critic: Critic
) -> UpdateRule:
    """PPO-KL's update rule; its algorithm state is β."""

    def policy_term(inputs: PolicyInputs, beta: jax.Array) -> tuple[jax.Array, dict]:
        kl = kl_divergence(inputs.batch.old_outputs, inputs.outputs)
        loss = ppo_kl(inputs.log_prob, inputs.batch.log_prob, inputs.advantages, kl, beta)
        return loss, {}

    def finish(beta: jax.Array, old: Any, new: Any, batch: Batch) -> tuple[jax.Array, dict]:
        kl = mean_kl_after(actor, new, batch)
        return adapt_kl_coef(beta, kl, hparams.kl_target), {"kl": kl, "beta": beta}

    adaptation = Adaptation(
        init=lambda params: jnp.asarray(hparams.kl_coef_init, jnp.float32),
        prepare=record_old_outputs(actor),
        finish=finish,
    )
    return make_actor_critic_rule(
        config, hparams, actor, critic, policy_term, adaptation=adaptation
    )


PPO_KL = Algorithm(
    name="ppo_kl", hparams_cls=PPOKLHParams, defaults=DEFAULTS, make_update_rule=make_ppo_kl_rule
)

__all__ = ["PPOKLHParams", "PPO_KL", "make_ppo_kl_rule"]
