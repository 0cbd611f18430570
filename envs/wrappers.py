"""Pure, stateful wrappers: episode statistics, action clipping, batching, obs normalisation.

Order used by the trainer (inner to outer)::

    adapter -> EpisodeStatistics -> ClipAction (Box only) -> VecEnv -> NormalizeObservation

``NormalizeObservation`` wraps the batched environment so that all ``num_envs`` copies share
one set of running statistics.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import struct

from .core import Box, Environment, TimeStep, Wrapper, features, map_features


@struct.dataclass
class EpisodeStatsState:
    """Running return/length of the current episode."""

    env_state: Any
    episode_return: jax.Array
    episode_length: jax.Array


class EpisodeStatistics(Wrapper):
    """Adds ``episode_return``, ``episode_length`` and ``episode_done`` to ``info``.

    ``episode_return``/``episode_length`` hold the finished episode's totals on the step
    where ``episode_done`` is true (raw, unscaled rewards); elsewhere they are 0.
    """

    def reset(self, key: jax.Array, params: Any) -> tuple[EpisodeStatsState, TimeStep]:
        """Resets the inner environment and the running totals."""
        state, ts = self.env.reset(key, params)
        zero = jnp.zeros((), jnp.float32)
        ts = ts._replace(
            info={
                **ts.info,
                "episode_return": zero,
                "episode_length": zero,
                "episode_done": jnp.zeros((), bool),
            }
        )
        return EpisodeStatsState(state, zero, zero), ts

    def step(
        self, key: jax.Array, state: EpisodeStatsState, action: jax.Array, params: Any
    ) -> tuple[EpisodeStatsState, TimeStep]:
        """Steps the inner environment and updates the totals."""
        env_state, ts = self.env.step(key, state.env_state, action, params)
        ret = state.episode_return + ts.reward
        length = state.episode_length + 1.0
        done = jnp.logical_or(ts.terminated, ts.truncated)
        info = {
            **ts.info,
            "episode_return": jnp.where(done, ret, 0.0),
            "episode_length": jnp.where(done, length, 0.0),
            "episode_done": done,
        }
        new_state = EpisodeStatsState(
            env_state, jnp.where(done, 0.0, ret), jnp.where(done, 0.0, length)
        )
        return new_state, ts._replace(info=info)


class ClipAction(Wrapper):
    """Maps a Gaussian policy's unbounded action into a ``Box``.

    ``mode="clip"`` clips to ``[low, high]``; ``mode="rescale"`` treats the action as living
    in ``[-1, 1]`` (after clipping) and maps it affinely onto ``[low, high]``.
    """

    def __init__(self, env: Environment, mode: Literal["clip", "rescale"] = "clip"):
        super().__init__(env)
        if not isinstance(env.action_space, Box):
            raise ValueError(
                f"ClipAction needs a continuous (Box) action space, {env.name} has none"
            )
        if mode not in ("clip", "rescale"):
            raise ValueError(f"ClipAction mode must be 'clip' or 'rescale', got {mode!r}")
        self.mode = mode

    def transform(self, action: jax.Array) -> jax.Array:
        """The action the inner environment receives, ``[action_dim]``."""
        low = jnp.asarray(self.action_space.low, jnp.float32)
        high = jnp.asarray(self.action_space.high, jnp.float32)
        if self.mode == "clip":
            return jnp.clip(action, low, high)
        unit = jnp.clip(action, -1.0, 1.0)
        return low + (unit + 1.0) * 0.5 * (high - low)

    def step(
        self, key: jax.Array, state: Any, action: jax.Array, params: Any
    ) -> tuple[Any, TimeStep]:
        """Steps the inner environment with the clipped/rescaled action."""
        return self.env.step(key, state, self.transform(action), params)


class VecEnv(Wrapper):
    """``num_envs`` independent copies of an environment.

    Every array gains a leading ``[num_envs]`` axis. Params are shared (not batched). With
    ``group_size = G > 1``, each block of G consecutive copies is reset from one key, so the
    copies of a group start from the same state (GRPO's groups); steps stay independent.
    """

    def __init__(self, env: Environment, num_envs: int, group_size: int = 1):
        super().__init__(env)
        if num_envs % group_size:
            raise ValueError(f"group_size={group_size} does not divide num_envs={num_envs}")
        self.num_envs = num_envs
        self.group_size = group_size

    def reset(self, key: jax.Array, params: Any) -> tuple[Any, TimeStep]:
        """Resets every copy with its own key (its group's key when ``group_size > 1``)."""
        keys = jax.random.split(key, self.num_envs // self.group_size)
        if self.group_size > 1:
            keys = keys[jnp.arange(self.num_envs) // self.group_size]
        return jax.vmap(self.env.reset, in_axes=(0, None))(keys, params)

    def step(
        self, key: jax.Array, state: Any, action: jax.Array, params: Any
    ) -> tuple[Any, TimeStep]:
        """Steps every copy; ``action`` is ``[num_envs, ...]``."""
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self.env.step, in_axes=(0, 0, 0, None))(keys, state, action, params)


@struct.dataclass
class RunningStats:
    """Running mean and variance (parallel-merge form) over observations."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, shape: tuple[int, ...]) -> RunningStats:
        """Statistics of no data: mean 0, variance 1, a tiny count."""
        return cls(jnp.zeros(shape), jnp.ones(shape), jnp.float32(1e-4))

    def update(self, batch: jax.Array) -> RunningStats:
        """Merges a batch ``[N, *shape]`` into the statistics (Chan et al.'s formula)."""
        b_mean = batch.mean(0)
        b_var = batch.var(0)
        b_count = jnp.float32(batch.shape[0])
        delta = b_mean - self.mean
        total = self.count + b_count
        mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        return RunningStats(mean, m2 / total, total)

    def normalize(self, x: jax.Array, clip: float = 10.0) -> jax.Array:
        """``clip((x - mean) / sqrt(var + 1e-8), -clip, clip)``."""
        return jnp.clip((x - self.mean) / jnp.sqrt(self.var + 1e-8), -clip, clip)


@struct.dataclass
class NormalizeState:
    """Inner (batched) state plus the shared running statistics."""

    env_state: Any
    stats: RunningStats


class NormalizeObservation(Wrapper):
    """Normalises a :class:`VecEnv`'s observations by running statistics kept in its state.

    Statistics are updated with each batch of new observations, then ``obs`` and
    ``final_obs`` are normalised with the same (updated) statistics (an action mask is left
    as it is).
    """

    def reset(self, key: jax.Array, params: Any) -> tuple[NormalizeState, TimeStep]:
        """Resets the inner environments and starts the statistics from their first batch."""
        env_state, ts = self.env.reset(key, params)
        stats = RunningStats.create(self.observation_shape).update(features(ts.obs))
        return NormalizeState(env_state, stats), self._apply(ts, stats)

    def step(
        self, key: jax.Array, state: NormalizeState, action: jax.Array, params: Any
    ) -> tuple[NormalizeState, TimeStep]:
        """Steps the inner environments and updates the statistics."""
        env_state, ts = self.env.step(key, state.env_state, action, params)
        stats = state.stats.update(features(ts.obs))
        return NormalizeState(env_state, stats), self._apply(ts, stats)

    @staticmethod
    def _apply(ts: TimeStep, stats: RunningStats) -> TimeStep:
        return ts._replace(
            obs=map_features(stats.normalize, ts.obs),
            final_obs=map_features(stats.normalize, ts.final_obs),
        )
