"""What an update consumes: a flat batch of samples, or a batch of whole trajectories.

Both are NamedTuples of arrays with the sample (or trajectory) index first, so the
first-order rule can shuffle and split either into minibatches along that axis.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax


class RolloutData(NamedTuple):
    """What an update rule may re-read of the rollout behind a sample batch (never shuffled).

    Arrays are flattened time-major like the batch (``reshape(num_steps, num_envs)``
    restores ``[T, B]``). Its readers: V-trace's relabelling at every epoch, and
    Adaptive-PPO's bandit (the rollout's episode return).

    Attributes:
        reward: scaled rewards, ``[N]``.
        terminated: the value after the step is 0 (bootstrap cut), ``[N]`` bool.
        done: the episode ended at the step (terminated or truncated), ``[N]`` bool.
        next_obs: the observation each step led to before any auto-reset, ``[N, *obs_shape]``.
        episode_return: mean raw return of the episodes that finished in the rollout
            (carried forward from earlier rollouts if none did; 0 before any), scalar.
        episodes: number of episodes that finished in the rollout, scalar.
    """

    reward: jax.Array
    terminated: jax.Array
    done: jax.Array
    next_obs: jax.Array
    episode_return: jax.Array
    episodes: jax.Array


class SampleBatch(NamedTuple):
    """One update's samples, flattened time-major to ``N = num_steps * num_envs``.

    Attributes:
        obs: ``[N, *obs_shape]``.
        action: ``[N]`` or ``[N, action_dim]``.
        log_prob: ``log π_old(a|s)``, ``[N]``.
        values: ``V_old(s)``, ``[N]``.
        advantages: ``[N]``.
        returns: value targets, ``[N]``.
        old_outputs: π_old's distribution parameters ``(loc, log_std | None)``, each
            ``[N, ...]``, for algorithms whose loss needs a closed-form KL to π_old (filled by
            their update rule; ``None`` otherwise).
        extras: other per-sample arrays an algorithm's rule adds (shuffled with the batch).
        rollout: the :class:`RolloutData` behind the batch; dropped before minibatching.
    """

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    values: jax.Array
    advantages: jax.Array
    returns: jax.Array
    old_outputs: Any = None
    extras: Any = None
    rollout: RolloutData | None = None

    def shuffleable(self) -> SampleBatch:
        """The per-sample part (without ``rollout``), which minibatches are cut from."""
        return self._replace(rollout=None)


class TrajectoryBatch(NamedTuple):
    """One update's whole trajectories: ``E = num_envs`` of horizon ``H = num_steps``.

    Attributes:
        obs: ``[E, H, *obs_shape]``.
        action: ``[E, H]`` or ``[E, H, action_dim]``.
        log_prob: ``log π_old(a|s)``, ``[E, H]``.
        mask: ``[E, H]`` float32, 1 on the steps up to and including each trajectory's
            first episode end.
        advantages: one per trajectory, ``[E]``.
        returns: trajectory returns, ``[E]``.
        old_outputs: as in :class:`SampleBatch` (``[E, H, ...]``), or ``None``.
        extras: other per-step arrays an algorithm's rule adds (``[E, H, ...]``).
    """

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    mask: jax.Array
    advantages: jax.Array
    returns: jax.Array
    old_outputs: Any = None
    extras: Any = None

    def shuffleable(self) -> TrajectoryBatch:
        """The whole batch: every field has the trajectory index first."""
        return self


#: Either kind of batch.
Batch = SampleBatch | TrajectoryBatch
