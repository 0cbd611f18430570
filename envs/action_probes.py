"""Probe environments for the action spaces beyond one unmasked ``Discrete``.

==========================  ===============================================  =================
id                          dynamics                                         what is learned
==========================  ===============================================  =================
``probe:masked``            4 actions; each step a random subset is legal    π(target) → 1,
                            (the cued target always); reward +1 for the      return 8
                            target, 0 for another legal action; an illegal
                            action costs −1 and ends the episode; 8 steps
``probe:multidiscrete``     ``MultiDiscrete((3, 4))``; one step; the obs     both factors
                            cues a target per factor; reward = share of      match, return 1
                            factors that match
==========================  ===============================================  =================

``probe:masked`` observes ``MaskedObs(obs, action_mask)`` with ``obs`` the one-hot target
followed by the mask as floats; its episodes are cut at ``max_steps_in_episode`` (8) by
truncation. A uniformly random legal policy returns about 3.6 per episode on it (each legal
non-target action is drawn with probability ½) and about 0.29 on ``probe:multidiscrete``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
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

ACTION_PROBES = ("masked", "multidiscrete")


@struct.dataclass
class MaskedProbeParams:
    """The time limit of ``probe:masked`` (traced, like gymnax's)."""

    max_steps_in_episode: int = 8


@struct.dataclass
class ActionProbeState:
    """The cued targets, the legal actions and the step index."""

    target: jax.Array
    mask: jax.Array
    time: jax.Array


class MaskedProbe(Environment):
    """``probe:masked``: the target action is always legal, others at random (see module)."""

    num_actions = 4

    def __init__(self) -> None:
        self.name = "probe:masked"
        self.observation_shape = (2 * self.num_actions,)
        self.action_space = Discrete(self.num_actions)

    def default_params(self) -> MaskedProbeParams:
        """An 8-step time limit."""
        return MaskedProbeParams()

    def _draw(self, key: jax.Array, time: jax.Array) -> ActionProbeState:
        k_target, k_mask = jax.random.split(key)
        target = jax.random.randint(k_target, (), 0, self.num_actions)
        one_hot = jax.nn.one_hot(target, self.num_actions) > 0
        mask = jax.random.bernoulli(k_mask, 0.5, (self.num_actions,)) | one_hot
        return ActionProbeState(target, mask, time)

    def _obs(self, state: ActionProbeState) -> MaskedObs:
        cue = jax.nn.one_hot(state.target, self.num_actions)
        return MaskedObs(jnp.concatenate([cue, state.mask.astype(jnp.float32)]), state.mask)

    def reset(self, key: jax.Array, params: Any) -> tuple[ActionProbeState, TimeStep]:
        """Starts an episode at step 0."""
        state = self._draw(key, jnp.int32(0))
        return state, first_timestep(self._obs(state))

    def step(
        self, key: jax.Array, state: ActionProbeState, action: jax.Array, params: Any
    ) -> tuple[ActionProbeState, TimeStep]:
        """Scores the action, draws the next legal set, auto-resets with ``key``."""
        k_next, k_reset = jax.random.split(key)
        action = jnp.asarray(action, jnp.int32)
        legal = state.mask[action]
        reward = jnp.where(legal, (action == state.target).astype(jnp.float32), -1.0)
        stepped = self._draw(k_next, state.time + 1)
        terminated = ~legal
        truncated = ~terminated & (stepped.time >= params.max_steps_in_episode)
        done = terminated | truncated
        next_state = select_tree(done, self._draw(k_reset, jnp.int32(0)), stepped)
        return next_state, TimeStep(
            obs=self._obs(next_state),
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            final_obs=self._obs(stepped),
            info={},
        )


class MultiDiscreteProbe(Environment):
    """``probe:multidiscrete``: match a cued target in each of two factors (3 and 4 values)."""

    nvec = (3, 4)

    def __init__(self) -> None:
        self.name = "probe:multidiscrete"
        self.observation_shape = (sum(self.nvec),)
        self.action_space = MultiDiscrete(self.nvec)

    def default_params(self) -> dict[str, Any]:
        """No parameters."""
        return {}

    def _draw(self, key: jax.Array) -> ActionProbeState:
        keys = jax.random.split(key, len(self.nvec))
        target = jnp.stack(
            [jax.random.randint(k, (), 0, n) for k, n in zip(keys, self.nvec, strict=True)]
        )
        return ActionProbeState(target, jnp.ones((), bool), jnp.int32(0))

    def _obs(self, state: ActionProbeState) -> jax.Array:
        return jnp.concatenate(
            [jax.nn.one_hot(t, n) for t, n in zip(state.target, self.nvec, strict=True)]
        )

    def reset(self, key: jax.Array, params: Any) -> tuple[ActionProbeState, TimeStep]:
        """Draws the targets."""
        state = self._draw(key)
        return state, first_timestep(self._obs(state))

    def step(
        self, key: jax.Array, state: ActionProbeState, action: jax.Array, params: Any
    ) -> tuple[ActionProbeState, TimeStep]:
        """Scores the share of matching factors; every episode is one step."""
        match = jnp.asarray(action, jnp.int32).reshape(len(self.nvec)) == state.target
        next_state = self._draw(key)
        return next_state, TimeStep(
            obs=self._obs(next_state),
            reward=match.mean(dtype=jnp.float32),
            terminated=jnp.bool_(True),
            truncated=jnp.bool_(False),
            final_obs=self._obs(state),
            info={},
        )


def make_action_probe(name: str) -> Environment:
    """The probe of :data:`ACTION_PROBES` called ``name``."""
    return MaskedProbe() if name == "masked" else MultiDiscreteProbe()
