"""NaN safety: a non-finite update is skipped and counted, K in a row fail the agent, an
environment's NaN is detected per update, agents stay independent, and the CLI reports it.

The NaN comes from :class:`NaNReward`, a CartPole whose reward is NaN in a window of env
steps given by its (traced, per-agent) env params, registered as custom env ids
(``jaxpo.envs.register``) so that runs, sweeps and the CLI build it like any other env.
Compiling is the slow part, so the file compiles four programs, once each: single updates of
one agent (run again and again, for the state after each update), a sweep of three members
(run twice: with and without NaN), the CLI's run, and a small GRPO run.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_config

from jaxpo import cli, default_hparams, envs, run_log, sweep
from jaxpo.train import make_train, make_trainer

#: PPO-KL carries β as algorithm state (and Adam's step count anneals the learning rate).
CONFIG = tiny_config(
    "ppo_kl", updates=6, update_epochs=1, max_consecutive_skips=3, env_id="custom:nan_cartpole"
)
T, U, K = CONFIG.num_steps, CONFIG.num_updates, CONFIG.max_consecutive_skips
#: a NaN reward in update 1 only, and in updates 2, 3, 4 (K of them: the agent fails at 4).
ONE_NAN = (1 * T, 1 * T + 1)
FAILING = (2 * T, 5 * T)
CLEAN = (math.inf, math.inf)


class NaNParams(NamedTuple):
    """The inner env's params and the window ``[nan_from, nan_to)`` of NaN rewards."""

    inner: Any
    nan_from: jax.Array
    nan_to: jax.Array


class NaNReward(envs.Wrapper):
    """Rewards NaN at the env steps ``t`` (counted per env from reset) in the window."""

    def __init__(self, env: envs.Environment, window: tuple[float, float] = CLEAN):
        super().__init__(env)
        self.window = window

    def default_params(self) -> NaNParams:
        return NaNParams(self.env.default_params(), *map(jnp.float32, self.window))

    def reset(self, key, params):
        state, ts = self.env.reset(key, params.inner)
        return (state, jnp.int32(0)), ts

    def step(self, key, state, action, params):
        inner, t = state
        inner, ts = self.env.step(key, inner, action, params.inner)
        hit = jnp.logical_and(t >= params.nan_from, t < params.nan_to)
        return (inner, t + 1), ts._replace(reward=jnp.where(hit, jnp.nan, ts.reward))


#: env ids of NaNReward CartPoles with default windows: clean, step 0 only, failing.
WINDOWS = {"nan_cartpole": CLEAN, "nan_cartpole_first": (0, 1), "nan_cartpole_failing": FAILING}


@pytest.fixture(scope="module", autouse=True)
def nan_envs():
    """Registers the NaNReward CartPoles as custom env ids for this module."""
    for name, window in WINDOWS.items():
        envs.register(name, lambda w=window: NaNReward(envs.make("gymnax:CartPole-v1"), w))
    yield
    for name in WINDOWS:
        del envs.CUSTOM[name]


def with_window(hparams, nan_from, nan_to):
    """``hparams`` with the NaN window set (scalars, or one value per member)."""
    return hparams.replace(
        env_params=hparams.env_params._replace(
            nan_from=jnp.float32(nan_from), nan_to=jnp.float32(nan_to)
        )
    )


def frozen(a, b) -> bool:
    """Bit-identical pytrees."""
    return all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@pytest.fixture(scope="module", autouse=True)
def forget_nan_programs():
    yield
    sweep.make_sweep_fn.cache_clear()  # the cached sweeps hold the NaN env


@pytest.fixture(scope="module")
def nan_env(nan_envs):
    return default_hparams(CONFIG)


@pytest.fixture(scope="module")
def segments(nan_env):
    """One agent, one update per call: ``{window: (states [U + 1], metrics {name: [U]})}``."""
    trainer = make_trainer(CONFIG)
    init, run = jax.jit(trainer.init), jax.jit(trainer.run, static_argnums=2)
    out = {}
    for window in (ONE_NAN, FAILING):
        hparams = with_window(nan_env, *window)
        states, metrics = [init(jax.random.key(0), hparams)], []
        for _ in range(U):
            result = run(states[-1], hparams, 1)
            states.append(result.state)
            metrics.append(result.metrics)
        out[window] = states, {k: np.concatenate([m[k] for m in metrics]) for k in metrics[0]}
    return out


@pytest.fixture(scope="module")
def sweeps(nan_env):
    """The same compiled sweep of three members, with NaN (clean, ONE_NAN, FAILING) and clean."""
    members = sweep.stack(nan_env, {}, 3)
    return (
        sweep.run(CONFIG, with_window(members, *zip(CLEAN, ONE_NAN, FAILING, strict=True))),
        sweep.run(CONFIG, with_window(members, *zip(CLEAN, CLEAN, CLEAN, strict=True))),
    )


def one_hot(*updates: int) -> np.ndarray:
    flags = np.zeros(U, np.float32)
    flags[list(updates)] = 1
    return flags


# --------------------------------------------------------------------------- one NaN update


def test_nan_update_is_skipped_and_counted(segments):
    _, metrics = segments[ONE_NAN]
    np.testing.assert_array_equal(metrics["update_skipped"], one_hot(1))
    np.testing.assert_array_equal(metrics["skipped_total"], [0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(metrics["failed"], np.zeros(U))
    # one NaN reward per env, in update 1 only
    np.testing.assert_array_equal(metrics["env_nonfinite"], CONFIG.num_envs * one_hot(1))
    assert not np.isfinite(metrics["loss"][1])


def test_nan_update_leaves_params_and_rule_state_bit_identical(segments):
    states, _ = segments[ONE_NAN]
    before, after = states[1], states[2]  # around update 1
    assert frozen(after.params, before.params)
    assert frozen(after.rule_state, before.rule_state)  # optimiser and β
    assert "algo" in after.rule_state and frozen(
        after.rule_state["algo"], before.rule_state["algo"]
    )
    assert (int(after.skipped), int(after.consecutive_skips), bool(after.failed)) == (1, 1, False)


def test_training_continues_after_a_skipped_update(segments):
    states, metrics = segments[ONE_NAN]
    assert not frozen(states[1].params, states[0].params)
    assert not frozen(states[3].params, states[2].params)
    assert not frozen(states[3].rule_state, states[2].rule_state)
    assert int(states[3].consecutive_skips) == 0
    for name in ("loss", "grad_norm", "policy_loss", "value_loss"):
        assert np.isfinite(metrics[name][2:]).all(), name
    for leaf in jax.tree.leaves(states[-1].params):
        assert np.isfinite(leaf).all()


# --------------------------------------------------------------------------- K skips: failed


def test_k_consecutive_skips_fail_and_freeze_the_agent(segments):
    states, metrics = segments[FAILING]
    np.testing.assert_array_equal(metrics["update_skipped"], one_hot(2, 3, 4))
    np.testing.assert_array_equal(metrics["failed"], one_hot(4, 5))
    np.testing.assert_array_equal(metrics["env_nonfinite"], CONFIG.batch_size * one_hot(2, 3, 4))
    # update 5 is finite again but no longer applied: frozen since update 1
    assert np.isfinite(metrics["loss"][5])
    for state in states[3:]:
        assert frozen(state.params, states[2].params)
        assert frozen(state.rule_state, states[2].rule_state)
    assert bool(states[-1].failed) and int(states[-1].skipped) == K


# --------------------------------------------------------------------------- sweeps


def test_other_sweep_agents_are_bit_identical_to_a_clean_run(sweeps):
    nan, clean = sweeps
    for name, value in clean.metrics.items():
        np.testing.assert_array_equal(nan.metrics[name][0], value[0], err_msg=name)
    first = jax.tree.map(lambda x: x[0], (nan.state, clean.state))
    assert frozen(*first)


def test_sweep_members_skip_and_fail_alone(sweeps):
    nan, _ = sweeps
    np.testing.assert_array_equal(
        nan.metrics["update_skipped"][:, 0], [np.zeros(U), one_hot(1), one_hot(2, 3, 4)]
    )
    np.testing.assert_array_equal(
        nan.metrics["failed"][:, 0], [np.zeros(U), np.zeros(U), one_hot(4, 5)]
    )
    np.testing.assert_array_equal(nan.state.failed[:, 0], [False, False, True])
    np.testing.assert_array_equal(nan.state.skipped[:, 0], [0, 1, K])


def test_clean_run_skips_nothing(sweeps):
    _, clean = sweeps
    for name in ("update_skipped", "skipped_total", "failed", "env_nonfinite"):
        np.testing.assert_array_equal(clean.metrics[name], 0, err_msg=name)
    assert not clean.state.failed.any()


# --------------------------------------------------------------------------- grouped (GRPO)


def test_grouped_rollouts_count_env_nonfinite():
    """GRPO resets its envs every update, so a window at step 0 hits every update."""
    config = tiny_config(
        "grpo",
        num_envs=4,
        group_size=2,
        num_steps=8,
        updates=3,
        update_epochs=1,
        hidden_sizes=(8,),
        max_consecutive_skips=2,
        env_id="custom:nan_cartpole_first",
    )
    hparams = default_hparams(config)
    out = jax.jit(make_train(config))(jax.random.key(0), hparams)
    start = jax.jit(make_trainer(config).init)(jax.random.key(0), hparams)
    np.testing.assert_array_equal(out.metrics["env_nonfinite"], [4, 4, 4])
    np.testing.assert_array_equal(out.metrics["update_skipped"], [1, 1, 1])
    np.testing.assert_array_equal(out.metrics["failed"], [0, 1, 1])
    assert frozen(out.state.params, start.params)


# --------------------------------------------------------------------------- CLI


def test_cli_train_reports_env_nan_skips_and_failure(tmp_path, capsys):
    sets = ["num_envs=2", "num_steps=16", "update_epochs=1", "num_minibatches=2"]
    sets += ["hidden_sizes=16", f"max_consecutive_skips={K}"]
    argv = ["train", "--algo", "ppo_kl", "--seeds", "1", "--seed-offset", "3"]
    argv += ["--env", "custom:nan_cartpole_failing"]
    argv += ["--total-timesteps", str(CONFIG.total_timesteps), "--no-progress"]
    argv += ["--out", str(tmp_path), *(a for s in sets for a in ("--set", s))]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        "environment custom:nan_cartpole_failing emitted non-finite observations or rewards at "
        "update(s) 3, 4, 5 (seed 3)"
    ) in printed
    assert "seed 3: 3 of 6 updates skipped" in printed and "update(s) 3, 4, 5\n" in printed
    assert f"seed 3 failed after {K} consecutive skipped updates at update 5" in printed


def test_nan_report_of_a_sweep_lists_the_first_updates_and_agents():
    flags = np.zeros((2, 7, 10), np.float32)
    flags[1, :, 2:] = 1  # member 1: every seed, updates 3..10
    metrics = {
        "env_nonfinite": flags,
        "update_skipped": flags,
        "skipped_total": np.cumsum(flags, -1),
        "failed": np.zeros_like(flags),
    }
    lines = run_log.nan_report(metrics, np.arange(10, 17), CONFIG)
    assert lines[0] == (
        "environment custom:nan_cartpole emitted non-finite observations or rewards at "
        "update(s) 3, 4, 5, 6, 7, ... (member 1, seed 10)"
    )
    assert lines[1].startswith("member 1, seed 10: 8 of 10 updates skipped")
    assert len(lines) == 2 * run_log.REPORT_LIMIT + 1
    assert lines[-1] == "... and 2 more agent(s) (see metrics.csv)"
    clean = {k: np.zeros((2, 5)) for k in metrics}
    assert run_log.nan_report(clean, np.arange(2), CONFIG) == []


def test_max_consecutive_skips_is_validated():
    with pytest.raises(ValueError, match="max_consecutive_skips"):
        make_train(CONFIG.replace(max_consecutive_skips=0))
