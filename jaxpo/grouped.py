"""Grouped rollouts for the critic-free algorithms (GRPO, TIC-GRPO).

Every update resets the ``E = groups × G`` environments (each group from one key, so its G
trajectories start from the same state; see :class:`~jaxpo.envs.VecEnv`) and rolls them for
``H = num_steps`` steps. A trajectory is the part of an environment's rollout up to and
including its first episode end; later steps (the environment auto-resets and goes on, since
shapes are static) are masked out, but they are still env steps and are counted as such.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .algos.base import Batch
from .losses.group import group_advantages
from .rollout import Transition


def valid_steps(done: jax.Array) -> jax.Array:
    """mask_t = Π_{s<t} (1 − done_s): the steps up to and including the first episode end.

    Args:
        done: ``[H, E]`` bool, time-major.

    Returns:
        ``[H, E]`` float32 mask; step 0 is always valid.
    """
    alive = jnp.cumprod(1.0 - done.astype(jnp.float32), axis=0)
    return jnp.concatenate([jnp.ones_like(alive[:1]), alive[:-1]], axis=0)


def group_batch(
    traj: Transition, gamma: jax.Array, group_size: int
) -> tuple[Batch, dict[str, jax.Array]]:
    """The trajectory batch of a grouped rollout and its episode metrics.

    R_i = Σ_t mask_t·γ^t·r_t (raw rewards; the group normalisation makes any reward scale
    irrelevant), Â_i = (R_i − mean_group R) / (std_group R + eps).

    Args:
        traj: a time-major rollout ``[H, E, ...]``, consecutive blocks of ``group_size``
            environments forming the groups.
        gamma: discount of the trajectory return (1 gives the episode return).
        group_size: G, static.

    Returns:
        ``(batch, metrics)``: the batch is trajectory-major (``obs`` ``[E, H, *obs_shape]``,
        ``action`` and ``log_prob`` ``[E, H, ...]``, ``advantages`` and ``returns``
        ``[E]``, ``extras["mask"]`` ``[E, H]``, ``values`` ``None``); the metrics are the
        mean return and length of the E trajectories (cut at the horizon if unfinished)
        and the number that finished.
    """
    done = jnp.logical_or(traj.terminated, traj.truncated)
    mask = valid_steps(done)
    discount = gamma ** jnp.arange(done.shape[0], dtype=jnp.float32)[:, None]
    returns = (mask * discount * traj.reward).sum(axis=0)
    undiscounted = (mask * traj.reward).sum(axis=0)
    advantages = group_advantages(returns, group_size)

    def trajectory_major(x: jax.Array) -> jax.Array:
        return jnp.swapaxes(x, 0, 1)

    batch = Batch(
        obs=trajectory_major(traj.obs),
        action=trajectory_major(traj.action),
        log_prob=trajectory_major(traj.log_prob),
        values=None,
        advantages=advantages,
        returns=returns,
        extras={"mask": trajectory_major(mask)},
    )
    metrics = {
        "episode_return": undiscounted.mean(),
        "episode_length": mask.sum(axis=0).mean(),
        "episodes": (mask * done).sum(),
    }
    return batch, metrics
