"""A memory probe: the cue is shown once, the reward asks for it at the end of the episode.

=================  ================================================  ========================
id                 dynamics                                          what is learned
=================  ================================================  ========================
``probe:memory``   obs ``[cue, query]``; cue ±1 at random on the     π(a = cue sign at the
                   first step, 0 after; query 1 on the last step;    query) → 1, return 1
                   ``length`` steps; reward +1 on the last step iff
                   the action matches the cue (1 for +1, 0 for −1)
=================  ================================================  ========================

It exists to test recurrent policies: the cue must be carried in the policy's memory through
``length − 1`` steps on which the observation no longer shows it. The observation at the last
step is ``[0, 1]`` whatever the cue was, so a memoryless policy earns 0.5 in expectation and
one that remembers the cue earns 1 (the optimal return). The actions before the last step do
not matter.

``length`` is an env param (``default_params() == {"length": 4}``) and may be traced: it is
only compared with the step counter. A length below 1 acts as 1 (a single step showing both
the cue and the query). Episodes end by termination (never truncation) after exactly
``length`` steps; ``final_obs`` on that step is the terminal observation ``[0, 0]`` (no cue,
no query), which is never bootstrapped from.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from .core import Discrete, Environment, TimeStep, first_timestep, select_tree

#: The memory probes (ids ``probe:NAME``).
MEMORY_PROBES = ("memory",)
#: Episode length of ``probe:memory`` by default.
DEFAULT_LENGTH = 4


@struct.dataclass
class MemoryState:
    """The episode's cue (±1) and the number of steps taken in it."""

    cue: jax.Array
    time: jax.Array


def episode_length(params: Any) -> jax.Array:
    """The (possibly traced) episode length of ``params``, at least 1, int32."""
    return jnp.maximum(jnp.asarray(params["length"], jnp.int32), 1)


class MemoryProbe(Environment):
    """``probe:memory``: remember a ±1 cue for ``length − 1`` steps (see the module)."""

    def __init__(self) -> None:
        self.name = "probe:memory"
        self.observation_shape = (2,)
        self.action_space = Discrete(2)

    def default_params(self) -> dict[str, Any]:
        """Episodes of :data:`DEFAULT_LENGTH` (4) steps."""
        return {"length": DEFAULT_LENGTH}

    @staticmethod
    def _start(key: jax.Array) -> MemoryState:
        cue = jnp.where(jax.random.bernoulli(key), 1.0, -1.0).astype(jnp.float32)
        return MemoryState(cue, jnp.int32(0))

    @staticmethod
    def _obs(state: MemoryState, length: jax.Array) -> jax.Array:
        """``[cue, query]``: the cue on step 0 only, the query on step ``length − 1`` only."""
        cue = jnp.where(state.time == 0, state.cue, 0.0)
        query = jnp.where(state.time == length - 1, 1.0, 0.0)
        return jnp.stack([cue, query]).astype(jnp.float32)

    def reset(self, key: jax.Array, params: Any) -> tuple[MemoryState, TimeStep]:
        """Draws the cue; the first observation is ``[cue, 0]`` (``[cue, 1]`` if length 1)."""
        state = self._start(key)
        return state, first_timestep(self._obs(state, episode_length(params)))

    def step(
        self, key: jax.Array, state: MemoryState, action: jax.Array, params: Any
    ) -> tuple[MemoryState, TimeStep]:
        """Advances the step counter; scores and ends the episode on its last step."""
        length = episode_length(params)
        action = jnp.asarray(action, jnp.int32).reshape(())
        stepped = MemoryState(state.cue, state.time + 1)
        terminated = stepped.time >= length
        matches = action == (state.cue > 0).astype(jnp.int32)
        reward = jnp.where(terminated & matches, 1.0, 0.0).astype(jnp.float32)
        # On the last step stepped.time == length: neither cue nor query shows, [0, 0].
        final_obs = self._obs(stepped, length)
        next_state = select_tree(terminated, self._start(key), stepped)
        return next_state, TimeStep(
            obs=self._obs(next_state, length),
            reward=reward,
            terminated=terminated,
            truncated=jnp.bool_(False),
            final_obs=final_obs,
            info={},
        )
