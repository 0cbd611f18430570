"""KL-penalised surrogates of the constrained first-order family: PPO-KL, MDPO and MCPO.

Each takes per-sample arrays (no network inside); the KL terms are computed by the caller in
closed form (:func:`jaxpo.losses.kl.kl_divergence`) in the direction each method needs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .surrogate import importance_surrogate

#: β is kept in [KL_COEF_MIN, KL_COEF_MAX] so that endless doubling cannot reach inf (inf·0 = NaN
#: at θ = θ_old) and endless halving cannot reach 0 (from which it could never grow back).
KL_COEF_MIN, KL_COEF_MAX = 1e-6, 1e6


def ppo_kl(
    log_prob: ArrayLike,
    old_log_prob: ArrayLike,
    advantages: ArrayLike,
    kl_old_new: ArrayLike,
    kl_coef: ArrayLike,
) -> jax.Array:
    """−r·Â + β·KL(π_old ‖ π_θ), per sample (PPO's adaptive-penalty form).

    Args:
        log_prob: ``log π_θ(a|s)``, ``[N]``.
        old_log_prob: ``log π_old(a|s)``, ``[N]``.
        advantages: ``Â``, ``[N]``.
        kl_old_new: ``KL(π_old(·|s) ‖ π_θ(·|s))``, ``[N]``.
        kl_coef: the penalty coefficient β ≥ 0 (no gradient flows into it), scalar.
    """
    kl_coef = jax.lax.stop_gradient(jnp.asarray(kl_coef))
    return importance_surrogate(log_prob, old_log_prob, advantages) + kl_coef * kl_old_new


def adapt_kl_coef(kl_coef: ArrayLike, kl: ArrayLike, target: ArrayLike) -> jax.Array:
    """β ← 2β if d > 1.5·d_targ, β/2 if d < d_targ/1.5, else β (d = measured mean KL).

    The lower test is evaluated as 1.5·d < d_targ (multiplications only), so eager and jitted
    calls agree exactly at the boundaries. The result is clipped to [KL_COEF_MIN, KL_COEF_MAX].
    """
    coef = jnp.asarray(kl_coef)
    new = jnp.where(kl > 1.5 * target, 2.0 * coef, jnp.where(1.5 * kl < target, 0.5 * coef, coef))
    return jnp.clip(new, KL_COEF_MIN, KL_COEF_MAX)


def mdpo(
    log_prob: ArrayLike,
    old_log_prob: ArrayLike,
    advantages: ArrayLike,
    kl_new_old: ArrayLike,
    inv_step: ArrayLike,
) -> jax.Array:
    """−r·Â + (1/t_k)·KL(π_θ ‖ π_old), per sample — note the direction: new ‖ old.

    Args:
        log_prob: ``log π_θ(a|s)``, ``[N]``.
        old_log_prob: ``log π_old(a|s)``, ``[N]``.
        advantages: ``Â``, ``[N]``.
        kl_new_old: ``KL(π_θ(·|s) ‖ π_old(·|s))``, ``[N]``.
        inv_step: ``1/t_k`` ≥ 0, scalar (see :func:`mdpo_inverse_step`).
    """
    inv_step = jax.lax.stop_gradient(jnp.asarray(inv_step))
    return importance_surrogate(log_prob, old_log_prob, advantages) + inv_step * kl_new_old


def mdpo_inverse_step(iteration: ArrayLike, horizon: ArrayLike) -> jax.Array:
    """1/t_k with t_k = 1 − (k − 1)/K for iteration k ≥ 1, floored at t_k ≥ 1/K.

    Computed as K / max(K − k + 1, 1), exact for whole k and K.
    """
    horizon = jnp.asarray(horizon, jnp.float32)
    remaining = horizon - jnp.asarray(iteration, jnp.float32) + 1.0
    return horizon / jnp.maximum(remaining, 1.0)


def mcpo(
    log_prob: ArrayLike,
    old_log_prob: ArrayLike,
    advantages: ArrayLike,
    kl_old_new: ArrayLike,
    kl_virtual_new: ArrayLike,
    beta: ArrayLike,
    kl_coef: ArrayLike = 1.0,
) -> jax.Array:
    """−r·Â + c·[β·KL(π_old ‖ π_θ) + (1 − β)·KL(π_ψ ‖ π_θ)], per sample.

    Args:
        log_prob: ``log π_θ(a|s)``, ``[N]``.
        old_log_prob: ``log π_old(a|s)``, ``[N]``.
        advantages: ``Â``, ``[N]``.
        kl_old_new: ``KL(π_old ‖ π_θ)`` per state, ``[N]``.
        kl_virtual_new: ``KL(π_ψ ‖ π_θ)`` per state, to the virtual policy ψ, ``[N]``.
        beta: switching coefficient in [0, 1] (no gradient), scalar.
        kl_coef: c ≥ 0, the scale of both KL terms (no gradient), scalar.
    """
    beta = jax.lax.stop_gradient(jnp.asarray(beta))
    kl_coef = jax.lax.stop_gradient(jnp.asarray(kl_coef))
    penalty = beta * kl_old_new + (1.0 - beta) * kl_virtual_new
    return importance_surrogate(log_prob, old_log_prob, advantages) + kl_coef * penalty
