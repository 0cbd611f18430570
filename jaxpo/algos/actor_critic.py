"""The loss shared by the first-order actor-critic family (PPO, PPO-KL, A2C, MDPO, MCPO).

L = mean(policy term) + c_v·value_loss − c_e·H on a minibatch; each algorithm supplies only
its per-sample policy term (from :mod:`jaxpo.losses`) and any metrics of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
from flax import struct

from ..config import Config
from ..hparams import HParams
from ..losses import health
from ..losses.kl import DistParams, kl_divergence
from ..losses.value import value_loss
from ..networks import Actor, Critic, distribution
from .base import Batch
from .first_order import LossFn

#: Defaults every first-order actor-critic algorithm starts from (each overrides some).
ACTOR_CRITIC_DEFAULTS = {
    "learning_rate": 2.5e-4,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "max_grad_norm": 0.5,
    "reward_scale": 1.0,
    "ent_coef": 0.01,
    "vf_coef": 0.5,
}


@struct.dataclass
class ActorCriticHParams(HParams):
    """Traced coefficients every first-order actor-critic algorithm has.

    Attributes:
        ent_coef: entropy bonus coefficient c_e, ≥ 0.
        vf_coef: value-loss coefficient c_v, ≥ 0.
    """

    ent_coef: jax.Array
    vf_coef: jax.Array

    BOUNDS: ClassVar = {
        "ent_coef": (0.0, None, True, False),
        "vf_coef": (0.0, None, True, False),
    }


class PolicyInputs(NamedTuple):
    """What a policy term sees on one minibatch.

    Attributes:
        outputs: π_θ's distribution parameters ``(loc, log_std | None)``.
        log_prob: ``log π_θ(a|s)``, ``[n]``.
        advantages: ``Â`` (standardised per minibatch if ``config.normalize_advantages``).
        batch: the minibatch (old log-probs, and ``old_outputs`` where the rule records them).
    """

    outputs: DistParams
    log_prob: jax.Array
    advantages: jax.Array
    batch: Batch


#: ``(inputs, algo_state) -> (per-sample policy loss [n], metrics)``.
PolicyTerm = Callable[[PolicyInputs, Any], tuple[jax.Array, dict[str, jax.Array]]]


def normalize(advantages: jax.Array) -> jax.Array:
    """(Â − mean) / (std + 1e-8) over the given samples."""
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


def make_actor_critic_loss(
    config: Config,
    hparams: ActorCriticHParams,
    actor: Actor,
    critic: Critic,
    policy_term: PolicyTerm,
    value_clip: jax.Array | None = None,
) -> LossFn:
    """L = mean(policy_term) + c_v·value_loss − c_e·H, with health metrics.

    Args:
        config: the run's config.
        hparams: the run's hparams (``ent_coef``, ``vf_coef``).
        actor: the policy network.
        critic: the value network.
        policy_term: the algorithm's per-sample policy loss.
        value_clip: ε of the value clip around the old values, or ``None`` for no clip.
    """

    def loss_fn(params: Any, mb: Batch, algo_state: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
        outputs = actor.apply(params["actor"], mb.obs)
        dist = distribution(outputs)
        log_prob = dist.log_prob(mb.action)
        entropy = dist.entropy().mean()
        adv = normalize(mb.advantages) if config.normalize_advantages else mb.advantages
        per_sample, metrics = policy_term(PolicyInputs(outputs, log_prob, adv, mb), algo_state)
        policy_loss = per_sample.mean()
        values = critic.apply(params["critic"], mb.obs)
        v_loss = value_loss(values, mb.returns, mb.values, value_clip).mean()
        loss = policy_loss + hparams.vf_coef * v_loss - hparams.ent_coef * entropy
        log_ratio = jax.lax.stop_gradient(log_prob - mb.log_prob)
        return loss, {
            "policy_loss": policy_loss,
            "value_loss": v_loss,
            "entropy": entropy,
            "approx_kl": health.approx_kl(log_ratio),
            "ess_frac": health.ess_fraction(log_ratio),
            **metrics,
        }

    return loss_fn


def record_old_outputs(actor: Actor) -> Callable[[Any, Any, Batch], tuple[Any, Batch]]:
    """An :class:`~jaxpo.algos.first_order.Adaptation` ``prepare`` that stores π_old's outputs."""

    def prepare(params: Any, state: Any, batch: Batch) -> tuple[Any, Batch]:
        old = jax.lax.stop_gradient(actor.apply(params["actor"], batch.obs))
        return state, batch._replace(old_outputs=old)

    return prepare


def mean_kl_after(actor: Actor, new_params: Any, batch: Batch, reverse: bool = False) -> jax.Array:
    """E_s[KL(π_old ‖ π_new)] over the batch (E_s[KL(π_new ‖ π_old)] if ``reverse``).

    ``batch.old_outputs`` holds π_old's outputs.
    """
    new = actor.apply(new_params["actor"], batch.obs)
    pair = (new, batch.old_outputs) if reverse else (batch.old_outputs, new)
    return kl_divergence(*pair).mean()
