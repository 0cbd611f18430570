"""On-policy MDPO (Tomar et al., mirror descent policy optimisation).

L_k(θ) = −E[r·Â] + (1/t_k)·E_s[KL(π_θ ‖ π_old)] + c_v·L_V − c_e·H — the KL is new ‖ old —
minimised by several full-batch Adam steps from θ_k (the section sets ``update_epochs = 10``,
``num_minibatches = 1`` for every ``Config(algo="mdpo")`` that does not set them).
t_k = 1 − (k − 1)/K anneals over a horizon of K iterations (a traced hparam distinct from
the run length; floored at 1/K past it). The iteration counter k is algorithm state.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from ..batches import SampleBatch
from ..config import Config
from ..hparams import hparam
from ..losses.kl import kl_divergence
from ..losses.penalty import mdpo, mdpo_inverse_step
from ..networks import Networks
from .actor_critic import (
    ActorCriticConfig,
    ActorCriticHParams,
    PolicyInputs,
    actor_critic_algorithm,
    make_actor_critic_loss,
    mean_kl_after,
    record_old_outputs,
)
from .base import LossFn, register
from .first_order import Adaptation


@dataclasses.dataclass(frozen=True)
class MDPOConfig(ActorCriticConfig):
    """MDPO's section: ten full-batch Adam steps per iteration by default."""

    CONFIG_DEFAULTS: ClassVar = {"update_epochs": 10, "num_minibatches": 1}


@struct.dataclass
class MDPOHParams(ActorCriticHParams):
    """MDPO's traced hyperparameters."""

    horizon: jax.Array = hparam(
        5000.0, "K, the annealing horizon of t_k in iterations (t_1 = 1)", ge=1.0
    )
    value_clip: jax.Array = hparam(
        0.2, "ε of the value clip around the old values (clip_value_loss)", gt=0.0
    )

    DEFAULTS: ClassVar = {"learning_rate": 3e-4, "ent_coef": 0.0}


def make_mdpo_loss(config: Config, hparams: MDPOHParams, networks: Networks) -> LossFn:
    """−E[r·Â] + (1/t_k)·E_s[KL(π_θ ‖ π_old)] + c_v·value_loss − c_e·H; k is the state."""

    def policy_term(inputs: PolicyInputs, k: jax.Array) -> tuple[jax.Array, dict]:
        kl = kl_divergence(inputs.outputs, inputs.batch.old_outputs)
        inv_step = mdpo_inverse_step(k, hparams.horizon)
        loss = mdpo(inputs.log_prob, inputs.batch.log_prob, inputs.advantages, kl, inv_step)
        return loss, {}

    return make_actor_critic_loss(
        config, hparams, networks, policy_term, lambda _: hparams.value_clip
    )


def make_mdpo_adaptation(config: Config, hparams: MDPOHParams, networks: Networks) -> Adaptation:
    """The iteration counter k (from 1) as algorithm state; π_old's outputs recorded."""

    def finish(k: jax.Array, old: Any, new: Any, batch: SampleBatch) -> tuple[jax.Array, dict]:
        kl = mean_kl_after(networks, new, batch, reverse=True)
        return k + 1, {"kl": kl, "inv_step": mdpo_inverse_step(k, hparams.horizon)}

    return Adaptation(
        init=lambda params: jnp.int32(1), prepare=record_old_outputs(networks), finish=finish
    )


MDPO = register(
    actor_critic_algorithm(
        "mdpo", MDPOHParams, make_mdpo_loss, make_mdpo_adaptation, config_cls=MDPOConfig
    )
)

__all__ = ["MDPO", "MDPOConfig", "MDPOHParams", "make_mdpo_adaptation", "make_mdpo_loss"]
