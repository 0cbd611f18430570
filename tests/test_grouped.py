"""Grouped rollouts and the GRPO family in ``train``: shared start states, masks and returns
against Python loops, TIC-GRPO = GRPO on one-step trajectories, the reference-policy refresh,
and the config checks of the family."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_config, to_numpy

import jaxpo
from jaxpo import default_hparams, make_train
from jaxpo.collect import group_batch, valid_steps
from jaxpo.rollout import Transition

TINY = tiny_config(
    "grpo", num_envs=6, group_size=3, num_steps=12, updates=3, update_epochs=1, hidden_sizes=(8,)
)


def test_groups_share_a_start_state_and_groups_differ():
    env = jaxpo.envs.VecEnv(jaxpo.train.bare_env(TINY), 6, group_size=3)
    _, ts = env.reset(jax.random.key(1), env.default_params())
    obs = np.asarray(ts.obs)
    np.testing.assert_array_equal(obs[0], obs[1])
    np.testing.assert_array_equal(obs[0], obs[2])
    np.testing.assert_array_equal(obs[3], obs[5])
    assert not np.array_equal(obs[0], obs[3])
    with pytest.raises(ValueError, match="group_size=4 does not divide num_envs=6"):
        jaxpo.envs.VecEnv(jaxpo.train.bare_env(TINY), 6, group_size=4)


def test_valid_steps_and_returns_match_a_python_loop(rng):
    steps, envs, group = 9, 4, 2
    done = rng.random((steps, envs)) < 0.25
    done[:, 0] = False  # one trajectory cut by the horizon
    reward = rng.normal(size=(steps, envs)).astype(np.float32)
    gamma = 0.9
    traj = Transition(
        obs=jnp.zeros((steps, envs, 3)),
        action=jnp.zeros((steps, envs), jnp.int32),
        log_prob=jnp.zeros((steps, envs)),
        reward=jnp.asarray(reward),
        terminated=jnp.asarray(done),
        truncated=jnp.zeros((steps, envs), bool),
        final_obs=jnp.zeros((steps, envs, 3)),
        info={},
    )
    batch, metrics = group_batch(traj, jnp.float32(gamma), group)
    mask = np.zeros((envs, steps))
    returns = np.zeros(envs)
    for e in range(envs):
        for t in range(steps):
            mask[e, t] = 1.0
            returns[e] += gamma**t * reward[t, e]
            if done[t, e]:
                break
    np.testing.assert_array_equal(np.asarray(valid_steps(jnp.asarray(done))).T, mask)
    np.testing.assert_array_equal(np.asarray(batch.mask), mask)
    np.testing.assert_allclose(np.asarray(batch.returns), returns, rtol=1e-5, atol=1e-6)
    pairs = returns.reshape(-1, group)
    expected = (pairs - pairs.mean(1, keepdims=True)) / (pairs.std(1, keepdims=True) + 1e-8)
    np.testing.assert_allclose(np.asarray(batch.advantages), expected.ravel(), atol=1e-4)
    assert batch.obs.shape == (envs, steps, 3)
    assert float(metrics["episode_length"]) == pytest.approx(mask.sum(1).mean())
    assert float(metrics["episodes"]) == sum(done[:, e].any() for e in range(envs))


@pytest.fixture(scope="module")
def tiny_run():
    hparams = default_hparams(TINY)
    return hparams, jax.jit(make_train(TINY))(jax.random.key(0), hparams)


def test_grpo_trains_without_a_critic(tiny_run):
    _, out = tiny_run
    assert set(out.state.params) == {"actor"}
    metrics = to_numpy(out.metrics)
    assert {"episode_return", "policy_loss", "kl_ref", "entropy", "approx_kl"} <= set(metrics)
    assert metrics["policy_loss"].shape == (3,)
    assert np.all(np.isfinite(metrics["loss"]))
    # CartPole pays 1 per step, so a trajectory's return is its length.
    np.testing.assert_allclose(metrics["episode_return"], metrics["episode_length"])
    # The reference is the initial policy: π moves away from it after the first update.
    assert metrics["kl_ref"][0] == 0.0
    assert metrics["kl_ref"][-1] > 0.0


def test_reference_refreshed_every_update_has_zero_kl_at_each_update_start():
    # Horizon 40: CartPole episodes of a random policy end at different lengths within it.
    config = TINY.replace(
        ref_update_interval=1, num_minibatches=1, num_steps=40, total_timesteps=6 * 40 * 3
    )
    out = jax.jit(make_train(config))(jax.random.key(0), default_hparams(config))
    # One full-batch step per update, taken where π_θ = π_ref (refreshed after each update).
    np.testing.assert_array_equal(np.asarray(out.metrics["kl_ref"]), 0.0)
    kept = jax.jit(make_train(config.replace(ref_update_interval=0)))(
        jax.random.key(0), default_hparams(config)
    )
    assert np.asarray(kept.metrics["kl_ref"])[-1] > 0.0


def test_kl_penalty_holds_the_policy_near_the_reference():
    config = TINY.replace(num_steps=40, total_timesteps=6 * 40 * 3, num_minibatches=1)
    train = jax.jit(make_train(config))
    free, held = (
        train(jax.random.key(5), default_hparams(config, learning_rate=0.03, kl_coef=beta))
        for beta in (0.0, 30.0)
    )
    assert 0 < float(held.metrics["kl_ref"][-1]) < 0.5 * float(free.metrics["kl_ref"][-1])


def test_tic_grpo_equals_grpo_on_one_step_trajectories():
    # Pendulum: one-step rewards depend on the action, so a group's returns differ.
    config = TINY.replace(
        env_id="gymnax:Pendulum-v1", num_steps=1, total_timesteps=6 * 4, update_epochs=3
    )
    # A large step moves ratios past both clip bounds within an update.
    hparams = default_hparams(config, clip_eps=0.2, clip_eps_high=0.28, learning_rate=0.05)
    grpo = jax.jit(make_train(config))(jax.random.key(3), hparams)
    tic = jax.jit(make_train(config.replace(algo="tic_grpo")))(jax.random.key(3), hparams)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        (grpo.state.params, grpo.metrics),
        (tic.state.params, tic.metrics),
    )
    assert np.all(np.asarray(grpo.metrics["grad_norm"]) > 0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(group_size=4), "group_size=4 does not divide num_envs=6"),
        (dict(group_size=1), "group_size must be >= 2"),
        (dict(num_minibatches=4), "does not divide the num_envs=6 trajectories"),
        (dict(normalize_obs=True), "normalize_obs is not supported"),
        (dict(advantage="vtrace"), r"'advantage' belongs to the config of \[.*'ppo'.*'grpo'"),
        (dict(ref_update_interval=-1), "ref_update_interval must be an integer >= 0"),
    ],
)
def test_config_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        make_train(TINY.replace(**changes))
