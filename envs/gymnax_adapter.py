"""Adapter from gymnax 1.x environments to :class:`~jaxpo.envs.core.Environment`.

gymnax 1.x already keeps termination and truncation apart and auto-resets, reporting the
pre-reset observation as ``info["final_observation"]``; the adapter renames, casts
observations to float32 and makes rewards scalars.

gymnax is imported when the first environment is made, not with this module: importing it
builds arrays, which starts JAX's backends, and host-device counts and
``jax.distributed.initialize`` (``jaxpo sweep --host-devices``/``--coordinator``) must come
before that.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .core import Box, Discrete, Environment, TimeStep, box, first_timestep


def _action_space(space: Any) -> Discrete | Box:
    from gymnax.environments import spaces as gspaces

    if isinstance(space, gspaces.Discrete):
        return Discrete(int(space.n))
    if isinstance(space, gspaces.Box):
        dim = math.prod(space.shape) if space.shape else 1
        return box(np.asarray(space.low), np.asarray(space.high), dim)
    raise TypeError(f"unsupported gymnax action space {type(space).__name__}")


class GymnaxEnv(Environment):
    """A registered gymnax environment, e.g. ``GymnaxEnv("CartPole-v1")``."""

    def __init__(self, name: str):
        import gymnax

        if name not in gymnax.registered_envs:
            raise ValueError(
                f"unknown gymnax environment {name!r}; registered: {gymnax.registered_envs}"
            )
        self._env, self._params = gymnax.make(name)
        self.name = f"gymnax:{name}"
        self.action_space = _action_space(self._env.action_space(self._params))
        obs, _ = jax.eval_shape(self._env.reset, jax.random.key(0), self._params)
        self.observation_shape = tuple(obs.shape)

    @property
    def gymnax_env(self) -> Any:
        """The wrapped gymnax environment object (for visualisers)."""
        return self._env

    def default_params(self) -> Any:
        """Gymnax's ``EnvParams`` for this environment."""
        return self._params

    def _action(self, action: jax.Array) -> jax.Array:
        if isinstance(self.action_space, Discrete):
            return jnp.asarray(action, jnp.int32)
        return jnp.asarray(action, jnp.float32).reshape(self.action_space.shape)

    def reset(self, key: jax.Array, params: Any) -> tuple[Any, TimeStep]:
        """Resets the gymnax environment."""
        obs, state = self._env.reset(key, params)
        return state, first_timestep(obs)

    def step(
        self, key: jax.Array, state: Any, action: jax.Array, params: Any
    ) -> tuple[Any, TimeStep]:
        """Steps (and auto-resets) the gymnax environment."""
        obs, state, reward, terminated, truncated, info = self._env.step(
            key, state, self._action(action), params
        )
        terminated = jnp.asarray(terminated, bool).reshape(())
        truncated = jnp.logical_and(jnp.asarray(truncated, bool).reshape(()), ~terminated)
        return state, TimeStep(
            obs=jnp.asarray(obs, jnp.float32),
            reward=jnp.asarray(reward, jnp.float32).reshape(()),
            terminated=terminated,
            truncated=truncated,
            final_obs=jnp.asarray(info["final_observation"], jnp.float32),
            info={},
        )
