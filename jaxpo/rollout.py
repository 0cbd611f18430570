"""Collecting time-major rollouts ``[T, B, ...]`` with ``lax.scan``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import distrax
import jax

from . import envs
from .recurrence import reset_carry


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


#: ``policy(state, obs [B, ...]) -> (state, distribution)``; the state is a recurrent
#: policy's, ``[B, ...]`` leaves (an empty pytree for a feed-forward one).
Policy = Callable[[Any, jax.Array], tuple[Any, distrax.Distribution]]


def rollout(
    env: envs.Environment,
    policy: Policy,
    env_state: Any,
    obs: jax.Array,
    key: jax.Array,
    env_params: Any,
    num_steps: int,
    carry: Any = (),
) -> tuple[Any, jax.Array, Any, Transition]:
    """Runs ``policy`` in a batched ``env`` for ``num_steps`` steps.

    Args:
        env: a batched environment (e.g. :class:`~jaxpo.envs.VecEnv`), ``B`` copies.
        policy: maps its state and observations ``[B, *obs_shape]`` to its next state and a
            distribution over actions.
        env_state: the batched environment state.
        obs: current observations ``[B, *obs_shape]``.
        key: PRNG key.
        env_params: the environment's params.
        num_steps: ``T``, static.
        carry: the policy's state before the first step; after a step that ends an
            environment's episode (terminated or truncated) its state is reset to zeros.

    Returns:
        ``(env_state, obs, carry, transitions)``, the first three after the last step.
    """

    def one_step(
        loop: tuple[Any, jax.Array, Any], step_key: jax.Array
    ) -> tuple[tuple[Any, jax.Array, Any], Transition]:
        env_state, obs, carry = loop
        k_act, k_env = jax.random.split(step_key)
        carry, dist = policy(carry, obs)
        action, log_prob = dist.sample_and_log_prob(seed=k_act)
        env_state, ts = env.step(k_env, env_state, action, env_params)
        carry = reset_carry(carry, ts.terminated | ts.truncated)
        transition = Transition(
            obs, action, log_prob, ts.reward, ts.terminated, ts.truncated, ts.final_obs, ts.info
        )
        return (env_state, ts.obs, carry), transition

    (env_state, obs, carry), traj = jax.lax.scan(
        one_step, (env_state, obs, carry), jax.random.split(key, num_steps)
    )
    return env_state, obs, carry, traj
