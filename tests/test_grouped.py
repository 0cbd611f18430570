"""Grouped rollouts and the GRPO family in ``train``: shared start states, masks and returns
against Python loops, TIC-GRPO = GRPO on one-step trajectories, the reference-policy refresh,
the losses' metrics and lower-clip switch against NumPy, and the config checks of the family."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import OBS_DIM, tiny_actor, tiny_config, to_numpy

import jaxpo
from jaxpo import ALGORITHMS, Config, default_hparams, make_train
from jaxpo.batches import TrajectoryBatch
from jaxpo.checkpoint import config_from_dict
from jaxpo.collect import group_batch, valid_steps
from jaxpo.flags import parse_field
from jaxpo.networks import Networks, distribution
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
    assert {
        "episode_return",
        "policy_loss",
        "kl_ref",
        "entropy",
        "approx_kl",
        "clip_frac",
        "ess_frac",
    } <= set(metrics)
    assert metrics["policy_loss"].shape == (3,)
    assert np.all(np.isfinite(metrics["loss"]))
    assert np.all((metrics["clip_frac"] >= 0) & (metrics["clip_frac"] <= 1))
    assert np.all((metrics["ess_frac"] > 0) & (metrics["ess_frac"] <= 1 + 1e-6))
    assert np.all(metrics["approx_kl"] >= -1e-6)
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
        (dict(lower_clip="no"), "lower_clip must be a bool"),
    ],
)
def test_config_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        make_train(TINY.replace(**changes))


# --------------------------------------------------------------------------- loss metrics

#: Per-step ratios π_θ/π_old of a hand-built minibatch (the mask keeps lengths 4, 2, 1, 3, 4, 2).
#: With ε_low = 0.2 the steps 0.5, 0.6 and 0.7 are below 1 − ε_low; 1.5 and 1.4 are above
#: 1 + ε_high for both ε_high = 0.2 (GRPO) and 0.28 (TIC-GRPO), and 1.25 only for GRPO's 0.2.
RATIOS = np.array(
    [
        [1.5, 1.0, 0.9, 1.1],
        [0.5, 1.1, 1.0, 1.0],
        [0.7, 1.0, 1.0, 1.0],
        [1.0, 1.25, 1.05, 1.0],
        [0.95, 0.6, 1.4, 1.0],
        [1.1, 1.0, 1.0, 1.0],
    ]
)
LENGTHS = np.array([4, 2, 1, 3, 4, 2])
ADVANTAGES = np.array([1.0, -1.0, -0.5, 1.2, -0.8, 0.3], np.float32)


def hand_minibatch(actor, params):
    """A TrajectoryBatch whose old log-probs put ``RATIOS`` at the valid steps."""
    rng = np.random.default_rng(0)
    n, horizon = RATIOS.shape
    obs = rng.normal(size=(n, horizon, OBS_DIM)).astype(np.float32)
    action = rng.integers(0, 2, (n, horizon)).astype(np.int32)
    log_prob = np.asarray(distribution(actor.apply(params, obs)).log_prob(action))
    mask = (np.arange(horizon)[None, :] < LENGTHS[:, None]).astype(np.float32)
    old = np.where(mask > 0, log_prob - np.log(RATIOS), 3.0).astype(np.float32)  # 3: junk
    ref = log_prob + rng.normal(0.0, 0.1, log_prob.shape).astype(np.float32)
    batch = TrajectoryBatch(
        obs=jnp.asarray(obs),
        action=jnp.asarray(action),
        log_prob=jnp.asarray(old),
        mask=jnp.asarray(mask),
        advantages=jnp.asarray(ADVANTAGES),
        returns=jnp.zeros(n),
        extras={"ref_log_prob": jnp.asarray(ref)},
    )
    # the ratios as the network and float32 give them
    ratios = np.exp(np.float64(log_prob) - np.float64(old))
    return batch, mask, ratios


def np_metrics(algo, ratios, mask, eps_low, eps_high, lower_clip):
    """policy_loss, clip_frac, ess_frac, approx_kl by hand, on the valid steps/trajectories."""
    valid = mask > 0
    low = 1 - eps_low if lower_clip else -np.inf
    adv = np.float64(ADVANTAGES)
    if algo == "grpo":
        clipped = np.clip(ratios, low, 1 + eps_high)
        per_step = -np.minimum(ratios * adv[:, None], clipped * adv[:, None])
        loss = (np.where(valid, per_step, 0.0).sum(1) / valid.sum(1)).mean()
        clipped_ratios = ratios[valid]
    else:
        w = np.prod(np.where(valid, ratios, 1.0), axis=1)
        loss = (-np.minimum(w * adv, np.clip(w, low, 1 + eps_high) * adv)).mean()
        clipped_ratios = w
    r = clipped_ratios
    step = ratios[valid]
    return {
        "policy_loss": loss,
        "clip_frac": np.mean((r < low) | (r > 1 + eps_high)),
        "ess_frac": r.sum() ** 2 / (r.size * np.square(r).sum()),
        "approx_kl": np.mean(step - 1 - np.log(step)),
    }


@pytest.mark.parametrize("algo", ["grpo", "tic_grpo"])
@pytest.mark.parametrize("lower_clip", [True, False])
def test_loss_metrics_and_lower_clip_match_numpy(algo, lower_clip):
    config = TINY.replace(algo=algo, lower_clip=lower_clip)
    assert config.algo_config.lower_clip is lower_clip
    hparams = default_hparams(config)
    eps_low, eps_high = float(hparams.clip_eps), float(hparams.clip_eps_high)
    assert (eps_low, eps_high) == pytest.approx((0.2, 0.28 if algo == "tic_grpo" else 0.2))
    actor = tiny_actor("categorical", (8,), action_dim=2)
    params = {"actor": actor.init(jax.random.key(0), jnp.zeros((1, OBS_DIM)))}
    loss_fn = ALGORITHMS[algo].make_loss(config, hparams, Networks(actor, None))
    batch, mask, ratios = hand_minibatch(actor, params["actor"])
    _, metrics = jax.jit(loss_fn)(params, batch, None)
    want = np_metrics(algo, ratios, mask, eps_low, eps_high, lower_clip)
    for name, value in want.items():
        np.testing.assert_allclose(metrics[name], value, rtol=2e-5, atol=1e-6, err_msg=name)
    # the hand-picked counts: GRPO's 16 valid steps, TIC-GRPO's 6 trajectories
    if algo == "grpo":
        # below: 0.5, 0.6, 0.7; above 1.2: 1.5, 1.4, 1.25
        assert float(metrics["clip_frac"]) == pytest.approx((6 if lower_clip else 3) / 16)
    else:
        # w = 1.485, 0.55, 0.7, 1.3125, 0.798, 1.1: below 0.8 three, above 1.28 two
        assert float(metrics["clip_frac"]) == pytest.approx((5 if lower_clip else 2) / 6)


def test_lower_clip_off_changes_the_gradient_only_through_clipped_negative_samples():
    # TIC-GRPO on the hand-built batch: trajectories 1 (w 0.55, Â −1), 2 (w 0.7, Â −0.5) and
    # 4 (w 0.798, Â −0.8) are below 1 − ε_low with Â < 0; on, they give no gradient; off, they
    # do. Of the rest, 0 and 3 are clipped above with Â > 0 and 5 (w 1.1) is inside.
    actor = tiny_actor("categorical", (8,), action_dim=2)
    params = {"actor": actor.init(jax.random.key(0), jnp.zeros((1, OBS_DIM)))}
    batch, _, _ = hand_minibatch(actor, params["actor"])
    grads = {}
    for lower_clip in (True, False):
        config = TINY.replace(algo="tic_grpo", lower_clip=lower_clip)
        loss_fn = ALGORITHMS["tic_grpo"].make_loss(
            config, default_hparams(config), Networks(actor, None)
        )
        for name, keep in (("all", slice(None)), ("rest", np.array([0, 3, 5]))):
            sub = jax.tree.map(lambda x, keep=keep: x[keep], batch)
            # the loss is a mean over trajectories: rescale to a sum to compare subsets
            scale = sub.advantages.shape[0]
            grads[lower_clip, name] = jax.grad(
                lambda p, sub=sub, scale=scale, f=loss_fn: scale * f(p, sub, None)[0]
            )(params)
    leaves = {k: np.concatenate([x.ravel() for x in jax.tree.leaves(v)]) for k, v in grads.items()}
    # on: the three trajectories contribute nothing; off: they do, and the rest is unchanged
    np.testing.assert_allclose(leaves[True, "all"], leaves[True, "rest"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(leaves[False, "rest"], leaves[True, "rest"], rtol=1e-6, atol=1e-8)
    assert np.abs(leaves[False, "all"] - leaves[True, "all"]).max() > 1e-3


def test_lower_clip_is_a_routed_section_field():
    config = Config(algo="tic_grpo", lower_clip=False)
    assert config.lower_clip is False and config.algo_config.lower_clip is False
    assert Config(algo="grpo").lower_clip is True
    assert config.replace(lower_clip=True).algo_config.lower_clip is True
    assert config.replace(algo="grpo").lower_clip is False  # shared section: kept
    assert config.to_dict()["lower_clip"] is False
    assert config_from_dict(config.to_dict()) == config
    assert parse_field("tic_grpo", "lower_clip", "false") is False  # jaxpo train --set
    with pytest.raises(ValueError, match=r"'lower_clip' belongs to the config of \['grpo'"):
        Config(algo="ppo", lower_clip=False)
