"""On-policy MDPO (Tomar et al., mirror descent policy optimisation).

L_k(θ) = −E[r·Â] + (1/t_k)·E_s[KL(π_θ ‖ π_old)] + c_v·L_V − c_e·H — the KL is new ‖ old —
minimised by several full-batch Adam steps from θ_k (``update_epochs = 10``,
``num_minibatches = 1``, applied by ``presets.get`` for every env). t_k = 1 − (k − 1)/K
anneals over a horizon of K iterations (a traced hparam distinct from the run length; floored
at 1/K past it). The iteration counter k is algorithm state.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from ..config import Config
from ..losses.kl import kl_divergence
from ..losses.penalty import mdpo, mdpo_inverse_step
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
class MDPOHParams(ActorCriticHParams):
    """MDPO's traced hyperparameters.

    Attributes:
        horizon: K, the annealing horizon of t_k in iterations, ≥ 1 (so t_1 = 1).
        value_clip: ε of the value clip around the old values (when
            ``config.clip_value_loss``), > 0.
    """

    horizon: jax.Array
    value_clip: jax.Array

    BOUNDS: ClassVar = {
        "horizon": (1.0, None, True, False),
        "value_clip": (0.0, None, False, False),
    }


DEFAULTS = {
    **ACTOR_CRITIC_DEFAULTS,
    "learning_rate": 3e-4,
    "ent_coef": 0.0,
    "horizon": 5000.0,
    "value_clip": 0.2,
}


def make_mdpo_rule(
    config: Config, hparams: MDPOHParams, actor: Actor, critic: Critic
) -> UpdateRule:
    """MDPO's update rule; its algorithm state is the iteration counter k (from 1)."""

    def policy_term(inputs: PolicyInputs, k: jax.Array) -> tuple[jax.Array, dict]:
        kl = kl_divergence(inputs.outputs, inputs.batch.old_outputs)
        inv_step = mdpo_inverse_step(k, hparams.horizon)
        loss = mdpo(inputs.log_prob, inputs.batch.log_prob, inputs.advantages, kl, inv_step)
        return loss, {}

    def finish(k: jax.Array, old: Any, new: Any, batch: Batch) -> tuple[jax.Array, dict]:
        kl = mean_kl_after(actor, new, batch, reverse=True)
        return k + 1, {"kl": kl, "inv_step": mdpo_inverse_step(k, hparams.horizon)}

    adaptation = Adaptation(
        init=lambda params: jnp.int32(1), prepare=record_old_outputs(actor), finish=finish
    )
    return make_actor_critic_rule(
        config, hparams, actor, critic, policy_term, lambda _: hparams.value_clip, adaptation
    )


MDPO = Algorithm(
    name="mdpo",
    hparams_cls=MDPOHParams,
    defaults=DEFAULTS,
    make_update_rule=make_mdpo_rule,
    config_defaults={"update_epochs": 10, "num_minibatches": 1},
)

__all__ = ["MDPO", "MDPOHParams", "make_mdpo_rule"]
