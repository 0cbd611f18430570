"""Collecting time-major rollouts ``[T, B, ...]`` with ``lax.scan``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import distrax
import jax

from . import envs


class Transition(NamedTuple):
    """One rollout, time-major.

    Attributes:
        obs: observations acted on, ``[T, B, *obs_shape]``.
        action: actions taken, ``[T, B]`` int32 or ``[T, B, action_dim]`` float32.
        log_prob: ``log π_old(a|s)``, ``[T, B]``.
        reward: raw rewards, ``[T, B]``.
        terminated: ``[T, B]`` bool.
        truncated: ``[T, B]`` bool.
        final_obs: observation each transition led to before auto-reset,
            ``[T, B, *obs_shape]``.
        info: per-step extras from wrappers (episode statistics), each ``[T, B]``.
    """

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array
    info: dict[str, jax.Array]


def rollout(
    env: envs.Environment,
    policy: Callable[[jax.Array], distrax.Distribution],
    env_state: Any,
    obs: jax.Array,
    key: jax.Array,
    env_params: Any,
    num_steps: int,
) -> tuple[Any, jax.Array, Transition]:
    """Runs ``policy`` in a batched ``env`` for ``num_steps`` steps.

    Args:
        env: a batched environment (e.g. :class:`~jaxpo.envs.VecEnv`), ``B`` copies.
        policy: maps observations ``[B, *obs_shape]`` to a distribution over actions.
        env_state: the batched environment state.
        obs: current observations ``[B, *obs_shape]``.
        key: PRNG key.
        env_params: the environment's params.
        num_steps: ``T``, static.

    Returns:
        ``(env_state, obs, transitions)`` with the state and observations after the last step.
    """

    def one_step(
        carry: tuple[Any, jax.Array], step_key: jax.Array
    ) -> tuple[tuple[Any, jax.Array], Transition]:
        env_state, obs = carry
        k_act, k_env = jax.random.split(step_key)
        action, log_prob = policy(obs).sample_and_log_prob(seed=k_act)
        env_state, ts = env.step(k_env, env_state, action, env_params)
        transition = Transition(
            obs, action, log_prob, ts.reward, ts.terminated, ts.truncated, ts.final_obs, ts.info
        )
        return (env_state, ts.obs), transition

    (env_state, obs), traj = jax.lax.scan(
        one_step, (env_state, obs), jax.random.split(key, num_steps)
    )
    return env_state, obs, traj
