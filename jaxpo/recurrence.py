"""Recurrent cells and the environment sequences they run over.

A recurrent actor or critic (``Config.cell``: ``"gru"`` or ``"lstm"``, flax's cells) keeps a
state per environment. The rules, the same in training, eval and render:

- **Start.** Every state starts at zeros (:func:`initial_carry`).
- **Reset.** After a step that ends the episode (terminated *or* truncated) the state is
  reset to zeros before the next observation is read (:func:`reset_carry`).
- **Bootstrap.** At a truncation the critic's ``V(final_obs)`` is computed from the state the
  final observation would have had: the cell applied to ``final_obs`` with the state *before*
  the reset (:func:`bootstrap_values`).

A network re-runs its recurrence over :class:`Sequences`: observations ``[B, T, ...]`` of
``B`` environments, each with the state it had before step 0 and a flag at every step that
began an episode inside the sequence. Updates split environments into minibatches, never
time, so each sequence is whole (no truncated backpropagation: a rollout's ``num_steps``
bound the unroll).

The functions here take the actor and critic modules of :mod:`jaxpo.networks` (each names
its state by its ``NAME`` and runs over ``Sequences`` when its ``cell`` is not ``"none"``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

#: ``Config.cell`` values: no recurrence, or one of flax's cells after the hidden layers.
CELLS = ("none", "gru", "lstm")


class Sequences(NamedTuple):
    """Observations of whole environment sequences, with their recurrent context.

    Attributes:
        obs: ``[B, T, *obs_shape]`` (or a :class:`~jaxpo.envs.MaskedObs` of such arrays).
        start: ``[B, T]`` bool; ``True`` where the step began an episode inside the
            sequence (the state is reset before it is read). Step 0 is never flagged: the
            state before it, in ``carry``, is already reset where needed.
        carry: each network's state before step 0, by network name (``"actor"``,
            ``"critic"``), leaves ``[B, cell_size]``.
    """

    obs: Any
    start: jax.Array
    carry: dict[str, Any]


def cell_module(cell: str, size: int, kernel_init: Any, recurrent_init: Any) -> nn.Module:
    """The flax ``GRUCell`` or ``LSTMCell`` of ``size`` units."""
    cls = {"gru": nn.GRUCell, "lstm": nn.OptimizedLSTMCell}[cell]
    return cls(size, kernel_init=kernel_init, recurrent_kernel_init=recurrent_init)


def initial_carry(cell: str, size: int, batch: tuple[int, ...]) -> Any:
    """The zero state of ``batch`` environments: ``[*batch, size]`` (LSTM: ``(c, h)``)."""
    zeros = jnp.zeros((*batch, size), jnp.float32)
    return (zeros, zeros) if cell == "lstm" else zeros


def reset_carry(carry: Any, done: jax.Array) -> Any:
    """``carry`` with the states of environments whose episode ended (``done [B]``) zeroed."""
    return jax.tree.map(lambda h: jnp.where(done.reshape(done.shape + (1,)), 0.0, h), carry)


class ResetCell(nn.Module):
    """One step of a cell that first resets the state where a step begins an episode."""

    cell: str
    size: int
    kernel_init: Any
    recurrent_init: Any

    @nn.compact
    def __call__(self, carry: Any, inputs: tuple[jax.Array, jax.Array]) -> tuple[Any, Any]:
        """``(carry [B, H], (x [B, F], start [B])) -> (carry, (carry, y [B, H]))``."""
        x, start = inputs
        carry = reset_carry(carry, start)
        carry, y = cell_module(self.cell, self.size, self.kernel_init, self.recurrent_init)(
            carry, x
        )
        return carry, (carry, y)


class Recurrence(nn.Module):
    """A cell scanned over the time axis of ``[B, T, F]`` features, resets included."""

    cell: str
    size: int
    kernel_init: Any
    recurrent_init: Any

    @nn.compact
    def __call__(self, x: jax.Array, start: jax.Array, carry: Any) -> tuple[jax.Array, Any]:
        """Maps features ``[B, T, F]`` to ``(outputs [B, T, H], states [B, T, ...])``.

        ``states[:, t]`` is the state after step ``t`` (before any reset that follows it).
        """
        scan = nn.scan(
            ResetCell,
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=1,
            out_axes=1,
        )
        step = scan(self.cell, self.size, self.kernel_init, self.recurrent_init)
        _, (states, y) = step(carry, (x, start))
        return y, states


def episode_starts(done: jax.Array) -> jax.Array:
    """start_t = done_{t-1} (start_0 = False) of a time-major ``done [T, B]``, as ``[B, T]``."""
    start = jnp.concatenate([jnp.zeros_like(done[:1]), done[:-1]], axis=0)
    return jnp.swapaxes(start, 0, 1)


def one_step(obs: Any, carry: dict[str, Any]) -> Sequences:
    """Sequences of length 1 (``[B, 1, ...]``) from observations ``[B, ...]`` and states."""
    obs = jax.tree.map(lambda x: x[:, None], obs)
    batch = jax.tree.leaves(obs)[0].shape[0]
    return Sequences(obs, jnp.zeros((batch, 1), bool), carry)


def sequence_inputs(obs: Any, name: str, cell: str) -> tuple[Any, Any]:
    """``(observations, (start, carry) | None)`` of a network's input (see :class:`MLP`).

    Raises:
        TypeError: a recurrent network given plain observations instead of ``Sequences``.
    """
    if cell == "none":
        return obs, None
    if not isinstance(obs, Sequences):
        raise TypeError(
            f"a recurrent {name} (cell={cell!r}) runs over jaxpo.recurrence.Sequences, got "
            f"{type(obs).__name__}; use jaxpo.recurrence.step for one step"
        )
    return obs.obs, (obs.start, obs.carry[name])


def initial_carries(modules: Iterable[Any], batch: tuple[int, ...]) -> dict[str, Any]:
    """Zero states of the recurrent ``modules`` for ``batch`` environments, by name.

    ``modules`` is e.g. a run's ``Networks`` (``None`` entries skipped); ``{}`` if none of
    them has a cell.
    """
    recurrent = [m for m in modules if m is not None and m.cell != "none"]
    return {m.NAME: initial_carry(m.cell, m.cell_size, batch) for m in recurrent}


def unroll(module: nn.Module, params: Any, seq: Sequences) -> tuple[Any, Any]:
    """A recurrent network over ``seq``: ``(outputs [B, T, ...], states [B, T, ...])``.

    ``states[:, t]`` is the state after step ``t``, before any reset after it.
    """
    out, sown = module.apply(params, seq, mutable=["recurrent"])
    return out, sown["recurrent"]["states"][0]


def step(module: nn.Module, params: Any, carry: Any, obs: Any) -> tuple[Any, Any]:
    """One step on observations ``[B, ...]``: ``(new carry, outputs [B, ...])``.

    ``carry`` is the module's state ``[B, ...]`` (anything, e.g. ``None``, for a
    feed-forward module, which it returns unchanged).
    """
    if module.cell == "none":
        return carry, module.apply(params, obs)
    out, states = unroll(module, params, one_step(obs, {module.NAME: carry}))
    return jax.tree.map(lambda x: x[:, 0], states), jax.tree.map(lambda x: x[:, 0], out)


def bootstrap_values(
    critic: nn.Module, params: Any, obs: Any, next_obs: Any
) -> tuple[jax.Array, jax.Array, Any]:
    """``(V(obs), V(next_obs), states)``: values of a rollout and of what each step led to.

    Feed-forward: ``obs`` and ``next_obs`` are ``[..., *obs_shape]`` and ``states`` is
    ``None``. Recurrent: ``obs`` is :class:`Sequences` ``[B, T]``,
    ``next_obs`` is ``[B, T, *obs_shape]``, and ``V(next_obs_t)`` is the cell applied to
    ``next_obs_t`` from the state after step ``t``, before any reset (the bootstrap rule of
    :mod:`jaxpo.recurrence`); ``states`` are the states after each step, ``[B, T, ...]``.
    """
    if critic.cell == "none":
        return critic.apply(params, obs), critic.apply(params, next_obs), None
    values, states = unroll(critic, params, obs)
    batch = values.shape

    def flat(x: jax.Array) -> jax.Array:
        return x.reshape((-1, *x.shape[2:]))

    after = Sequences(
        jax.tree.map(lambda x: flat(x)[:, None], next_obs),
        jnp.zeros((values.size, 1), bool),
        {critic.NAME: jax.tree.map(flat, states)},
    )
    return values, critic.apply(params, after).reshape(batch), states
