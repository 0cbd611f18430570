"""V-trace as the PPO family's advantage option: on-policy it is GAE inside ``train``, its
clips are live traced hparams, and the per-epoch relabelling uses the current parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_config

from jaxpo import Config, default_hparams, make_train
from jaxpo.advantages import vtrace
from jaxpo.algos.actor_critic import make_vtrace_relabel
from jaxpo.batches import RolloutData, SampleBatch
from jaxpo.networks import distribution, make_networks
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
    )
    np.testing.assert_allclose(out.advantages, expected[0].reshape(-1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.returns, expected[1].reshape(-1), rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(log_prob - behaviour)).min() > 0  # off-policy: ρ ≠ 1 here
