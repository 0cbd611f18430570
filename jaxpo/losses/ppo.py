"""PPO's clipped surrogate (Schulman et al., "Proximal Policy Optimization Algorithms", 2017)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def ppo_clip(
    log_prob: ArrayLike,
    old_log_prob: ArrayLike,
    advantages: ArrayLike,
    clip_eps: ArrayLike,
    clip_eps_high: ArrayLike | None = None,
) -> jax.Array:
    """−min(r·Â, clip(r, 1−ε, 1+ε_high)·Â) with r = exp(log π_θ − log π_old), per sample.

    Args:
        log_prob: ``log π_θ(a|s)``, ``[N]``.
        old_log_prob: ``log π_old(a|s)`` (no gradient flows into it), ``[N]``.
        advantages: ``Â``, ``[N]`` (treated as constants).
        clip_eps: ε > 0, the lower clip width, scalar.
        clip_eps_high: ε_high > 0, the upper clip width, scalar; ``None`` (default) gives the
            symmetric range ``[1−ε, 1+ε]``.

    Returns:
        The per-sample loss to minimise, ``[N]``; take its mean.
    """
    if clip_eps_high is None:
        clip_eps_high = clip_eps
    advantages = jax.lax.stop_gradient(jnp.asarray(advantages))
    ratio = jnp.exp(jnp.asarray(log_prob) - jax.lax.stop_gradient(jnp.asarray(old_log_prob)))
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps_high) * advantages
    return -jnp.minimum(unclipped, clipped)
