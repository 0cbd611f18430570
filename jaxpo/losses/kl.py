"""Closed-form KL divergences between policy outputs, per sample.

A policy output is what :class:`~jaxpo.networks.Actor` returns: ``(logits, None)`` for a
categorical policy, ``(logits [..., K, A], FACTORED)`` for a product of ``K`` categoricals,
``(mean, log_std)`` for a diagonal Gaussian (see :mod:`jaxpo.distributions`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..distributions import DistParams, Factored


def categorical_kl(p_logits: jax.Array, q_logits: jax.Array) -> jax.Array:
    """KL(p‖q) = Σ_a p_a·(log p_a − log q_a) for categorical logits ``[..., A]`` -> ``[...]``."""
    log_p = jax.nn.log_softmax(p_logits, axis=-1)
    log_q = jax.nn.log_softmax(q_logits, axis=-1)
    return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


def gaussian_kl(
    p_mean: jax.Array, p_log_std: jax.Array, q_mean: jax.Array, q_log_std: jax.Array
) -> jax.Array:
    """KL(p‖q) = Σ_d [log σ_q − log σ_p + (σ_p² + (μ_p − μ_q)²)/(2σ_q²) − ½].

    Args:
        p_mean: ``[..., D]``.
        p_log_std: ``[..., D]``.
        q_mean: ``[..., D]``.
        q_log_std: ``[..., D]``.

    Returns:
        ``[...]``.
    """
    var_ratio = jnp.exp(2.0 * (p_log_std - q_log_std))
    mahalanobis = jnp.square((p_mean - q_mean) * jnp.exp(-q_log_std))
    return 0.5 * jnp.sum(var_ratio + mahalanobis - 1.0, axis=-1) + jnp.sum(
        q_log_std - p_log_std, axis=-1
    )


def kl_divergence(p: DistParams, q: DistParams) -> jax.Array:
    """KL(p‖q) per sample between two policy outputs of the same kind, ``[...]``.

    A product of categoricals sums the factors' KLs.
    """
    if p[1] is None:
        return categorical_kl(p[0], q[0])
    if isinstance(p[1], Factored):
        return categorical_kl(p[0], q[0]).sum(axis=-1)
    return gaussian_kl(p[0], p[1], q[0], q[1])
