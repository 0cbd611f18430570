"""``make_train(config) -> train(key, hparams)``: the one place the pieces are assembled.

``train`` is pure: environment steps, rollouts, advantage estimation and every update are one
``lax.scan`` over ``config.num_updates``; it can be jitted, vmapped over keys and hparams, and
sharded. The only host interaction is an optional progress hook compiled in when a hook is
given and ``config.progress_interval > 0``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from . import envs
from .advantages import gae
from .algos import ALGORITHMS, Algorithm, Batch
from .config import Config, validate_config
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
        params: ``{"actor": ..., "critic": ...}`` network parameters.
        rule_state: the update rule's state (optimiser and algorithm state).
        env_state: the batched, wrapped environment state.
        obs: current observations, ``[num_envs, *obs_shape]``.
        key: PRNG key.
        update: number of updates done.
        episode_return: latest mean return of finished episodes (carried forward).
        episode_length: latest mean length of finished episodes (carried forward).
    """

    params: Any
    rule_state: Any
    env_state: Any
    obs: jax.Array
    key: jax.Array
    update: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array


class TrainResult(NamedTuple):
    """What ``train`` returns.

    Attributes:
        state: the final :class:`RunnerState`.
        metrics: flat dict of ``[num_updates]`` arrays (sweep axes in front under ``vmap``).
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
    env = envs.VecEnv(env, config.num_envs)
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


def _report(hook: ProgressHook, update: jax.Array, env_steps: int, ret: jax.Array) -> jax.Array:
    """Calls ``hook`` once per call site, however many ``vmap`` levels wrap it."""

    def host(u: np.ndarray, r: np.ndarray) -> np.ndarray:
        hook(int(np.ravel(u)[0]), int(np.ravel(u)[0]) * env_steps, np.asarray(r))
        return np.zeros(np.shape(r), np.int32)

    return jax.pure_callback(
        host, jax.ShapeDtypeStruct((), jnp.int32), update, ret, vmap_method="expand_dims"
    )


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
    """
    validate_config(config)
    algo = ALGORITHMS[config.algo]
    env = make_env(config)
    check_action_space(algo, env)
    actor, critic = make_networks(config, env)
    num_updates = config.num_updates
    report = progress is not None and config.progress_interval > 0

    def policy(params: Any) -> Callable[[jax.Array], Any]:
        return lambda obs: distribution(actor.apply(params["actor"], obs))

    def make_batch(params: Any, traj: Transition, hparams: HParams) -> tuple[Batch, jax.Array]:
        values = critic.apply(params["critic"], traj.obs)
        next_values = critic.apply(params["critic"], traj.final_obs)
        done = jnp.logical_or(traj.terminated, traj.truncated)
        terminated = traj.terminated if config.bootstrap_truncation else done
        advantages, returns = gae(
            traj.reward * hparams.reward_scale,
            values,
            next_values,
            terminated,
            done,
            hparams.gamma,
            hparams.gae_lambda,
        )
        flat = jax.tree.map(
            lambda x: x.reshape((-1,) + x.shape[2:]),
            Batch(traj.obs, traj.action, traj.log_prob, values, advantages, returns),
        )
        return flat, health.explained_variance(values, returns)

    def train(key: jax.Array, hparams: HParams) -> Any:
        if not isinstance(hparams, algo.hparams_cls):
            raise TypeError(
                f"algorithm {algo.name!r} takes {algo.hparams_cls.__name__}, "
                f"got {type(hparams).__name__}"
            )
        validate_hparams(hparams)
        rule = algo.make_update_rule(config, hparams, actor, critic)
        key, k_actor, k_critic, k_env = jax.random.split(key, 4)
        env_params = hparams.env_params
        env_state, ts = env.reset(k_env, env_params)
        params = {
            "actor": actor.init(k_actor, ts.obs[:1]),
            "critic": critic.init(k_critic, ts.obs[:1]),
        }
        zero = jnp.zeros((), jnp.float32)
        state = RunnerState(
            params, rule.init(params), env_state, ts.obs, key, jnp.int32(0), zero, zero
        )

        def one_update(state: RunnerState, update: jax.Array) -> tuple[RunnerState, Any]:
            key, k_roll, k_update = jax.random.split(state.key, 3)
            env_state, obs, traj = rollout(
                env,
                policy(state.params),
                state.env_state,
                state.obs,
                k_roll,
                env_params,
                config.num_steps,
            )
            batch, explained_var = make_batch(state.params, traj, hparams)
            params, rule_state, rule_metrics = rule.update(
                state.params, state.rule_state, batch, k_update
            )
            ep_return, ep_length, ep_count = episode_means(
                traj.info, state.episode_return, state.episode_length
            )
            metrics = {
                "episode_return": ep_return,
                "episode_length": ep_length,
                "episodes": ep_count,
                "explained_variance": explained_var,
                **rule_metrics,
            }
            if report:
                due = jnp.logical_or(
                    (update + 1) % config.progress_interval == 0, update + 1 == num_updates
                )
                token = jax.lax.cond(
                    due,
                    lambda: _report(progress, update + 1, config.batch_size, ep_return),
                    lambda: jnp.int32(0),
                )
                metrics["episode_return"] = ep_return + token.astype(jnp.float32)
            new_state = RunnerState(
                params, rule_state, env_state, obs, key, state.update + 1, ep_return, ep_length
            )
            return new_state, metrics

        state, metrics = jax.lax.scan(one_update, state, jnp.arange(num_updates))
        return TrainResult(state, metrics)

    return train
