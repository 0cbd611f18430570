"""UCB1 bandit over K static arms, pure JAX (jit- and vmap-safe), for Adaptive-PPO's clip ε.

The state is a pytree of arrays, so it can live in a jitted, vmapped train state. Arms never
rewarded are pulled first (lowest index first); afterwards the arm with the largest
``Q̃_k + c·sqrt(ln t / N_k)`` is pulled, where ``Q̃`` is the empirical mean reward normalised
into ``[0, 1]`` by the range of all rewards observed so far. Auer, Cesa-Bianchi and Fischer,
"Finite-time Analysis of the Multiarmed Bandit Problem", 2002.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from jax.typing import ArrayLike


@struct.dataclass
class UCBState:
    """Sufficient statistics of a UCB1 bandit over ``K`` arms.

    Attributes:
        value_sum: ``[K]`` float32, sum of the rewards observed per arm.
        counts: ``[K]`` float32, number of rewarded pulls per arm (``N_k``).
        low: ``[]`` float32, smallest reward observed so far (``+inf`` before any).
        high: ``[]`` float32, largest reward observed so far (``-inf`` before any).
    """

    value_sum: jax.Array
    counts: jax.Array
    low: jax.Array
    high: jax.Array


def ucb_init(num_arms: int) -> UCBState:
    """value_sum = counts = 0, low = +inf, high = −inf: no arm rewarded yet.

    Args:
        num_arms: ``K``, the number of arms (static, ≥ 1).

    Returns:
        The empty :class:`UCBState` with ``[K]`` statistics.
    """
    if num_arms < 1:
        raise ValueError(f"num_arms must be >= 1, got {num_arms}")
    return UCBState(
        value_sum=jnp.zeros((num_arms,), jnp.float32),
        counts=jnp.zeros((num_arms,), jnp.float32),
        low=jnp.array(jnp.inf, jnp.float32),
        high=jnp.array(-jnp.inf, jnp.float32),
    )


def ucb_scores(state: UCBState, coef: ArrayLike) -> jax.Array:
    """score_k = (Q̂_k − low)/(high − low) + c·sqrt(ln t / N_k); +inf where N_k = 0.

    ``Q̂_k = value_sum_k / N_k`` and ``t = Σ_k N_k``. The normalisation is the same affine map
    for every arm (so the ranking equals that of normalising every past reward by the current
    range); when ``high == low`` (all rewards equal) the normalised mean is 0.5 for every arm.
    Unpulled arms score ``+inf``, so ``jnp.argmax`` (first maximum) picks the lowest-index
    unpulled arm first.

    Args:
        state: the bandit's statistics, ``[K]`` arrays.
        coef: ``c``, the exploration coefficient, scalar (may be traced), ≥ 0.

    Returns:
        ``[K]`` float32 scores.
    """
    counts = state.counts
    pulled = counts > 0
    safe_counts = jnp.where(pulled, counts, 1.0)
    mean = state.value_sum / safe_counts
    spread = state.high - state.low
    has_spread = spread > 0  # False before any reward (−inf) and for constant rewards (0)
    safe_spread = jnp.where(has_spread, spread, 1.0)
    normalised = jnp.where(has_spread, (mean - state.low) / safe_spread, 0.5)
    t = jnp.maximum(jnp.sum(counts), 1.0)
    bonus = jnp.asarray(coef, jnp.float32) * jnp.sqrt(jnp.log(t) / safe_counts)
    return jnp.where(pulled, normalised + bonus, jnp.inf)


def ucb_select(state: UCBState, coef: ArrayLike) -> jax.Array:
    """k* = argmax_k score_k (see :func:`ucb_scores`), ties to the lowest index.

    Args:
        state: the bandit's statistics, ``[K]`` arrays.
        coef: ``c``, the exploration coefficient, scalar (may be traced), ≥ 0.

    Returns:
        ``[]`` int32, the arm to pull.
    """
    return jnp.argmax(ucb_scores(state, coef)).astype(jnp.int32)


def ucb_observe(state: UCBState, arm: ArrayLike, reward: ArrayLike) -> UCBState:
    """value_sum_a += r, N_a += 1, low = min(low, r), high = max(high, r).

    Args:
        state: the bandit's statistics, ``[K]`` arrays.
        arm: ``[]`` integer, the arm that was pulled.
        reward: ``[]`` float, the reward it earned.

    Returns:
        The updated :class:`UCBState`.
    """
    reward = jnp.asarray(reward, jnp.float32)
    return UCBState(
        value_sum=state.value_sum.at[arm].add(reward),
        counts=state.counts.at[arm].add(1.0),
        low=jnp.minimum(state.low, reward),
        high=jnp.maximum(state.high, reward),
    )


__all__ = ["UCBState", "ucb_init", "ucb_observe", "ucb_scores", "ucb_select"]
