"""The first-order actor-critic family (PPO, PPO-KL, A2C, MDPO, MCPO, Adaptive-PPO, ...).

L = mean(policy term) + c_v·value_loss − c_e·H on a minibatch; each algorithm supplies only
its per-sample policy term (from :mod:`jaxpo.losses`), any algorithm state of its own
(an :class:`~jaxpo.algos.first_order.Adaptation`), and any metrics;
:func:`actor_critic_algorithm` assembles the rest. With ``advantage="vtrace"`` in the
section, the advantages and value targets are recomputed by V-trace with the current
parameters at the start of every epoch. The importance weight then appears once per sample:
a policy term with the ratio r = π_θ/μ against the collecting policy μ (PPO, PPO-KL, MDPO,
MCPO, Adaptive-PPO) gets V-trace's policy advantage without ρ (ρ shapes only the value
targets); a ratio-free term (A2C) gets IMPALA's ρ-weighted one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
from flax import struct

from ..batches import SampleBatch
from ..collect import ESTIMATORS, batch_major, estimate, sample_collector, time_major
from ..config import AlgoConfig, Config
from ..hparams import HParams, hparam
from ..losses import health
from ..losses.kl import DistParams, kl_divergence
from ..losses.value import value_loss
from ..networks import Networks, distribution, is_recurrent
from ..recurrence import bootstrap_values
from ..validation import one_of
from .base import Algorithm, LossFn, MakeLoss, MakeUpdateRule, UpdateRule
from .first_order import STATELESS, Adaptation, Relabel, make_first_order_rule


@dataclasses.dataclass(frozen=True)
class ActorCriticConfig(AlgoConfig):
    """Static options of the first-order actor-critic family.

    Attributes:
        advantage: the advantage and value-target estimator, ``"gae"`` or ``"vtrace"``
            (recomputed with the current parameters at every epoch, correcting for how far
            the policy moved from the one that collected the batch).
        IMPORTANCE_WEIGHTED: (class constant) the algorithm's policy term multiplies each
            sample by the ratio π_θ/μ to the collecting policy, so V-trace's policy
            advantage must not carry ρ as well; ``False`` for a ratio-free term (A2C).
    """

    IMPORTANCE_WEIGHTED: ClassVar[bool] = True

    advantage: str = "gae"

    def validate(self, config: Config) -> None:
        """Checks the flat batch and the estimator."""
        super().validate(config)
        one_of("advantage", self.advantage, ESTIMATORS)


@struct.dataclass
class ActorCriticHParams(HParams):
    """Traced coefficients every first-order actor-critic algorithm has."""

    ent_coef: jax.Array = hparam(0.01, "entropy bonus coefficient c_e", ge=0.0, continuous=0.0)
    vf_coef: jax.Array = hparam(0.5, "value-loss coefficient c_v", ge=0.0)
    vtrace_rho_bar: jax.Array = hparam(
        1.0, "V-trace's ρ̄: clip of the importance weights (advantage='vtrace')", gt=0.0
    )
    vtrace_c_bar: jax.Array = hparam(
        1.0, "V-trace's c̄: clip of the trace coefficients (advantage='vtrace')", gt=0.0
    )


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
    batch: SampleBatch


#: ``(inputs, algo_state) -> (per-sample policy loss [n], metrics)``.
PolicyTerm = Callable[[PolicyInputs, Any], tuple[jax.Array, dict[str, jax.Array]]]

#: ``algo_state -> ε`` of the value clip around the old values.
ValueClip = Callable[[Any], jax.Array]

#: ``(config, hparams, networks) -> Adaptation``: an algorithm's state beside the optimiser's.
MakeAdaptation = Callable[[Config, HParams, Networks], Adaptation]


def normalize(advantages: jax.Array) -> jax.Array:
    """(Â − mean) / (std + 1e-8) over the given samples."""
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


def make_actor_critic_loss(
    config: Config,
    hparams: ActorCriticHParams,
    networks: Networks,
    policy_term: PolicyTerm,
    value_clip: ValueClip | None = None,
) -> LossFn:
    """L = mean(policy_term) + c_v·value_loss − c_e·H, with health metrics.

    Args:
        config: the run's config.
        hparams: the run's hparams (``ent_coef``, ``vf_coef``).
        networks: actor and critic.
        policy_term: the algorithm's per-sample policy loss.
        value_clip: ε of the value clip as a function of the algorithm state, or ``None``
            for no clip (it is also dropped when ``config.clip_value_loss`` is off).
    """
    actor, critic = networks

    def loss_fn(
        params: Any, mb: SampleBatch, algo_state: Any
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
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


def make_vtrace_relabel(config: Config, hparams: ActorCriticHParams, networks: Networks) -> Relabel:
    """V-trace advantages and targets of a batch under the current parameters.

    The behaviour policy μ is the one that collected the batch (``batch.log_prob``); π and
    V are the parameters at the start of the epoch, so later epochs are corrected for how
    far π has moved (ρ = π/μ clipped by ρ̄, traces by c̄). ``batch.values`` (the old values
    the value clip is centred on) is left as collected. When the section's
    ``IMPORTANCE_WEIGHTED`` says the loss multiplies each sample by π_θ/μ itself, the policy
    advantage leaves ρ out (else E_μ[r·ρ·Â·∇log π] would weight by (π/μ)² and bias the
    gradient).
    """
    actor, critic = networks
    recurrent = is_recurrent(networks)
    to_time = time_major(recurrent, (config.num_steps, config.num_envs))
    to_batch = batch_major(recurrent)

    def relabel(params: Any, batch: SampleBatch) -> SampleBatch:
        log_prob = distribution(actor.apply(params["actor"], batch.obs)).log_prob(batch.action)
        data = batch.rollout
        values, next_values, _ = bootstrap_values(
            critic, params["critic"], batch.obs, data.next_obs
        )
        advantages, targets = estimate(
            "vtrace",
            to_time(data.reward),
            to_time(values),
            to_time(next_values),
            to_time(data.terminated),
            to_time(data.done),
            hparams,
            log_rho=to_time(log_prob - batch.log_prob),
            weight_policy_advantage=not config.algo_config.IMPORTANCE_WEIGHTED,
        )
        advantages, targets = jax.lax.stop_gradient((advantages, targets))
        return batch._replace(advantages=to_batch(advantages), returns=to_batch(targets))

    return relabel


def actor_critic_rule(
    make_loss: MakeLoss, make_adaptation: MakeAdaptation | None = None
) -> MakeUpdateRule:
    """The first-order rule on an algorithm's loss (V-trace relabelled if asked)."""

    def make_update_rule(
        config: Config, hparams: ActorCriticHParams, networks: Networks
    ) -> UpdateRule:
        adaptation = make_adaptation(config, hparams, networks) if make_adaptation else STATELESS
        relabel = (
            make_vtrace_relabel(config, hparams, networks) if config.advantage == "vtrace" else None
        )
        loss_fn = make_loss(config, hparams, networks)
        return make_first_order_rule(config, hparams, loss_fn, adaptation, relabel)

    return make_update_rule


#: Flat sample batches, advantages by the section's estimator.
ACTOR_CRITIC_SAMPLES = sample_collector(lambda config: config.advantage)


def actor_critic_algorithm(
    name: str,
    hparams_cls: type[ActorCriticHParams],
    make_loss: MakeLoss,
    make_adaptation: MakeAdaptation | None = None,
    config_cls: type[ActorCriticConfig] = ActorCriticConfig,
    **kwargs: Any,
) -> Algorithm:
    """An :class:`~jaxpo.algos.base.Algorithm` of this family from its loss and state."""
    return Algorithm(
        name=name,
        config_cls=config_cls,
        hparams_cls=hparams_cls,
        collector=ACTOR_CRITIC_SAMPLES,
        make_loss=make_loss,
        make_update_rule=actor_critic_rule(make_loss, make_adaptation),
        **kwargs,
    )


def record_old_outputs(
    networks: Networks,
) -> Callable[[Any, Any, SampleBatch], tuple[Any, SampleBatch]]:
    """An :class:`~jaxpo.algos.first_order.Adaptation` ``prepare`` that stores π_old's outputs."""

    def prepare(params: Any, state: Any, batch: SampleBatch) -> tuple[Any, SampleBatch]:
        old = jax.lax.stop_gradient(networks.actor.apply(params["actor"], batch.obs))
        return state, batch._replace(old_outputs=old)

    return prepare


def mean_kl_after(
    networks: Networks, new_params: Any, batch: SampleBatch, reverse: bool = False
) -> jax.Array:
    """E_s[KL(π_old ‖ π_new)] over the batch (E_s[KL(π_new ‖ π_old)] if ``reverse``).

    ``batch.old_outputs`` holds π_old's outputs.
    """
    new = networks.actor.apply(new_params["actor"], batch.obs)
    pair = (new, batch.old_outputs) if reverse else (batch.old_outputs, new)
    return kl_divergence(*pair).mean()
