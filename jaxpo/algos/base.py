"""What an algorithm is made of: static facts, traced hparams, and an ``(init, update)`` rule.

An update rule works like an optax transformation: ``init(params)`` builds the rule's state
(optimiser state plus any algorithm state), ``update(params, state, batch, key)`` consumes one
batch and returns new parameters, new state and a dict of scalar metrics. ``make_train``
composes it with rollouts and advantage estimation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

import jax

from ..config import Config
from ..hparams import HParams
from ..networks import Actor, Critic


class Batch(NamedTuple):
    """One update's data, flattened to ``N = num_envs * num_steps`` samples.

    Attributes:
        obs: ``[N, *obs_shape]``.
        action: ``[N]`` or ``[N, action_dim]``.
        log_prob: ``log π_old(a|s)``, ``[N]``.
        values: ``V_old(s)``, ``[N]``.
        advantages: ``[N]``.
        returns: value targets, ``[N]``.
        old_outputs: π_old's distribution parameters ``(loc, log_std | None)``, each
            ``[N, ...]``, for algorithms whose loss needs a closed-form KL to π_old (filled by
            their update rule; ``None`` otherwise).
        extras: other per-sample arrays an algorithm's rule adds (shuffled with the batch).
    """

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    values: jax.Array
    advantages: jax.Array
    returns: jax.Array
    old_outputs: Any = None
    extras: Any = None


class UpdateRule(NamedTuple):
    """A pair of pure functions, in the style of an optax ``GradientTransformation``."""

    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Batch, jax.Array], tuple[Any, Any, dict[str, jax.Array]]]


class MakeUpdateRule(Protocol):
    """Builds an algorithm's rule inside ``train`` (hparams may be tracers)."""

    def __call__(
        self, config: Config, hparams: HParams, actor: Actor, critic: Critic
    ) -> UpdateRule:
        """Returns the update rule for one run."""
        ...


class Algorithm(NamedTuple):
    """Static description of an algorithm.

    Attributes:
        name: registry key (``config.algo``).
        hparams_cls: its :class:`~jaxpo.hparams.HParams` subclass.
        defaults: default values of every scalar hparam.
        make_update_rule: builds the update rule.
        discrete: supports discrete action spaces.
        continuous: supports continuous (Box) action spaces.
        config_defaults: static config fields that define the method (e.g. A2C's one
            full-batch step per rollout), applied by ``presets.get`` under any preset.
    """

    name: str
    hparams_cls: type
    defaults: dict[str, float]
    make_update_rule: MakeUpdateRule
    discrete: bool = True
    continuous: bool = True
    config_defaults: Mapping[str, Any] = MappingProxyType({})
