"""Training throughput of jaxpo's PPO against raw env stepping and against rejax's PPO.

Usage::

    python benchmarks/throughput.py [--quick] [--out benchmarks/results] [--envs ...] [--tag T]

For each environment (gymnax CartPole-v1 with PureJaxRL's classic PPO settings, brax
inverted_pendulum on the ``spring`` backend with jaxpo's preset and fewer total steps; on
request, ``--envs minatar``: gymnax Breakout-MinAtar with jaxpo's preset, few updates, and the
CNN torso timed beside the preset's MLP) and for 1 seed and 8 vmapped seeds, it measures:

* ``compile_s``: ``jax.jit(f).lower(...).compile()`` wall time (tracing + XLA compile);
* ``train_steps_per_s``: env steps per second of a whole training run, compile excluded,
  median of ``--repeats`` runs (all seeds counted: 8 seeds do 8x the steps);
* ``raw_env_steps_per_s``: the same number of env steps with uniformly random actions in a
  jitted ``lax.scan`` over the same batched env stack the trainer steps, at the same number
  of parallel envs (8 seeds: the scan vmapped 8 ways);
* ``train/raw`` and ``jaxpo/rejax`` (train throughput ratio, same env and seed count);
* for a case with several jaxpo networks (MinAtar: CNN and MLP), each one's train throughput
  over the others' (JSON ``train_over_other_jaxpo``, a line under the table).

Runs of the implementations being compared are interleaved (order alternating per repeat), so
drift in machine speed hits them alike. Results go to ``<out>/throughput<tag>.json`` and
``<out>/throughput<tag>.md`` (``--tag`` names a run of other cases apart); the table is also
printed. rejax is not timed on MinAtar (no case settings for it here).

rejax (the ``bench`` extra, ``rejax==0.1.3``) was written against gymnax < 1.0, whose ``step``
returned five values ``(obs, state, reward, done, info)``; gymnax 1.x returns six with
``terminated``/``truncated`` apart. :class:`OldGymnaxStep` adapts an env object back to the old
signature. rejax's brax bridge (``Brax2GymnaxEnv``) relies on gymnax's base ``step``, which in
gymnax 1.x calls ``is_truncated(state)`` on a brax ``State`` (it has no ``time``) and fails;
the adapter therefore reimplements gymnax 0.0.9's ``step`` (``step_env``, ``reset_env``, select
on ``done``) for it, which is what rejax ran with the gymnax it was written for.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

if "--quick" in sys.argv[1:] and "XLA_FLAGS" not in os.environ:
    # A smoke run only checks that every path works: halve XLA's compile time (runtime numbers
    # of a quick run are not meaningful anyway). Must be set before jax is imported.
    os.environ["XLA_FLAGS"] = "--xla_backend_optimization_level=0"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxpo  # noqa: E402

SEED_COUNTS = (1, 8)


# --------------------------------------------------------------------------------------------
# rejax compatibility: gymnax < 1.0's five-value step


class OldGymnaxStep:
    """A gymnax env object whose ``step`` returns ``(obs, state, reward, done, info)``.

    ``done = terminated | truncated``, as gymnax < 1.0 reported it. Everything else is
    delegated to the wrapped env. With ``reimplement=True`` (for rejax's ``Brax2GymnaxEnv``,
    whose gymnax 1.x ``step`` cannot run) ``step`` is gymnax 0.0.9's: ``step_env``, then
    ``reset_env`` and a select on ``done``.
    """

    def __init__(self, env: Any, reimplement: bool = False):
        self._env = env
        self._reimplement = reimplement

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_env", "_reimplement"):
            raise AttributeError(name)
        return getattr(self._env, name)

    def __hash__(self) -> int:
        return hash((id(self._env), self._reimplement))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, OldGymnaxStep)
            and other._env is self._env
            and other._reimplement == self._reimplement
        )

    def reset(self, key: jax.Array, params: Any = None) -> tuple[Any, Any]:
        """gymnax's reset (unchanged)."""
        if self._reimplement:
            return self._env.reset_env(key, params)
        return self._env.reset(key, params)

    def step(self, key: jax.Array, state: Any, action: jax.Array, params: Any = None) -> tuple:
        """gymnax < 1.0's step: ``(obs, state, reward, done, info)``."""
        if not self._reimplement:
            obs, state, reward, terminated, truncated, info = self._env.step(
                key, state, action, params
            )
            return obs, state, reward, jnp.logical_or(terminated, truncated), info
        key_step, key_reset = jax.random.split(key)
        obs_st, state_st, reward, done, info = self._env.step_env(key_step, state, action, params)
        obs_re, state_re = self._env.reset_env(key_reset, params)
        state = jax.tree.map(lambda x, y: jax.lax.select(done, x, y), state_re, state_st)
        obs = jax.lax.select(done, obs_re, obs_st)
        return obs, state, reward, done, info


# --------------------------------------------------------------------------------------------
# benchmark cases


@dataclass
class EnvCase:
    """One environment's settings for both implementations.

    ``rejax_env=None``: rejax is not timed on this case. ``variants``: further jaxpo configs
    (row name -> config) trained beside ``config`` (whose rows are named ``jaxpo_name``) in the
    same group; they must step the same env stack (only network fields differ), so they share
    its raw-env measurement.
    """

    label: str
    config: jaxpo.Config
    hparams: Any
    rejax_env: Callable[[], tuple[Any, Any]] | None = None
    rejax_kwargs: dict[str, Any] = field(default_factory=dict)
    rejax_note: str = ""
    jaxpo_name: str = "jaxpo"
    variants: dict[str, jaxpo.Config] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """Env steps per seed actually done by a run (whole updates)."""
        return self.config.num_updates * self.config.batch_size

    @property
    def jaxpo_configs(self) -> dict[str, jaxpo.Config]:
        """Row name -> config of every jaxpo training timed on this case, ``config`` first."""
        return {self.jaxpo_name: self.config, **self.variants}


def cartpole_case(total: int) -> EnvCase:
    config, hp = jaxpo.presets.get("ppo", "gymnax:CartPole-v1")
    config = config.replace(
        num_envs=4,
        num_steps=128,
        update_epochs=4,
        num_minibatches=4,
        total_timesteps=total,
        hidden_sizes=(64, 64),
        activation="tanh",
        anneal_lr=True,
        normalize_obs=False,
    )
    hp = hp.set(
        learning_rate=2.5e-4,
        gamma=0.99,
        gae_lambda=0.95,
        clip_eps=0.2,
        ent_coef=0.01,
        vf_coef=0.5,
        max_grad_norm=0.5,
        reward_scale=1.0,
    )

    def rejax_env() -> tuple[Any, Any]:
        import gymnax

        env, params = gymnax.make("CartPole-v1")
        return OldGymnaxStep(env), params

    return EnvCase("CartPole-v1", config, hp, rejax_env, {"normalize_observations": False})


def pendulum_case(updates: int) -> EnvCase:
    """jaxpo's brax:inverted_pendulum preset (spring), cut to ``updates`` whole updates."""
    config, hp = jaxpo.presets.get("ppo", "brax:inverted_pendulum")
    config = config.replace(total_timesteps=updates * config.batch_size, brax_backend="spring")

    def rejax_env() -> tuple[Any, Any]:
        from rejax.compat.brax2gymnax import create_brax

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            limit = int(hp.env_params.max_steps_in_episode)
            env, params = create_brax("inverted_pendulum", backend="spring", episode_length=limit)
        return OldGymnaxStep(env, reimplement=True), params

    note = (
        "rejax via rejax.compat.brax2gymnax (brax AutoResetWrapper + EpisodeWrapper) with "
        "gymnax 0.0.9's step reimplemented; no reward scaling (rejax has none); "
        f"normalize_observations={config.normalize_obs}; rejax always clips the value loss "
        f"(jaxpo clip_value_loss={config.clip_value_loss})"
    )
    return EnvCase(
        "inverted_pendulum (brax spring)",
        config,
        hp,
        rejax_env,
        {"normalize_observations": config.normalize_obs},
        note,
    )


def recurrent_case(total: int) -> EnvCase:
    """The CartPole case (PureJaxRL's settings, feed-forward PPO) and beside it the same
    PPO with a 128-unit GRU after the hidden layers of the actor and of the critic."""
    case = cartpole_case(total)
    gru = case.config.replace(cell="gru", cell_size=128)
    return EnvCase(
        "CartPole-v1 (recurrent)",
        case.config,
        case.hparams,
        jaxpo_name="jaxpo mlp",
        variants={"jaxpo gru": gru},
    )


def minatar_case(updates: int) -> EnvCase:
    """jaxpo's gymnax:Breakout-MinAtar preset cut to ``updates`` updates, with the CNN torso
    (``torso="cnn"``; the preset's convolutions and hidden layers) and beside it the MLP preset
    (PureJaxRL's 256-256 ReLU over the flattened image), same loop sizes and hparams."""
    config, hp = jaxpo.presets.get("ppo", "gymnax:Breakout-MinAtar")
    config = config.replace(total_timesteps=updates * config.batch_size)
    mlp = config.replace(torso="mlp", hidden_sizes=(256, 256), activation="relu")
    return EnvCase(
        "Breakout-MinAtar",
        config.replace(torso="cnn"),
        hp,
        jaxpo_name="jaxpo cnn",
        variants={"jaxpo mlp": mlp},
    )


# --------------------------------------------------------------------------------------------
# the functions being timed


def jaxpo_train_fn(case: EnvCase, seeds: int) -> tuple[Callable, Callable[[int], tuple]]:
    """``(fn, args_of(repeat))`` for jaxpo's ``train``, vmapped over keys when seeds > 1."""
    train = jaxpo.make_train(case.config)
    hp = case.hparams
    if seeds == 1:
        return train, lambda r: (jax.random.key(r), hp)
    return (
        jax.vmap(train, in_axes=(0, None)),
        lambda r: (jax.random.split(jax.random.key(r), seeds), hp),
    )


def make_rejax_algo(case: EnvCase) -> Any:
    """rejax's PPO with the same settings as ``case.config``/``case.hparams``."""
    from rejax import PPO

    c, hp = case.config, case.hparams
    env, env_params = case.rejax_env()
    with warnings.catch_warnings():
        # rejax deep-copies its config; a brax env warns that it is copied shallowly.
        warnings.simplefilter("ignore", RuntimeWarning)
        algo = _create_rejax_ppo(PPO, c, hp, env, env_params, case)
    # Evaluation disabled: the one remaining evaluation slot returns a dummy.
    return algo.replace(eval_callback=lambda algo, ts, rng: jnp.zeros(()))


def _create_rejax_ppo(
    PPO: Any, c: jaxpo.Config, hp: Any, env: Any, env_params: Any, case: EnvCase
) -> Any:
    return PPO.create(
        env=env,
        env_params=env_params,
        num_envs=c.num_envs,
        num_steps=c.num_steps,
        num_epochs=c.update_epochs,
        num_minibatches=c.num_minibatches,
        learning_rate=float(hp.learning_rate),
        gamma=float(hp.gamma),
        gae_lambda=float(hp.gae_lambda),
        clip_eps=float(hp.clip_eps),
        ent_coef=float(hp.ent_coef),
        vf_coef=float(hp.vf_coef),
        max_grad_norm=float(hp.max_grad_norm),
        # Same number of updates as jaxpo (whole batches) and a single evaluation slot.
        total_timesteps=case.steps,
        eval_freq=case.steps,
        skip_initial_evaluation=True,
        agent_kwargs={"activation": c.activation, "hidden_layer_sizes": tuple(c.hidden_sizes)},
        **case.rejax_kwargs,
    )


def rejax_train_fn(case: EnvCase, seeds: int) -> tuple[Callable, Callable[[int], tuple]]:
    """``(fn, args_of(repeat))`` for rejax's ``algo.train``, vmapped when seeds > 1."""
    algo = make_rejax_algo(case)

    def train(key: jax.Array) -> Any:
        with warnings.catch_warnings():
            # rejax's init_state reads ``algo.config`` (a deepcopy); brax envs warn there.
            warnings.simplefilter("ignore", RuntimeWarning)
            return algo.train(key)

    if seeds == 1:
        return train, lambda r: (jax.random.key(r),)
    return jax.vmap(train), lambda r: (jax.random.split(jax.random.key(r), seeds),)


def random_actions(space: Any, key: jax.Array, num_envs: int) -> jax.Array:
    """Uniformly random actions ``[num_envs, ...]`` for a jaxpo action space."""
    if isinstance(space, jaxpo.envs.Discrete):
        return jax.random.randint(key, (num_envs,), 0, space.n)
    low = jnp.asarray(space.low, jnp.float32)
    high = jnp.asarray(space.high, jnp.float32)
    return jax.random.uniform(key, (num_envs, len(space.low)), minval=low, maxval=high)


def raw_scan(
    reset: Callable, step: Callable, sample: Callable, num_steps: int
) -> Callable[[jax.Array], tuple[Any, jax.Array]]:
    """``key -> (final env state, sum of rewards)`` over ``num_steps`` batched env steps with
    random actions. The final state is returned so that XLA cannot drop the physics (brax's
    inverted_pendulum rewards are constant, so a reward sum alone would not depend on it)."""

    def run(key: jax.Array) -> jax.Array:
        key, k_reset = jax.random.split(key)
        state = reset(k_reset)

        def one(carry: tuple, _: None) -> tuple:
            state, key, total = carry
            key, k_act, k_step = jax.random.split(key, 3)
            state, reward = step(k_step, state, sample(k_act))
            return (state, key, total + reward.sum()), None

        (state, _, total), _ = jax.lax.scan(one, (state, key, jnp.float32(0)), None, num_steps)
        return state, total

    return run


def jaxpo_raw_fn(case: EnvCase, seeds: int) -> tuple[Callable, Callable[[int], tuple]]:
    """Random-action stepping of ``jaxpo.make_env(config)`` (the trainer's env stack)."""
    c = case.config
    env = jaxpo.make_env(c)
    params = case.hparams.env_params

    def step(key: jax.Array, state: Any, action: jax.Array) -> tuple:
        state, ts = env.step(key, state, action, params)
        return state, ts.reward

    run = raw_scan(
        lambda k: env.reset(k, params)[0],
        step,
        lambda k: random_actions(env.action_space, k, c.num_envs),
        c.num_updates * c.num_steps,
    )
    return _seeded(run, seeds)


def rejax_raw_fn(case: EnvCase, seeds: int) -> tuple[Callable, Callable[[int], tuple]]:
    """Random-action stepping of the env rejax steps (its ``vmap_step`` over ``num_envs``)."""
    c = case.config
    env, params = case.rejax_env()
    n = c.num_envs
    space = jaxpo.make_env(c).action_space
    vreset = jax.vmap(env.reset, in_axes=(0, None))
    vstep = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def step(key: jax.Array, state: Any, action: jax.Array) -> tuple:
        _, state, reward, _, _ = vstep(jax.random.split(key, n), state, action, params)
        return state, reward

    run = raw_scan(
        lambda k: vreset(jax.random.split(k, n), params)[1],
        step,
        lambda k: random_actions(space, k, n),
        c.num_updates * c.num_steps,
    )
    return _seeded(run, seeds)


def _seeded(run: Callable, seeds: int) -> tuple[Callable, Callable[[int], tuple]]:
    if seeds == 1:
        return run, lambda r: (jax.random.key(1000 + r),)
    return jax.vmap(run), lambda r: (jax.random.split(jax.random.key(1000 + r), seeds),)


# --------------------------------------------------------------------------------------------
# timing


@dataclass
class Timed:
    """A compiled function, how long compiling took and its timed runs."""

    name: str
    compiled: Any
    args_of: Callable[[int], tuple]
    steps: int
    compile_s: float
    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)

    def run(self, repeat: int) -> float:
        args = self.args_of(repeat)
        jax.block_until_ready(args)
        cpu = time.process_time()
        start = time.perf_counter()
        jax.block_until_ready(self.compiled(*args))
        elapsed = time.perf_counter() - start
        self.cpu_times.append(time.process_time() - cpu)
        self.times.append(elapsed)
        return elapsed

    @property
    def steps_per_s(self) -> float:
        return self.steps / statistics.median(self.times)

    @property
    def best_steps_per_s(self) -> float:
        return self.steps / min(self.times)


def compile_fn(name: str, fn: Callable, args_of: Callable[[int], tuple], steps: int) -> Timed:
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args_of(0)).compile()
    compile_s = time.perf_counter() - start
    log(f"  compiled {name} in {compile_s:.1f}s")
    return Timed(name, compiled, args_of, steps, compile_s)


def log(msg: str) -> None:
    print(msg, flush=True)


def bench_group(case: EnvCase, seeds: int, repeats: int, impls: list[str]) -> list[dict]:
    """Compiles every timed function of one (env, seeds) cell, then runs them interleaved."""
    steps = case.steps * seeds
    timed: dict[str, Timed] = {}
    errors: dict[str, str] = {}
    # Timed name -> builder; a row is (row name, train name, raw name).
    builders: dict[str, Callable[[], tuple[Callable, Callable[[int], tuple]]]] = {}
    row_specs: list[tuple[str, str, str]] = []
    if "jaxpo" in impls:
        for name, config in case.jaxpo_configs.items():
            builders[name] = partial(
                jaxpo_train_fn, dataclasses.replace(case, config=config), seeds
            )
            row_specs.append((name, name, "jaxpo:raw"))
        builders["jaxpo:raw"] = partial(jaxpo_raw_fn, case, seeds)
    if "rejax" in impls and case.rejax_env is not None:
        builders["rejax"] = partial(rejax_train_fn, case, seeds)
        builders["rejax:raw"] = partial(rejax_raw_fn, case, seeds)
        row_specs.append(("rejax", "rejax", "rejax:raw"))
    load_before = os.getloadavg()
    for name, build in builders.items():
        try:
            fn, args_of = build()
            timed[name] = compile_fn(f"{case.label} {name} x{seeds}", fn, args_of, steps)
        except Exception as exc:  # noqa: BLE001 - reported in the results, not fatal
            errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"  {name} x{seeds} failed: {errors[name]}")
    for r in range(repeats):
        order = list(timed) if r % 2 == 0 else list(reversed(timed))
        for name in order:
            elapsed = timed[name].run(r + 1)
            log(
                f"  {case.label} {name} x{seeds} run {r + 1}: {elapsed:.2f}s "
                f"({steps / elapsed:,.0f} steps/s)"
            )
    load_after = os.getloadavg()

    def sps(name: str) -> float | None:
        return timed[name].steps_per_s if name in timed else None

    def ratio(a: str, b: str, best: bool = False) -> float | None:
        if a not in timed or b not in timed:
            return None
        if best:
            return timed[a].best_steps_per_s / timed[b].best_steps_per_s
        return timed[a].steps_per_s / timed[b].steps_per_s

    jaxpo_names = list(case.jaxpo_configs) if "jaxpo" in impls else []
    rows = []
    for row_name, train_name, raw_name in row_specs:
        is_jaxpo = row_name in jaxpo_names
        train, raw = timed.get(train_name), timed.get(raw_name)
        row = {
            "env": case.label,
            "env_id": case.config.env_id,
            "impl": row_name,
            "seeds": seeds,
            "steps_per_run": steps,
            "compile_s": train.compile_s if train else None,
            "train_steps_per_s": sps(train_name),
            "train_steps_per_s_best": train.best_steps_per_s if train else None,
            "train_times_s": train.times if train else [],
            "train_cpu_s": train.cpu_times if train else [],
            "raw_env_steps_per_s": sps(raw_name),
            "raw_compile_s": raw.compile_s if raw else None,
            "raw_times_s": raw.times if raw else [],
            "train_over_raw": ratio(train_name, raw_name),
            "jaxpo_over_rejax": ratio(train_name, "rejax") if is_jaxpo else None,
            "jaxpo_over_rejax_best": ratio(train_name, "rejax", best=True) if is_jaxpo else None,
            "loadavg_1m_before_after": [load_before[0], load_after[0]],
        }
        if is_jaxpo and len(jaxpo_names) > 1:
            row["train_over_other_jaxpo"] = {
                other: ratio(train_name, other) for other in jaxpo_names if other != row_name
            }
        err = errors.get(train_name) or errors.get(raw_name)
        if err:
            row["error"] = err
        if row_name == "rejax" and case.rejax_note:
            row["note"] = case.rejax_note
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# reporting


def machine_info() -> dict[str, Any]:
    def version(pkg: str) -> str | None:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "jax": jax.__version__,
        "jaxlib": version("jaxlib"),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "loadavg_at_start": list(os.getloadavg()),
        "packages": {p: version(p) for p in ("jaxpo", "rejax", "gymnax", "brax", "flax", "optax")},
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _fmt_ratio(value: float | None) -> str:
    """Two decimals, or two significant digits below 0.01 (MinAtar's train/raw)."""
    return _fmt(value, ".2f" if value is None or value >= 0.01 else ".2g")


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| env | impl | seeds | compile_s | train_steps_per_s | raw_env_steps_per_s "
        "| train/raw | jaxpo/rejax | jaxpo/rejax (best run) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['env']} | {r['impl']} | {r['seeds']} | {_fmt(r['compile_s'], '.1f')} "
            f"| {_fmt(r['train_steps_per_s'], ',.0f')} | {_fmt(r['raw_env_steps_per_s'], ',.0f')} "
            f"| {_fmt_ratio(r['train_over_raw'])} | {_fmt(r['jaxpo_over_rejax'], '.2f')} "
            f"| {_fmt(r['jaxpo_over_rejax_best'], '.2f')} |"
        )
    return "\n".join(lines)


def network_ratios(rows: list[dict]) -> str:
    """One line per pair of jaxpo networks timed on one case (MinAtar: CNN and MLP): the train
    throughput of the first over the second, per seed count; empty when there are none."""
    cells: dict[tuple[str, str, str], list[str]] = {}
    for r in rows:
        for other, value in r.get("train_over_other_jaxpo", {}).items():
            if (r["env"], other, r["impl"]) in cells:
                continue  # the reciprocal is reported already
            text = f"{r['seeds']} seed(s) {_fmt(value, '.2f')}"
            cells.setdefault((r["env"], r["impl"], other), []).append(text)
    return "\n".join(
        f"{env}: {a} / {b} train steps/s: {', '.join(parts)}."
        for (env, a, b), parts in cells.items()
    )


def settings_of(case: EnvCase) -> dict[str, Any]:
    c, hp = case.config, case.hparams
    return {
        "config": {
            k: getattr(c, k)
            for k in (
                "env_id",
                "brax_backend",
                "num_envs",
                "num_steps",
                "total_timesteps",
                "update_epochs",
                "num_minibatches",
                "hidden_sizes",
                "activation",
                "torso",
                "cnn_channels",
                "cnn_kernels",
                "cnn_strides",
                "normalize_obs",
                "anneal_lr",
                "clip_value_loss",
                "normalize_advantages",
            )
        },
        "hparams": {
            k: float(getattr(hp, k))
            for k in (
                "learning_rate",
                "gamma",
                "gae_lambda",
                "clip_eps",
                "ent_coef",
                "vf_coef",
                "max_grad_norm",
                "reward_scale",
            )
        },
        "num_updates": c.num_updates,
        "steps_per_seed": case.steps,
        "rejax_note": case.rejax_note,
        "jaxpo_name": case.jaxpo_name,
        # Each variant's fields that differ from ``config``.
        "variants": {
            name: {k: v for k, v in v_config.to_dict().items() if v != getattr(c, k)}
            for name, v_config in case.variants.items()
        },
    }


NOTES = """\
- `compile_s`: `jax.jit(f).lower(...).compile()` wall time (tracing + XLA), first call excluded.
- `train_steps_per_s`: env steps/s of a whole training run (all seeds counted), compile
  excluded, median of the timed runs; jaxpo and rejax runs interleaved.
- `raw_env_steps_per_s`: the same number of steps with uniform random actions in a jitted
  `lax.scan`, same parallel envs (8 seeds: vmapped 8 ways). jaxpo rows step
  `jaxpo.make_env(config)`; rejax rows step the env rejax steps (its `vmap_step`).
- `jaxpo/rejax`: jaxpo's train throughput over rejax's, same env and seed count.
- Breakout-MinAtar (`--envs minatar`): jaxpo's preset loop (64 envs x 128 steps, 4 epochs x 8
  minibatches) with `torso="cnn"` (row `jaxpo cnn`; network fields in the JSON settings)
  beside the MLP preset (256-256 relu, `jaxpo mlp`), interleaved, one raw-env measurement
  for both; rejax not timed.
- CartPole recurrent (`--envs recurrent`): the CartPole case's feed-forward PPO (`jaxpo mlp`)
  beside the same PPO with a 128-unit GRU after the hidden layers of the actor and of the
  critic (`jaxpo gru`; minibatches are whole environment sequences), interleaved.
- rejax 0.1.3 expects gymnax < 1.0's five-value `step`; an adapter folds
  `terminated | truncated` into `done`. For brax, rejax's `Brax2GymnaxEnv` cannot run
  gymnax 1.x's `step` (it calls `is_truncated` on a brax `State`), so the adapter
  reimplements gymnax 0.0.9's `step` for it (as rejax ran with the gymnax it targets).
- Algorithmic differences kept as they are in each library (cost is comparable): rejax
  clips gradients elementwise (`optax.clip`), keeps a constant learning rate and has
  separate actor/critic Adam states; jaxpo clips by global norm and anneals the learning rate.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few steps, 1 repeat")
    parser.add_argument("--out", default="benchmarks/results", help="output folder")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed runs per cell (default: 5 for 1 seed, 3 for more; --quick: 1)",
    )
    parser.add_argument(
        "--envs",
        default=None,
        help="comma list of cartpole,pendulum,minatar,recurrent (default: cartpole,pendulum; "
        "--quick: cartpole)",
    )
    parser.add_argument("--impls", default="jaxpo,rejax", help="comma list of jaxpo,rejax")
    parser.add_argument(
        "--seeds", default=None, help="comma list of seed counts (default 1,8; --quick: 1)"
    )
    parser.add_argument(
        "--cartpole-steps", type=int, default=None, help="total steps per seed (500000)"
    )
    parser.add_argument(
        "--pendulum-updates", type=int, default=None, help="PPO updates per seed (48)"
    )
    parser.add_argument(
        "--minatar-updates", type=int, default=None, help="PPO updates per seed (2; --quick: 1)"
    )
    parser.add_argument("--tag", default="", help="suffix of the result file names")
    args = parser.parse_args(argv)

    cartpole_steps = args.cartpole_steps or (4 * 128 * 4 if args.quick else 500_000)
    pendulum_updates = args.pendulum_updates or (2 if args.quick else 48)
    minatar_updates = args.minatar_updates or (1 if args.quick else 2)

    def repeats_for(seeds: int) -> int:
        if args.repeats:
            return args.repeats
        return 1 if args.quick else (5 if seeds == 1 else 3)

    impls = [s.strip() for s in args.impls.split(",") if s.strip()]
    if "rejax" in impls:
        try:
            import rejax  # noqa: F401
        except ImportError:
            log("rejax is not installed (pip install -e '.[bench]'); benchmarking jaxpo only")
            impls = [i for i in impls if i != "rejax"]
    seed_counts = [int(s) for s in (args.seeds or ("1" if args.quick else "1,8")).split(",")]
    env_names = args.envs or ("cartpole" if args.quick else "cartpole,pendulum")
    makers = {
        "cartpole": lambda: cartpole_case(cartpole_steps),
        "pendulum": lambda: pendulum_case(pendulum_updates),
        "minatar": lambda: minatar_case(minatar_updates),
        "recurrent": lambda: recurrent_case(cartpole_steps),
    }
    cases = [makers[e.strip()]() for e in env_names.split(",") if e.strip()]

    info = machine_info()
    log(f"jax {info['jax']} on {info['backend']}, {info['cpu_count']} CPUs")
    rows: list[dict] = []
    started = time.perf_counter()
    for case in cases:
        for seeds in seed_counts:
            log(f"{case.label}, {seeds} seed(s), {case.steps * seeds:,} steps per run")
            rows.extend(bench_group(case, seeds, repeats_for(seeds), impls))
    wall = time.perf_counter() - started

    table = markdown_table(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "repeats": {str(n): repeats_for(n) for n in seed_counts},
        "wall_s": wall,
        "machine": info,
        "settings": {case.label: settings_of(case) for case in cases},
        "rows": rows,
    }
    stem = f"throughput{args.tag}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    machine = (
        f"jax {info['jax']}, backend {info['backend']}, {info['cpu_count']} CPUs "
        f"({info['cpu_model']}), XLA_FLAGS={info['XLA_FLAGS'] or '(none)'}"
    )
    loads = [r["loadavg_1m_before_after"] for r in rows]
    load_range = (
        f"{min(min(x) for x in loads):.1f}–{max(max(x) for x in loads):.1f}" if loads else "?"
    )
    repeats_text = ", ".join(f"{n} seed(s): {repeats_for(n)}" for n in seed_counts)
    ratios = network_ratios(rows)
    table_text = f"{table}\n\n{ratios}" if ratios else table
    md = (
        f"# PPO training throughput{' (quick smoke run, not a measurement)' if args.quick else ''}"
        f"\n\n`{result['command']}` — {result['date_utc']}; {machine}. Timed runs per cell "
        f"({repeats_text}); 1-minute load average during the cells {load_range} "
        f"(other processes on the machine slow runs unevenly; the interleaving and the median "
        f"keep the ratios fair, the best-run column shows the least disturbed runs).\n\n"
        f"{table_text}\n\n{NOTES}"
    )
    (out / f"{stem}.md").write_text(md)
    print()
    print(table_text)
    print(f"\nwrote {out / f'{stem}.json'} and {out / f'{stem}.md'} ({wall:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
