"""Critic-free group-relative losses: GRPO and TIC-GRPO on padded trajectories.

GRPO (Shao et al., "DeepSeekMath", 2024) replaces the critic by a group baseline: ``G``
trajectories start from the same state and each one's return is standardised within its group.
TIC-GRPO (trajectory-level importance correction) replaces GRPO's per-step ratios by one
trajectory-level ratio ``w = Π_t π_θ(a_t|s_t) / π_old(a_t|s_t)``.

Both surrogates clip their ratio to ``[1−ε_low, 1+ε_high]``; with ``lower_clip=False`` (a static
bool) only the upper bound ``1+ε_high`` applies, as TIC-GRPO is stated (an upper clip of ``w``).
:func:`grpo_ratio_metrics` and :func:`tic_grpo_ratio_metrics` report how many of the clipped
ratios lie outside that range (``clip_frac``) and their effective sample size (``ess_frac``).

Conventions: a batch holds ``E = num_groups·G`` trajectories, consecutive blocks of ``G`` forming
a group; trajectories are padded to a horizon ``H`` and ``mask[n, H]`` (1 valid, 0 padding) marks
the valid steps. Values at padded steps never reach an output or a gradient, even when they are
huge, infinite or NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .health import ess_fraction
from .ppo import ppo_clip


def _at_least_f32(x: ArrayLike) -> jax.Array:
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _zero_padding(x: ArrayLike, mask: jax.Array) -> jax.Array:
    """``x`` with padded steps set to 0, so that garbage there cannot poison values or gradients."""
    return jnp.where(mask > 0, jnp.asarray(x), 0.0)


def group_advantages(returns: ArrayLike, group_size: int, eps: float = 1e-8) -> jax.Array:
    """Â_i = (R_i − mean_g R) / (std_g R + ε) within each group g of ``group_size`` trajectories.

    ``std_g`` is the population standard deviation of the group, ddof = 0:
    ``std_g R = sqrt(Σ_{j∈g} (R_j − mean_g R)² / G)`` (``jnp.std``'s default), so a group's
    advantages have mean 0 and population standard deviation 1 (up to ε). The unbiased
    estimate (ddof = 1, dividing by G − 1, ``torch.std``'s default) is larger by
    ``sqrt(G / (G − 1))``, so it would scale every advantage by the constant
    ``sqrt((G − 1) / G)`` (0.935 at G = 8): the same update direction, with the surrogate
    weighted that much less against the KL and entropy terms. A group whose returns are all
    equal gives exactly 0 for each of its members (never NaN).

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


def _static_bool(lower_clip: bool) -> bool:
    if not isinstance(lower_clip, bool):
        raise TypeError(f"lower_clip must be a static Python bool, got {lower_clip!r}")
    return lower_clip


def _lower_bound_eps(clip_eps: ArrayLike, lower_clip: bool) -> ArrayLike:
    """ε_low, or +∞ (no lower bound: ``clip(r, 1 − ∞, 1+ε_high) = min(r, 1+ε_high)``)."""
    return clip_eps if _static_bool(lower_clip) else jnp.inf


def grpo_surrogate(
    log_prob: ArrayLike,
    old_log_prob: ArrayLike,
    advantages: ArrayLike,
    mask: ArrayLike,
    clip_eps: ArrayLike,
    clip_eps_high: ArrayLike,
    lower_clip: bool = True,
) -> jax.Array:
    """mean_t over valid steps of −min(r_t·Â, clip(r_t, 1−ε_low, 1+ε_high)·Â), r_t = π_θ/π_old.

    Each trajectory's advantage ``Â`` is shared by all of its steps. With ``lower_clip=False``
    the clip is ``min(r_t, 1+ε_high)``: this changes only steps with ``r_t < 1−ε_low`` and
    ``Â < 0``, whose term becomes ``−r_t·Â`` (gradient ``−r_t·Â`` per unit log-prob) instead of
    the constant ``−(1−ε_low)·Â``.

    Args:
        log_prob: ``log π_θ(a_t|s_t)``, ``[n, H]``.
        old_log_prob: ``log π_old(a_t|s_t)`` (no gradient flows into it), ``[n, H]``.
        advantages: ``Â`` per trajectory, ``[n]`` (treated as constants).
        mask: ``[n, H]``, 1 at valid steps and 0 at padding.
        clip_eps: ε_low > 0, scalar (may be traced); unused when ``lower_clip`` is off.
        clip_eps_high: ε_high > 0, scalar (may be traced).
        lower_clip: static; ``False`` drops the lower bound 1 − ε_low.

    Returns:
        The per-trajectory loss to minimise, ``[n]``; take its mean.
    """
    mask = jnp.asarray(mask)
    per_step = ppo_clip(
        _zero_padding(log_prob, mask),
        _zero_padding(old_log_prob, mask),
        jnp.asarray(advantages)[:, None],
        _lower_bound_eps(clip_eps, lower_clip),
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
    lower_clip: bool = True,
) -> jax.Array:
    """−min(w·Â, clip(w, 1−ε_low, 1+ε_high)·Â) with w = Π_t π_θ/π_old over valid steps.

    ``w = exp(trajectory_log_ratio(...))`` (default clamp). Public TIC-GRPO reimplementations use
    an upper bound of 1.28, i.e. ``clip_eps_high = 0.28``. TIC-GRPO is stated with an upper clip
    of ``w`` only: ``lower_clip=False`` gives ``−min(w·Â, min(w, 1+ε_high)·Â)``, which differs
    from the two-sided form only for trajectories with ``w < 1−ε_low`` and ``Â < 0`` (there
    ``−w·Â`` instead of the constant ``−(1−ε_low)·Â``; its gradient ``−w·Â`` per unit log-prob
    shrinks with ``w``, so nothing grows without the bound).

    Args:
        log_prob: ``log π_θ(a_t|s_t)``, ``[n, H]``.
        old_log_prob: ``log π_old(a_t|s_t)`` (no gradient flows into it), ``[n, H]``.
        advantages: ``Â`` per trajectory, ``[n]`` (treated as constants).
        mask: ``[n, H]``, 1 at valid steps and 0 at padding.
        clip_eps: ε_low > 0, scalar (may be traced); unused when ``lower_clip`` is off.
        clip_eps_high: ε_high > 0, scalar (may be traced).
        lower_clip: static; ``False`` drops the lower bound 1 − ε_low.

    Returns:
        The per-trajectory loss to minimise, ``[n]``; take its mean.
    """
    log_w = trajectory_log_ratio(log_prob, old_log_prob, mask)
    low = _lower_bound_eps(clip_eps, lower_clip)
    return ppo_clip(log_w, jnp.zeros_like(log_w), advantages, low, clip_eps_high)


def ratio_metrics(
    log_ratio: ArrayLike,
    valid: ArrayLike,
    clip_eps: ArrayLike,
    clip_eps_high: ArrayLike,
    lower_clip: bool = True,
) -> dict[str, jax.Array]:
    """``clip_frac`` and ``ess_frac`` of the ratios ``r = exp(log_ratio)`` at the valid entries.

    ``clip_frac = Σ valid·[r outside the clip range] / max(Σ valid, 1)``, the clip range being
    ``[1−ε_low, 1+ε_high]`` (``r − 1 < −ε_low`` or ``r − 1 > ε_high``, computed as ``expm1``
    like :func:`jaxpo.losses.health.clip_fraction`), or ``(−∞, 1+ε_high]`` when ``lower_clip``
    is off. It counts ratios outside the range whatever the sign of ``Â``, as PPO's
    ``clip_frac`` does; the surrogate's gradient is 0 for the part of them on the side where
    ``Â``'s sign makes the clip bind. ``ess_frac = (Σ_valid r)² / (N_valid·Σ_valid r²)``, from
    :func:`jaxpo.losses.health.ess_fraction` with the invalid entries given weight 0; 1 when
    nothing is valid. Values at invalid entries (garbage included) never reach the result.

    Args:
        log_ratio: ``log r``, any shape (no gradient flows through the metrics).
        valid: bool or 0/1, same shape.
        clip_eps: ε_low, scalar.
        clip_eps_high: ε_high, scalar.
        lower_clip: static, as in :func:`grpo_surrogate`.

    Returns:
        ``{"clip_frac": scalar, "ess_frac": scalar}``.
    """
    valid = jnp.asarray(valid) > 0
    log_ratio = jax.lax.stop_gradient(jnp.where(valid, _at_least_f32(log_ratio), 0.0))
    change = jnp.expm1(log_ratio)
    clipped = change > clip_eps_high
    if _static_bool(lower_clip):
        clipped = clipped | (change < -clip_eps)
    count = jnp.sum(valid)
    total = jnp.maximum(count, 1).astype(log_ratio.dtype)
    clip_frac = jnp.sum(valid & clipped) / total
    # Weight 0 (log-weight −∞) at invalid entries; the helper divides by every entry, so
    # rescale to the valid ones. With none valid every log-weight stays 0 (no NaN) and the
    # result is replaced by 1.
    kept = valid | (count == 0)
    ess = ess_fraction(jnp.where(kept, log_ratio, -jnp.inf).reshape(-1)) * (valid.size / total)
    return {"clip_frac": clip_frac, "ess_frac": jnp.where(count > 0, ess, 1.0)}


def grpo_ratio_metrics(
    log_prob: ArrayLike,
    old_log_prob: ArrayLike,
    mask: ArrayLike,
    clip_eps: ArrayLike,
    clip_eps_high: ArrayLike,
    lower_clip: bool = True,
) -> dict[str, jax.Array]:
    """:func:`ratio_metrics` of GRPO's clipped ratios: the per-step ``r_t`` at the valid steps.

    ``clip_frac`` is the share of valid steps (pooled over the batch, each step counted once,
    not averaged per trajectory) whose ``r_t`` lies outside the clip range; ``ess_frac`` is the
    ESS of the ``r_t`` over the valid steps, divided by their number.

    Args:
        log_prob: ``log π_θ(a_t|s_t)``, ``[n, H]``.
        old_log_prob: ``log π_old(a_t|s_t)``, ``[n, H]``.
        mask: ``[n, H]``, 1 at valid steps and 0 at padding.
        clip_eps: ε_low, scalar.
        clip_eps_high: ε_high, scalar.
        lower_clip: static, as in :func:`grpo_surrogate`.
    """
    valid = jnp.asarray(mask) > 0
    log_ratio = jnp.where(valid, jnp.asarray(log_prob) - jnp.asarray(old_log_prob), 0.0)
    return ratio_metrics(log_ratio, valid, clip_eps, clip_eps_high, lower_clip)


def tic_grpo_ratio_metrics(
    log_prob: ArrayLike,
    old_log_prob: ArrayLike,
    mask: ArrayLike,
    clip_eps: ArrayLike,
    clip_eps_high: ArrayLike,
    lower_clip: bool = True,
) -> dict[str, jax.Array]:
    """:func:`ratio_metrics` of TIC-GRPO's clipped ratios: one ``w`` per trajectory.

    ``w = exp(trajectory_log_ratio(...))`` (clamped as there). ``clip_frac`` is the share of
    trajectories (those with at least one valid step) whose ``w`` lies outside the clip range;
    ``ess_frac`` is the ESS of the ``w`` over those trajectories, divided by their number.

    Args:
        log_prob: ``log π_θ(a_t|s_t)``, ``[n, H]``.
        old_log_prob: ``log π_old(a_t|s_t)``, ``[n, H]``.
        mask: ``[n, H]``, 1 at valid steps and 0 at padding.
        clip_eps: ε_low, scalar.
        clip_eps_high: ε_high, scalar.
        lower_clip: static, as in :func:`tic_grpo_surrogate`.
    """
    valid = jnp.sum(jnp.asarray(mask), axis=-1) > 0
    log_w = trajectory_log_ratio(log_prob, old_log_prob, mask)
    return ratio_metrics(log_w, valid, clip_eps, clip_eps_high, lower_clip)


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
