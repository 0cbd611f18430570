"""Adapter from Jumanji environments (``jumanji``, the optional extra ``jaxpo[jumanji]``).

Env ids are ``jumanji:NAME`` with ``NAME`` a registered Jumanji id, e.g. ``jumanji:Snake-v1``,
``jumanji:Knapsack-v1`` or ``jumanji:Minesweeper-v0``; the ids in :data:`UNSUPPORTED` are
refused with their reason (``jumanji:Sokoban-v0`` downloads its levels when made).

* Observations: Jumanji's observation pytree with its ``action_mask`` taken out, every leaf
  cast to float32 and flattened into one vector, in the suite's field order (e.g. Snake-v1:
  its ``[12, 12, 5]`` grid then ``step_count``; Minesweeper-v0: ``board`` (-1 unexplored),
  ``num_mines``, ``step_count``). Values are the suite's own, unscaled.
* Action masks: the suite's ``action_mask`` travels in ``MaskedObs(obs, action_mask)``. A
  ``[n]`` mask over ``Discrete(n)`` stays as it is; a joint mask over a multi-dimensional
  action (Minesweeper-v0: ``(row, col)``, mask ``[10, 10]``) becomes ONE ``Discrete(rows*cols)``
  action with the flattened mask, whose index the adapter unravels into the suite's action; a
  per-factor mask ``[K, max(nvec)]`` gives ``MultiDiscrete(nvec)`` with that mask.
* Time limit: Jumanji reports its time limit as termination (Snake-v1: ``discount`` 0 at
  ``time_limit``), so an env with a ``time_limit`` argument is built with the limit out of
  reach and the adapter truncates at its own step count, ``max_steps_in_episode`` (a traced
  param; default the suite's ``time_limit``, else no limit). A ``LAST`` step with a nonzero
  discount (Jumanji's own truncation) also counts as truncation.
* Keys and auto-reset: the adapter resets with the key passed in, overwrites the key Jumanji
  keeps in its state with the step key, and resets on a done step itself.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .core import (
    Discrete,
    Environment,
    MaskedObs,
    MultiDiscrete,
    TimeStep,
    first_timestep,
    select_tree,
)
from .suites import raw_key

#: Jumanji environments this adapter cannot run, and why.
UNSUPPORTED = {
    "Connector-v3": "jumanji:Connector-v3 is multi-agent with a reward per agent; jaxpo's "
    "adapters take one scalar reward",
    "LevelBasedForaging-v0": "jumanji:LevelBasedForaging-v0 is multi-agent with a reward per "
    "agent; jaxpo's adapters take one scalar reward",
    "MultiCVRP-v0": "jumanji:MultiCVRP-v0 has a continuous (BoundedArray) joint action and a "
    "reward per agent",
    "SearchAndRescue-v0": "jumanji:SearchAndRescue-v0 has continuous actions and a reward "
    "per agent",
    "MMST-v0": "jumanji:MMST-v0 sizes its state arrays by its time limit, which it reports as "
    "termination, so the limit cannot be moved to a separate truncation",
}
#: The suite time limit an env is built with, so that only the adapter's limit applies.
_OUT_OF_REACH = 2**30
_NO_LIMIT = int(np.iinfo(np.int32).max)


@struct.dataclass
class JumanjiParams:
    """The adapter's traced time limit (Jumanji envs take no params)."""

    max_steps_in_episode: jax.Array


@struct.dataclass
class JumanjiState:
    """Jumanji's state plus the episode step count."""

    env_state: Any
    time: jax.Array


def jumanji_env_names() -> list[str]:
    """Registered Jumanji ids, less :data:`UNSUPPORTED`."""
    import jumanji

    return sorted(set(jumanji.registered_environments()) - set(UNSUPPORTED))


def _without_mask(observation: Any) -> Any:
    if hasattr(observation, "_replace"):
        return observation._replace(action_mask=None)
    return observation.replace(action_mask=None)


class JumanjiEnv(Environment):
    """A Jumanji environment, e.g. ``JumanjiEnv("Minesweeper-v0")``."""

    def __init__(self, name: str):
        import jumanji

        if name in UNSUPPORTED:
            raise ValueError(UNSUPPORTED[name])
        if name not in jumanji.registered_environments():
            raise ValueError(f"unknown jumanji environment {name!r}; known: {jumanji_env_names()}")
        env = jumanji.make(name)
        self._time_limit = _NO_LIMIT
        if "time_limit" in inspect.signature(type(env).__init__).parameters:
            self._time_limit = int(env.time_limit)
            env = jumanji.make(name, time_limit=_OUT_OF_REACH)
        self._env = env
        self.name = f"jumanji:{name}"
        _, ts = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
        if ts.reward.shape != ():
            raise ValueError(f"{self.name} gives rewards of shape {ts.reward.shape}, not scalars")
        self._masked = hasattr(ts.observation, "action_mask")
        mask_shape = tuple(ts.observation.action_mask.shape) if self._masked else None
        self._kind, self.action_space = self._action_space(env.action_spec, mask_shape)
        obs = jax.eval_shape(self._features, ts.observation)
        self.observation_shape = tuple(obs.shape)

    def _action_space(self, spec: Any, mask: tuple[int, ...] | None) -> tuple[str, Any]:
        kind = type(spec).__name__
        if kind == "DiscreteArray" and mask in (None, (int(spec.num_values),)):
            return "discrete", Discrete(int(spec.num_values))
        if kind == "MultiDiscreteArray":
            nvec = tuple(int(n) for n in np.asarray(spec.num_values).reshape(-1))
            self._nvec = nvec
            if mask == nvec:
                return "joint", Discrete(math.prod(nvec))
            if mask in (None, (len(nvec), max(nvec))):
                return "factors", MultiDiscrete(nvec)
        raise ValueError(
            f"{self.name}: unsupported action spec {spec} with action mask of shape {mask}"
        )

    @property
    def jumanji_env(self) -> Any:
        """The raw Jumanji environment (built with its time limit out of reach)."""
        return self._env

    def default_params(self) -> JumanjiParams:
        """The suite's own time limit as a traced param (int32 max where it has none)."""
        return JumanjiParams(jnp.int32(self._time_limit))

    def _features(self, observation: Any) -> jax.Array:
        leaves = jax.tree.leaves(_without_mask(observation) if self._masked else observation)
        return jnp.concatenate([jnp.asarray(x, jnp.float32).reshape(-1) for x in leaves])

    def _obs(self, observation: Any) -> Any:
        obs = self._features(observation)
        if not self._masked:
            return obs
        return MaskedObs(obs, self.action_mask(observation))

    def action_mask(self, observation: Any) -> jax.Array:
        """The suite observation's legal actions in this adapter's layout (see module)."""
        mask = jnp.asarray(observation.action_mask, bool)
        return mask.reshape(-1) if self._kind == "joint" else mask

    def suite_action(self, action: jax.Array) -> jax.Array:
        """The Jumanji action for one of this adapter's actions (unravels a joint index)."""
        action = jnp.asarray(action, jnp.int32)
        if self._kind == "joint":
            return jnp.stack(jnp.unravel_index(action, self._nvec)).astype(jnp.int32)
        return action

    def reset(self, key: jax.Array, params: JumanjiParams) -> tuple[JumanjiState, TimeStep]:
        """Resets the Jumanji env with ``key``."""
        env_state, ts = self._env.reset(raw_key(key))
        return JumanjiState(env_state, jnp.int32(0)), first_timestep(self._obs(ts.observation))

    def step(
        self, key: jax.Array, state: JumanjiState, action: jax.Array, params: JumanjiParams
    ) -> tuple[JumanjiState, TimeStep]:
        """Steps the Jumanji env, applies the time limit, auto-resets with ``key``."""
        step_key, reset_key = jax.random.split(key)
        env_state = state.env_state
        if hasattr(env_state, "key"):
            env_state = env_state.replace(key=raw_key(step_key))
        stepped, ts = self._env.step(env_state, self.suite_action(action))
        time = state.time + 1
        last = ts.step_type == 2  # dm_env / Jumanji StepType.LAST
        terminated = jnp.logical_and(last, jnp.all(ts.discount == 0))
        time_up = jnp.logical_or(last, time >= params.max_steps_in_episode)
        truncated = jnp.logical_and(time_up, ~terminated)
        done = jnp.logical_or(terminated, truncated)
        fresh, fresh_ts = self._env.reset(raw_key(reset_key))
        next_state = select_tree(done, fresh, stepped)
        next_obs = select_tree(done, fresh_ts.observation, ts.observation)
        return JumanjiState(next_state, jnp.where(done, 0, time)), TimeStep(
            obs=self._obs(next_obs),
            reward=jnp.asarray(ts.reward, jnp.float32).reshape(()),
            terminated=terminated,
            truncated=truncated,
            final_obs=self._obs(ts.observation),
            info={},
        )
