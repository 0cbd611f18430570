"""Advantage estimators over time-major rollouts ``[T, B]``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def gae(
    rewards: ArrayLike,
    values: ArrayLike,
    next_values: ArrayLike,
    terminated: ArrayLike,
    done: ArrayLike,
    gamma: ArrayLike,
    gae_lambda: ArrayLike,
) -> tuple[jax.Array, jax.Array]:
    """Â_t = δ_t + γλ(1 − done_t)Â_{t+1}, δ_t = r_t + γ(1 − terminated_t)V(next_t) − V(s_t).

    ``next_values[t]`` is the value of the observation the transition at ``t`` led to
    *before* any auto-reset (``V(final_obs_t)``), which is ``V(s_{t+1})`` when the episode
    goes on. So a time-limit truncation bootstraps from ``V(final_obs)`` and a termination
    from 0, and nothing flows across an episode boundary. The advantage after the last step
    is 0 (the rollout's end is bootstrapped through ``next_values[T-1]``). Schulman et al.,
    "High-Dimensional Continuous Control Using Generalized Advantage Estimation", 2016.

    Args:
        rewards: ``[T, B]`` (already scaled).
        values: ``V(s_t)``, ``[T, B]``.
        next_values: ``V(final_obs_t)``, ``[T, B]``.
        terminated: ``[T, B]`` bool, the episode reached a terminal state at ``t``.
        done: ``[T, B]`` bool, terminated or truncated at ``t``.
        gamma: discount, scalar.
        gae_lambda: λ, scalar.

    Returns:
        ``(advantages, returns)``, both ``[T, B]``, with ``returns = advantages + values``.
    """
    rewards, values, next_values = (jnp.asarray(x) for x in (rewards, values, next_values))
    not_term = 1.0 - jnp.asarray(terminated, rewards.dtype)
    not_done = 1.0 - jnp.asarray(done, rewards.dtype)
    deltas = rewards + gamma * not_term * next_values - values

    def backward(carry: jax.Array, xs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        delta, cont = xs
        adv = delta + gamma * gae_lambda * cont * carry
        return adv, adv

    _, advantages = jax.lax.scan(
        backward, jnp.zeros_like(deltas[0]), (deltas, not_done), reverse=True
    )
    return advantages, advantages + values
