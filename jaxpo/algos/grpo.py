"""GRPO and TIC-GRPO: critic-free, group-relative policy optimisation on control tasks.

Each update rolls fresh groups of G trajectories that share a start state (see
:mod:`jaxpo.collect`); a trajectory's advantage is its return standardised within its group,
so there is no value network. The policy takes ``update_epochs`` × ``num_minibatches`` Adam
steps, minibatches being sets of whole trajectories, on

L = mean_i surrogate_i + β·mean_i mean_t k3(π_θ, π_ref) − c_e·H,

where GRPO's surrogate averages per-step clipped ratios over a trajectory's steps and
TIC-GRPO's clips one trajectory-level ratio (see :mod:`jaxpo.losses.group`). The reference
policy π_ref of the k3 KL penalty is the initial policy, or the current one every
``ref_update_interval`` updates; it is algorithm state. ``lower_clip=False`` (static) drops the
lower clip 1 − ε_low of the clipped ratio, leaving TIC-GRPO's upper clip only.

Each update reports, averaged over its minibatch steps: ``policy_loss``, ``kl_ref``,
``entropy``; ``approx_kl``, the mean of (r_t − 1) − log r_t over the valid steps (per-step
ratios, for both algorithms); and, of the ratio the algorithm clips (GRPO: the per-step r_t
over the valid steps; TIC-GRPO: the trajectory ratio w over the trajectories), ``clip_frac``,
the share outside the clip range, and ``ess_frac``, the effective sample size of those ratios
over their number (see :func:`jaxpo.losses.group.ratio_metrics`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from ..batches import TrajectoryBatch
from ..collect import TRAJECTORIES
from ..config import AlgoConfig, Config
from ..hparams import HParams, hparam
from ..losses.group import (
    grpo_ratio_metrics,
    grpo_surrogate,
    k3_kl,
    masked_trajectory_mean,
    tic_grpo_ratio_metrics,
    tic_grpo_surrogate,
)
from ..losses.health import approx_kl
from ..networks import Networks, distribution
from ..validation import positive_int
from .base import Algorithm, LossFn, MakeLoss, UpdateRule, register
from .first_order import Adaptation, make_first_order_rule

#: ``(log_prob, old_log_prob, advantages, mask, clip_eps, clip_eps_high, lower_clip) -> [n]``.
Surrogate = Callable[..., jax.Array]

#: ``(log_prob, old_log_prob, mask, clip_eps, clip_eps_high, lower_clip) -> {"clip_frac",
#: "ess_frac"}`` of the ratio the matching :data:`Surrogate` clips.
RatioMetrics = Callable[..., dict[str, jax.Array]]


@dataclasses.dataclass(frozen=True)
class GRPOConfig(AlgoConfig):
    """Static options of GRPO and TIC-GRPO (4 groups × G = 8 trajectories of up to 500 steps).

    Attributes:
        group_size: G, trajectories per group: ``num_envs = groups × G`` environments, each
            group reset from one key so its trajectories share a start state;
            ``num_steps`` is the horizon.
        ref_update_interval: the reference policy (for the k3 KL penalty) becomes the
            current policy every this many updates; 0 keeps the initial policy.
        lower_clip: clip the ratio from below at 1 − ε_low (``clip_eps``) as well as from
            above at 1 + ε_high; ``False`` clips it from above only, ``min(r, 1 + ε_high)``,
            as TIC-GRPO is stated (it applies to GRPO's per-step ratios too). Off, it changes
            only samples with r < 1 − ε_low and Â < 0, which then keep their gradient.
    """

    group_size: int = 8
    ref_update_interval: int = 0
    lower_clip: bool = True

    CONFIG_DEFAULTS: ClassVar = {
        "num_envs": 32,
        "num_steps": 500,
        "update_epochs": 2,
        "num_minibatches": 2,
        "total_timesteps": 2_000_000,
    }

    def validate(self, config: Config) -> None:
        """Checks the groups and the trajectory batch (minibatches are sets of trajectories)."""
        positive_int("group_size", self.group_size, minimum=2)
        positive_int("ref_update_interval", self.ref_update_interval, minimum=0)
        if not isinstance(self.lower_clip, bool):
            raise ValueError(f"lower_clip must be a bool, got {self.lower_clip!r}")
        if config.num_envs % self.group_size:
            raise ValueError(
                f"group_size={self.group_size} does not divide num_envs={config.num_envs} "
                f"(num_envs = groups x group_size for {config.algo})"
            )
        if config.num_envs % config.num_minibatches:
            raise ValueError(
                f"num_minibatches={config.num_minibatches} does not divide the "
                f"num_envs={config.num_envs} trajectories of {config.algo}'s batch"
            )
        if config.normalize_obs:
            raise ValueError(
                f"normalize_obs is not supported by {config.algo}: its environments are reset "
                f"every update, which would reset the running statistics"
            )


@struct.dataclass
class GRPOHParams(HParams):
    """GRPO's and TIC-GRPO's traced hyperparameters.

    ``gamma`` discounts the trajectory return (1: the episode return); ``gae_lambda`` and
    ``reward_scale`` have no effect (no critic; the group standardisation removes any
    reward scale).
    """

    ent_coef: jax.Array = hparam(0.0, "entropy bonus coefficient c_e", ge=0.0)
    clip_eps: jax.Array = hparam(0.2, "ε_low, the ratio's lower clip 1 − ε_low", gt=0.0, lt=1.0)
    clip_eps_high: jax.Array = hparam(0.2, "ε_high, the ratio's upper clip 1 + ε_high", gt=0.0)
    kl_coef: jax.Array = hparam(
        0.0, "β of the k3 KL penalty to the reference policy (0: none)", ge=0.0
    )

    DEFAULTS: ClassVar = {"learning_rate": 3e-3, "gamma": 1.0, "gae_lambda": 1.0}


@struct.dataclass
class TICGRPOHParams(GRPOHParams):
    """TIC-GRPO's traced hyperparameters: GRPO's, with the DAPO-style upper clip 0.28."""

    DEFAULTS: ClassVar = {"clip_eps_high": 0.28}


def reference_policy(config: Config, hparams: GRPOHParams, networks: Networks) -> Adaptation:
    """π_ref as algorithm state: its log-probs go into the batch before each update.

    Args:
        config: the run's config (``ref_update_interval``: 0 keeps the initial policy,
            k > 0 makes the current policy the reference after every k-th update).
        hparams: the run's hparams (unused).
        networks: the policy network.

    Returns:
        The :class:`~jaxpo.algos.first_order.Adaptation` whose state is
        ``{"ref": actor params, "updates": int32}``.
    """
    actor = networks.actor

    def prepare(
        params: Any, state: dict[str, Any], batch: TrajectoryBatch
    ) -> tuple[Any, TrajectoryBatch]:
        ref = distribution(actor.apply(state["ref"], batch.obs)).log_prob(batch.action)
        extras = {**batch.extras, "ref_log_prob": jax.lax.stop_gradient(ref)}
        return state, batch._replace(extras=extras)

    def finish(
        state: dict[str, Any], old: Any, new: Any, batch: TrajectoryBatch
    ) -> tuple[Any, dict]:
        updates = state["updates"] + 1
        ref = state["ref"]
        if config.ref_update_interval:
            due = updates % config.ref_update_interval == 0
            ref = jax.tree.map(lambda n, r: jnp.where(due, n, r), new["actor"], ref)
        return {"ref": ref, "updates": updates}, {}

    return Adaptation(
        init=lambda params: {"ref": params["actor"], "updates": jnp.int32(0)},
        prepare=prepare,
        finish=finish,
    )


def make_group_loss(surrogate: Surrogate, ratio_metrics: RatioMetrics) -> MakeLoss:
    """The loss builder of a grouped algorithm with the given trajectory surrogate.

    ``ratio_metrics`` gives ``clip_frac`` and ``ess_frac`` of the ratio ``surrogate`` clips.
    """

    def make_loss(config: Config, hparams: GRPOHParams, networks: Networks) -> LossFn:
        """mean_i surrogate_i + β·mean_i mean_t k3(π_θ, π_ref) − c_e·H on whole trajectories."""

        def loss_fn(params: Any, mb: TrajectoryBatch, state: Any) -> tuple[jax.Array, dict]:
            dist = distribution(networks.actor.apply(params["actor"], mb.obs))
            log_prob = dist.log_prob(mb.action)
            mask = mb.mask
            clip = (hparams.clip_eps, hparams.clip_eps_high, config.lower_clip)
            policy_loss = surrogate(log_prob, mb.log_prob, mb.advantages, mask, *clip).mean()
            kl_ref = masked_trajectory_mean(k3_kl(log_prob, mb.extras["ref_log_prob"]), mask)
            entropy = masked_trajectory_mean(dist.entropy(), mask).mean()
            loss = policy_loss + hparams.kl_coef * kl_ref.mean() - hparams.ent_coef * entropy
            valid = mask > 0
            log_ratio = jax.lax.stop_gradient(jnp.where(valid, log_prob - mb.log_prob, 0.0))
            return loss, {
                "policy_loss": policy_loss,
                "kl_ref": kl_ref.mean(),
                "entropy": entropy,
                "approx_kl": approx_kl(log_ratio) * mask.size / jnp.maximum(mask.sum(), 1.0),
                **ratio_metrics(jax.lax.stop_gradient(log_prob), mb.log_prob, mask, *clip),
            }

        return loss_fn

    return make_loss


def group_algorithm(
    name: str,
    hparams_cls: type[GRPOHParams],
    surrogate: Surrogate,
    ratio_metrics: RatioMetrics,
) -> Algorithm:
    """A grouped :class:`~jaxpo.algos.base.Algorithm` with the given trajectory surrogate.

    ``ratio_metrics`` reports ``clip_frac`` and ``ess_frac`` of the ratio ``surrogate`` clips.
    """
    make_loss = make_group_loss(surrogate, ratio_metrics)

    def make_update_rule(config: Config, hparams: GRPOHParams, networks: Networks) -> UpdateRule:
        loss_fn = make_loss(config, hparams, networks)
        return make_first_order_rule(
            config, hparams, loss_fn, reference_policy(config, hparams, networks)
        )

    return Algorithm(
        name=name,
        config_cls=GRPOConfig,
        hparams_cls=hparams_cls,
        collector=TRAJECTORIES,
        make_loss=make_loss,
        make_update_rule=make_update_rule,
    )


GRPO = register(group_algorithm("grpo", GRPOHParams, grpo_surrogate, grpo_ratio_metrics))
TIC_GRPO = register(
    group_algorithm("tic_grpo", TICGRPOHParams, tic_grpo_surrogate, tic_grpo_ratio_metrics)
)

__all__ = [
    "GRPO",
    "GRPOConfig",
    "GRPOHParams",
    "RatioMetrics",
    "Surrogate",
    "TICGRPOHParams",
    "TIC_GRPO",
    "group_algorithm",
    "make_group_loss",
    "reference_policy",
]
