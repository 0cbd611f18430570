"""A sweep's members: one ``HParams`` batched along a leading member axis ``[M]``.

``grid``, ``random`` and ``points`` build the batch, ``concat`` joins batches, and
``member_hparams`` and ``columns`` read one member or every swept value back. Only traced
hparams can be swept: a static config field (a shape or a loop count) is refused with a clear
error rather than compiled per value.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..config import is_static
from ..hparams import HParams, as_float32, check_values, scalar_names

DISTRIBUTIONS = ("uniform", "loguniform", "choice")


def _check_names(hparams: HParams, names: Sequence[str]) -> None:
    known = scalar_names(type(hparams))
    for name in names:
        if name in known:
            continue
        if is_static(name):
            raise ValueError(
                f"{name!r} is a static config field (it changes shapes or control flow) and "
                f"cannot be swept in one compiled program; sweepable hparams: {known}"
            )
        raise ValueError(f"unknown hparam {name!r} for {type(hparams).__name__}; known: {known}")


def _number(name: str, value: Any) -> float:
    """One member's value of hparam ``name`` as a float; ``ValueError`` naming it if not."""
    array = as_float32(name, value)
    if np.ndim(array):
        raise ValueError(f"hparam {name}: one member takes one number, got {value!r}")
    return float(array)


def _value_list(name: str, values: Any) -> list[float]:
    """A grid's values of ``name`` as floats; a scalar or a string is refused with the fix."""
    if isinstance(values, str | bytes) or np.ndim(values) != 1:
        raise ValueError(
            f"grid {name}: expected a list of values, got {values!r}; write {name}=[{values!r}]"
            if np.ndim(values) == 0 and not isinstance(values, str | bytes)
            else f"grid {name}: expected a list of numbers, got {values!r}"
        )
    return [_number(name, v) for v in values]


def is_batched(hparams: HParams) -> bool:
    """Whether the scalar hparams carry a member axis."""
    return any(np.ndim(getattr(hparams, n)) > 0 for n in scalar_names(type(hparams)))


def num_members(hparams: HParams) -> int:
    """Size of the member axis of batched hparams (1 if unbatched)."""
    shapes = {np.shape(getattr(hparams, n)) for n in scalar_names(type(hparams))}
    leading = {s[0] for s in shapes if s}
    if len(leading) > 1:
        raise ValueError(f"batched hparams disagree on the member axis: {sorted(leading)}")
    return leading.pop() if leading else 1


def stack(hparams: HParams, columns: dict[str, Sequence[float]], size: int) -> HParams:
    """Broadcasts ``hparams`` to ``size`` members with ``columns`` as per-member values."""

    def broadcast(x: Any) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.broadcast_to(x, (size,) + x.shape)

    base = jax.tree.map(broadcast, hparams)
    values = {k: jnp.asarray(np.asarray(v, np.float32)) for k, v in columns.items()}
    return base.replace(**values)


def grid(hparams: HParams, **values: Sequence[float]) -> HParams:
    """The cartesian product of the given values; other hparams are broadcast.

    Example: ``grid(hp, learning_rate=[1e-4, 3e-4], clip_eps=[0.1, 0.2])`` has 4 members,
    ordered with the last name varying fastest.
    """
    if not values:
        raise ValueError("grid needs at least one hparam with a list of values")
    _check_names(hparams, list(values))
    values = {name: _value_list(name, vals) for name, vals in values.items()}
    for name, vals in values.items():
        if len(vals) == 0:
            raise ValueError(f"grid over {name!r} is empty; give at least one value")
    product = list(itertools.product(*values.values()))
    columns = {name: [p[i] for p in product] for i, name in enumerate(values)}
    check_values(type(hparams), columns)
    return stack(hparams, columns, len(product))


def parse_distribution(spec: Any) -> tuple[str, tuple[Any, ...]]:
    """Checks and normalises a distribution spec.

    Accepts ``("loguniform", lo, hi)``, ``("uniform", lo, hi)``, ``("choice", [..])`` or
    the CLI string forms ``"loguniform:1e-5:1e-2"`` / ``"choice:0.1,0.2"``.
    """
    if isinstance(spec, str):
        kind, _, rest = spec.partition(":")
        try:
            if kind == "choice":
                spec = (kind, [float(v) for v in rest.split(",") if v])
            else:
                spec = (kind, *[float(v) for v in rest.split(":") if v])
        except ValueError as err:
            raise ValueError(f"malformed distribution {spec!r}: {err}") from None
    if not isinstance(spec, tuple | list) or not spec:
        raise ValueError(f"malformed distribution {spec!r}; e.g. ('loguniform', 1e-5, 1e-2)")
    kind, args = spec[0], tuple(spec[1:])
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {kind!r}; use one of {DISTRIBUTIONS}")
    try:
        if kind == "choice":
            values = tuple(float(v) for v in args[0]) if len(args) == 1 else ()
            if not values or not all(math.isfinite(v) for v in values):
                raise ValueError
            return kind, (values,)
        low, high = (float(a) for a in args)
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError
    except (TypeError, ValueError):
        shape = "one non-empty list of finite values" if kind == "choice" else "finite (low, high)"
        raise ValueError(f"{kind} needs {shape}, got {spec!r}") from None
    if not low < high:
        raise ValueError(f"{kind} needs low < high, got {spec!r}")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"loguniform needs low > 0, got {spec!r}")
    return kind, (low, high)


def check_distributions(dists: Mapping[str, Any]) -> dict[str, tuple[str, tuple[Any, ...]]]:
    """``{name: (kind, args)}`` of :func:`parse_distribution`; errors name the hparam."""
    parsed = {}
    for name, spec in dists.items():
        try:
            parsed[name] = parse_distribution(spec)
        except ValueError as err:
            raise ValueError(f"distribution of {name}: {err}") from None
    return parsed


def random(hparams: HParams, key: jax.Array, num: int, **dists: Any) -> HParams:
    """``num`` members with each named hparam drawn independently from its distribution.

    Distributions: ``("uniform", lo, hi)``, ``("loguniform", lo, hi)``, ``("choice", values)``
    (or the strings ``"uniform:lo:hi"``, ``"loguniform:lo:hi"``, ``"choice:a,b,c"``).
    """
    if num < 1:
        raise ValueError(f"random search needs num >= 1, got {num}")
    if not dists:
        raise ValueError("random search needs at least one hparam distribution")
    _check_names(hparams, list(dists))
    parsed = check_distributions(dists)
    columns = {}
    for (name, (kind, args)), k in zip(
        parsed.items(), jax.random.split(key, len(dists)), strict=True
    ):
        if kind == "choice":
            idx = np.asarray(jax.random.randint(k, (num,), 0, len(args[0])))
            columns[name] = np.asarray(args[0], np.float64)[idx]
        else:
            u = np.asarray(jax.random.uniform(k, (num,)), np.float64)
            low, high = args
            if kind == "loguniform":
                low, high = math.log(low), math.log(high)
            draw = low + u * (high - low)
            columns[name] = np.exp(draw) if kind == "loguniform" else draw
    check_values(type(hparams), columns)
    return stack(hparams, columns, num)


def points(hparams: HParams, members: Sequence[Mapping[str, float]]) -> HParams:
    """An explicit list of members, one per mapping; names a mapping omits keep ``hparams``.

    Example: ``points(hp, [{"learning_rate": 1e-3}, {"learning_rate": 3e-4, "clip_eps": 0.1}])``
    has 2 members.
    """
    if len(members) == 0:
        raise ValueError("points needs at least one member (a mapping of hparam values)")
    for member in members:
        if not isinstance(member, Mapping):
            raise ValueError(f"points: each member is a mapping {{name: value}}, got {member!r}")
    names = list(dict.fromkeys(name for member in members for name in member))
    _check_names(hparams, names)
    columns = {
        name: [_number(name, member.get(name, getattr(hparams, name))) for member in members]
        for name in names
    }
    check_values(type(hparams), columns)
    return stack(hparams, columns, len(members))


def concat(*batches: HParams) -> HParams:
    """Joins batched hparams along the member axis (an explicit list of members)."""
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *batches)


def member_hparams(hparams: HParams, index: int) -> HParams:
    """Member ``index`` of batched hparams, as an unbatched ``HParams``."""
    return jax.tree.map(lambda x: x[index], hparams)


def columns(hparams: HParams) -> dict[str, np.ndarray]:
    """The scalar hparams of a batch as NumPy columns ``{name: [M]}``."""
    return {
        f.name: np.asarray(getattr(hparams, f.name))
        for f in dataclasses.fields(hparams)
        if f.name != "env_params"
    }
