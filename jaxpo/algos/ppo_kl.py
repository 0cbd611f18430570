"""PPO-KL (Schulman et al. 2017, §4): the surrogate with an adaptive KL(π_old ‖ π_θ) penalty.

L = −E[r·Â] + β·E_s[KL(π_old ‖ π_θ)] + c_v·L_V − c_e·H over epochs × minibatches. The
penalty coefficient β (``kl_coef`` in the code and metrics) is algorithm state: after each
update, with d = E_s[KL(π_old ‖ π_new)] on the batch, it doubles if d > 1.5·d_targ and
halves if d < d_targ/1.5.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from ..batches import SampleBatch
from ..config import Config
from ..hparams import hparam
from ..losses.kl import kl_divergence
from ..losses.penalty import KL_COEF_MAX, KL_COEF_MIN, adapt_kl_coef, ppo_kl
from ..networks import Networks
from .actor_critic import (
    ActorCriticHParams,
    PolicyInputs,
    actor_critic_algorithm,
    make_actor_critic_loss,
    mean_kl_after,
    record_old_outputs,
)
from .base import LossFn, register
from .first_order import Adaptation


@struct.dataclass
class PPOKLHParams(ActorCriticHParams):
    """PPO-KL's traced hyperparameters."""

    kl_target: jax.Array = hparam(0.01, "d_targ, the KL each update aims at", gt=0.0)
    kl_coef_init: jax.Array = hparam(
        1.0, "β at the first update (β stays in [1e-6, 1e6])", ge=KL_COEF_MIN, le=KL_COEF_MAX
    )


def make_ppo_kl_loss(config: Config, hparams: PPOKLHParams, networks: Networks) -> LossFn:
    """−E[r·Â] + β·E_s[KL(π_old ‖ π_θ)] + c_v·value_loss − c_e·H; β is the algorithm state."""

    def policy_term(inputs: PolicyInputs, kl_coef: jax.Array) -> tuple[jax.Array, dict]:
        kl = kl_divergence(inputs.batch.old_outputs, inputs.outputs)
        loss = ppo_kl(inputs.log_prob, inputs.batch.log_prob, inputs.advantages, kl, kl_coef)
        return loss, {}

    return make_actor_critic_loss(config, hparams, networks, policy_term)


def make_ppo_kl_adaptation(config: Config, hparams: PPOKLHParams, networks: Networks) -> Adaptation:
    """β as algorithm state: π_old's outputs recorded before, β adapted after each update."""

    def finish(
        kl_coef: jax.Array, old: Any, new: Any, batch: SampleBatch
    ) -> tuple[jax.Array, dict]:
        kl = mean_kl_after(networks, new, batch)
        return adapt_kl_coef(kl_coef, kl, hparams.kl_target), {"kl": kl, "kl_coef": kl_coef}

    return Adaptation(
        init=lambda params: jnp.asarray(hparams.kl_coef_init, jnp.float32),
        prepare=record_old_outputs(networks),
        finish=finish,
    )


PPO_KL = register(
    actor_critic_algorithm("ppo_kl", PPOKLHParams, make_ppo_kl_loss, make_ppo_kl_adaptation)
)

__all__ = ["PPOKLHParams", "PPO_KL", "make_ppo_kl_adaptation", "make_ppo_kl_loss"]
