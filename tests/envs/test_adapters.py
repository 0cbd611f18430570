"""Contract tests for the gymnax and brax adapters behind ``jaxpo.envs.Environment``.

Each compiled function is a short ``lax.scan`` rollout compiled once with cheap CPU code
generation (helpers in ``conftest.py``, reached through the ``envtest`` fixture). brax compiles
dominate, so the brax tests share one vmapped rollout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpo import envs

CARTPOLE_THETA_THRESHOLD = 12 * 2 * np.pi / 360  # gymnax CartPole-v1 default
CARTPOLE_RESET_BOUND = 0.05  # gymnax CartPole resets every state variable in U(-0.05, 0.05)
BRAX_PENDULUM_RESET_BOUND = 0.01  # brax inverted_pendulum: q, qd in U(-0.01, 0.01)
BRAX_PENDULUM_MAX_ANGLE = 0.2  # brax inverted_pendulum terminates when |obs[1]| > 0.2


def first_index(flags):
    flags = np.asarray(flags)
    assert flags.any()
    return int(np.argmax(flags))


# ----------------------------------------------------------------------------- env ids


def test_env_ids_parse_and_validate():
    ids = envs.list_env_ids()
    assert "gymnax:CartPole-v1" in ids
    assert "brax:inverted_pendulum" in ids
    assert {f"probe:{p}" for p in envs.PROBES} <= set(ids)
    assert envs.parse_env_id("gymnax:CartPole-v1") == ("gymnax", "CartPole-v1")
    envs.check_env_id("gymnax:Breakout-MinAtar")
    for bad in ("CartPole-v1", "gymnax:", "atari:Pong", "gymnax:NoSuchEnv", "brax:nope"):
        with pytest.raises(ValueError):
            envs.check_env_id(bad)
    with pytest.raises(ValueError):
        envs.make("gymnax:NoSuchEnv")
    with pytest.raises(ValueError):
        envs.make("brax:inverted_pendulum", brax_backend="no-such-backend")


def test_spaces_of_known_envs():
    cartpole = envs.make("gymnax:CartPole-v1")
    assert cartpole.action_space == envs.Discrete(2) and cartpole.is_discrete
    assert cartpole.observation_shape == (4,)
    assert cartpole.name == "gymnax:CartPole-v1"
    pendulum = envs.make("gymnax:Pendulum-v1")
    assert pendulum.action_space == envs.Box((-2.0,), (2.0,)) and not pendulum.is_discrete
    assert pendulum.action_space.shape == (1,)
    assert pendulum.observation_shape == (3,)
    breakout = envs.make("gymnax:Breakout-MinAtar")
    assert breakout.action_space == envs.Discrete(3)
    assert breakout.observation_shape == (10, 10, 4)


# ----------------------------------------------------------------------------- gymnax


@pytest.mark.parametrize(
    "env_id", ["gymnax:CartPole-v1", "gymnax:Pendulum-v1", "gymnax:Breakout-MinAtar"]
)
def test_gymnax_contract_under_jit_and_vmap(env_id, envtest):
    env = envs.make(env_id)
    # A short time limit guarantees done steps inside a short rollout.
    params = env.default_params().replace(max_steps_in_episode=6)
    num_envs, num_steps = 3, 14
    run = envtest.rollout_fn(env, num_steps)

    def single(key):
        return run(key, params)

    keys = jax.random.split(jax.random.key(0), num_envs)
    first, steps, _ = envtest.run_jit(jax.vmap(single), keys)

    envtest.assert_timestep_contract(first, env, (num_envs,))
    envtest.assert_reset_timestep(first)
    envtest.assert_timestep_contract(steps, env, (num_envs, num_steps))
    envtest.assert_final_obs_semantics(steps)
    # Every lane hits the time limit by its 6th step.
    assert np.asarray(steps.terminated | steps.truncated)[:, :6].any(axis=1).all()
    # Different keys give different episodes.
    assert np.abs(np.asarray(steps.obs[0] - steps.obs[1])).max() > 0

    # A vmapped lane equals the same key run on its own under jit.
    lane = 1
    got = envtest.run_jit(single, keys[lane])[:2]
    want = jax.tree.map(lambda x: x[lane], (first, steps))
    for got_leaf, want_leaf in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(got_leaf, want_leaf, rtol=1e-5, atol=1e-5)


def test_gymnax_cartpole_termination_autoresets(envtest):
    env = envs.make("gymnax:CartPole-v1")
    run = envtest.rollout_fn(env, 30, envtest.constant_action(1))
    _, steps, states = envtest.run_jit(run, jax.random.key(1), env.default_params())

    assert not np.asarray(steps.truncated).any()
    i = first_index(steps.terminated)
    obs, final_obs = np.asarray(steps.obs), np.asarray(steps.final_obs)

    # Pushing right tips the pole until its angle leaves the threshold ...
    assert abs(final_obs[i, 2]) > CARTPOLE_THETA_THRESHOLD
    assert (np.abs(obs[:i, 2]) <= CARTPOLE_THETA_THRESHOLD).all()
    np.testing.assert_array_equal(final_obs[:i], obs[:i])
    # ... the terminating transition is still rewarded, and obs is a fresh reset obs.
    np.testing.assert_array_equal(steps.reward[: i + 1], 1.0)
    assert (np.abs(obs[i]) <= CARTPOLE_RESET_BOUND).all()
    assert np.abs(final_obs[i] - obs[i]).max() > CARTPOLE_RESET_BOUND
    np.testing.assert_array_equal(states.time[: i + 1], [*range(1, i + 1), 0])


def test_gymnax_termination_takes_precedence_over_time_limit(envtest):
    """When the time limit falls on the terminating step only ``terminated`` is set."""
    env = envs.make("gymnax:CartPole-v1")
    key, params = jax.random.key(1), env.default_params()
    run = envtest.compile_cheap(
        envtest.rollout_fn(env, 20, envtest.constant_action(1)), key, params
    )
    _, free, _ = run(key, params)
    i = first_index(free.terminated)

    _, limited, _ = run(key, params.replace(max_steps_in_episode=i + 1))
    assert bool(limited.terminated[i])
    assert not bool(limited.truncated[i])
    np.testing.assert_array_equal(limited.final_obs[i], free.final_obs[i])


def test_gymnax_pendulum_truncation(envtest):
    env = envs.make("gymnax:Pendulum-v1")
    limited = env.default_params().replace(max_steps_in_episode=5)
    key = jax.random.key(2)
    run = envtest.compile_cheap(
        envtest.rollout_fn(env, 12, envtest.constant_action(0.5)), key, limited
    )
    _, cut, cut_states = run(key, limited)
    _, free, _ = run(key, env.default_params())  # 200-step limit: no reset in 12 steps

    expected = np.zeros(12, bool)
    expected[[4, 9]] = True
    np.testing.assert_array_equal(cut.truncated, expected)
    assert not np.asarray(cut.terminated).any()
    assert not np.asarray(free.truncated).any()

    # Up to the limit both runs follow the same trajectory.
    np.testing.assert_array_equal(cut.obs[:4], free.obs[:4])
    np.testing.assert_array_equal(cut.reward[:5], free.reward[:5])
    # At step 5 final_obs is what the step produced without the reset ...
    np.testing.assert_allclose(cut.final_obs[4], free.obs[4], rtol=1e-6, atol=1e-6)
    # ... while obs starts the next episode.
    assert np.abs(cut.obs[4] - cut.final_obs[4]).max() > 0
    assert int(cut_states.time[4]) == 0
    cos, sin, theta_dot = np.asarray(cut.obs[4])
    np.testing.assert_allclose(cos**2 + sin**2, 1.0, rtol=1e-5)
    assert abs(theta_dot) <= 1.0  # gymnax Pendulum resets theta_dot in U(-1, 1)


# ----------------------------------------------------------------------------- brax


@pytest.fixture(scope="module")
def brax_rollout(envtest):
    """One vmapped, jitted rollout of brax inverted_pendulum (spring), pushing right.

    Lanes: 0 = key A with a 3-step time limit, 1 = key A without one, 2 = key B without.
    """
    env = envs.make("brax:inverted_pendulum", brax_backend="spring")
    base = env.default_params()
    keys = jax.random.split(jax.random.key(3))[jnp.array([0, 0, 1])]
    limits = jnp.array([3, 1000, 1000], jnp.int32)
    run = envtest.rollout_fn(env, 12, envtest.constant_action(1.0))

    def lane(key, limit):
        first, steps, states = run(key, base.replace(max_steps_in_episode=limit))
        return first, steps, states.time

    first, steps, time = envtest.run_jit(jax.vmap(lane), keys, limits)
    return env, first, steps, np.asarray(time)


def lane_of(tree, lane):
    """Lane ``lane`` of a vmapped pytree ``[lanes, ...]``, as numpy."""
    return jax.tree.map(lambda x: np.asarray(x)[lane], tree)


def test_brax_contract_under_jit_and_vmap(brax_rollout, envtest):
    env, first, steps, time = brax_rollout
    assert env.name == "brax:inverted_pendulum"
    assert env.backend == "spring"
    assert env.observation_shape == (4,)
    assert env.action_space == envs.Box((-1.0,), (1.0,))
    assert isinstance(env.default_params(), envs.brax_adapter.BraxParams)
    assert int(env.default_params().max_steps_in_episode) == 1000

    envtest.assert_timestep_contract(first, env, (3,))
    envtest.assert_reset_timestep(first)
    envtest.assert_timestep_contract(steps, env, (3, 12))
    envtest.assert_final_obs_semantics(steps)
    assert time.dtype == np.int32
    # vmap over keys: equal keys give equal episodes, different keys different ones.
    np.testing.assert_array_equal(first.obs[0], first.obs[1])
    assert np.abs(np.asarray(first.obs[0] - first.obs[2])).max() > 0
    assert (np.abs(np.asarray(first.obs)) <= BRAX_PENDULUM_RESET_BOUND).all()


def test_brax_truncation_at_time_limit(brax_rollout):
    _, _, steps, time = brax_rollout
    cut, free = lane_of(steps, 0), lane_of(steps, 1)

    expected = np.zeros(12, bool)
    expected[[2, 5, 8, 11]] = True
    np.testing.assert_array_equal(cut.truncated, expected)
    assert not cut.terminated.any()
    np.testing.assert_array_equal(time[0], [1, 2, 0] * 4)

    # Step 3: final_obs is the un-reset continuation (lane 1 has the same key, no limit) ...
    np.testing.assert_array_equal(cut.obs[:2], free.obs[:2])
    np.testing.assert_allclose(cut.final_obs[2], free.obs[2], rtol=1e-6, atol=1e-6)
    assert cut.reward[2] == free.reward[2]
    # ... and obs a fresh reset observation.
    assert np.abs(cut.final_obs[2] - cut.obs[2]).max() > 0
    assert (np.abs(cut.obs[[2, 5, 8, 11]]) <= BRAX_PENDULUM_RESET_BOUND).all()


def test_brax_autoreset_on_termination(brax_rollout):
    _, _, steps, time = brax_rollout
    for lane in (1, 2):
        ts = lane_of(steps, lane)
        assert not ts.truncated.any()
        i = first_index(ts.terminated)
        # The pole fell: the terminal obs shows the angle past the limit ...
        assert abs(ts.final_obs[i, 1]) > BRAX_PENDULUM_MAX_ANGLE
        assert (np.abs(ts.obs[:i, 1]) <= BRAX_PENDULUM_MAX_ANGLE).all()
        np.testing.assert_array_equal(ts.final_obs[:i], ts.obs[:i])
        # ... then the env reset: fresh obs, time counter back to 0.
        assert (np.abs(ts.obs[i]) <= BRAX_PENDULUM_RESET_BOUND).all()
        np.testing.assert_array_equal(time[lane, : i + 1], [*range(1, i + 1), 0])


def test_time_limit_lives_in_the_env_params():
    env = envs.make("brax:inverted_pendulum")
    assert int(env.default_params().max_steps_in_episode) == 1000
    limited = envs.with_time_limit(env.default_params(), 3)
    assert int(limited.max_steps_in_episode) == 3
    assert limited.max_steps_in_episode.dtype == jnp.int32
    gymnax = envs.with_time_limit(envs.make("gymnax:CartPole-v1").default_params(), 7)
    assert int(gymnax.max_steps_in_episode) == 7
    with pytest.raises(ValueError, match="positive integer"):
        envs.with_time_limit(env.default_params(), 0)
    with pytest.raises(ValueError, match="no time limit"):
        envs.with_time_limit(envs.make("probe:constant").default_params(), 5)
