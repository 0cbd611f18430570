"""Masked backtracking line search: fixed candidate steps, no data-dependent loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class LineSearchResult(NamedTuple):
    """What :func:`backtracking_line_search` returns.

    Attributes:
        params: the accepted parameters, or the old ones (bit-identical) if none passed.
        accepted: whether a step was taken, bool scalar.
        backtracks: index ``k`` of the accepted fraction ``ratio**k`` (``num_steps`` if
            rejected), int32.
        fraction: the accepted fraction of the full step (0 if rejected).
        kl: the constraint value at the returned parameters (0 if rejected).
        improvement: the objective's improvement at the returned parameters (0 if rejected).
    """

    params: Any
    accepted: jax.Array
    backtracks: jax.Array
    fraction: jax.Array
    kl: jax.Array
    improvement: jax.Array


def backtracking_line_search(
    evaluate: Callable[[Any], tuple[jax.Array, jax.Array]],
    params: Any,
    full_step: Any,
    max_kl: jax.Array,
    ratio: jax.Array,
    num_steps: int,
) -> LineSearchResult:
    """Takes the first of ``params + ratio**k · full_step`` (k = 0..num_steps−1) that is good.

    A candidate is good when ``kl ≤ max_kl`` and ``improvement > 0`` (both finite). All
    ``num_steps`` candidates are evaluated at once (``vmap``) and the first good one is picked
    with a mask; the pick is evaluated again on its own and kept only if it still passes, so
    the returned ``kl`` is that of the returned parameters and never exceeds ``max_kl``.

    Args:
        evaluate: ``params -> (kl, improvement)``, scalars.
        params: the current point.
        full_step: the step pytree at fraction 1.
        max_kl: the KL bound δ.
        ratio: backtracking factor in (0, 1).
        num_steps: number of candidate fractions (static).
    """
    fractions = ratio ** jnp.arange(num_steps, dtype=jnp.result_type(ratio, jnp.float32))

    def candidate(fraction: jax.Array) -> Any:
        return optax.tree.add_scale(params, fraction, full_step)

    def good(kl: jax.Array, improvement: jax.Array) -> jax.Array:
        return jnp.isfinite(kl) & jnp.isfinite(improvement) & (kl <= max_kl) & (improvement > 0)

    kls, improvements = jax.vmap(lambda f: evaluate(candidate(f)))(fractions)
    ok = good(kls, improvements)
    index = jnp.argmax(ok)
    chosen = candidate(fractions[index])
    kl, improvement = evaluate(chosen)
    accepted = jnp.any(ok) & good(kl, improvement)
    zero = jnp.zeros_like(kl)
    return LineSearchResult(
        params=jax.tree.map(lambda new, old: jnp.where(accepted, new, old), chosen, params),
        accepted=accepted,
        backtracks=jnp.where(accepted, index, num_steps).astype(jnp.int32),
        fraction=jnp.where(accepted, fractions[index], 0.0),
        kl=jnp.where(accepted, kl, zero),
        improvement=jnp.where(accepted, improvement, zero),
    )
