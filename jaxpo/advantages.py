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
    advantages = _reverse_accumulate(deltas, gamma * gae_lambda * not_done)
    return advantages, advantages + values


def vtrace(
    rewards: ArrayLike,
    values: ArrayLike,
    next_values: ArrayLike,
    terminated: ArrayLike,
    done: ArrayLike,
    log_rhos: ArrayLike,
    gamma: ArrayLike,
    gae_lambda: ArrayLike,
    rho_bar: ArrayLike,
    c_bar: ArrayLike,
    weight_policy_advantage: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """A_t = ρ_t·δ_t + γ·c_t·(1 − done_t)·A_{t+1}, v_t = V(s_t) + A_t, the V-trace targets.

    V-trace from Espeholt et al., "IMPALA: Scalable Distributed Deep-RL with Importance
    Weighted Actor-Learner Architectures", 2018, with the truncated importance weights
    ``ρ_t = min(ρ̄, π/μ)`` and ``c_t = λ·min(c̄, π/μ)``, where ``π/μ = exp(log_rhos_t)``, and
    the TD error ``δ_t = r_t + γ(1 − terminated_t)V(next_t) − V(s_t)`` of :func:`gae`. Episode
    boundaries and ``next_values`` mean what they do there: a truncation bootstraps from
    ``V(final_obs_t)``, a termination from 0, nothing flows across a boundary, and
    ``A_T = 0`` (the rollout's end is bootstrapped through ``next_values[T-1]``).

    The policy-gradient advantage is IMPALA's ``ρ_t(r_t + γ·v_{t+1} − V(s_t))`` with the
    λ-mixed bootstrap ``λ·v_{t+1} + (1 − λ)·V(s_{t+1})``, i.e.
    ``ρ_t·(δ_t + γλ(1 − done_t)·A_{t+1})``; for λ = 1 it is exactly IMPALA's. With
    ``log_rhos = 0`` and ``ρ̄ = c̄ = 1`` (on-policy, no clipping) ``(pg_advantages, targets)``
    equal :func:`gae`'s ``(advantages, returns)``.

    A loss that already importance-weights each sample by π_θ/μ (a ratio surrogate) must not
    be given ρ_t a second time: with ``weight_policy_advantage=False`` the policy advantage
    is ``δ_t + γλ(1 − done_t)·A_{t+1}``, ρ_t shaping only the value targets (and the
    corrections that flow back from later steps).

    Args:
        rewards: ``[T, B]`` (already scaled).
        values: ``V(s_t)``, ``[T, B]``.
        next_values: ``V(final_obs_t)``, ``[T, B]``.
        terminated: ``[T, B]`` bool, the episode reached a terminal state at ``t``.
        done: ``[T, B]`` bool, terminated or truncated at ``t``.
        log_rhos: ``log π(a_t|s_t) − log μ(a_t|s_t)``, ``[T, B]``, target minus behaviour.
        gamma: discount, scalar.
        gae_lambda: λ, scalar.
        rho_bar: ρ̄, clips the importance weight on the TD error, scalar.
        c_bar: c̄, clips the trace-cutting weight, scalar.
        weight_policy_advantage: multiply the policy advantage by ρ_t (IMPALA's, for a
            loss without an importance ratio), static.

    Returns:
        ``(pg_advantages, targets)``, both ``[T, B]``, with ``targets = values + A``.
    """
    rewards, values, next_values = (jnp.asarray(x) for x in (rewards, values, next_values))
    not_term = 1.0 - jnp.asarray(terminated, rewards.dtype)
    not_done = 1.0 - jnp.asarray(done, rewards.dtype)
    ratios = jnp.exp(jnp.asarray(log_rhos, rewards.dtype))
    rhos = jnp.minimum(rho_bar, ratios)
    cs = gae_lambda * jnp.minimum(c_bar, ratios)
    deltas = rewards + gamma * not_term * next_values - values
    corrections = _reverse_accumulate(rhos * deltas, gamma * cs * not_done)
    next_corrections = jnp.concatenate([corrections[1:], jnp.zeros_like(corrections[:1])])
    pg_advantages = deltas + gamma * gae_lambda * not_done * next_corrections
    if weight_policy_advantage:
        pg_advantages = rhos * pg_advantages
    return pg_advantages, values + corrections


def _reverse_accumulate(x: jax.Array, discount: jax.Array) -> jax.Array:
    """y_t = x_t + discount_t·y_{t+1}, y_T = 0, by a reverse scan over the leading axis.

    Args:
        x: ``[T, ...]``.
        discount: ``[T, ...]``, broadcastable with ``x[t]`` at each step.

    Returns:
        ``y``, ``[T, ...]``.
    """

    def step(carry: jax.Array, xs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        x_t, discount_t = xs
        y_t = x_t + discount_t * carry
        return y_t, y_t

    _, y = jax.lax.scan(step, jnp.zeros_like(x[0]), (x, discount), reverse=True)
    return y
