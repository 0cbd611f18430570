"""How an update's data is gathered: a rollout turned into a batch.

An algorithm names its :class:`Collector`; ``train`` only calls it. Two are provided:

- :func:`sample_collector`: the environments keep running from where the last rollout
  stopped; the rollout becomes a flat :class:`~jaxpo.batches.SampleBatch` with advantages
  and value targets from GAE or V-trace (the actor-critic and natural-gradient families).
- :data:`TRAJECTORIES`: every update resets the ``E = groups × G`` environments (each group
  from one key, so its G trajectories start from the same state; see
  :class:`~jaxpo.envs.VecEnv`) and rolls them for ``H = num_steps`` steps into a
  :class:`~jaxpo.batches.TrajectoryBatch` with group-relative advantages and no critic (GRPO,
  TIC-GRPO). A trajectory is the part of an environment's rollout up to and including its
  first episode end; later steps are masked out but still count as env steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from . import envs
from .advantages import gae, vtrace
from .batches import Batch, RolloutData, SampleBatch, TrajectoryBatch
from .config import Config
from .hparams import HParams
from .losses import health
from .losses.group import group_advantages
from .networks import Networks, distribution, is_recurrent
from .recurrence import Sequences, bootstrap_values, episode_starts, reset_carry, step
from .rollout import Policy, Transition, rollout

ESTIMATORS = ("gae", "vtrace")


class Collected(NamedTuple):
    """One collection: where the environments are now, the batch, and rollout metrics.

    ``carry`` holds the recurrent networks' states per environment after the rollout (see
    :func:`jaxpo.recurrence.initial_carries`; ``{}`` for feed-forward networks). ``metrics``
    has at least ``episode_return`` and ``episode_length`` (``train`` carries them forward)
    and ``env_nonfinite``.
    """

    env_state: Any
    obs: jax.Array
    carry: dict[str, Any]
    batch: Batch
    metrics: dict[str, jax.Array]


#: ``collect(params, env_state, obs, carry, last_episode, key, hparams) -> Collected``;
#: ``carry`` is the recurrent states before the rollout and ``last_episode`` the carried
#: ``(episode_return, episode_length)``.
CollectFn = Callable[
    [Any, Any, jax.Array, dict[str, Any], tuple[jax.Array, jax.Array], jax.Array, HParams],
    Collected,
]


class Collector(NamedTuple):
    """An algorithm's way of gathering data.

    Attributes:
        make: ``(config, env, networks) -> collect`` (see :data:`CollectFn`).
        critic: whether the run trains a value network (``params["critic"]``).
        group_size: ``config -> G``, environments reset together from one key (1: none).
    """

    make: Callable[[Config, envs.Environment, Networks], CollectFn]
    critic: bool = True
    group_size: Callable[[Config], int] = lambda config: 1


def episode_means(
    info: dict[str, jax.Array], last_return: jax.Array, last_length: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mean return/length of episodes finished in a rollout, carried forward if none did.

    Returns:
        ``(mean_return, mean_length, num_finished)``, scalars.
    """
    done = info["episode_done"]
    count = done.sum()
    safe = jnp.maximum(count, 1)
    mean_return = jnp.where(done, info["episode_return"], 0.0).sum() / safe
    mean_length = jnp.where(done, info["episode_length"], 0.0).sum() / safe
    finished = count > 0
    return (
        jnp.where(finished, mean_return, last_return),
        jnp.where(finished, mean_length, last_length),
        count.astype(jnp.float32),
    )


def nonfinite_entries(traj: Transition) -> jax.Array:
    """Non-finite entries of a rollout's observations, final observations and rewards.

    Args:
        traj: a time-major rollout ``[T, B, ...]``; its rewards are the raw (unscaled) ones.

    Returns:
        ``[]`` float32 count (an observation can count twice: once in ``obs``, once in
        ``final_obs``); positive when the environment emitted NaN or ±inf.
    """
    arrays = (envs.features(traj.obs), envs.features(traj.final_obs), traj.reward)
    return sum(jnp.sum(~jnp.isfinite(x)) for x in arrays).astype(jnp.float32)


def illegal_actions(obs: Any, action: jax.Array, factored: bool = False) -> jax.Array:
    """How many sampled actions their observation's action mask forbids, ``[]`` float32.

    A multi-discrete action counts once however many of its factors are illegal. A step
    whose mask forbids every action (e.g. a trapped snake in Jumanji's Snake) leaves the
    policy no legal choice and is not counted.

    Args:
        obs: :class:`~jaxpo.envs.MaskedObs` with masks ``[..., A]`` (``[..., K, A]`` for
            multi-discrete actions).
        action: ``[...]`` (``[..., K]``) integer actions.
        factored: the actions are multi-discrete (their last axis is the factor axis K).
    """
    legal = jnp.take_along_axis(obs.action_mask, action[..., None].astype(jnp.int32), axis=-1)
    illegal = ~legal[..., 0] & jnp.any(obs.action_mask, axis=-1)
    if factored:
        illegal = jnp.any(illegal, axis=-1)
    return jnp.sum(illegal).astype(jnp.float32)


def rollout_health(traj: Transition) -> dict[str, jax.Array]:
    """``env_nonfinite`` and, for environments with action masks, ``illegal_actions``."""
    metrics = {"env_nonfinite": nonfinite_entries(traj)}
    if isinstance(traj.obs, envs.MaskedObs):
        factored = traj.action.ndim > traj.reward.ndim  # [T, N, K] against [T, N]
        metrics["illegal_actions"] = illegal_actions(traj.obs, traj.action, factored)
    return metrics


def estimate(
    estimator: str,
    reward: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    done: jax.Array,
    hparams: HParams,
    log_rho: jax.Array | None = None,
    weight_policy_advantage: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Advantages and value targets of a time-major rollout ``[T, B]``.

    ``"gae"``: GAE(γ, λ). ``"vtrace"``: V-trace with ρ̄ = ``hparams.vtrace_rho_bar``, c̄ =
    ``hparams.vtrace_c_bar`` and log importance weights ``log_rho`` (``log π − log μ``;
    ``None`` means π = μ, as at collection); ``weight_policy_advantage=False`` leaves ρ
    out of the policy advantage, for a loss that importance-weights by π_θ/μ itself (see
    :func:`~jaxpo.advantages.vtrace`).
    """
    inputs = (reward, values, next_values, terminated, done)
    if estimator == "gae":
        return gae(*inputs, hparams.gamma, hparams.gae_lambda)
    return vtrace(
        *inputs,
        jnp.zeros_like(reward) if log_rho is None else log_rho,
        hparams.gamma,
        hparams.gae_lambda,
        hparams.vtrace_rho_bar,
        hparams.vtrace_c_bar,
        weight_policy_advantage,
    )


def policy_of(networks: Networks, params: Any) -> Policy:
    """``(state, obs) -> (state, distribution)`` of the actor with ``params["actor"]``."""

    def policy(carry: Any, obs: Any) -> tuple[Any, Any]:
        carry, outputs = step(networks.actor, params["actor"], carry, obs)
        return carry, distribution(outputs)

    return policy


def batch_major(recurrent: bool) -> Callable[[jax.Array], jax.Array]:
    """How a time-major ``[T, B, ...]`` rollout array enters a sample batch.

    Feed-forward: flattened to ``[T·B, ...]`` (samples are shuffled one by one). Recurrent:
    environment-major ``[B, T, ...]`` (minibatches take whole environment sequences).
    """
    if recurrent:
        return lambda x: jnp.swapaxes(x, 0, 1)
    return lambda x: x.reshape((-1,) + x.shape[2:])


def time_major(recurrent: bool, steps: tuple[int, int]) -> Callable[[jax.Array], jax.Array]:
    """The inverse of :func:`batch_major`: a batch array back to ``[T, B, ...]``."""
    if recurrent:
        return lambda x: jnp.swapaxes(x, 0, 1)
    return lambda x: x.reshape(steps + x.shape[1:])


def rollout_sequences(traj: Transition, carry: dict[str, Any]) -> Sequences:
    """A rollout's observations as environment sequences ``[B, T]`` from states ``carry``."""
    done = jnp.logical_or(traj.terminated, traj.truncated)
    obs = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), traj.obs)
    return Sequences(obs, episode_starts(done), carry)


def make_sample_collect(
    config: Config, env: envs.Environment, networks: Networks, estimator: str = "gae"
) -> CollectFn:
    """One rollout from where the last one stopped, as a flat sample batch.

    Args:
        config: the run's config.
        env: the batched, wrapped environment.
        networks: actor and critic.
        estimator: ``"gae"`` or ``"vtrace"`` (see :func:`estimate`).
    """
    recurrent = is_recurrent(networks)
    to_batch = batch_major(recurrent)

    def collect(
        params: Any,
        env_state: Any,
        obs: jax.Array,
        carry: dict[str, Any],
        last_episode: tuple[jax.Array, jax.Array],
        key: jax.Array,
        hparams: HParams,
    ) -> Collected:
        env_state, obs, actor_carry, traj = rollout(
            env,
            policy_of(networks, params),
            env_state,
            obs,
            key,
            hparams.env_params,
            config.num_steps,
            carry.get("actor", ()),
        )
        ep_return, ep_length, ep_count = episode_means(traj.info, *last_episode)
        done = jnp.logical_or(traj.terminated, traj.truncated)
        if recurrent:
            seq = rollout_sequences(traj, carry)
            next_obs = jax.tree.map(to_batch, traj.final_obs)
            values, next_values, states = bootstrap_values(
                networks.critic, params["critic"], seq, next_obs
            )
            values, next_values = jnp.swapaxes(values, 0, 1), jnp.swapaxes(next_values, 0, 1)
            last = jax.tree.map(lambda x: x[:, -1], states)
            carry = {"actor": actor_carry, "critic": reset_carry(last, done[-1])}
            obs_batch = seq
        else:
            values, next_values, _ = bootstrap_values(
                networks.critic, params["critic"], traj.obs, traj.final_obs
            )
            obs_batch = jax.tree.map(to_batch, traj.obs)
        terminated = traj.terminated if config.bootstrap_truncation else done
        reward = traj.reward * hparams.reward_scale
        advantages, returns = estimate(
            estimator, reward, values, next_values, terminated, done, hparams
        )
        per_step = (traj.action, traj.log_prob, values, advantages, returns)
        batch = SampleBatch(obs_batch, *jax.tree.map(to_batch, per_step))
        steps = jax.tree.map(to_batch, (reward, terminated, done, traj.final_obs))
        batch = batch._replace(rollout=RolloutData(*steps, ep_return, ep_count))
        return Collected(
            env_state,
            obs,
            carry,
            batch,
            {
                "episode_return": ep_return,
                "episode_length": ep_length,
                "episodes": ep_count,
                "explained_variance": health.explained_variance(values, returns),
                **rollout_health(traj),
            },
        )

    return collect


def sample_collector(estimator: Callable[[Config], str] = lambda config: "gae") -> Collector:
    """A :class:`Collector` of flat sample batches; ``estimator(config)`` picks GAE or V-trace."""

    def make(config: Config, env: envs.Environment, networks: Networks) -> CollectFn:
        return make_sample_collect(config, env, networks, estimator(config))

    return Collector(make=make)


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
) -> tuple[TrajectoryBatch, dict[str, jax.Array]]:
    """The trajectory batch of a grouped rollout and its episode metrics.

    R_i = Σ_t mask_t·γ^t·r_t (raw rewards; the group normalisation makes any reward scale
    irrelevant), Â_i = (R_i − mean_group R) / (std_group R + eps).

    Args:
        traj: a time-major rollout ``[H, E, ...]``, consecutive blocks of ``group_size``
            environments forming the groups.
        gamma: discount of the trajectory return (1 gives the episode return).
        group_size: G, static.

    Returns:
        ``(batch, metrics)``: the batch is trajectory-major (see
        :class:`~jaxpo.batches.TrajectoryBatch`); the metrics are the mean return and
        length of the E trajectories (cut at the horizon if unfinished) and the number that
        finished.
    """
    done = jnp.logical_or(traj.terminated, traj.truncated)
    mask = valid_steps(done)
    discount = gamma ** jnp.arange(done.shape[0], dtype=jnp.float32)[:, None]
    returns = (mask * discount * traj.reward).sum(axis=0)
    undiscounted = (mask * traj.reward).sum(axis=0)
    advantages = group_advantages(returns, group_size)

    def trajectory_major(x: jax.Array) -> jax.Array:
        return jnp.swapaxes(x, 0, 1)

    batch = TrajectoryBatch(
        obs=jax.tree.map(trajectory_major, traj.obs),
        action=trajectory_major(traj.action),
        log_prob=trajectory_major(traj.log_prob),
        mask=trajectory_major(mask),
        advantages=advantages,
        returns=returns,
        extras={},
    )
    metrics = {
        "episode_return": undiscounted.mean(),
        "episode_length": mask.sum(axis=0).mean(),
        "episodes": (mask * done).sum(),
    }
    return batch, metrics


def make_trajectory_collect(config: Config, env: envs.Environment, networks: Networks) -> CollectFn:
    """Fresh groups of ``config.group_size`` trajectories of horizon ``num_steps``.

    A recurrent policy starts every trajectory from the zero state; the batch's
    observations are then :class:`~jaxpo.recurrence.Sequences` ``[E, H]``.
    """
    recurrent = is_recurrent(networks)

    def collect(
        params: Any,
        env_state: Any,
        obs: jax.Array,
        carry: dict[str, Any],
        last_episode: tuple[jax.Array, jax.Array],
        key: jax.Array,
        hparams: HParams,
    ) -> Collected:
        k_reset, k_roll = jax.random.split(key)
        env_state, ts = env.reset(k_reset, hparams.env_params)
        start = jax.tree.map(jnp.zeros_like, carry)
        env_state, obs, _, traj = rollout(
            env,
            policy_of(networks, params),
            env_state,
            ts.obs,
            k_roll,
            hparams.env_params,
            config.num_steps,
            start.get("actor", ()),
        )
        batch, metrics = group_batch(traj, hparams.gamma, config.group_size)
        if recurrent:
            batch = batch._replace(obs=rollout_sequences(traj, start))
        return Collected(env_state, obs, carry, batch, {**metrics, **rollout_health(traj)})

    return collect


#: Grouped whole trajectories, no critic (GRPO family; the section has ``group_size``).
TRAJECTORIES = Collector(
    make=make_trajectory_collect, critic=False, group_size=lambda config: config.group_size
)
