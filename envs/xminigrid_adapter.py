"""Adapter from XLand-MiniGrid (``xminigrid``, the optional extra ``jaxpo[xminigrid]``).

Env ids are ``xminigrid:NAME`` with ``NAME`` one of ``xminigrid.registered_environments()``,
e.g. ``xminigrid:MiniGrid-Empty-5x5`` or ``xminigrid:XLand-MiniGrid-R1-9x9`` (XLand envs run
with their default, empty ruleset: the benchmark rulesets are downloads and not used here).

* Observations: the agent's egocentric view, a ``uint8`` grid ``[V, V, 2]`` of (tile id,
  colour id) per cell, kept as an image ``[H, W, C]`` and cast to float32 (the ids are
  categorical codes, not intensities). 6 ``Discrete`` actions, no action mask.
* Termination and truncation: xminigrid keeps them apart (``discount`` is 0 only on
  termination). Its reward ``1 - 0.9 * t / max_steps`` depends on its own (static) time limit
  ``max_steps``, so that limit stays in place; the adapter adds a traced
  ``max_steps_in_episode`` (default: the suite's ``max_steps``) and truncates at whichever
  comes first, i.e. :func:`~jaxpo.envs.with_time_limit` can shorten episodes, not lengthen them.
* Keys: the raw env stores a key in its state; the adapter resets with the key passed in and
  overwrites the stored key with the step key, so jaxpo alone drives randomness.
* Auto-reset: the raw env has none; the adapter resets with the step's key on a done step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from .core import Discrete, Environment, TimeStep, first_timestep, select_tree
from .suites import raw_key


@struct.dataclass
class XMiniGridParams:
    """The adapter's traced time limit and xminigrid's (static) ``EnvParams``."""

    max_steps_in_episode: jax.Array
    suite: Any


@struct.dataclass
class XMiniGridState:
    """xminigrid's ``TimeStep`` (its state and last observation) plus the episode step count."""

    timestep: Any
    time: jax.Array


def xminigrid_env_names() -> list[str]:
    """Names of the registered xminigrid environments."""
    import xminigrid

    return sorted(xminigrid.registered_environments())


class XMiniGridEnv(Environment):
    """An XLand-MiniGrid environment, e.g. ``XMiniGridEnv("MiniGrid-Empty-5x5")``."""

    def __init__(self, name: str):
        import xminigrid

        if name not in xminigrid.registered_environments():
            raise ValueError(
                f"unknown xminigrid environment {name!r}; registered: {xminigrid_env_names()}"
            )
        self._env, self._params = xminigrid.make(name)
        self.name = f"xminigrid:{name}"
        self.action_space = Discrete(int(self._env.num_actions(self._params)))
        self.observation_shape = tuple(int(d) for d in self._env.observation_shape(self._params))

    @property
    def xminigrid_env(self) -> Any:
        """The raw xminigrid environment (for its renderer)."""
        return self._env

    def default_params(self) -> XMiniGridParams:
        """The suite's own time limit (``4 * H * W`` steps for most envs) as a traced param."""
        return XMiniGridParams(jnp.int32(self._params.max_steps), self._params)

    def _obs(self, timestep: Any) -> jax.Array:
        return jnp.asarray(timestep.observation, jnp.float32)

    def reset(self, key: jax.Array, params: XMiniGridParams) -> tuple[XMiniGridState, TimeStep]:
        """Generates a new problem from ``key``."""
        timestep = self._env.reset(params.suite, raw_key(key))
        return XMiniGridState(timestep, jnp.int32(0)), first_timestep(self._obs(timestep))

    def step(
        self, key: jax.Array, state: XMiniGridState, action: jax.Array, params: XMiniGridParams
    ) -> tuple[XMiniGridState, TimeStep]:
        """Steps the raw env, applies the time limit, auto-resets with ``key``."""
        step_key, reset_key = jax.random.split(key)
        current = state.timestep
        current = current.replace(state=current.state.replace(key=raw_key(step_key)))
        stepped = self._env.step(params.suite, current, jnp.asarray(action, jnp.int32))
        time = state.time + 1
        last = stepped.step_type == 2  # xminigrid StepType.LAST
        terminated = jnp.logical_and(last, stepped.discount == 0)
        time_up = jnp.logical_or(last, time >= params.max_steps_in_episode)
        truncated = jnp.logical_and(time_up, ~terminated)
        done = jnp.logical_or(terminated, truncated)
        fresh = self._env.reset(params.suite, raw_key(reset_key))
        next_timestep = select_tree(done, fresh, stepped)
        return XMiniGridState(next_timestep, jnp.where(done, 0, time)), TimeStep(
            obs=self._obs(next_timestep),
            reward=jnp.asarray(stepped.reward, jnp.float32).reshape(()),
            terminated=terminated,
            truncated=truncated,
            final_obs=self._obs(stepped),
            info={},
        )
