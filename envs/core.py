"""The functional environment interface every backend is adapted to.

An environment is a static Python object; everything that changes during a run (its state)
and everything a sweep may vary (its params) is passed in and returned as pytrees, so that
``reset`` and ``step`` can be jitted, vmapped and scanned.

Both ``reset`` and ``step`` return ``(state, TimeStep)``. Environments auto-reset: when a
step ends an episode, ``TimeStep.obs`` is already the first observation of the next episode
and ``TimeStep.final_obs`` holds the observation the episode ended on. When the episode goes
on, ``final_obs`` equals ``obs``, so ``V(final_obs)`` is always the right bootstrap target.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class TimeStep(NamedTuple):
    """What an environment returns after ``reset`` or ``step`` (single env: no batch axis).

    Attributes:
        obs: observation to act on next, ``[*obs_shape]`` float32, or a
            :class:`MaskedObs` that also carries the legal actions.
        reward: reward of the transition, ``[]`` float32 (0 after reset).
        terminated: the episode reached a terminal state, ``[]`` bool (bootstrap with 0).
        truncated: the episode hit a time limit without terminating, ``[]`` bool
            (bootstrap with ``V(final_obs)``).
        final_obs: the observation the transition led to, before any auto-reset (of the
            same kind as ``obs``).
        info: wrapper-provided extras (e.g. episode statistics); a dict of arrays.
    """

    obs: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array
    info: dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Discrete:
    """A discrete action space with ``n`` actions ``0..n-1``."""

    n: int


@dataclasses.dataclass(frozen=True)
class Box:
    """A continuous action space: a vector of ``shape`` bounded by ``low`` and ``high``."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """The action vector's shape, ``(action_dim,)``."""
        return (len(self.low),)


@dataclasses.dataclass(frozen=True)
class MultiDiscrete:
    """``K`` independent discrete choices; factor ``k`` takes ``nvec[k]`` values.

    Actions are ``[K]`` int32 vectors. The policy is a product of ``K`` categoricals: its
    log-prob, entropy, KL and Fisher are sums over the factors.
    """

    nvec: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """The action vector's shape, ``(K,)``."""
        return (len(self.nvec),)


ActionSpace = Discrete | MultiDiscrete | Box


class MaskedObs(NamedTuple):
    """An observation together with the actions that are legal in it.

    Environments with action masks return this as ``TimeStep.obs`` (and ``final_obs``);
    the policy gives the illegal actions probability exactly 0.

    Attributes:
        obs: the observation proper, ``[*obs_shape]`` float32.
        action_mask: ``[n]`` bool for ``Discrete(n)``, ``[K, max(nvec)]`` bool for
            ``MultiDiscrete(nvec)`` (one row per factor); ``True`` marks a legal action.
    """

    obs: jax.Array
    action_mask: jax.Array


def features(obs: Any) -> jax.Array:
    """The observation proper: ``obs.obs`` of a :class:`MaskedObs`, else ``obs`` itself."""
    return obs.obs if isinstance(obs, MaskedObs) else obs


def map_features(fn: Any, obs: Any) -> Any:
    """``obs`` with ``fn`` applied to its observation proper (a mask is left as it is)."""
    if isinstance(obs, MaskedObs):
        return obs._replace(obs=fn(obs.obs))
    return fn(obs)


def box(low: Any, high: Any, dim: int) -> Box:
    """Builds a :class:`Box` from scalars or arrays, broadcast to ``dim`` entries."""
    low = np.broadcast_to(np.asarray(low, np.float64), (dim,))
    high = np.broadcast_to(np.asarray(high, np.float64), (dim,))
    return Box(tuple(float(x) for x in low), tuple(float(x) for x in high))


class Environment(abc.ABC):
    """A pure, auto-resetting environment.

    Subclasses set ``observation_shape`` and ``action_space`` and implement the three
    methods below. Instances are static: never store traced values on them.
    """

    observation_shape: tuple[int, ...]
    action_space: ActionSpace
    name: str

    @property
    def is_discrete(self) -> bool:
        """Whether actions are integers (``Discrete``, ``MultiDiscrete``), not a ``Box``."""
        return isinstance(self.action_space, Discrete | MultiDiscrete)

    @abc.abstractmethod
    def default_params(self) -> Any:
        """The environment's default (traced) parameters, a pytree."""

    @abc.abstractmethod
    def reset(self, key: jax.Array, params: Any) -> tuple[Any, TimeStep]:
        """Starts an episode: returns ``(state, TimeStep)`` with reward 0 and no done flags."""

    @abc.abstractmethod
    def step(
        self, key: jax.Array, state: Any, action: jax.Array, params: Any
    ) -> tuple[Any, TimeStep]:
        """Advances one step and auto-resets a finished episode (see the module docstring)."""


class Wrapper(Environment):
    """An environment that delegates to an inner one; override what changes."""

    def __init__(self, env: Environment):
        self.env = env
        self.observation_shape = env.observation_shape
        self.action_space = env.action_space
        self.name = env.name

    def default_params(self) -> Any:
        """The inner environment's default parameters."""
        return self.env.default_params()

    def reset(self, key: jax.Array, params: Any) -> tuple[Any, TimeStep]:
        """Resets the inner environment."""
        return self.env.reset(key, params)

    def step(
        self, key: jax.Array, state: Any, action: jax.Array, params: Any
    ) -> tuple[Any, TimeStep]:
        """Steps the inner environment."""
        return self.env.step(key, state, action, params)

    def unwrapped(self) -> Environment:
        """The innermost environment."""
        env = self.env
        return env.unwrapped() if isinstance(env, Wrapper) else env


def first_timestep(obs: Any) -> TimeStep:
    """The ``TimeStep`` that ``reset`` returns for a fresh observation (or :class:`MaskedObs`)."""
    obs = map_features(lambda x: jnp.asarray(x, jnp.float32), obs)
    false = jnp.zeros((), bool)
    return TimeStep(obs, jnp.zeros((), jnp.float32), false, false, obs, {})


def select_tree(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Elementwise ``pred ? on_true : on_false`` over two pytrees of the same structure."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)
