"""The algorithm registry: ``config.algo`` names an entry here.

It sits at the bottom of the package (beside :mod:`jaxpo.config`, which reads each entry's
static-config section) and holds whatever :func:`jaxpo.algos.register` puts in it; the
built-in algorithms register themselves when :mod:`jaxpo.algos` is imported, which
``import jaxpo`` does.
"""

from __future__ import annotations

from typing import Any

#: ``name -> Algorithm`` (see :class:`jaxpo.algos.base.Algorithm`), in registration order.
ALGORITHMS: dict[str, Any] = {}


def add(algorithm: Any, replace: bool = False) -> Any:
    """Stores ``algorithm`` under ``algorithm.name``; a taken name raises unless ``replace``."""
    if algorithm.name in ALGORITHMS and not replace:
        raise ValueError(
            f"an algorithm named {algorithm.name!r} is already registered "
            f"(pass replace=True to replace it)"
        )
    ALGORITHMS[algorithm.name] = algorithm
    return algorithm


def lookup(name: str) -> Any:
    """The algorithm registered as ``name``; ``ValueError`` listing the known names if none."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm algo={name!r}; choose one of {sorted(ALGORITHMS)}")
    return ALGORITHMS[name]
