"""Episodes of a policy in fresh environments: the rollout of every evaluation.

:func:`first_episodes` runs one agent's policy in ``N`` environments at once until each has
finished its first episode and returns those ``N`` returns and lengths. Training calls it
every ``config.eval_interval`` updates (the ``eval_return``/``eval_length`` metrics, see
:func:`jaxpo.make_train`) and ``jaxpo eval`` on a saved run (:mod:`jaxpo.evaluate`). Actions
are the mode of the policy's distribution (argmax of the logits, the Gaussian's mean) or
samples from it. Observations are normalised with frozen running statistics when the run
normalises them: evaluating never updates them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from . import envs
from .networks import Actor, distribution
from .recurrence import initial_carry, reset_carry, step

#: a guard on the length of an evaluation rollout; every environment here ends its episodes
#: (by termination or its time limit) long before.
MAX_STEPS = 100_000


class AgentPolicy(NamedTuple):
    """What acting needs of one agent, or of several stacked on a leading axis.

    Attributes:
        params: the actor's parameters.
        stats: the observation normaliser's running statistics, or ``None`` for a run that
            did not normalise observations.
    """

    params: Any
    stats: envs.RunningStats | None


class Episodes(NamedTuple):
    """The first episode of each of ``N`` environments.

    Attributes:
        returns: undiscounted returns ``[N]`` (raw rewards, before any reward scaling).
        lengths: steps ``[N]``.
    """

    returns: jax.Array
    lengths: jax.Array


def select_action(
    actor: Actor,
    policy: AgentPolicy,
    carry: Any,
    obs: jax.Array,
    key: jax.Array,
    deterministic: bool | jax.Array,
) -> tuple[Any, jax.Array]:
    """The actions of one agent's policy for raw observations ``[B, *obs_shape]``.

    Observations are normalised with ``policy.stats`` (not updated) when there are any.
    ``carry`` is a recurrent actor's state ``[B, ...]`` before the step (see
    :func:`initial_actor_carry`; anything for a feed-forward actor); the caller resets it
    after episode ends (:func:`jaxpo.recurrence.reset_carry`), as training does.

    Returns:
        ``(carry, action)``: the state after the step, and the mode of the action
        distribution (``deterministic``) or a sample, ``[B]`` or ``[B, action_dim]``.
    """
    if policy.stats is not None:
        obs = envs.map_features(policy.stats.normalize, obs)
    carry, outputs = step(actor, policy.params, carry, obs)
    dist = distribution(outputs)
    return carry, jnp.where(deterministic, dist.mode(), dist.sample(seed=key))


def initial_actor_carry(actor: Actor, batch: int) -> Any:
    """The zero state of a recurrent actor for ``batch`` environments (``()`` if none)."""
    return initial_carry(actor.cell, actor.cell_size, (batch,)) if actor.cell != "none" else ()


def first_episodes(
    env: envs.Environment,
    actor: Actor,
    policy: AgentPolicy,
    env_params: Any,
    key: jax.Array,
    deterministic: bool | jax.Array,
) -> Episodes:
    """Runs ``policy`` in ``env``'s ``N`` environments until each finished its first episode.

    ``env`` is a batch of ``N`` independent copies with the training wrappers and without
    the observation normaliser (:func:`jaxpo.train.make_eval_env`); the environments
    are reset from ``key``. An episode still running after :data:`MAX_STEPS` steps counts
    with its return and length so far. Jittable and vmappable (under ``vmap`` the loop runs
    until every agent's environments are done; finished ones keep their first episode).

    Args:
        env: the evaluation environments.
        actor: the actor module.
        policy: one agent's parameters and frozen normaliser statistics.
        env_params: the environment's params (``hparams.env_params``).
        key: PRNG key of the resets, the env steps and, when sampling, the actions.
        deterministic: act with the distribution's mode instead of sampling.

    Returns:
        :class:`Episodes` with ``[N]`` arrays.
    """
    episodes = env.num_envs
    k_reset, key = jax.random.split(key)
    state, ts = env.reset(k_reset, env_params)
    done = jnp.zeros(episodes, bool)
    zeros = jnp.zeros(episodes, jnp.float32)

    def running(loop: tuple[Any, ...]) -> jax.Array:
        t, *_, done, _, _ = loop
        return jnp.logical_and(t < MAX_STEPS, ~done.all())

    def act(loop: tuple[Any, ...]) -> tuple[Any, ...]:
        t, state, obs, carry, key, done, returns, lengths = loop
        key, k_act, k_step = jax.random.split(key, 3)
        carry, action = select_action(actor, policy, carry, obs, k_act, deterministic)
        state, ts = env.step(k_step, state, action, env_params)
        ended = ts.info["episode_done"]
        first = ended & ~done
        returns = jnp.where(first, ts.info["episode_return"], returns)
        lengths = jnp.where(first, ts.info["episode_length"], lengths)
        carry = reset_carry(carry, ended)
        return t + 1, state, ts.obs, carry, key, done | ended, returns, lengths

    carry = initial_actor_carry(actor, episodes)
    loop = (jnp.int32(0), state, ts.obs, carry, key, done, zeros, zeros)
    _, state, _, _, _, done, returns, lengths = jax.lax.while_loop(running, act, loop)
    return Episodes(
        jnp.where(done, returns, state.episode_return),
        jnp.where(done, lengths, state.episode_length),
    )


#: folded into an agent's key for its evaluations, so that evaluating draws nothing from the
#: training stream: a run with evaluation on trains exactly as one with it off.
EVAL_STREAM = 0x4556

#: ``evaluate(params, env_state, key, hparams) -> {"return": [], "length": []}``.
Evaluation = Callable[[Any, Any, jax.Array, Any], dict[str, jax.Array]]


def make_evaluation(normalize_obs: bool, actor: Actor, env: envs.Environment) -> Evaluation:
    """The in-training evaluation: one greedy episode in each of ``env``'s environments.

    The agent's actor acts with the mode of its distribution in the ``N`` environments of
    ``env`` (its own, reset from a key folded from its training key; see
    :func:`jaxpo.train.make_eval_env`), with the observation normaliser's statistics of the
    training ``env_state`` frozen when ``normalize_obs``, until each has finished one episode
    (:func:`first_episodes`).

    Returns:
        ``evaluate(params, env_state, key, hparams)``: the mean return and length.
    """

    def evaluate(params: Any, env_state: Any, key: jax.Array, hparams: Any) -> dict[str, jax.Array]:
        stats = env_state.stats if normalize_obs else None
        policy = AgentPolicy(params["actor"], stats)
        key = jax.random.fold_in(key, EVAL_STREAM)
        done = first_episodes(env, actor, policy, hparams.env_params, key, True)
        return {"return": done.returns.mean(), "length": done.lengths.mean()}

    return evaluate


def no_evaluation(evaluating: bool) -> dict[str, jax.Array]:
    """A runner state's ``evaluation`` before the first one: NaN, or ``{}`` when off."""
    nan = jnp.float32(jnp.nan)
    return {"return": nan, "length": nan} if evaluating else {}
