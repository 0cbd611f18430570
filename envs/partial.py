"""Partially observed variants of fully observed environments (ids ``pomdp:NAME``).

:class:`SelectObservation` keeps only some components of a flat observation; the ``pomdp:``
backend applies it to gymnax environments:

=====================  =====================  ===============================================
id                     made from              observation
=====================  =====================  ===============================================
``pomdp:CartPole-v1``  ``gymnax:CartPole-v1``  ``[cart position, pole angle]``: components 0
                                              and 2 (the two velocities are hidden)
=====================  =====================  ===============================================

Everything but the observation is the inner environment's: params (``default_params()`` is
gymnax's ``EnvParams``, so :func:`~jaxpo.envs.with_time_limit` works), rewards, termination
and truncation kept apart, auto-reset. A policy has to infer the hidden velocities from the
history of observations, so these envs test recurrent (or frame-stacking) agents.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from .core import Environment, TimeStep, Wrapper, map_features
from .gymnax_adapter import GymnaxEnv

#: ``name -> (gymnax env name, kept observation components)`` of the ``pomdp:`` backend.
POMDPS: dict[str, tuple[str, tuple[int, ...]]] = {
    "CartPole-v1": ("CartPole-v1", (0, 2)),
}


class SelectObservation(Wrapper):
    """Keeps the components ``indices`` (in that order) of a flat ``[D]`` observation.

    ``obs`` and ``final_obs`` are both cut; an action mask (:class:`~jaxpo.envs.MaskedObs`)
    passes through unchanged. Works with or without leading batch axes.

    Args:
        env: an environment with a flat observation, ``observation_shape == (D,)``.
        indices: the components to keep, each in ``[0, D)``; at least one.
        name: the wrapped environment's name (default: the inner one's).

    Raises:
        ValueError: the observation is not flat, or ``indices`` is empty or out of range.
    """

    def __init__(self, env: Environment, indices: Sequence[int], name: str | None = None):
        super().__init__(env)
        if len(env.observation_shape) != 1:
            raise ValueError(
                f"SelectObservation needs a flat observation, {env.name} has shape "
                f"{env.observation_shape}"
            )
        dim = env.observation_shape[0]
        indices = tuple(int(i) for i in indices)
        if not indices or any(not 0 <= i < dim for i in indices):
            raise ValueError(
                f"SelectObservation indices {indices} must be a non-empty selection of "
                f"0..{dim - 1} ({env.name} observes {dim} components)"
            )
        self.indices = indices
        self.observation_shape = (len(indices),)
        if name is not None:
            self.name = name

    def select(self, obs: Any) -> Any:
        """``obs`` (or a :class:`~jaxpo.envs.MaskedObs`) with only the kept components."""
        index = np.asarray(self.indices)
        return map_features(lambda x: x[..., index], obs)

    def _apply(self, ts: TimeStep) -> TimeStep:
        return ts._replace(obs=self.select(ts.obs), final_obs=self.select(ts.final_obs))

    def reset(self, key: jax.Array, params: Any) -> tuple[Any, TimeStep]:
        """Resets the inner environment and cuts its observation."""
        state, ts = self.env.reset(key, params)
        return state, self._apply(ts)

    def step(
        self, key: jax.Array, state: Any, action: jax.Array, params: Any
    ) -> tuple[Any, TimeStep]:
        """Steps the inner environment and cuts ``obs`` and ``final_obs``."""
        state, ts = self.env.step(key, state, action, params)
        return state, self._apply(ts)


def make_pomdp(name: str) -> SelectObservation:
    """The bare environment ``pomdp:NAME`` of :data:`POMDPS`.

    Raises:
        ValueError: ``name`` is not one of :data:`POMDPS` (the message lists them).
    """
    if name not in POMDPS:
        raise ValueError(f"unknown environment env_id='pomdp:{name}'; pomdp has {sorted(POMDPS)}")
    gymnax_name, indices = POMDPS[name]
    return SelectObservation(GymnaxEnv(gymnax_name), indices, name=f"pomdp:{name}")
