"""V-trace as the PPO family's advantage option: on-policy it is GAE inside ``train``, its
clips are live traced hparams, and the per-epoch relabelling uses the current parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import OBS_DIM, init_params, tiny_config, tiny_networks

from jaxpo import Config, default_hparams, make_train
from jaxpo.advantages import vtrace
from jaxpo.algos.actor_critic import make_vtrace_relabel
from jaxpo.batches import RolloutData, SampleBatch
from jaxpo.networks import distribution, make_networks
from jaxpo.registry import lookup
from jaxpo.train import make_env

CONFIG = tiny_config(updates=3, update_epochs=1)


def run(config: Config, **hparams: float):
    return jax.jit(make_train(config))(jax.random.key(2), default_hparams(config, **hparams))


def test_one_epoch_vtrace_with_unit_clips_is_gae():
    gae = run(CONFIG)
    vt = run(CONFIG.replace(advantage="vtrace"))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        (gae.state.params, gae.metrics),
        (vt.state.params, vt.metrics),
    )


def test_rho_bar_below_one_changes_the_update():
    gae = run(CONFIG)
    clipped = run(CONFIG.replace(advantage="vtrace"), vtrace_rho_bar=0.5, vtrace_c_bar=0.5)
    assert not np.allclose(gae.metrics["value_loss"], clipped.metrics["value_loss"], rtol=1e-3)


def test_later_epochs_are_relabelled():
    """With two epochs the second is relabelled under the moved policy, so unit-clip V-trace
    no longer equals GAE."""
    config = CONFIG.replace(update_epochs=2)
    gae = run(config)
    vt = run(config.replace(advantage="vtrace"))
    np.testing.assert_array_equal(gae.metrics["episode_return"][0], vt.metrics["episode_return"][0])
    assert not np.allclose(gae.metrics["value_loss"], vt.metrics["value_loss"], rtol=1e-4)


@pytest.mark.parametrize("algo", ["ppo", "a2c", "mdpo"])
def test_relabel_uses_the_current_policy_and_critic(algo, rng):
    config = CONFIG.replace(algo=algo, advantage="vtrace", num_envs=3, num_steps=5)
    env = make_env(config)
    actor, critic = make_networks(config, env)
    hparams = default_hparams(config, vtrace_rho_bar=0.8, vtrace_c_bar=0.9, gae_lambda=0.9)
    n = config.batch_size
    obs = jnp.asarray(rng.normal(size=(n, 4)), jnp.float32)
    next_obs = jnp.asarray(rng.normal(size=(n, 4)), jnp.float32)
    params = {
        "actor": actor.init(jax.random.key(0), obs[:1]),
        "critic": critic.init(jax.random.key(1), obs[:1]),
    }
    action = jnp.asarray(rng.integers(0, 2, n), jnp.int32)
    behaviour = jnp.asarray(rng.normal(size=n) * 0.3 - 0.7, jnp.float32)
    done = rng.random(n) < 0.2
    terminated = done & (rng.random(n) < 0.5)
    reward = jnp.asarray(rng.normal(size=n), jnp.float32)
    rollout = RolloutData(reward, jnp.asarray(terminated), jnp.asarray(done), next_obs, 0.0, 0.0)
    batch = SampleBatch(obs, action, behaviour, None, None, None, rollout=rollout)
    out = make_vtrace_relabel(config, hparams, make_networks(config, env))(params, batch)

    log_prob = distribution(actor.apply(params["actor"], obs)).log_prob(action)
    steps = (config.num_steps, config.num_envs)
    expected = vtrace(
        *(
            jnp.reshape(x, steps)
            for x in (
                reward,
                critic.apply(params["critic"], obs),
                critic.apply(params["critic"], next_obs),
                terminated,
                done,
                log_prob - behaviour,
            )
        ),
        0.99,
        0.9,
        0.8,
        0.9,
        weight_policy_advantage=algo == "a2c",  # ρ once: in the advantage or in the ratio
    )
    np.testing.assert_allclose(out.advantages, expected[0].reshape(-1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.returns, expected[1].reshape(-1), rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(log_prob - behaviour)).min() > 0  # off-policy: ρ ≠ 1 here


# ------------------------------------------------------------ the importance weight, once
#
# A one-step bandit with three actions. The batch holds each action in proportion to the
# behaviour policy μ = (1/2, 1/3, 1/6), so a batch mean is an exact expectation over μ. The
# epoch-start policy π (the actor's parameters) differs from μ, as it does from the second
# epoch on. With ρ̄ = c̄ = 100 nothing is truncated, so the expected gradient of the policy
# term must be the true policy gradient −∇_θ E_π[R] = −∇_θ Σ_a π_θ(a)·R(a).

BANDIT_ACTIONS = np.array([0, 0, 0, 1, 1, 2], np.int32)
BANDIT_MU = np.array([1 / 2, 1 / 3, 1 / 6])
BANDIT_REWARD = np.array([1.0, -0.5, 2.0])
NO_TRUNCATION = {"vtrace_rho_bar": 100.0, "vtrace_c_bar": 100.0}
#: Config changes that keep every sample's ratio inside the clip (the gradient is then the
#: unclipped surrogate's); π/μ is in [0.5, 2.5] here.
WIDE_CLIP = {"ppo": {"clip_eps": 10.0}, "adaptive_ppo": {}}


def bandit_gradients(algo: str):
    """(∇ of the algorithm's loss on the relabelled bandit batch, −∇E_π[R]) for the actor."""
    changes = {"clip_candidates": (10.0,)} if algo == "adaptive_ppo" else {}
    config = Config(
        algo=algo,
        advantage="vtrace",
        num_envs=len(BANDIT_ACTIONS),
        num_steps=1,
        update_epochs=1,
        num_minibatches=1,
        normalize_advantages=False,
        **changes,
    )
    hparams = default_hparams(
        config, ent_coef=0.0, vf_coef=0.0, **NO_TRUNCATION, **WIDE_CLIP.get(algo, {})
    )
    networks = tiny_networks("categorical")
    params = init_params("categorical", seed=3)
    n = len(BANDIT_ACTIONS)
    obs = jnp.ones((n, OBS_DIM), jnp.float32)
    outputs = networks.actor.apply(params["actor"], obs)
    rollout = RolloutData(
        jnp.asarray(BANDIT_REWARD[BANDIT_ACTIONS], jnp.float32),
        jnp.ones(n, bool),
        jnp.ones(n, bool),
        obs,
        0.0,
        0.0,
    )
    batch = SampleBatch(
        obs,
        jnp.asarray(BANDIT_ACTIONS),
        jnp.asarray(np.log(BANDIT_MU[BANDIT_ACTIONS]), jnp.float32),
        jnp.zeros(n),
        jnp.zeros(n),
        jnp.zeros(n),
        old_outputs=outputs,  # π_old = the epoch-start policy, as the rules record it
        extras={"virtual": outputs},  # MCPO's ψ at init: every memory slot holds π_old
        rollout=rollout,
    )
    batch = make_vtrace_relabel(config, hparams, networks)(params, batch)
    algo = lookup(algo)
    loss_fn = algo.make_loss(config, hparams, networks)
    algo_state = algo.make_update_rule(config, hparams, networks).init(params)["algo"]
    grads = jax.grad(lambda p: loss_fn(p, batch.shuffleable(), algo_state)[0])(params)

    def expected_reward(actor_params):
        probs = distribution(networks.actor.apply(actor_params, obs[:1])).probs[0]
        return jnp.dot(probs, jnp.asarray(BANDIT_REWARD, jnp.float32))

    true = jax.grad(expected_reward)(params["actor"])
    flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])  # noqa: E731
    probs = np.asarray(distribution(outputs).probs[0])
    assert np.abs(probs - BANDIT_MU).max() > 0.1  # π is really off μ
    return flat(grads["actor"]), -flat(true)


@pytest.mark.parametrize("algo", ["ppo", "ppo_kl", "mdpo", "mcpo", "adaptive_ppo", "a2c"])
def test_vtrace_expected_gradient_is_the_policy_gradient(algo):
    grad, true = bandit_gradients(algo)
    np.testing.assert_allclose(grad, true, rtol=1e-4, atol=1e-6 * np.abs(true).max())


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_weighting_the_wrong_number_of_times_is_caught(algo, monkeypatch):
    """The broken compositions: ρ in the advantage *and* the ratio in the loss (what the PPO
    family did), or neither (A2C without ρ): both miss the policy gradient by far more than
    the tolerance above."""
    section = type(Config(algo=algo).algo_config)
    monkeypatch.setattr(section, "IMPORTANCE_WEIGHTED", not section.IMPORTANCE_WEIGHTED)
    grad, true = bandit_gradients(algo)
    assert np.linalg.norm(grad - true) > 0.05 * np.linalg.norm(true)
