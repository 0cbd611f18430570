"""``make_train(config) -> train(key, hparams)``: the one place the pieces are assembled.

``train`` is pure: environment steps, rollouts, advantage estimation and every update are one
``lax.scan`` over ``config.num_updates``; it can be jitted, vmapped over keys and hparams, and
sharded. The algorithm supplies its collector, its networks' needs and its update rule;
nothing here depends on which algorithm runs. The only host interaction is an optional
progress hook, compiled in when a hook is given; how often it is called is a traced argument
(``report_every``), so changing it does not recompile.

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
from .algos import Algorithm
from .config import Config
from .episodes import make_evaluation, no_evaluation
from .hparams import HParams, scalar_names, validate_hparams
from .networks import Networks, is_recurrent, make_networks
from .recurrence import initial_carries, one_step
from .registry import lookup
from .validation import validate_config

#: ``hook(update, env_steps, episode_return)``: called on the host every ``report_every``
#: updates with NumPy arrays; ``episode_return`` has one entry per member of whatever
#: ``vmap`` is around ``train`` (shape ``[]`` for a single run; under
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
        carry: the recurrent networks' states per environment, ``{"actor": ...,
            "critic": ...}`` with leaves ``[num_envs, cell_size]`` (``{}`` without a cell).
        key: PRNG key.
        update: number of updates done.
        evaluation: the latest in-training evaluation, ``{"return": [], "length": []}``
            (means over ``config.eval_episodes`` episodes; NaN before the first one), or
            ``{}`` when ``config.eval_interval`` is 0.
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
    carry: dict[str, Any]
    key: jax.Array
    update: jax.Array
    evaluation: dict[str, jax.Array]
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
            ``env_nonfinite`` (see :func:`jaxpo.collect.nonfinite_entries`).
    """

    state: RunnerState
    metrics: dict[str, jax.Array]


def bare_env(config: Config) -> envs.Environment:
    """The unwrapped environment ``config`` names (its ``default_params`` seed the hparams)."""
    return envs.make(config.env_id, config.brax_backend)


def make_env(config: Config, group_size: int | None = None) -> envs.Environment:
    """The batched, wrapped environment of a run (see :mod:`jaxpo.envs.wrappers`).

    Args:
        config: the static configuration (a user's own environment is a ``custom:`` id,
            see :func:`jaxpo.envs.register`).
        group_size: environments reset together from one key (default: what the
            algorithm's collector asks for; 1: every environment on its own key).
    """
    env = envs.EpisodeStatistics(bare_env(config))
    if not env.is_discrete:
        env = envs.ClipAction(env, config.action_mode)
    if group_size is None:
        group_size = lookup(config.algo).collector.group_size(config)
    env = envs.VecEnv(env, config.num_envs, group_size)
    if config.normalize_obs:
        env = envs.NormalizeObservation(env)
    return env


def make_eval_env(config: Config, num_envs: int) -> envs.Environment:
    """The training wrappers around ``num_envs`` independent copies, without the normaliser.

    The copies are reset from keys of their own (no groups), and observations come out raw:
    the policy normalises them with frozen statistics (:func:`jaxpo.episodes.select_action`).
    """
    return make_env(config.replace(num_envs=num_envs, normalize_obs=False), group_size=1)


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
    """The algorithm's default hparams for ``config``'s env, with ``overrides`` applied.

    The defaults depend on the env's action space where a field declares so (the entropy
    bonus is 0 for continuous actions).
    """
    env = bare_env(config)
    return lookup(config.algo).hparams_cls.default(
        env.default_params(), continuous=not env.is_discrete, **overrides
    )


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
    """Calls ``hook`` once per call site, however many ``vmap`` levels wrap it.

    Returns a zero token (see :func:`make_trainer`).
    """

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
    checkpoint between them, is the same computation as one call. Its optional
    ``report_every`` (traced; 0: never) sets how often the progress hook is called, and
    ``start`` (traced; default ``state.update``) is the update count the state starts at,
    which schedules the in-training evaluations. Pass it unbatched when ``run`` is vmapped
    over states that all start at the same update (as sweeps do): with a batched counter
    the evaluation's ``lax.cond`` becomes a select, and every update evaluates.
    """

    init: Callable[[jax.Array, HParams], RunnerState]
    run: Callable[..., TrainResult]


def make_trainer(config: Config, progress: ProgressHook | None = None) -> Trainer:
    """Builds the pure ``init`` and ``run`` of ``config``.

    Static checks (config fields, env id, action space) run here, before anything is traced.

    Args:
        config: the static configuration.
        progress: optional host hook, called every ``report_every`` updates of a ``run`` and
            at its last update (nothing is compiled in when it is ``None``).

    Returns:
        A :class:`Trainer`; both functions are jittable and vmappable over states, keys and
        hparams.
    """
    validate_config(config)
    algo = lookup(config.algo)
    env = make_env(config)
    check_action_space(algo, env)
    networks = make_networks(config, env, critic=algo.collector.critic)
    collect = algo.collector.make(config, env, networks)
    evaluate = None
    if config.eval_interval:
        eval_env = make_eval_env(config, config.eval_episodes)
        evaluate = make_evaluation(config.normalize_obs, networks.actor, eval_env)

    def checked_rule(hparams: HParams) -> Any:
        # Structural: TIC-GRPO takes GRPO's hparams (same fields, other defaults) and back.
        if scalar_names(type(hparams)) != scalar_names(algo.hparams_cls):
            raise TypeError(
                f"algorithm {algo.name!r} takes {algo.hparams_cls.__name__} (fields "
                f"{scalar_names(algo.hparams_cls)}), got {type(hparams).__name__}"
            )
        validate_hparams(hparams)
        return algo.make_update_rule(config, hparams, networks)

    def init(key: jax.Array, hparams: HParams) -> RunnerState:
        rule = checked_rule(hparams)
        key, k_actor, k_critic, k_env = jax.random.split(key, 4)
        env_state, ts = env.reset(k_env, hparams.env_params)
        params = init_params(networks, k_actor, k_critic, jax.tree.map(lambda x: x[:1], ts.obs))
        zero = jnp.zeros((), jnp.float32)
        return RunnerState(
            params,
            rule.init(params),
            env_state,
            ts.obs,
            initial_carries(networks, (config.num_envs,)),
            key,
            jnp.int32(0),
            no_evaluation(bool(config.eval_interval)),
            zero,
            zero,
            skipped=jnp.int32(0),
            consecutive_skips=jnp.int32(0),
            failed=jnp.bool_(False),
        )

    def run(
        state: RunnerState,
        hparams: HParams,
        updates: int,
        report_every: Any = 1,
        start: Any = None,
    ) -> TrainResult:
        rule = checked_rule(hparams)
        every = jnp.asarray(report_every, jnp.int32)
        first = state.update if start is None else jnp.asarray(start, jnp.int32)

        def one_update(state: RunnerState, step: jax.Array) -> tuple[RunnerState, Any]:
            update = state.update
            key, k_roll, k_update = jax.random.split(state.key, 3)
            last = (state.episode_return, state.episode_length)
            env_state, obs, carry, batch, metrics = collect(
                state.params, state.env_state, state.obs, state.carry, last, k_roll, hparams
            )
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
            evaluation = state.evaluation
            if evaluate is not None:
                # ``first + step`` is unbatched in a sweep, so the cond skips the episodes.
                due = (first + step + 1) % config.eval_interval == 0
                evaluation = jax.lax.cond(
                    due, lambda: evaluate(params, env_state, key, hparams), lambda: evaluation
                )
                metrics["eval_return"] = evaluation["return"]
                metrics["eval_length"] = evaluation["length"]
            next_update = update + 1
            if progress is not None:
                # ``step`` and ``every`` are the same for every agent under vmap, so ``due``
                # stays unbatched and the cond really skips the callback. The callback's
                # (always zero) token is added to the update counter so that it is not
                # removed as dead code.
                cadence = (step + 1) % jnp.maximum(every, 1) == 0
                due = (every > 0) & (cadence | (step + 1 == updates))
                token = jax.lax.cond(
                    due,
                    lambda: _report(progress, next_update, config.batch_size, ep_return),
                    lambda: jnp.int32(0),
                )
                next_update = next_update + token
            new_state = RunnerState(
                params,
                rule_state,
                env_state,
                obs,
                carry,
                key,
                next_update,
                evaluation,
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


def init_params(
    networks: Networks, k_actor: jax.Array, k_critic: jax.Array, obs: jax.Array
) -> dict[str, Any]:
    """``{"actor": ..., "critic": ...}`` (no ``"critic"`` when the run has no value network).

    ``obs`` is one observation ``[1, *obs_shape]`` (a recurrent network sees it as a
    sequence of one step; the states it sows at init are not kept).
    """
    if is_recurrent(networks):
        obs = one_step(obs, initial_carries(networks, (1,)))

    def init(module: Any, key: jax.Array) -> Any:
        variables = module.init(key, obs)
        return {name: v for name, v in variables.items() if name != "recurrent"}

    params = {"actor": init(networks.actor, k_actor)}
    if networks.critic is not None:
        params["critic"] = init(networks.critic, k_critic)
    return params


def make_train(config: Config, progress: ProgressHook | None = None) -> Callable[..., TrainResult]:
    """Builds the pure training function of ``config``.

    Static checks (config fields, env id, action space) run here, before anything is traced.

    Args:
        config: the static configuration.
        progress: optional host hook, called every ``report_every`` updates and at the last
            one (nothing is compiled in when it is ``None``).

    Returns:
        ``train(key, hparams, report_every=1) -> TrainResult``; jittable and vmappable over
        ``key`` and ``hparams`` (``report_every`` is traced: 0 means never). It is
        ``trainer.run(trainer.init(key, hparams), hparams, config.num_updates, report_every)``
        of :func:`make_trainer`.
    """
    trainer = make_trainer(config, progress)

    def train(key: jax.Array, hparams: HParams, report_every: Any = 1) -> TrainResult:
        return trainer.run(trainer.init(key, hparams), hparams, config.num_updates, report_every)

    return train
