"""Critic-free group-relative losses: GRPO and TIC-GRPO on padded trajectories.

GRPO (Shao et al., "DeepSeekMath", 2024) replaces the critic by a group baseline: ``G``
trajectories start from the same state and each one's return is standardised within its group.
TIC-GRPO (trajectory-level importance correction) replaces GRPO's per-step ratios by one
trajectory-level ratio ``w = Π_t π_θ(a_t|s_t) / π_old(a_t|s_t)``.

Conventions: a batch holds ``E = num_groups·G`` trajectories, consecutive blocks of ``G`` forming
a group; trajectories are padded to a horizon ``H`` and ``mask[n, H]`` (1 valid, 0 padding) marks
the valid steps. Values at padded steps never reach an output or a gradient, even when they are
huge, infinite or NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .ppo import ppo_clip


def _at_least_f32(x: ArrayLike) -> jax.Array:
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _zero_padding(x: ArrayLike, mask: jax.Array) -> jax.Array:
    """``x`` with padded steps set to 0, so that garbage there cannot poison values or gradients."""
    return jnp.where(mask > 0, jnp.asarray(x), 0.0)


def group_advantages(returns: ArrayLike, group_size: int, eps: float = 1e-8) -> jax.Array:
    """Â_i = (R_i − mean_g R) / (std_g R + ε) within each group g of ``group_size`` trajectories.

    ``std`` is the population standard deviation (ddof 0). A group whose returns are all equal
    gives exactly 0 for each of its members (never NaN).

    Args:
        returns: ``R``, ``[E]``, with ``E`` a multiple of ``group_size``; consecutive blocks of
            ``group_size`` entries form a group.
        group_size: ``G`` ≥ 1, a static Python int.
        eps: ε ≥ 0 added to the standard deviation.

    Returns:
        ``Â``, ``[E]``.

    Raises:
        ValueError: ``returns`` is not 1-D, or ``group_size`` is not a positive int dividing ``E``.
    """
    returns = _at_least_f32(returns)
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    if returns.ndim != 1:
        raise ValueError(f"returns must be 1-D [E], got shape {returns.shape}")
    if returns.shape[0] % group_size:
        raise ValueError(
            f"the batch size {returns.shape[0]} is not divisible by group_size {group_size}"
        )
    groups = returns.reshape(-1, group_size)
    mean = jnp.mean(groups, axis=1, keepdims=True)
    std = jnp.std(groups, axis=1, keepdims=True)
    # Equal returns: the float mean of equal values need not equal them, so test max == min.
    flat = jnp.max(groups, axis=1, keepdims=True) == jnp.min(groups, axis=1, keepdims=True)
    safe_denominator = jnp.where(flat, 1.0, std + eps)
    adv = jnp.where(flat, 0.0, (groups - mean) / safe_denominator)
    return adv.reshape(-1)


def masked_trajectory_mean(x: ArrayLike, mask: ArrayLike) -> jax.Array:
    """Σ_t mask·x / max(Σ_t mask, 1) per trajectory.

    Args:
        x: ``[n, H]``.
        mask: ``[n, H]``, 1 at valid steps and 0 at padding.

    Returns:
        ``[n]``.
    """
    mask = jnp.asarray(mask)
    total = jnp.sum(mask * _zero_padding(x, mask), axis=-1)
    return total / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)


def trajectory_log_ratio(
    log_prob: ArrayLike, old_log_prob: ArrayLike, mask: ArrayLike, limit: float = 20.0
) -> jax.Array:
    """``log w = clip(Σ_t mask·(log π_θ − log π_old), −limit, limit)`` per trajectory.

    The sum runs in (at least) float32; the clamp keeps ``exp(log w)`` finite.

    Args:
        log_prob: ``log π_θ(a_t|s_t)``, ``[n, H]``.
        old_log_prob: ``log π_old(a_t|s_t)`` (no gradient flows into it), ``[n, H]``.
        mask: ``[n, H]``, 1 at valid steps and 0 at padding.
        limit: the clamp on ``|log w|``, > 0.

    Returns:
        ``log w``, ``[n]``.
    """
    mask = jnp.asarray(mask)
    log_prob = _at_least_f32(_zero_padding(log_prob, mask))
    old_log_prob = jax.lax.stop_gradient(_at_least_f32(_zero_padding(old_log_prob, mask)))
    log_w = jnp.sum(mask.astype(log_prob.dtype) * (log_prob - old_log_prob), axis=-1)
    return jnp.clip(log_w, -limit, limit)


def grpo_surrogate(
    log_prob: ArrayLike,
    old_log_prob: ArrayLike,
    advantages: ArrayLike,
    mask: ArrayLike,
    clip_eps: ArrayLike,
    clip_eps_high: ArrayLike,
) -> jax.Array:
    """mean_t over valid steps of −min(r_t·Â, clip(r_t, 1−ε_low, 1+ε_high)·Â), r_t = π_θ/π_old.

    Each trajectory's advantage ``Â`` is shared by all of its steps.

    Args:
        log_prob: ``log π_θ(a_t|s_t)``, ``[n, H]``.
        old_log_prob: ``log π_old(a_t|s_t)`` (no gradient flows into it), ``[n, H]``.
        advantages: ``Â`` per trajectory, ``[n]`` (treated as constants).
        mask: ``[n, H]``, 1 at valid steps and 0 at padding.
        clip_eps: ε_low > 0, scalar (may be traced).
        clip_eps_high: ε_high > 0, scalar (may be traced).

    Returns:
        The per-trajectory loss to minimise, ``[n]``; take its mean.
    """
    mask = jnp.asarray(mask)
    per_step = ppo_clip(
        _zero_padding(log_prob, mask),
        _zero_padding(old_log_prob, mask),
        jnp.asarray(advantages)[:, None],
        clip_eps,
        clip_eps_high,
    )
    return masked_trajectory_mean(per_step, mask)


def tic_grpo_surrogate(
    log_prob: ArrayLike,
    old_log_prob: ArrayLike,
    advantages: ArrayLike,
    mask: ArrayLike,
    clip_eps: ArrayLike,
    clip_eps_high: ArrayLike,
) -> jax.Array:
    """−min(w·Â, clip(w, 1−ε_low, 1+ε_high)·Â) with w = Π_t π_θ/π_old over valid steps.

    ``w = exp(trajectory_log_ratio(...))`` (default clamp). Public TIC-GRPO reimplementations use
    an upper bound of 1.28, i.e. ``clip_eps_high = 0.28``.

    Args:
        log_prob: ``log π_θ(a_t|s_t)``, ``[n, H]``.
        old_log_prob: ``log π_old(a_t|s_t)`` (no gradient flows into it), ``[n, H]``.
        advantages: ``Â`` per trajectory, ``[n]`` (treated as constants).
        mask: ``[n, H]``, 1 at valid steps and 0 at padding.
        clip_eps: ε_low > 0, scalar (may be traced).
        clip_eps_high: ε_high > 0, scalar (may be traced).

    Returns:
        The per-trajectory loss to minimise, ``[n]``; take its mean.
    """
    log_w = trajectory_log_ratio(log_prob, old_log_prob, mask)
    return ppo_clip(log_w, jnp.zeros_like(log_w), advantages, clip_eps, clip_eps_high)


def k3_kl(log_prob: ArrayLike, ref_log_prob: ArrayLike) -> jax.Array:
    """exp(x) − x − 1 with x = log π_ref − log π_θ: the k3 estimator of KL(π_θ‖π_ref).

    Unbiased for KL(π_θ‖π_ref) when the actions are sampled from π_θ; ≥ 0 everywhere and 0 where
    the log-probabilities agree. Computed as ``max(expm1(x) − x, 0)`` for accuracy near 0.

    Args:
        log_prob: ``log π_θ(a|s)``, any shape.
        ref_log_prob: ``log π_ref(a|s)`` (no gradient flows into it), same shape.

    Returns:
        The per-sample estimate, same shape.
    """
    x = jax.lax.stop_gradient(jnp.asarray(ref_log_prob)) - jnp.asarray(log_prob)
    return jnp.maximum(jnp.expm1(x) - x, 0.0)
