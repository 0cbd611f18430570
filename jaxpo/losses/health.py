"""Health statistics of a policy update (all scalars, no gradients)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def approx_kl(log_ratio: ArrayLike) -> jax.Array:
    """mean((r − 1) − log r), an unbiased, non-negative estimate of KL(π_old ‖ π_θ).

    Args:
        log_ratio: ``log r = log π_θ − log π_old`` on samples from π_old, ``[N]``.
    """
    log_ratio = jnp.asarray(log_ratio)
    return jnp.mean(jnp.expm1(log_ratio) - log_ratio)


def clip_fraction(log_ratio: ArrayLike, clip_eps: ArrayLike) -> jax.Array:
    """mean(|r − 1| > ε): the fraction of samples whose ratio is clipped.

    Args:
        log_ratio: ``[N]``.
        clip_eps: ε, scalar.
    """
    return jnp.mean(jnp.abs(jnp.expm1(jnp.asarray(log_ratio))) > clip_eps)


def ess_fraction(log_ratio: ArrayLike) -> jax.Array:
    """(Σw)² / (N·Σw²) with w = r: effective sample size of importance weights over N.

    Computed from log-weights shifted by their maximum, so large ratios do not overflow.

    Args:
        log_ratio: any shape (``[N]``, or ``[B, T]`` for a recurrent batch's sequences);
            every entry is one sample.
    """
    log_ratio = jnp.asarray(log_ratio)
    w = jnp.exp(log_ratio - jnp.max(log_ratio))
    return jnp.square(jnp.sum(w)) / (log_ratio.size * jnp.sum(jnp.square(w)))


def explained_variance(values: ArrayLike, returns: ArrayLike) -> jax.Array:
    """1 − Var(R̂ − V) / Var(R̂); 0 when the returns have no variance.

    Args:
        values: predictions ``V``, any shape.
        returns: targets ``R̂``, same shape.
    """
    values, returns = jnp.asarray(values), jnp.asarray(returns)
    var = jnp.var(returns)
    return jnp.where(var > 0, 1.0 - jnp.var(returns - values) / jnp.where(var > 0, var, 1.0), 0.0)
