"""Why vmapped seeds do not amortise a GRU on XLA:CPU: one gradient of a 128-step unroll.

Times ``grad`` of a 128-step, batch-1 GRU(128) unroll for one parameter set and ``vmap``-ed
over 8 (each seed has its own weights, as in a sweep), compile excluded, mean of 20 calls::

    python benchmarks/gru_vmap.py
"""

from __future__ import annotations

import time

import flax.linen as nn
import jax
import jax.numpy as jnp

CELL = nn.GRUCell(128)


def unroll_sum(params: dict, xs: jax.Array) -> jax.Array:
    """Σ of the GRU's outputs over a sequence ``xs [T, B, F]`` from the zero state."""

    def step(h: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return CELL.apply(params, h, x)

    return jax.lax.scan(step, jnp.zeros((xs.shape[1], 128)), xs)[1].sum()


def mean_ms(fn, *args, calls: int = 20) -> float:
    """Mean milliseconds per call of a compiled ``fn`` (after one warm-up call)."""
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(calls):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - start) / calls * 1e3


def main() -> None:
    params = CELL.init(jax.random.key(0), jnp.zeros((1, 128)), jnp.zeros((1, 64)))
    xs = jnp.ones((128, 1, 64))
    stacked = jax.tree.map(lambda a: jnp.stack([a] * 8), params)
    one = jax.jit(jax.grad(unroll_sum))
    eight = jax.jit(jax.vmap(jax.grad(unroll_sum), in_axes=(0, None)))
    print(f"1 parameter set: {mean_ms(one, params, xs):.1f} ms")
    print(f"8 parameter sets (vmap): {mean_ms(eight, stacked, xs):.1f} ms")


if __name__ == "__main__":
    main()
