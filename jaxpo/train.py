"""``make_train(config) -> train(key, hparams)``: the one place the pieces are assembled.

``train`` is pure: environment steps, rollouts, advantage estimation and every update are one
``lax.scan`` over ``config.num_updates``; it can be jitted, vmapped over keys and hparams, and
sharded. The only host interaction is an optional progress hook compiled in when a hook is
given and ``config.progress_interval > 0``.

NaN safety: an update whose loss, gradient norm, parameters or update-rule state come out
non-finite is skipped (the agent keeps its previous parameters and rule state exactly) and
counted; after ``config.max_consecutive_skips`` consecutive skips the agent is marked failed
and frozen for the rest of the run. Non-finite observations and rewards of each rollout are
counted too. Every check is per agent, so under ``vmap`` agents stay independent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from . import envs
from .advantages import gae, vtrace
from .algos import ALGORITHMS, Algorithm, Batch
from .algos.base import RolloutData
from .config import Config, validate_config
from .grouped import group_batch
from .hparams import HParams, validate_hparams
from .losses import health
from .networks import distribution, make_networks
from .rollout import Transition, rollout

#: ``hook(update, env_steps, episode_return)``: called on the host every
#: ``progress_interval`` updates with NumPy arrays; ``episode_return`` has one entry per
#: member of whatever ``vmap`` is around ``train`` (shape ``[]`` for a single run; under
#: :func:`jaxpo.sweep.run`, the flat returns of every local agent, see ``MergedHook``).
ProgressHook = Callable[[int, int, np.ndarray], None]


@struct.dataclass
class RunnerState:
    """Everything the training loop carries from one update to the next.

    Attributes:
        params: ``{"actor": ..., "critic": ...}`` network parameters (no ``"critic"`` for
            the critic-free grouped algorithms).
        rule_state: the update rule's state (optimiser and algorithm state).
        env_state: the batched, wrapped environment state.
        obs: current observations, ``[num_envs, *obs_shape]``.
        key: PRNG key.
        update: number of updates done.
        episode_return: latest mean return of finished episodes (carried forward).
        episode_length: latest mean length of finished episodes (carried forward).
        skipped: ``[]`` int32, updates skipped so far for non-finite results.
        consecutive_skips: ``[]`` int32, the current run of skipped updates.
        failed: ``[]`` bool, set after ``config.max_consecutive_skips`` consecutive skips;
            a failed agent's parameters and rule state are not updated again.
    """

    params: Any
    rule_state: Any
    env_state: Any
    obs: jax.Array
    key: jax.Array
    update: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array
    skipped: jax.Array
    consecutive_skips: jax.Array
    failed: jax.Array


class TrainResult(NamedTuple):
    """What ``train`` returns.

    Attributes:
        state: the final :class:`RunnerState`.
        metrics: flat dict of ``[num_updates]`` arrays (sweep axes in front under ``vmap``):
            the rollout's and the update rule's metrics and the NaN-safety ones,
            ``update_skipped`` (1: the update was non-finite and not applied),
            ``skipped_total``, ``failed`` (1: the agent is frozen from this update on) and
            ``env_nonfinite`` (see :func:`nonfinite_entries`).
    """

    state: RunnerState
    metrics: dict[str, jax.Array]


def bare_env(config: Config) -> envs.Environment:
    """The unwrapped environment ``config`` names (its ``default_params`` seed the hparams)."""
    return envs.make(config.env_id, config.brax_backend, config.episode_length)


def make_env(config: Config) -> envs.Environment:
    """The batched, wrapped environment of a run (see :mod:`jaxpo.envs.wrappers`)."""
    env = envs.EpisodeStatistics(bare_env(config))
    if not env.is_discrete:
        env = envs.ClipAction(env, config.action_mode)
    group_size = config.group_size if ALGORITHMS[config.algo].grouped else 1
    env = envs.VecEnv(env, config.num_envs, group_size)
    if config.normalize_obs:
        env = envs.NormalizeObservation(env)
    return env


def check_action_space(algo: Algorithm, env: envs.Environment) -> None:
    """Raises ``ValueError`` if ``algo`` cannot act in ``env``'s action space."""
    if env.is_discrete and not algo.discrete:
        raise ValueError(
            f"algorithm {algo.name!r} needs continuous actions; {env.name} is discrete"
        )
    if not env.is_discrete and not algo.continuous:
        raise ValueError(
            f"algorithm {algo.name!r} needs discrete actions; {env.name} is continuous"
        )


def default_hparams(config: Config, **overrides: float) -> HParams:
    """The algorithm's default hparams for ``config``'s env, with ``overrides`` applied."""
    algo = ALGORITHMS[config.algo]
    hparams = algo.hparams_cls.create(bare_env(config).default_params(), **algo.defaults)
    return hparams.set(**overrides) if overrides else hparams


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
    arrays = (traj.obs, traj.final_obs, traj.reward)
    return sum(jnp.sum(~jnp.isfinite(x)) for x in arrays).astype(jnp.float32)


def is_loss_metric(name: str) -> bool:
    """Whether update metric ``name`` is a loss or a gradient norm (checked for finiteness)."""
    return name == "loss" or name.endswith(("_loss", "grad_norm"))


def finite_update(old: Any, new: Any, metrics: dict[str, jax.Array]) -> jax.Array:
    """Whether an update is healthy: finite losses and gradient norms, no new non-finite values.

    Every float entry of ``new`` must be finite or equal to its entry in ``old``: a rule
    state may hold deliberate infinities (the bandit's ±inf bounds before any reward) and
    keep them, but an update must not produce NaN or ±inf. A non-finite loss or gradient
    normally reaches the parameters or the optimiser state too (Adam and the natural-gradient
    steps propagate it); the loss and gradient-norm metrics are checked in case it does not.

    Args:
        old: the ``(params, rule_state)`` before the update.
        new: the ``(params, rule_state)`` it returned, same structure.
        metrics: the update rule's scalar metrics.

    Returns:
        ``[]`` bool.
    """
    ok = jnp.bool_(True)
    for before, after in zip(jax.tree.leaves(old), jax.tree.leaves(new), strict=True):
        if jnp.issubdtype(after.dtype, jnp.inexact):
            ok &= jnp.all(jnp.isfinite(after) | (after == before))
    for name, value in metrics.items():
        if is_loss_metric(name):
            ok &= jnp.all(jnp.isfinite(value))
    return ok


def _report(hook: ProgressHook, update: jax.Array, env_steps: int, ret: jax.Array) -> jax.Array:
    """Calls ``hook`` once per call site, however many ``vmap`` levels wrap it."""

    def host(u: np.ndarray, r: np.ndarray) -> np.ndarray:
        hook(int(np.ravel(u)[0]), int(np.ravel(u)[0]) * env_steps, np.asarray(r))
        return np.zeros(np.shape(r), np.int32)

    return jax.pure_callback(
        host, jax.ShapeDtypeStruct((), jnp.int32), update, ret, vmap_method="expand_dims"
    )


class Trainer(NamedTuple):
    """Training in segments: ``init(key, hparams)``, then ``run(state, hparams, updates)``.

    ``init`` returns the :class:`RunnerState` before the first update; ``run`` does
    ``updates`` (static) more updates and returns a :class:`TrainResult`. ``run`` continues
    from any state (its ``update`` counter included), so training in segments, with a
    checkpoint between them, is the same computation as one call.
    """

    init: Callable[[jax.Array, HParams], RunnerState]
    run: Callable[[RunnerState, HParams, int], TrainResult]


def make_trainer(config: Config, progress: ProgressHook | None = None) -> Trainer:
    """Builds the pure ``init`` and ``run`` of ``config``.

    Static checks (config fields, env id, action space) run here, before anything is traced.

    Args:
        config: the static configuration.
        progress: optional host hook, called every ``config.progress_interval`` updates of a
            ``run`` and at its last update (nothing is compiled in when it is ``None`` or the
            interval is 0).

    Returns:
        A :class:`Trainer`; both functions are jittable and vmappable over states, keys and
        hparams.
    """
    validate_config(config)
    algo = ALGORITHMS[config.algo]
    env = make_env(config)
    check_action_space(algo, env)
    actor, critic = make_networks(config, env)
    report = progress is not None and config.progress_interval > 0

    def policy(params: Any) -> Callable[[jax.Array], Any]:
        return lambda obs: distribution(actor.apply(params["actor"], obs))

    def make_batch(
        params: Any,
        traj: Transition,
        hparams: HParams,
        episode_return: jax.Array,
        episodes: jax.Array,
    ) -> tuple[Batch, jax.Array]:
        values = critic.apply(params["critic"], traj.obs)
        next_values = critic.apply(params["critic"], traj.final_obs)
        done = jnp.logical_or(traj.terminated, traj.truncated)
        terminated = traj.terminated if config.bootstrap_truncation else done
        reward = traj.reward * hparams.reward_scale
        inputs = (reward, values, next_values, terminated, done)
        if config.advantage == "vtrace":
            # π = μ at collection: ρ = min(ρ̄, 1), c = λ·min(c̄, 1).
            advantages, returns = vtrace(
                *inputs,
                jnp.zeros_like(reward),
                hparams.gamma,
                hparams.gae_lambda,
                hparams.vtrace_rho_bar,
                hparams.vtrace_c_bar,
            )
        else:
            advantages, returns = gae(*inputs, hparams.gamma, hparams.gae_lambda)

        def flat(x: jax.Array) -> jax.Array:
            return x.reshape((-1,) + x.shape[2:])

        batch = jax.tree.map(
            flat, Batch(traj.obs, traj.action, traj.log_prob, values, advantages, returns)
        )
        steps = jax.tree.map(flat, (reward, terminated, done, traj.final_obs))
        batch = batch._replace(rollout=RolloutData(*steps, episode_return, episodes))
        return batch, health.explained_variance(values, returns)

    def collect(
        state: RunnerState, key: jax.Array, hparams: HParams
    ) -> tuple[Any, jax.Array, Batch, dict[str, jax.Array]]:
        """One rollout from where the last one stopped, as an actor-critic batch."""
        env_state, obs, traj = rollout(
            env,
            policy(state.params),
            state.env_state,
            state.obs,
            key,
            hparams.env_params,
            config.num_steps,
        )
        ep_return, ep_length, ep_count = episode_means(
            traj.info, state.episode_return, state.episode_length
        )
        batch, explained_var = make_batch(state.params, traj, hparams, ep_return, ep_count)
        return (
            env_state,
            obs,
            batch,
            {
                "episode_return": ep_return,
                "episode_length": ep_length,
                "episodes": ep_count,
                "explained_variance": explained_var,
                "env_nonfinite": nonfinite_entries(traj),
            },
        )

    def collect_groups(
        state: RunnerState, key: jax.Array, hparams: HParams
    ) -> tuple[Any, jax.Array, Batch, dict[str, jax.Array]]:
        """Fresh groups of trajectories (see :mod:`jaxpo.grouped`)."""
        k_reset, k_roll = jax.random.split(key)
        env_state, ts = env.reset(k_reset, hparams.env_params)
        env_state, obs, traj = rollout(
            env,
            policy(state.params),
            env_state,
            ts.obs,
            k_roll,
            hparams.env_params,
            config.num_steps,
        )
        batch, metrics = group_batch(traj, hparams.gamma, config.group_size)
        return env_state, obs, batch, {**metrics, "env_nonfinite": nonfinite_entries(traj)}

    collect_batch = collect_groups if algo.grouped else collect

    def checked_rule(hparams: HParams) -> Any:
        if not isinstance(hparams, algo.hparams_cls):
            raise TypeError(
                f"algorithm {algo.name!r} takes {algo.hparams_cls.__name__}, "
                f"got {type(hparams).__name__}"
            )
        validate_hparams(hparams)
        return algo.make_update_rule(config, hparams, actor, critic)

    def init(key: jax.Array, hparams: HParams) -> RunnerState:
        rule = checked_rule(hparams)
        key, k_actor, k_critic, k_env = jax.random.split(key, 4)
        env_state, ts = env.reset(k_env, hparams.env_params)
        params = {"actor": actor.init(k_actor, ts.obs[:1])}
        if not algo.grouped:
            params["critic"] = critic.init(k_critic, ts.obs[:1])
        zero = jnp.zeros((), jnp.float32)
        return RunnerState(
            params,
            rule.init(params),
            env_state,
            ts.obs,
            key,
            jnp.int32(0),
            zero,
            zero,
            skipped=jnp.int32(0),
            consecutive_skips=jnp.int32(0),
            failed=jnp.bool_(False),
        )

    def run(state: RunnerState, hparams: HParams, updates: int) -> TrainResult:
        rule = checked_rule(hparams)

        def one_update(state: RunnerState, step: jax.Array) -> tuple[RunnerState, Any]:
            update = state.update
            key, k_roll, k_update = jax.random.split(state.key, 3)
            env_state, obs, batch, metrics = collect_batch(state, k_roll, hparams)
            new_params, new_rule_state, rule_metrics = rule.update(
                state.params, state.rule_state, batch, k_update
            )
            old, new = (state.params, state.rule_state), (new_params, new_rule_state)
            finite = finite_update(old, new, rule_metrics)
            # A skipped update, or any update of a failed agent, leaves both exactly as they were.
            applied = jnp.logical_and(finite, ~state.failed)
            params, rule_state = jax.tree.map(lambda a, b: jnp.where(applied, a, b), new, old)
            skipped = state.skipped + (~finite).astype(jnp.int32)
            consecutive = jnp.where(finite, 0, state.consecutive_skips + 1)
            failed = jnp.logical_or(state.failed, consecutive >= config.max_consecutive_skips)
            ep_return, ep_length = metrics["episode_return"], metrics["episode_length"]
            metrics = {
                **metrics,
                **rule_metrics,
                "update_skipped": (~finite).astype(jnp.float32),
                "skipped_total": skipped.astype(jnp.float32),
                "failed": failed.astype(jnp.float32),
            }
            if report:
                # ``step`` (this segment's update index) is the same for every agent under
                # vmap, so ``due`` stays unbatched and the cond really skips the callback.
                due = jnp.logical_or(
                    (step + 1) % config.progress_interval == 0, step + 1 == updates
                )
                token = jax.lax.cond(
                    due,
                    lambda: _report(progress, update + 1, config.batch_size, ep_return),
                    lambda: jnp.int32(0),
                )
                metrics["episode_return"] = ep_return + token.astype(jnp.float32)
            new_state = RunnerState(
                params,
                rule_state,
                env_state,
                obs,
                key,
                update + 1,
                ep_return,
                ep_length,
                skipped,
                consecutive,
                failed,
            )
            return new_state, metrics

        state, metrics = jax.lax.scan(one_update, state, jnp.arange(updates))
        return TrainResult(state, metrics)

    return Trainer(init, run)


def make_train(
    config: Config, progress: ProgressHook | None = None
) -> Callable[[jax.Array, HParams], TrainResult]:
    """Builds the pure training function of ``config``.

    Static checks (config fields, env id, action space) run here, before anything is traced.

    Args:
        config: the static configuration.
        progress: optional host hook, called every ``config.progress_interval`` updates
            (nothing is compiled in when it is ``None`` or the interval is 0).

    Returns:
        ``train(key, hparams) -> TrainResult``; jittable and vmappable over both arguments.
        It is ``trainer.run(trainer.init(key, hparams), hparams, config.num_updates)`` of
        :func:`make_trainer`.
    """
    trainer = make_trainer(config, progress)

    def train(key: jax.Array, hparams: HParams) -> TrainResult:
        return trainer.run(trainer.init(key, hparams), hparams, config.num_updates)

    return train
