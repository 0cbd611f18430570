"""GRPO and TIC-GRPO: critic-free, group-relative policy optimisation on control tasks.

Each update rolls fresh groups of G trajectories that share a start state (see
:mod:`jaxpo.grouped`); a trajectory's advantage is its return standardised within its group,
so there is no value network. The policy takes ``update_epochs`` × ``num_minibatches`` Adam
steps, minibatches being sets of whole trajectories, on

L = mean_i surrogate_i + β·mean_i mean_t k3(π_θ, π_ref) − c_e·H,

where GRPO's surrogate averages per-step clipped ratios over a trajectory's steps and
TIC-GRPO's clips one trajectory-level ratio (see :mod:`jaxpo.losses.group`). The reference
policy π_ref of the k3 KL penalty is the initial policy, or the current one every
``config.ref_update_interval`` updates; it is algorithm state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from ..config import Config
from ..hparams import HParams
from ..losses.group import grpo_surrogate, k3_kl, masked_trajectory_mean, tic_grpo_surrogate
from ..losses.health import approx_kl
from ..networks import Actor, Critic, distribution
from .base import Algorithm, Batch, UpdateRule
from .first_order import Adaptation, make_first_order_rule

#: ``(log_prob, old_log_prob, advantages, mask, clip_low, clip_high) -> [n]``.
Surrogate = Callable[..., jax.Array]


@struct.dataclass
class GRPOHParams(HParams):
    """GRPO's and TIC-GRPO's traced hyperparameters.

    ``gamma`` discounts the trajectory return (1: the episode return); ``gae_lambda`` and
    ``reward_scale`` have no effect (no critic; the group standardisation removes any
    reward scale).

    Attributes:
        ent_coef: entropy bonus coefficient c_e, ≥ 0.
        clip_eps: ε_low, the ratio's lower clip 1 − ε_low, in (0, 1).
        clip_eps_high: ε_high, the ratio's upper clip 1 + ε_high, > 0.
        kl_coef: β of the k3 KL penalty to the reference policy, ≥ 0 (0: no penalty).
    """

    ent_coef: jax.Array
    clip_eps: jax.Array
    clip_eps_high: jax.Array
    kl_coef: jax.Array

    BOUNDS: ClassVar = {
        "ent_coef": (0.0, None, True, False),
        "clip_eps": (0.0, 1.0, False, False),
        "clip_eps_high": (0.0, None, False, False),
        "kl_coef": (0.0, None, True, False),
    }


DEFAULTS = {
    "learning_rate": 3e-3,
    "gamma": 1.0,
    "gae_lambda": 1.0,
    "max_grad_norm": 0.5,
    "reward_scale": 1.0,
    "ent_coef": 0.0,
    "clip_eps": 0.2,
    "clip_eps_high": 0.2,
    "kl_coef": 0.0,
}

#: The static shape of a grouped run: 4 groups × G = 8 trajectories of up to 500 steps.
CONFIG_DEFAULTS = {
    "num_envs": 32,
    "group_size": 8,
    "num_steps": 500,
    "update_epochs": 2,
    "num_minibatches": 2,
    "total_timesteps": 2_000_000,
}


def reference_policy(config: Config, actor: Actor) -> Adaptation:
    """π_ref as algorithm state: its log-probs go into the batch before each update.

    Args:
        config: the run's config (``ref_update_interval``: 0 keeps the initial policy,
            k > 0 makes the current policy the reference after every k-th update).
        actor: the policy network.

    Returns:
        The :class:`~jaxpo.algos.first_order.Adaptation` whose state is
        ``{"ref": actor params, "updates": int32}``.
    """

    def prepare(params: Any, state: dict[str, Any], batch: Batch) -> tuple[Any, Batch]:
        ref = distribution(actor.apply(state["ref"], batch.obs)).log_prob(batch.action)
        extras = {**batch.extras, "ref_log_prob": jax.lax.stop_gradient(ref)}
        return state, batch._replace(extras=extras)

    def finish(state: dict[str, Any], old: Any, new: Any, batch: Batch) -> tuple[Any, dict]:
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


def make_group_rule(surrogate: Surrogate) -> Callable[..., UpdateRule]:
    """The update-rule builder of a grouped algorithm with the given trajectory surrogate."""

    def make_rule(config: Config, hparams: GRPOHParams, actor: Actor, _: Critic) -> UpdateRule:
        def loss_fn(params: Any, mb: Batch, state: Any) -> tuple[jax.Array, dict]:
            dist = distribution(actor.apply(params["actor"], mb.obs))
            log_prob = dist.log_prob(mb.action)
            mask = mb.extras["mask"]
            policy_loss = surrogate(
                log_prob,
                mb.log_prob,
                mb.advantages,
                mask,
                hparams.clip_eps,
                hparams.clip_eps_high,
            ).mean()
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
            }

        return make_first_order_rule(config, hparams, loss_fn, reference_policy(config, actor))

    return make_rule


GRPO = Algorithm(
    name="grpo",
    hparams_cls=GRPOHParams,
    defaults=DEFAULTS,
    make_update_rule=make_group_rule(grpo_surrogate),
    config_defaults=CONFIG_DEFAULTS,
    grouped=True,
)

TIC_GRPO = Algorithm(
    name="tic_grpo",
    hparams_cls=GRPOHParams,
    defaults={**DEFAULTS, "clip_eps_high": 0.28},
    make_update_rule=make_group_rule(tic_grpo_surrogate),
    config_defaults=CONFIG_DEFAULTS,
    grouped=True,
)

__all__ = ["GRPO", "GRPOHParams", "TIC_GRPO", "make_group_rule"]
