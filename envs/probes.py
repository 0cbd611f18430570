"""The five classic probe environments for debugging RL agents.

Each isolates one thing an agent must get right, with a value or policy known in closed
form (discount ``gamma``):

==========================  =========================================  ==========================
id                          dynamics                                   what is learned
==========================  =========================================  ==========================
``probe:constant``          obs 0, one step, reward +1                 V = 1
``probe:observation``       obs ±1 at random, one step, reward = obs   V(obs) = obs
``probe:delayed``           two steps (obs 0, then 1), reward at end   V(0) = gamma, V(1) = 1
``probe:action``            obs 0, one step, reward +1 iff action = 1  π(1) → 1, V → 1
``probe:observation_action``obs ±1, one step, reward +1 iff action     π(a = obs sign) → 1,
                            matches (action 1 for +1, 0 for −1)        V → 1
==========================  =========================================  ==========================

All episodes end by termination, so ``final_obs`` is the terminal observation.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from .core import Discrete, Environment, TimeStep, first_timestep, select_tree


@struct.dataclass
class ProbeState:
    """The probe's current observation sign and step index."""

    sign: jax.Array
    time: jax.Array


PROBES = ("constant", "observation", "delayed", "action", "observation_action")


class ProbeEnv(Environment):
    """One of :data:`PROBES`; observation is a single float, actions are ``{0, 1}``."""

    def __init__(self, kind: str):
        if kind not in PROBES:
            raise ValueError(f"unknown probe {kind!r}; choose one of {PROBES}")
        self.kind = kind
        self.name = f"probe:{kind}"
        self.observation_shape = (1,)
        self.action_space = Discrete(2)

    def default_params(self) -> dict[str, Any]:
        """Probes have no parameters."""
        return {}

    def _start(self, key: jax.Array) -> ProbeState:
        if self.kind in ("observation", "observation_action"):
            sign = jnp.where(jax.random.bernoulli(key), 1.0, -1.0)
        else:
            sign = jnp.float32(0.0)
        return ProbeState(sign, jnp.int32(0))

    def _obs(self, state: ProbeState) -> jax.Array:
        if self.kind == "delayed":
            return state.time.astype(jnp.float32).reshape(1)
        return state.sign.reshape(1)

    def reset(self, key: jax.Array, params: Any) -> tuple[ProbeState, TimeStep]:
        """Starts a probe episode."""
        state = self._start(key)
        return state, first_timestep(self._obs(state))

    def step(
        self, key: jax.Array, state: ProbeState, action: jax.Array, params: Any
    ) -> tuple[ProbeState, TimeStep]:
        """One probe transition, auto-reset with ``key``."""
        action = jnp.asarray(action, jnp.int32)
        terminated = jnp.bool_(True)
        if self.kind == "constant":
            reward = 1.0
        elif self.kind == "observation":
            reward = state.sign
        elif self.kind == "delayed":
            reward = jnp.where(state.time == 1, 1.0, 0.0)
            terminated = state.time == 1
        elif self.kind == "action":
            reward = jnp.where(action == 1, 1.0, 0.0)
        else:
            reward = jnp.where(action == (state.sign > 0).astype(jnp.int32), 1.0, 0.0)
        stepped = ProbeState(state.sign, state.time + 1)
        final_obs = self._obs(stepped)
        next_state = select_tree(terminated, self._start(key), stepped)
        return next_state, TimeStep(
            obs=self._obs(next_state),
            reward=jnp.asarray(reward, jnp.float32),
            terminated=terminated,
            truncated=jnp.bool_(False),
            final_obs=final_obs,
            info={},
        )
