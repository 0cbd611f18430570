"""Traced hyperparameters: a pytree whose leaves are float32 arrays.

Any leaf can carry a sweep axis, and new values never trigger a recompile. Each algorithm
subclasses :class:`HParams` with its own fields; ``env_params`` carries the environment's
(traced) parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class HParams:
    """Fields every algorithm shares.

    Attributes:
        learning_rate: optimiser step size (start value when ``anneal_lr``).
        gamma: discount factor, in (0, 1].
        gae_lambda: GAE's λ, in [0, 1].
        max_grad_norm: global gradient-norm clip.
        reward_scale: rewards are multiplied by this before advantage estimation.
        env_params: the environment's parameters (a pytree; not swept by name).
    """

    learning_rate: jax.Array
    gamma: jax.Array
    gae_lambda: jax.Array
    max_grad_norm: jax.Array
    reward_scale: jax.Array
    env_params: Any

    #: per-field (low, high, low_inclusive, high_inclusive) checks; None means unbounded.
    BOUNDS: ClassVar[dict[str, tuple[float | None, float | None, bool, bool]]] = {
        "learning_rate": (0.0, None, True, False),
        "gamma": (0.0, 1.0, False, True),
        "gae_lambda": (0.0, 1.0, True, True),
        "max_grad_norm": (0.0, None, False, False),
        "reward_scale": (0.0, None, False, False),
    }

    @classmethod
    def create(cls, env_params: Any, **values: float) -> HParams:
        """Builds hparams from Python numbers (cast to float32 arrays)."""
        names = scalar_names(cls)
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"unknown hparam(s) {unknown} for {cls.__name__}; known: {names}")
        missing = sorted(set(names) - set(values))
        if missing:
            raise ValueError(f"missing hparam(s) {missing} for {cls.__name__}")
        arrays = {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}
        hparams = cls(env_params=env_params, **arrays)
        validate_hparams(hparams)
        return hparams

    def set(self, **values: Any) -> HParams:
        """A copy with named scalar fields replaced (cast to float32); unknown names raise."""
        names = scalar_names(type(self))
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(
                f"unknown hparam(s) {unknown} for {type(self).__name__}; known: {names}"
            )
        hparams = self.replace(**{k: jnp.asarray(v, jnp.float32) for k, v in values.items()})
        validate_hparams(hparams)
        return hparams


def scalar_names(cls: type) -> list[str]:
    """Names of the float32 scalar fields of an ``HParams`` class (all but ``env_params``)."""
    return [f.name for f in dataclasses.fields(cls) if f.name != "env_params"]


def all_bounds(cls: type) -> dict[str, tuple[float | None, float | None, bool, bool]]:
    """Bounds declared by ``cls`` and its bases, subclass entries winning."""
    merged: dict[str, tuple[float | None, float | None, bool, bool]] = {}
    for klass in reversed(cls.__mro__):
        merged.update(getattr(klass, "BOUNDS", {}))
    return merged


def _describe(low: float | None, high: float | None, low_inc: bool, high_inc: bool) -> str:
    left = "-inf" if low is None else f"{low:g}"
    right = "inf" if high is None else f"{high:g}"
    return f"{'[' if low_inc else '('}{left}, {right}{']' if high_inc else ')'}"


def validate_hparams(hparams: HParams) -> None:
    """Raises ``ValueError`` naming the field if a concrete hparam is out of range.

    Works on unbatched or batched (sweep) hparams; every element is checked. Traced
    values (inside ``jit``) are skipped, since they cannot be inspected.
    """
    for name, (low, high, low_inc, high_inc) in all_bounds(type(hparams)).items():
        value = getattr(hparams, name)
        if isinstance(value, jax.core.Tracer):
            continue
        arr = np.asarray(value, np.float64)
        bad = ~np.isfinite(arr)
        if low is not None:
            bad |= (arr < low) if low_inc else (arr <= low)
        if high is not None:
            bad |= (arr > high) if high_inc else (arr >= high)
        if bad.any():
            shown = arr[bad].ravel()[0]
            raise ValueError(
                f"hparam {name}={shown!r} is out of range; it must be finite and in "
                f"{_describe(low, high, low_inc, high_inc)}"
            )
