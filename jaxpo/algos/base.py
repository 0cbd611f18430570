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


class RolloutData(NamedTuple):
    """What an update rule may re-read of the rollout behind a batch (never shuffled).

    Arrays are flattened time-major like the batch (``reshape(num_steps, num_envs)``
    restores ``[T, B]``).

    Attributes:
        reward: scaled rewards, ``[N]``.
        terminated: the value after the step is 0 (bootstrap cut), ``[N]`` bool.
        done: the episode ended at the step (terminated or truncated), ``[N]`` bool.
        next_obs: the observation each step led to before any auto-reset, ``[N, *obs_shape]``.
        episode_return: mean raw return of the episodes that finished in the rollout
            (carried forward from earlier rollouts if none did; 0 before any), scalar.
        episodes: number of episodes that finished in the rollout, scalar.
    """

    reward: jax.Array
    terminated: jax.Array
    done: jax.Array
    next_obs: jax.Array
    episode_return: jax.Array
    episodes: jax.Array


class Batch(NamedTuple):
    """One update's data, flattened to ``N = num_envs * num_steps`` samples.

    Grouped (critic-free) algorithms get trajectories instead: every per-sample array is
    ``[E, H, ...]`` (``E = num_envs`` trajectories of horizon ``H = num_steps``),
    ``advantages`` and ``returns`` are ``[E]``, ``values`` is ``None`` and
    ``extras["mask"]`` ``[E, H]`` marks the steps up to and including each trajectory's
    first episode end.

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
        rollout: the :class:`RolloutData` of actor-critic batches (``None`` for grouped
            ones); update rules drop it before splitting the batch into minibatches.
    """

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    values: jax.Array
    advantages: jax.Array
    returns: jax.Array
    old_outputs: Any = None
    extras: Any = None
    rollout: RolloutData | None = None


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
        grouped: critic-free and trained on groups of whole trajectories that share a start
            state (GRPO family): every update resets the envs, rolls ``num_steps`` steps and
            builds a trajectory batch (see :class:`Batch`); there is no value network.
    """

    name: str
    hparams_cls: type
    defaults: dict[str, float]
    make_update_rule: MakeUpdateRule
    discrete: bool = True
    continuous: bool = True
    config_defaults: Mapping[str, Any] = MappingProxyType({})
    grouped: bool = False
