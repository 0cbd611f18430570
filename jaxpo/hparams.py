"""Traced hyperparameters: a pytree whose leaves are float32 arrays.

Any leaf can carry a sweep axis, and new values never trigger a recompile. Each algorithm
subclasses :class:`HParams` with its own fields. Every hyperparameter is declared once, with
:func:`hparam`: its default, its range and its description live in the field's metadata,
and validation, the CLI and the README's table are derived from there. A subclass may change
the default of an inherited field in ``DEFAULTS`` (A2C's learning rate, say) without
declaring it again, and a field may declare a different default for continuous action
spaces (the entropy bonus: 0 for a Gaussian policy). ``env_params`` carries the
environment's (traced) parameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


class Spec(NamedTuple):
    """What :func:`hparam` records of a field.

    Attributes:
        default: value used when none is given.
        low: lower bound, or ``None`` for none.
        high: upper bound, or ``None`` for none.
        low_inclusive: whether ``low`` itself is allowed.
        high_inclusive: whether ``high`` itself is allowed.
        doc: one line for the CLI and the README's table.
        continuous: the default when the action space is continuous, or ``None`` for
            ``default`` there too.
    """

    default: float
    low: float | None
    high: float | None
    low_inclusive: bool
    high_inclusive: bool
    doc: str
    continuous: float | None = None

    def describe(self) -> str:
        """The range in interval notation, e.g. ``(0, 1]``."""
        left = "-inf" if self.low is None else f"{self.low:g}"
        right = "inf" if self.high is None else f"{self.high:g}"
        opening = "[" if self.low_inclusive and self.low is not None else "("
        closing = "]" if self.high_inclusive and self.high is not None else ")"
        return f"{opening}{left}, {right}{closing}"

    def contains(self, values: np.ndarray) -> np.ndarray:
        """Elementwise: finite and within the bounds."""
        ok = np.isfinite(values)
        if self.low is not None:
            ok &= (values >= self.low) if self.low_inclusive else (values > self.low)
        if self.high is not None:
            ok &= (values <= self.high) if self.high_inclusive else (values < self.high)
        return ok


def hparam(
    default: float,
    doc: str,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    continuous: float | None = None,
) -> Any:
    """Declares a traced scalar hyperparameter: its default, range and description.

    The range is given by at most one of ``gt``/``ge`` and one of ``lt``/``le``; every value
    must also be finite. ``continuous``: a different default for continuous action spaces.
    """
    if (gt is not None and ge is not None) or (lt is not None and le is not None):
        raise ValueError("give at most one lower (gt/ge) and one upper (lt/le) bound")
    spec = Spec(
        float(default),
        ge if gt is None else gt,
        le if lt is None else lt,
        gt is None,
        lt is None,
        doc,
        None if continuous is None else float(continuous),
    )
    for value in (default, continuous):
        if value is not None and not spec.contains(np.asarray(value, np.float64)):
            raise ValueError(f"default {value!r} is outside {spec.describe()}")
    return struct.field(metadata={"hparam": spec})


@struct.dataclass
class HParams:
    """Fields every algorithm shares (see :func:`specs` for ranges and descriptions).

    ``env_params`` is the environment's parameters (a pytree; not swept by name), among
    them the time limit ``max_steps_in_episode``.
    """

    learning_rate: jax.Array = hparam(
        2.5e-4, "optimiser step size (start value when anneal_lr)", ge=0.0
    )
    gamma: jax.Array = hparam(0.99, "discount factor", gt=0.0, le=1.0)
    gae_lambda: jax.Array = hparam(0.95, "GAE's (and V-trace's) λ", ge=0.0, le=1.0)
    max_grad_norm: jax.Array = hparam(0.5, "global gradient-norm clip", gt=0.0)
    reward_scale: jax.Array = hparam(
        1.0, "rewards are multiplied by this before advantage estimation", gt=0.0
    )
    env_params: Any

    #: Defaults of inherited fields that this class changes (``{name: value}``).
    DEFAULTS: ClassVar[Mapping[str, float]] = {}

    @classmethod
    def create(cls, env_params: Any, **values: float) -> HParams:
        """Builds hparams from Python numbers (cast to float32 arrays), every one given."""
        check_names(cls, values)
        missing = sorted(set(scalar_names(cls)) - set(values))
        if missing:
            raise ValueError(f"missing hparam(s) {missing} for {cls.__name__}")
        arrays = {k: as_float32(k, v) for k, v in values.items()}
        hparams = cls(env_params=env_params, **arrays)
        validate_hparams(hparams)
        return hparams

    @classmethod
    def default(cls, env_params: Any, *, continuous: bool = False, **overrides: float) -> HParams:
        """The declared defaults, with ``overrides`` applied (see :meth:`create`).

        ``continuous``: the action space is continuous (fields with a ``continuous`` default
        take it).
        """
        check_names(cls, overrides)
        return cls.create(env_params, **{**defaults(cls, continuous), **overrides})

    def set(self, **values: Any) -> HParams:
        """A copy with named scalar fields replaced (cast to float32); unknown names raise."""
        check_names(type(self), values)
        hparams = self.replace(**{k: as_float32(k, v) for k, v in values.items()})
        validate_hparams(hparams)
        return hparams


def as_float32(name: str, value: Any) -> jax.Array:
    """``value`` as a float32 array; ``ValueError`` naming hparam ``name`` if not numeric."""
    if isinstance(value, jax.core.Tracer):
        return jnp.asarray(value, jnp.float32)
    try:
        kind = "?" if isinstance(value, bool | str | bytes) else np.asarray(value).dtype.kind
    except (TypeError, ValueError):  # ragged or unconvertible
        kind = "?"
    if kind not in "iuf":
        raise ValueError(
            f"hparam {name}: expected a number (or an array of numbers), got {value!r} "
            f"({type(value).__name__})"
        )
    return jnp.asarray(value, jnp.float32)


def check_names(cls: type, values: Mapping[str, Any]) -> None:
    """Raises ``ValueError`` for names that are not scalar hparams of ``cls``."""
    unknown = sorted(set(values) - set(scalar_names(cls)))
    if unknown:
        raise ValueError(
            f"unknown hparam(s) {unknown} for {cls.__name__}; known: {scalar_names(cls)}"
        )


def specs(cls: type) -> dict[str, Spec]:
    """``{name: Spec}`` of every scalar hparam of ``cls``, defaults as ``cls`` sets them."""
    overrides: dict[str, float] = {}
    for klass in reversed(cls.__mro__):
        overrides.update(vars(klass).get("DEFAULTS", {}))
    out = {}
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("hparam")
        if spec is not None:
            out[f.name] = spec._replace(default=float(overrides.get(f.name, spec.default)))
    return out


def scalar_names(cls: type) -> list[str]:
    """Names of the float32 scalar fields of an ``HParams`` class (all but ``env_params``)."""
    return list(specs(cls))


def defaults(cls: type, continuous: bool = False) -> dict[str, float]:
    """``{name: default}`` of every scalar hparam of ``cls``.

    ``continuous``: the defaults for a continuous action space.
    """
    return {
        name: spec.continuous if continuous and spec.continuous is not None else spec.default
        for name, spec in specs(cls).items()
    }


def validate_hparams(hparams: HParams) -> None:
    """Raises ``ValueError`` naming the field if a concrete hparam is out of range.

    Works on unbatched or batched (sweep) hparams; every element is checked. Traced
    values (inside ``jit``) are skipped, since they cannot be inspected.
    """
    names = scalar_names(type(hparams))
    check_values(type(hparams), {name: getattr(hparams, name) for name in names})


def check_values(cls: type, values: Mapping[str, Any]) -> None:
    """Raises ``ValueError`` naming the field if a value is out of its range.

    Args:
        cls: the ``HParams`` class whose ranges apply.
        values: ``{name: scalar or column}``; traced values are skipped.
    """
    all_specs = specs(cls)
    for name, value in values.items():
        spec = all_specs[name]
        if isinstance(value, jax.core.Tracer):
            continue
        arr = np.asarray(value, np.float64)
        bad = ~spec.contains(arr)
        if bad.any():
            shown = float(arr[bad].ravel()[0])
            raise ValueError(
                f"hparam {name}={shown!r} is out of range; it must be finite and in "
                f"{spec.describe()}"
            )
