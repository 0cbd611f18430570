"""PPO learns each probe environment's known value function and policy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpo
from jaxpo.networks import distribution, make_networks

GAMMA = 0.9


def train_probe(kind: str) -> tuple:
    config = jaxpo.Config(
        env_id=f"probe:{kind}",
        num_envs=8,
        num_steps=16,
        total_timesteps=8 * 16 * 60,
        update_epochs=4,
        num_minibatches=2,
        hidden_sizes=(32, 32),
    )
    hparams = jaxpo.default_hparams(config, learning_rate=3e-3, gamma=GAMMA, ent_coef=0.0)
    result = jaxpo.sweep.run(config, hparams, seeds=3)
    env = jaxpo.envs.make(config.env_id)
    actor, critic = make_networks(config, env)
    params = jax.tree.map(lambda x: x[0], result.state.params)  # member 0: [seeds, ...]
    return actor, critic, params


def values_and_probs(actor, critic, params, obs):
    obs = jnp.asarray(obs, jnp.float32).reshape(-1, 1)
    values = jax.vmap(lambda p: critic.apply(p["critic"], obs))(params)
    probs = jax.vmap(lambda p: distribution(actor.apply(p["actor"], obs)).probs)(params)
    return np.asarray(values), np.asarray(probs)


@pytest.mark.parametrize(
    "kind, obs, value, best_action",
    [
        ("constant", [0.0], [1.0], None),
        ("observation", [-1.0, 1.0], [-1.0, 1.0], None),
        ("delayed", [0.0, 1.0], [GAMMA, 1.0], None),
        ("action", [0.0], [1.0], [1]),
        ("observation_action", [-1.0, 1.0], [1.0, 1.0], [0, 1]),
    ],
)
def test_ppo_learns_probe(kind, obs, value, best_action):
    actor, critic, params = train_probe(kind)
    values, probs = values_and_probs(actor, critic, params, obs)
    np.testing.assert_allclose(values, np.broadcast_to(value, values.shape), atol=0.1)
    if best_action is not None:
        chosen = probs[:, np.arange(len(obs)), best_action]  # [seeds, obs]
        assert (chosen > 0.9).all(), chosen
