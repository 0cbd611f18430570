"""Fisher-vector products on parameter pytrees, without ever building a matrix.

Let ``f(θ)`` map parameters to the per-sample distribution parameters of a policy on ``N``
observations (categorical logits ``[N, A]``; or Gaussian mean and log-std, each ``[N, D]``).
The Fisher of the mean policy over the batch is the Gauss–Newton product

    F = (1/N) Σ_n J_nᵀ M_n J_n,

with ``J_n`` the Jacobian of sample ``n``'s outputs and ``M_n`` the closed-form Fisher of its
output distribution. :func:`make_fisher_vector_product` evaluates ``F·v + damping·v`` as a
``jvp`` (``u = J v``), the output Fisher (``w = M u``) and a ``vjp`` (``Jᵀ w``); ``F`` is PSD by
construction. :func:`kl_hessian_vector_product` is the second form: the Hessian of the mean
``KL(π_old ‖ π_θ)`` at ``θ = θ_old`` times ``v``, by forward-over-reverse differentiation. The
two agree at ``θ_old``; the second serves as a test oracle and as the fallback for
distributions without a closed-form output Fisher.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ..distributions import DistParams, is_categorical
from ..losses.kl import kl_divergence

ApplyFn = Callable[[Any], DistParams]
Matvec = Callable[[Any], Any]


def categorical_fisher(logits: jax.Array, u: jax.Array) -> jax.Array:
    """M·u = p⊙u − p·(pᵀu), the Fisher of a categorical on its logits, ``[N, A]`` -> ``[N, A]``."""
    p = jax.nn.softmax(logits, axis=-1)
    return p * u - p * jnp.sum(p * u, axis=-1, keepdims=True)


def gaussian_fisher(
    log_std: jax.Array, u_mean: jax.Array, u_log_std: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """M·u = (u_μ/σ², 2·u_logσ), the Fisher of a diagonal Gaussian on (mean, log-std).

    Args:
        log_std: ``[N, D]``.
        u_mean: tangent of the mean, ``[N, D]``.
        u_log_std: tangent of the log-std, ``[N, D]``.
    """
    return u_mean * jnp.exp(-2.0 * log_std), 2.0 * u_log_std


def output_fisher(dist_params: DistParams, tangent: DistParams) -> DistParams:
    """The output Fisher of a policy output (see :mod:`jaxpo.distributions`) times a tangent.

    A product of categoricals has a block-diagonal Fisher, one block per factor: the
    categorical formula applied along the last axis of ``[N, K, A]`` logits.
    """
    loc, log_std = dist_params
    if is_categorical(dist_params):
        return categorical_fisher(loc, tangent[0]), log_std
    return gaussian_fisher(log_std, tangent[0], tangent[1])


def _damped(fvp: Matvec, damping: jax.Array) -> Matvec:
    return lambda v: jax.tree.map(lambda fv, x: fv + damping * x, fvp(v), v)


def make_fisher_vector_product(apply_fn: ApplyFn, params: Any, damping: jax.Array) -> Matvec:
    """``v -> F·v + damping·v``, Gauss–Newton form, linearised once at ``params``.

    ``apply_fn`` is linearised once, so each product (e.g. each CG iteration) costs one
    linear forward pass and its transpose.

    Args:
        apply_fn: ``params -> (loc, log_std | None)``, outputs with a leading sample axis ``N``.
        params: the point θ_old (a pytree).
        damping: scalar added times ``v``.

    Returns:
        A function from a tangent pytree shaped like ``params`` to one of the same shape.
    """
    out, jvp_fn = jax.linearize(apply_fn, params)
    vjp_fn = jax.linear_transpose(jvp_fn, params)
    n = out[0].shape[0]

    def fvp(v: Any) -> Any:
        (fv,) = vjp_fn(output_fisher(out, jvp_fn(v)))
        return optax.tree.scale(1.0 / n, fv)

    return _damped(fvp, damping)


def fisher_vector_product(apply_fn: ApplyFn, params: Any, v: Any, damping: jax.Array) -> Any:
    """F·v + damping·v, Gauss–Newton form, for one vector (see the ``make_`` form)."""
    return make_fisher_vector_product(apply_fn, params, damping)(v)


def make_kl_hessian_vector_product(
    apply_fn: ApplyFn,
    params: Any,
    damping: jax.Array,
    kl_fn: Callable[[DistParams, DistParams], jax.Array] = kl_divergence,
) -> Matvec:
    """``v -> ∇²_θ mean KL(π_old ‖ π_θ)|_{θ_old}·v + damping·v`` (forward-over-reverse).

    Args:
        apply_fn: ``params -> (loc, log_std | None)`` with a leading sample axis.
        params: the point θ_old, where the KL's Hessian equals the Fisher.
        damping: scalar added times ``v``.
        kl_fn: per-sample ``KL(p‖q)`` of two outputs; override it for distributions without
            a closed-form output Fisher.
    """
    old = jax.lax.stop_gradient(apply_fn(params))

    def mean_kl(p: Any) -> jax.Array:
        return jnp.mean(kl_fn(old, apply_fn(p)))

    grad_kl = jax.grad(mean_kl)
    return _damped(lambda v: jax.jvp(grad_kl, (params,), (v,))[1], damping)


def kl_hessian_vector_product(apply_fn: ApplyFn, params: Any, v: Any, damping: jax.Array) -> Any:
    """The KL-Hessian form of F·v + damping·v for one vector (the oracle)."""
    return make_kl_hessian_vector_product(apply_fn, params, damping)(v)
