"""The rule shared by the first-order actor-critic family (PPO, PPO-KL, A2C, MDPO, MCPO, ...).

L = mean(policy term) + c_v·value_loss − c_e·H on a minibatch; each algorithm supplies only
its per-sample policy term (from :mod:`jaxpo.losses`), any algorithm state of its own, and
any metrics. With ``config.advantage == "vtrace"`` the advantages and value targets are
recomputed by V-trace with the current parameters at the start of every epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
from flax import struct

from ..advantages import vtrace
from ..config import Config
from ..hparams import HParams
from ..losses import health
from ..losses.kl import DistParams, kl_divergence
from ..losses.value import value_loss
from ..networks import Actor, Critic, distribution
from .base import Batch, UpdateRule
from .first_order import STATELESS, Adaptation, LossFn, Relabel, make_first_order_rule

#: Defaults every first-order actor-critic algorithm starts from (each overrides some).
ACTOR_CRITIC_DEFAULTS = {
    "learning_rate": 2.5e-4,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "max_grad_norm": 0.5,
    "reward_scale": 1.0,
    "ent_coef": 0.01,
    "vf_coef": 0.5,
    "vtrace_rho_bar": 1.0,
    "vtrace_c_bar": 1.0,
}


@struct.dataclass
class ActorCriticHParams(HParams):
    """Traced coefficients every first-order actor-critic algorithm has.

    Attributes:
        ent_coef: entropy bonus coefficient c_e, ≥ 0.
        vf_coef: value-loss coefficient c_v, ≥ 0.
        vtrace_rho_bar: V-trace's ρ̄, the clip of the importance weights in the targets and
            the policy advantage, > 0 (used when ``config.advantage == "vtrace"``).
        vtrace_c_bar: V-trace's c̄, the clip of the trace coefficients, > 0 (likewise).
    """

    ent_coef: jax.Array
    vf_coef: jax.Array
    vtrace_rho_bar: jax.Array
    vtrace_c_bar: jax.Array

    BOUNDS: ClassVar = {
        "ent_coef": (0.0, None, True, False),
        "vf_coef": (0.0, None, True, False),
        "vtrace_rho_bar": (0.0, None, False, False),
        "vtrace_c_bar": (0.0, None, False, False),
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

#: ``algo_state -> ε`` of the value clip around the old values.
ValueClip = Callable[[Any], jax.Array]


def normalize(advantages: jax.Array) -> jax.Array:
    """(Â − mean) / (std + 1e-8) over the given samples."""
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


def make_actor_critic_loss(
    config: Config,
    hparams: ActorCriticHParams,
    actor: Actor,
    critic: Critic,
    policy_term: PolicyTerm,
    value_clip: ValueClip | None = None,
) -> LossFn:
    """L = mean(policy_term) + c_v·value_loss − c_e·H, with health metrics.

    Args:
        config: the run's config.
        hparams: the run's hparams (``ent_coef``, ``vf_coef``).
        actor: the policy network.
        critic: the value network.
        policy_term: the algorithm's per-sample policy loss.
        value_clip: ε of the value clip as a function of the algorithm state, or ``None``
            for no clip (it is also dropped when ``config.clip_value_loss`` is off).
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
        clip = value_clip(algo_state) if value_clip and config.clip_value_loss else None
        v_loss = value_loss(values, mb.returns, mb.values, clip).mean()
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


def make_vtrace_relabel(
    config: Config, hparams: ActorCriticHParams, actor: Actor, critic: Critic
) -> Relabel:
    """V-trace advantages and targets of a batch under the current parameters.

    The behaviour policy μ is the one that collected the batch (``batch.log_prob``); π and
    V are the parameters at the start of the epoch, so later epochs are corrected for how
    far π has moved (ρ = π/μ clipped by ρ̄, traces by c̄). ``batch.values`` (the old values
    the value clip is centred on) is left as collected.
    """
    steps = (config.num_steps, config.num_envs)

    def relabel(params: Any, batch: Batch) -> Batch:
        def time_major(x: jax.Array) -> jax.Array:
            return x.reshape(steps + x.shape[1:])

        log_prob = distribution(actor.apply(params["actor"], batch.obs)).log_prob(batch.action)
        data = batch.rollout
        advantages, targets = vtrace(
            time_major(data.reward),
            time_major(critic.apply(params["critic"], batch.obs)),
            time_major(critic.apply(params["critic"], data.next_obs)),
            time_major(data.terminated),
            time_major(data.done),
            time_major(log_prob - batch.log_prob),
            hparams.gamma,
            hparams.gae_lambda,
            hparams.vtrace_rho_bar,
            hparams.vtrace_c_bar,
        )
        advantages, targets = jax.lax.stop_gradient((advantages, targets))
        return batch._replace(advantages=advantages.reshape(-1), returns=targets.reshape(-1))

    return relabel


def make_actor_critic_rule(
    config: Config,
    hparams: ActorCriticHParams,
    actor: Actor,
    critic: Critic,
    policy_term: PolicyTerm,
    value_clip: ValueClip | None = None,
    adaptation: Adaptation = STATELESS,
) -> UpdateRule:
    """The first-order rule on :func:`make_actor_critic_loss` (V-trace relabelled if asked)."""
    loss_fn = make_actor_critic_loss(config, hparams, actor, critic, policy_term, value_clip)
    relabel = (
        make_vtrace_relabel(config, hparams, actor, critic)
        if config.advantage == "vtrace"
        else None
    )
    return make_first_order_rule(config, hparams, loss_fn, adaptation, relabel)


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
