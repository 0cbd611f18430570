"""The unclipped importance-sampled surrogate of TRPO, NPG and the penalty methods."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def importance_surrogate(
    log_prob: ArrayLike, old_log_prob: ArrayLike, advantages: ArrayLike
) -> jax.Array:
    """−r·Â with r = exp(log π_θ − log π_old), per sample.

    At θ = θ_old its gradient is the plain policy gradient −Â·∇log π_θ.

    Args:
        log_prob: ``log π_θ(a|s)``, ``[N]``.
        old_log_prob: ``log π_old(a|s)`` (no gradient flows into it), ``[N]``.
        advantages: ``Â``, ``[N]`` (treated as constants).

    Returns:
        The per-sample loss to minimise, ``[N]``; take its mean.
    """
    advantages = jax.lax.stop_gradient(jnp.asarray(advantages))
    ratio = jnp.exp(jnp.asarray(log_prob) - jax.lax.stop_gradient(jnp.asarray(old_log_prob)))
    return -ratio * advantages
