"""Critic losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def value_loss(
    values: ArrayLike,
    returns: ArrayLike,
    old_values: ArrayLike | None = None,
    clip_eps: ArrayLike | None = None,
) -> jax.Array:
    """½·max((V − R̂)², (V_old + clip(V − V_old, −ε, ε) − R̂)²), or ½(V − R̂)² unclipped.

    Args:
        values: ``V_θ(s)``, ``[N]``.
        returns: targets ``R̂`` (no gradient), ``[N]``.
        old_values: ``V_old(s)`` from the rollout, ``[N]``; needed to clip.
        clip_eps: ε for clipping around ``old_values``; ``None`` disables clipping.

    Returns:
        The per-sample loss, ``[N]``.
    """
    values = jnp.asarray(values)
    returns = jax.lax.stop_gradient(jnp.asarray(returns))
    squared = jnp.square(values - returns)
    if clip_eps is None:
        return 0.5 * squared
    if old_values is None:
        raise ValueError("value_loss: clipping needs old_values")
    old_values = jax.lax.stop_gradient(jnp.asarray(old_values))
    clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
    return 0.5 * jnp.maximum(squared, jnp.square(clipped - returns))
