"""Every registered gymnax environment (and, slow-marked, every brax one) runs through the
adapter under jit: made, reset and stepped a few times with actions of the right kind."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxpo import envs

GYMNAX_IDS = [env_id for env_id in envs.list_env_ids() if env_id.startswith("gymnax:")]
# MinAtar games whose 3-step rollout takes 5-15 s to compile on a small CPU; Breakout and
# SpaceInvaders stay in the fast set.
SLOW_GYMNAX_IDS = {"gymnax:Asterix-MinAtar", "gymnax:Freeway-MinAtar", "gymnax:Seaquest-MinAtar"}
# gymnax downloads MNIST (into /tmp/mnist) the first time this env is made.
DOWNLOADING_GYMNAX_IDS = {"gymnax:MNISTBandit-bsuite"}


@pytest.mark.parametrize(
    "env_id",
    [pytest.param(i, marks=pytest.mark.slow) if i in SLOW_GYMNAX_IDS else i for i in GYMNAX_IDS],
)
def test_every_gymnax_env_steps_under_jit(env_id, envtest):
    if env_id in DOWNLOADING_GYMNAX_IDS:
        pytest.skip(f"{env_id} downloads MNIST from the internet when made; no network in tests")
    env = envs.make(env_id)
    params = env.default_params()
    gymnax_space = env.gymnax_env.action_space(params)
    if isinstance(env.action_space, envs.Discrete):
        assert env.action_space.n == int(gymnax_space.n)
    else:
        assert env.action_space.shape == (int(np.prod(gymnax_space.shape)),)

    run = envtest.rollout_fn(env, 3)
    first, steps, _ = envtest.run_jit(lambda key: run(key, params), jax.random.key(0))
    envtest.assert_timestep_contract(first, env, ())
    envtest.assert_reset_timestep(first)
    envtest.assert_timestep_contract(steps, env, (3,))
    envtest.assert_continuing_final_obs(steps)


def test_unsupported_brax_env_is_refused_with_its_reason():
    # brax's swimmer accepts only the generalized pipeline, which fails on the pinned jax.
    assert "swimmer" not in envs.brax_env_names()
    with pytest.raises(ValueError, match="generalized pipeline"):
        envs.check_env_id("brax:swimmer")
    with pytest.raises(ValueError, match="generalized pipeline"):
        envs.make("brax:swimmer")


@pytest.mark.slow
@pytest.mark.parametrize("name", envs.brax_env_names())
def test_every_brax_env_steps_under_jit(name, envtest):
    env = envs.make(f"brax:{name}", brax_backend="spring")
    params = env.default_params()
    run = envtest.rollout_fn(env, 2)
    first, steps, states = envtest.run_jit(lambda key: run(key, params), jax.random.key(0))
    envtest.assert_timestep_contract(first, env, ())
    envtest.assert_reset_timestep(first)
    envtest.assert_timestep_contract(steps, env, (2,))
    envtest.assert_continuing_final_obs(steps)
    np.testing.assert_array_equal(states.time, [1, 2])
