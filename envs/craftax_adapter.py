"""Adapter from Craftax (``craftax``, the optional extra ``jaxpo[craftax]``).

Env ids are ``craftax:NAME`` with ``NAME`` one of :data:`CRAFTAX_NAMES`:
``craftax:Craftax-Classic-Symbolic-v1`` (obs ``[1345]``, 17 actions),
``craftax:Craftax-Symbolic-v1`` (obs ``[8268]``, 43 actions) and the two ``-Pixels-`` variants
(RGB images ``[H, W, 3]``, slower; the first make of one renders Craftax's textures, about
20 s for Classic and 80 s for Craftax on a CPU, cached in the craftax package folder).

* Observations: Craftax's own float32 arrays, unchanged: a flat vector for the symbolic
  variants, an image ``[H, W, C]`` for the pixel ones. ``Discrete`` actions, no action mask.
* Time limit: Craftax's ``done`` merges death (and, in Craftax, beating the final boss) with
  its time limit ``max_timesteps``. The adapter runs the suite with ``max_timesteps`` out of
  reach, so its ``done`` is termination only, and truncates at its own step count,
  ``max_steps_in_episode`` (a traced param, default the suite's 10000 for Classic and 100000
  for Craftax).
* Keys and auto-reset: Craftax takes the key as an argument (gymnax style); the adapter runs
  the no-auto-reset variant and resets with the step key itself on a done step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .core import Discrete, Environment, TimeStep, first_timestep, select_tree

CRAFTAX_NAMES = (
    "Craftax-Classic-Symbolic-v1",
    "Craftax-Symbolic-v1",
    "Craftax-Classic-Pixels-v1",
    "Craftax-Pixels-v1",
)
_OUT_OF_REACH = int(np.iinfo(np.int32).max)


@struct.dataclass
class CraftaxParams:
    """The adapter's traced time limit and Craftax's ``EnvParams`` (its limit out of reach)."""

    max_steps_in_episode: jax.Array
    suite: Any


@struct.dataclass
class CraftaxState:
    """Craftax's state plus the episode step count."""

    env_state: Any
    time: jax.Array


class CraftaxEnv(Environment):
    """A Craftax environment, e.g. ``CraftaxEnv("Craftax-Classic-Symbolic-v1")``."""

    def __init__(self, name: str):
        if name not in CRAFTAX_NAMES:
            raise ValueError(f"unknown craftax environment {name!r}; known: {CRAFTAX_NAMES}")
        from craftax.craftax_env import make_craftax_env_from_name

        self._env = make_craftax_env_from_name(name, auto_reset=False)
        self.name = f"craftax:{name}"
        self.action_space = Discrete(int(self._env.num_actions))
        suite = self._env.default_params
        self._time_limit = int(suite.max_timesteps)
        obs, _ = jax.eval_shape(self._env.reset_env, jax.random.key(0), suite)
        self.observation_shape = tuple(obs.shape)

    @property
    def craftax_env(self) -> Any:
        """The raw (no-auto-reset) Craftax environment."""
        return self._env

    def default_params(self) -> CraftaxParams:
        """The suite's defaults, with its time limit moved to ``max_steps_in_episode``."""
        suite = self._env.default_params.replace(max_timesteps=_OUT_OF_REACH)
        return CraftaxParams(jnp.int32(self._time_limit), suite)

    def reset(self, key: jax.Array, params: CraftaxParams) -> tuple[CraftaxState, TimeStep]:
        """Generates a new world from ``key``."""
        obs, env_state = self._env.reset_env(key, params.suite)
        return CraftaxState(env_state, jnp.int32(0)), first_timestep(obs)

    def step(
        self, key: jax.Array, state: CraftaxState, action: jax.Array, params: CraftaxParams
    ) -> tuple[CraftaxState, TimeStep]:
        """Steps Craftax, applies the time limit, auto-resets with ``key``."""
        step_key, reset_key = jax.random.split(key)
        obs, stepped, reward, done, _ = self._env.step_env(
            step_key, state.env_state, jnp.asarray(action, jnp.int32), params.suite
        )
        time = state.time + 1
        terminated = jnp.asarray(done, bool).reshape(())
        truncated = jnp.logical_and(time >= params.max_steps_in_episode, ~terminated)
        reset_done = jnp.logical_or(terminated, truncated)
        fresh_obs, fresh = self._env.reset_env(reset_key, params.suite)
        next_state = select_tree(reset_done, fresh, stepped)
        next_obs = jnp.where(reset_done, fresh_obs, obs)
        return CraftaxState(next_state, jnp.where(reset_done, 0, time)), TimeStep(
            obs=jnp.asarray(next_obs, jnp.float32),
            reward=jnp.asarray(reward, jnp.float32).reshape(()),
            terminated=terminated,
            truncated=truncated,
            final_obs=jnp.asarray(obs, jnp.float32),
            info={},
        )
