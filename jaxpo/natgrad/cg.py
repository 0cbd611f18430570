"""Conjugate gradient on pytrees with a static number of iterations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class CGResult(NamedTuple):
    """What :func:`conjugate_gradient` returns.

    Attributes:
        x: the approximate solution of ``A x = b``, shaped like ``b``.
        residual_norm: ‖b − A x‖ as tracked by the recursion, scalar.
        iterations: iterations that changed ``x`` (stops counting at breakdown), int32.
    """

    x: Any
    residual_norm: jax.Array
    iterations: jax.Array


def conjugate_gradient(
    matvec: Callable[[Any], Any], b: Any, iters: int, tol: float = 0.0
) -> CGResult:
    """Solves ``A x = b`` for a symmetric PSD ``A`` given as ``matvec``, from ``x = 0``.

    Runs exactly ``iters`` iterations (a static count, so it is safe under ``vmap``). Once the
    curvature term ``pᵀAp`` is zero, negative or non-finite (zero gradient, zero damping on
    a tiny batch, overflow) or ‖r‖² ≤ ``tol``, the remaining iterations leave ``x``
    unchanged, so the result is always finite when ``b`` is.

    Args:
        matvec: ``v -> A v`` on pytrees shaped like ``b``.
        b: right-hand side pytree.
        iters: number of iterations (static).
        tol: stop updating once the squared residual norm is at most this.
    """
    rr0 = optax.tree.vdot(b, b)

    def body(_: int, carry: tuple) -> tuple:
        x, r, p, rr, done, count = carry
        ap = matvec(p)
        pap = optax.tree.vdot(p, ap)
        alpha = rr / jnp.where(pap > 0, pap, 1.0)
        x_new = optax.tree.add_scale(x, alpha, p)
        r_new = optax.tree.add_scale(r, -alpha, ap)
        rr_new = optax.tree.vdot(r_new, r_new)
        ok = ~done & (pap > 0) & jnp.isfinite(pap) & jnp.isfinite(alpha) & jnp.isfinite(rr_new)
        beta = rr_new / jnp.where(rr > 0, rr, 1.0)
        p_new = optax.tree.add_scale(r_new, beta, p)
        x, r, p = (
            optax.tree.where(ok, new, old) for new, old in ((x_new, x), (r_new, r), (p_new, p))
        )
        rr = jnp.where(ok, rr_new, rr)
        done = ~ok | (rr <= tol)
        return x, r, p, rr, done, count + ok.astype(jnp.int32)

    init = (optax.tree.zeros_like(b), b, b, rr0, rr0 <= tol, jnp.int32(0))
    x, _, _, rr, _, count = jax.lax.fori_loop(0, iters, body, init)
    return CGResult(x, jnp.sqrt(rr), count)
