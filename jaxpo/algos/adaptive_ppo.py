"""Adaptive-PPO: PPO-clip whose ε is chosen every update by a UCB1 bandit.

The arms are the static ``config.clip_candidates``. Before each update the arm used by the
previous update is rewarded with the return improvement it led to, R_u − R_prev, where R_u
is the mean return of the episodes that finished in rollout u and R_prev that of the latest
earlier rollout that finished any. Both must come from finished episodes: a rollout that
finished none gives no reward and no pull (its carried-forward return would make the
improvement exactly 0), nor does a non-finite improvement. The bandit normalises rewards
into [0, 1] by the range seen so far (see :mod:`jaxpo.bandit`). The UCB1 arm then sets ε of
this update's ratio clip (and of the value clip). With a single candidate it is PPO with that ε.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from ..bandit import ucb_init, ucb_observe, ucb_select
from ..batches import SampleBatch
from ..config import Config
from ..hparams import hparam
from ..networks import Networks
from .actor_critic import (
    ActorCriticConfig,
    ActorCriticHParams,
    PolicyInputs,
    actor_critic_algorithm,
    make_actor_critic_loss,
)
from .base import LossFn, register
from .first_order import Adaptation
from .ppo import clipped_term


@dataclasses.dataclass(frozen=True)
class AdaptivePPOConfig(ActorCriticConfig):
    """Adaptive-PPO's static options.

    Attributes:
        clip_candidates: the clip values ε the UCB bandit chooses among.
    """

    clip_candidates: tuple[float, ...] = (0.1, 0.2, 0.3)

    def validate(self, config: Config) -> None:
        """Checks the family's fields and the candidates."""
        super().validate(config)
        if not self.clip_candidates or any(
            not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0
            for eps in self.clip_candidates
        ):
            raise ValueError(
                f"clip_candidates must be a non-empty tuple of finite values > 0, "
                f"got {self.clip_candidates!r}"
            )


@struct.dataclass
class AdaptivePPOHParams(ActorCriticHParams):
    """Adaptive-PPO's traced hyperparameters."""

    ucb_coef: jax.Array = hparam(1.0, "c, the UCB1 exploration coefficient", ge=0.0)


def clip_bandit(config: Config, hparams: AdaptivePPOHParams, networks: Networks) -> Adaptation:
    """The bandit as algorithm state; ``prepare`` rewards the last arm and picks the next."""
    candidates = jnp.asarray(config.clip_candidates, jnp.float32)
    num_arms = len(config.clip_candidates)

    def init(params: Any) -> dict[str, Any]:
        return {
            "bandit": ucb_init(num_arms),
            "arm": jnp.int32(0),
            "picks": jnp.zeros((num_arms,), jnp.float32),
            "last_return": jnp.float32(0.0),
            "seen": jnp.bool_(False),
        }

    def prepare(params: Any, state: dict[str, Any], batch: SampleBatch) -> tuple[Any, SampleBatch]:
        data = batch.rollout
        ret = data.episode_return
        seen = jnp.logical_or(state["seen"], data.episodes > 0)
        improvement = ret - state["last_return"]
        # Reward only real improvements: both returns from finished episodes (not the 0
        # placeholder before the first one, nor a return carried over a rollout that
        # finished none) and finite.
        real = state["seen"] & (data.episodes > 0) & jnp.isfinite(improvement)
        rewarded = ucb_observe(state["bandit"], state["arm"], improvement)
        bandit = jax.tree.map(lambda new, old: jnp.where(real, new, old), rewarded, state["bandit"])
        arm = ucb_select(bandit, hparams.ucb_coef)
        state = {
            "bandit": bandit,
            "arm": arm,
            "picks": state["picks"].at[arm].add(1.0),
            "last_return": jnp.where(jnp.isfinite(ret), ret, state["last_return"]),
            "seen": seen,
        }
        return state, batch

    def finish(state: dict[str, Any], old: Any, new: Any, batch: SampleBatch) -> tuple[Any, dict]:
        picks = {f"arm_picks_{k}": state["picks"][k] for k in range(num_arms)}
        return state, {"clip_eps": candidates[state["arm"]], **picks}

    return Adaptation(init=init, prepare=prepare, finish=finish)


def make_adaptive_ppo_loss(
    config: Config, hparams: AdaptivePPOHParams, networks: Networks
) -> LossFn:
    """PPO's loss with ε = clip_candidates[arm], the arm in the bandit state."""
    candidates = jnp.asarray(config.clip_candidates, jnp.float32)

    def clip_eps(state: dict[str, Any]) -> jax.Array:
        return candidates[state["arm"]]

    def policy_term(inputs: PolicyInputs, state: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
        return clipped_term(inputs, clip_eps(state))

    return make_actor_critic_loss(config, hparams, networks, policy_term, clip_eps)


ADAPTIVE_PPO = register(
    actor_critic_algorithm(
        "adaptive_ppo",
        AdaptivePPOHParams,
        make_adaptive_ppo_loss,
        clip_bandit,
        config_cls=AdaptivePPOConfig,
    )
)

__all__ = [
    "ADAPTIVE_PPO",
    "AdaptivePPOConfig",
    "AdaptivePPOHParams",
    "clip_bandit",
    "make_adaptive_ppo_loss",
]
