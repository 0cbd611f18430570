"""PPO-clip: clipped surrogate + value loss − entropy bonus, epochs × minibatches of Adam."""

from __future__ import annotations

from typing import Any, ClassVar

import jax
from flax import struct

from ..config import Config
from ..hparams import HParams
from ..losses import health
from ..losses.ppo import ppo_clip
from ..losses.value import value_loss
from ..networks import Actor, Critic, distribution
from .base import Algorithm, Batch, UpdateRule
from .first_order import make_first_order_rule


@struct.dataclass
class PPOHParams(HParams):
    """PPO's traced hyperparameters (in addition to :class:`~jaxpo.hparams.HParams`).

    Attributes:
        clip_eps: ε of the ratio clip (and of the value clip), > 0.
        ent_coef: entropy bonus coefficient c_e, ≥ 0.
        vf_coef: value-loss coefficient c_v, ≥ 0.
    """

    clip_eps: jax.Array
    ent_coef: jax.Array
    vf_coef: jax.Array

    BOUNDS: ClassVar = {
        "clip_eps": (0.0, None, False, False),
        "ent_coef": (0.0, None, True, False),
        "vf_coef": (0.0, None, True, False),
    }


DEFAULTS = {
    "learning_rate": 2.5e-4,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "max_grad_norm": 0.5,
    "reward_scale": 1.0,
    "clip_eps": 0.2,
    "ent_coef": 0.01,
    "vf_coef": 0.5,
}


def normalize(advantages: jax.Array) -> jax.Array:
    """(Â − mean) / (std + 1e-8) over the given samples."""
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


def make_ppo_loss(config: Config, hparams: PPOHParams, actor: Actor, critic: Critic) -> Any:
    """L = ppo_clip + c_v·value_loss − c_e·H on a minibatch, with health metrics."""

    def loss_fn(params: Any, mb: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
        dist = distribution(actor.apply(params["actor"], mb.obs))
        log_prob = dist.log_prob(mb.action)
        entropy = dist.entropy().mean()
        adv = normalize(mb.advantages) if config.normalize_advantages else mb.advantages
        policy_loss = ppo_clip(log_prob, mb.log_prob, adv, hparams.clip_eps).mean()
        values = critic.apply(params["critic"], mb.obs)
        v_clip = hparams.clip_eps if config.clip_value_loss else None
        v_loss = value_loss(values, mb.returns, mb.values, v_clip).mean()
        loss = policy_loss + hparams.vf_coef * v_loss - hparams.ent_coef * entropy
        log_ratio = jax.lax.stop_gradient(log_prob - mb.log_prob)
        return loss, {
            "policy_loss": policy_loss,
            "value_loss": v_loss,
            "entropy": entropy,
            "approx_kl": health.approx_kl(log_ratio),
            "clip_frac": health.clip_fraction(log_ratio, hparams.clip_eps),
            "ess_frac": health.ess_fraction(log_ratio),
        }

    return loss_fn


def make_ppo_rule(config: Config, hparams: PPOHParams, actor: Actor, critic: Critic) -> UpdateRule:
    """PPO's update rule: the first-order rule on :func:`make_ppo_loss`."""
    return make_first_order_rule(config, hparams, make_ppo_loss(config, hparams, actor, critic))


PPO = Algorithm(
    name="ppo",
    hparams_cls=PPOHParams,
    defaults=DEFAULTS,
    make_update_rule=make_ppo_rule,
)

__all__ = ["PPO", "PPOHParams", "make_ppo_loss", "make_ppo_rule", "normalize"]
