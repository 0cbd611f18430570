"""The ratio-free policy-gradient loss of A2C and REINFORCE."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def policy_gradient(log_prob: ArrayLike, advantages: ArrayLike) -> jax.Array:
    """−log π_θ(a|s)·sg(Â), per sample.

    Args:
        log_prob: ``log π_θ(a|s)``, ``[N]``.
        advantages: ``Â``, ``[N]`` (treated as constants).

    Returns:
        The per-sample loss to minimise, ``[N]``; its gradient is −Â·∇log π_θ.
    """
    return -jnp.asarray(log_prob) * jax.lax.stop_gradient(jnp.asarray(advantages))
