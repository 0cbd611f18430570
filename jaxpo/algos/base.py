"""What an algorithm is made of, and how a new one is registered.

An :class:`Algorithm` bundles its static config section, its traced hparams, how its data is
collected (:class:`~jaxpo.collect.Collector`), its loss and its update rule. An update rule
works like an optax transformation: ``init(params)`` builds the rule's state (optimiser
state plus any algorithm state), ``update(params, state, batch, key)`` consumes one batch and
returns new parameters, new state and a dict of scalar metrics. ``make_train`` composes it
with the collector and never asks which algorithm it runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax

from .. import registry
from ..batches import Batch
from ..collect import Collector
from ..config import COMMON_FIELDS, LOOP_DEFAULTS, AlgoConfig, Config
from ..hparams import HParams, specs
from ..networks import Networks

#: ``loss_fn(params, batch_or_minibatch, algo_state) -> (loss, metrics)``.
LossFn = Callable[[Any, Batch, Any], tuple[jax.Array, dict[str, jax.Array]]]


class UpdateRule(NamedTuple):
    """A pair of pure functions, in the style of an optax ``GradientTransformation``."""

    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Batch, jax.Array], tuple[Any, Any, dict[str, jax.Array]]]


class MakeLoss(Protocol):
    """Builds an algorithm's loss for one run (hparams may be tracers)."""

    def __call__(self, config: Config, hparams: HParams, networks: Networks) -> LossFn:
        """Returns the loss function."""
        ...


class MakeUpdateRule(Protocol):
    """Builds an algorithm's update rule for one run (hparams may be tracers)."""

    def __call__(self, config: Config, hparams: HParams, networks: Networks) -> UpdateRule:
        """Returns the update rule."""
        ...


class Algorithm(NamedTuple):
    """Static description of an algorithm.

    Attributes:
        name: registry key (``config.algo``).
        config_cls: its static config section (an :class:`~jaxpo.config.AlgoConfig`).
        hparams_cls: its :class:`~jaxpo.hparams.HParams` subclass (defaults and ranges in
            its fields).
        collector: how its batches are gathered (flat samples or whole trajectories).
        make_loss: builds the loss its update rule minimises (public, so tests and users
            can evaluate it directly).
        make_update_rule: builds the update rule.
        discrete: supports discrete action spaces.
        continuous: supports continuous (Box) action spaces.
    """

    name: str
    config_cls: type[AlgoConfig]
    hparams_cls: type[HParams]
    collector: Collector
    make_loss: MakeLoss
    make_update_rule: MakeUpdateRule
    discrete: bool = True
    continuous: bool = True


def register(algorithm: Algorithm, replace: bool = False) -> Algorithm:
    """Adds ``algorithm`` to the registry, so ``Config(algo=algorithm.name)`` runs it.

    Checks the pieces before storing them: the section is a frozen dataclass subclass of
    :class:`~jaxpo.config.AlgoConfig` whose fields do not shadow common config fields and
    whose ``CONFIG_DEFAULTS`` name loop sizes only; the hparams class is an
    :class:`~jaxpo.hparams.HParams` subclass.

    Args:
        algorithm: the description.
        replace: allow replacing an algorithm registered under the same name.

    Returns:
        ``algorithm`` (so it can be used as ``ALGO = register(Algorithm(...))``).

    Raises:
        TypeError: a piece of the wrong kind.
        ValueError: a taken name (without ``replace``) or a clashing field.
    """
    section = algorithm.config_cls
    if not (isinstance(section, type) and issubclass(section, AlgoConfig)):
        raise TypeError(f"config_cls of {algorithm.name!r} must subclass jaxpo.config.AlgoConfig")
    if not (dataclasses.is_dataclass(section) and section.__dataclass_params__.frozen):
        raise TypeError(f"config_cls of {algorithm.name!r} must be a frozen dataclass")
    clash = sorted({f.name for f in dataclasses.fields(section)} & set(COMMON_FIELDS))
    if clash:
        raise ValueError(f"config_cls of {algorithm.name!r} redefines common fields {clash}")
    extra = sorted(set(section.CONFIG_DEFAULTS) - set(LOOP_DEFAULTS))
    if extra:
        raise ValueError(
            f"CONFIG_DEFAULTS of {algorithm.name!r} may set {sorted(LOOP_DEFAULTS)}, not {extra}"
        )
    if not (isinstance(algorithm.hparams_cls, type) and issubclass(algorithm.hparams_cls, HParams)):
        raise TypeError(f"hparams_cls of {algorithm.name!r} must subclass jaxpo.HParams")
    specs(algorithm.hparams_cls)  # every field declared with hparam()
    if not isinstance(algorithm.collector, Collector):
        raise TypeError(f"collector of {algorithm.name!r} must be a jaxpo.collect.Collector")
    return registry.add(algorithm, replace=replace)
