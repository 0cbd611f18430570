"""Tests for the stateful wrappers: EpisodeStatistics, ClipAction, VecEnv and
NormalizeObservation (with its RunningStats)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpo import envs


class ActionEcho(envs.Environment):
    """A Box env whose observation is the action it last received (to see what wrappers send)."""

    def __init__(self, low, high):
        self.action_space = envs.Box(tuple(low), tuple(high))
        self.observation_shape = self.action_space.shape
        self.name = "test:action_echo"

    def default_params(self):
        return {}

    def reset(self, key, params):
        return jnp.int32(0), envs.core.first_timestep(jnp.zeros(self.observation_shape))

    def step(self, key, state, action, params):
        obs = jnp.asarray(action, jnp.float32)
        false = jnp.zeros((), bool)
        return state + 1, envs.TimeStep(obs, jnp.float32(0.0), false, false, obs, {})


def run_random_policy(envtest, env, params, num_steps, key):
    """Resets and steps ``env`` (a VecEnv stack) with random actions; jitted scan."""

    def run(key):
        reset_key, steps_key = jax.random.split(key)
        state, first = env.reset(reset_key, params)
        num_envs = first.reward.shape[0]

        def body(state, key):
            act_key, env_key = jax.random.split(key)
            if env.is_discrete:
                action = jax.random.randint(act_key, (num_envs,), 0, env.action_space.n)
            else:
                action = jax.random.uniform(
                    act_key, (num_envs, *env.action_space.shape), minval=-1.0, maxval=1.0
                )
            state, ts = env.step(env_key, state, action, params)
            return state, ts

        _, steps = jax.lax.scan(body, state, jax.random.split(steps_key, num_steps))
        return first, steps

    return envtest.run_jit(run, key)


# ----------------------------------------------------------------------------- VecEnv


def test_vecenv_shapes_and_independent_copies(envtest):
    env = envs.VecEnv(envs.make("gymnax:CartPole-v1"), num_envs=5)
    assert env.observation_shape == (4,)
    assert env.action_space == envs.Discrete(2)
    params = env.default_params()
    state, ts = env.reset(jax.random.key(0), params)
    assert ts.obs.shape == ts.final_obs.shape == (5, 4)
    assert ts.reward.shape == ts.terminated.shape == ts.truncated.shape == (5,)
    assert all(leaf.shape[0] == 5 for leaf in jax.tree.leaves(state))
    assert len({tuple(np.asarray(row)) for row in ts.obs}) == 5  # own key per copy

    state, ts = envtest.run_jit(
        env.step, jax.random.key(1), state, jnp.array([0, 1, 0, 1, 1]), params
    )
    assert ts.obs.shape == ts.final_obs.shape == (5, 4)
    assert ts.obs.dtype == jnp.float32
    assert ts.reward.shape == (5,) and ts.reward.dtype == jnp.float32
    assert ts.terminated.shape == ts.truncated.shape == (5,)
    assert ts.terminated.dtype == ts.truncated.dtype == jnp.bool_


def test_vecenv_box_actions_and_shared_params(envtest):
    env = envs.VecEnv(envs.make("gymnax:Pendulum-v1"), num_envs=3)
    params = env.default_params().replace(max_steps_in_episode=1)  # shared by every copy
    state, _ = env.reset(jax.random.key(0), params)
    _, ts = envtest.run_jit(env.step, jax.random.key(1), state, jnp.zeros((3, 1)), params)
    assert ts.obs.shape == (3, 3)
    np.testing.assert_array_equal(ts.truncated, True)


# ----------------------------------------------------------------------------- EpisodeStatistics


@pytest.mark.parametrize(
    ("env_id", "max_steps"),
    [("gymnax:CartPole-v1", None), ("gymnax:Pendulum-v1", 7)],  # Pendulum: varied rewards
)
def test_episode_statistics_match_python_loop(env_id, max_steps, envtest):
    base = envs.make(env_id)
    params = base.default_params()
    if max_steps is not None:
        params = params.replace(max_steps_in_episode=max_steps)
    num_envs, num_steps = 4, 60
    env = envs.VecEnv(envs.EpisodeStatistics(base), num_envs)
    first, steps = run_random_policy(envtest, env, params, num_steps, jax.random.key(0))

    assert set(first.info) == {"episode_return", "episode_length", "episode_done"}
    np.testing.assert_array_equal(first.info["episode_return"], 0.0)
    np.testing.assert_array_equal(first.info["episode_length"], 0.0)
    assert not np.asarray(first.info["episode_done"]).any()
    assert steps.info["episode_return"].shape == (num_steps, num_envs)

    reward = np.asarray(steps.reward, np.float64)
    done = np.asarray(steps.terminated | steps.truncated)
    info = {k: np.asarray(v) for k, v in steps.info.items()}
    episodes = 0
    for e in range(num_envs):
        ret, length = 0.0, 0
        for t in range(num_steps):
            ret += reward[t, e]
            length += 1
            assert info["episode_done"][t, e] == done[t, e]
            if done[t, e]:
                np.testing.assert_allclose(info["episode_return"][t, e], ret, rtol=1e-5)
                assert info["episode_length"][t, e] == length
                ret, length = 0.0, 0
                episodes += 1
            else:
                assert info["episode_return"][t, e] == 0.0
                assert info["episode_length"][t, e] == 0.0
    assert episodes >= num_envs  # every copy finished at least one episode


def test_episode_statistics_keep_inner_timestep():
    base = envs.make("probe:delayed")
    env = envs.EpisodeStatistics(base)
    key = jax.random.key(0)
    state, ts = env.reset(key, {})
    inner_state, inner_ts = base.reset(key, {})
    np.testing.assert_array_equal(ts.obs, inner_ts.obs)
    for t in range(4):
        key = jax.random.fold_in(key, t)
        state, ts = env.step(key, state, 0, {})
        inner_state, inner_ts = base.step(key, inner_state, 0, {})
        for field in ("obs", "reward", "terminated", "truncated", "final_obs"):
            np.testing.assert_array_equal(getattr(ts, field), getattr(inner_ts, field))
        # probe:delayed: two steps per episode, reward 1 at the end.
        assert bool(ts.info["episode_done"]) == (t % 2 == 1)
        assert float(ts.info["episode_return"]) == (1.0 if t % 2 else 0.0)
        assert float(ts.info["episode_length"]) == (2.0 if t % 2 else 0.0)


# ----------------------------------------------------------------------------- ClipAction

LOW, HIGH = (0.0, -3.0, -1.0), (1.0, 5.0, 1.0)


def test_clip_action_rescale_math():
    env = envs.ClipAction(ActionEcho(LOW, HIGH), mode="rescale")
    low, high = np.array(LOW), np.array(HIGH)
    np.testing.assert_allclose(env.transform(-jnp.ones(3)), low)
    np.testing.assert_allclose(env.transform(jnp.ones(3)), high)
    np.testing.assert_allclose(env.transform(jnp.zeros(3)), (low + high) / 2)
    np.testing.assert_allclose(
        env.transform(jnp.array([0.5, -0.5, 0.25])),
        low + (np.array([0.5, -0.5, 0.25]) + 1) / 2 * (high - low),
        rtol=1e-6,
    )
    # Outside [-1, 1] the action is clipped first.
    np.testing.assert_allclose(env.transform(jnp.array([7.0, -2.0, 1.5])), [1.0, -3.0, 1.0])
    np.testing.assert_allclose(env.transform(jnp.full(3, -100.0)), low)


def test_clip_action_clip_math():
    env = envs.ClipAction(ActionEcho(LOW, HIGH), mode="clip")
    inside = jnp.array([0.25, 4.0, -0.5])
    np.testing.assert_allclose(env.transform(inside), inside)
    np.testing.assert_allclose(env.transform(jnp.array([-1.0, 9.0, 2.0])), [0.0, 5.0, 1.0])
    np.testing.assert_allclose(env.transform(jnp.array([3.0, -9.0, -2.0])), [1.0, -3.0, -1.0])


@pytest.mark.parametrize("mode", ["clip", "rescale"])
def test_clip_action_step_sends_transformed_action(mode):
    env = envs.VecEnv(envs.ClipAction(ActionEcho(LOW, HIGH), mode=mode), num_envs=2)
    state, _ = env.reset(jax.random.key(0), {})
    action = jnp.array([[-5.0, 0.0, 0.5], [0.5, 7.0, -0.5]])
    _, ts = jax.jit(env.step)(jax.random.key(1), state, action, {})
    inner = env.env  # the ClipAction
    np.testing.assert_allclose(ts.obs, jax.vmap(inner.transform)(action), rtol=1e-6)
    assert (np.asarray(ts.obs) >= np.array(LOW)).all()
    assert (np.asarray(ts.obs) <= np.array(HIGH)).all()


def test_clip_action_rejects_bad_inputs():
    with pytest.raises(ValueError):
        envs.ClipAction(envs.make("gymnax:CartPole-v1"))
    with pytest.raises(ValueError):
        envs.ClipAction(ActionEcho(LOW, HIGH), mode="tanh")


# ----------------------------------------------------------------------------- NormalizeObservation


def test_running_stats_merge_equals_numpy():
    rng = np.random.default_rng(0)
    data = rng.normal(loc=[3.0, -1.0, 0.5], scale=[2.0, 0.1, 1.0], size=(300, 3))
    data = data.astype(np.float32)
    batches = np.split(data, [7, 71, 72, 200])  # sizes 7, 64, 1, 128, 100

    stats = envs.RunningStats(jnp.zeros(3), jnp.zeros(3), jnp.float32(0.0))  # no prior
    for batch in batches:
        stats = stats.update(jnp.asarray(batch))
    np.testing.assert_allclose(stats.mean, data.astype(np.float64).mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats.var, data.astype(np.float64).var(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats.count, 300.0)

    # From create(): a negligible prior (mean 0, var 1, count 1e-4).
    created = envs.RunningStats.create((3,))
    np.testing.assert_array_equal(created.mean, 0.0)
    np.testing.assert_array_equal(created.var, 1.0)
    for batch in batches:
        created = created.update(jnp.asarray(batch))
    np.testing.assert_allclose(created.mean, data.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(created.var, data.var(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(created.count, 300.0 + 1e-4)

    # One update with all the data agrees with the merged updates.
    once = envs.RunningStats(jnp.zeros(3), jnp.zeros(3), jnp.float32(0.0)).update(data)
    np.testing.assert_allclose(once.mean, stats.mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(once.var, stats.var, rtol=1e-5, atol=1e-5)


def test_running_stats_normalize():
    stats = envs.RunningStats(jnp.array([1.0, -2.0]), jnp.array([4.0, 0.25]), jnp.float32(10.0))
    x = jnp.array([[3.0, -2.5], [1.0, 100.0]])
    expected = (np.asarray(x) - [1.0, -2.0]) / np.sqrt(np.array([4.0, 0.25]) + 1e-8)
    np.testing.assert_allclose(stats.normalize(x), np.clip(expected, -10, 10), rtol=1e-6)
    np.testing.assert_allclose(stats.normalize(x, clip=1.0)[1, 1], 1.0)


def test_normalize_observation_uses_same_stats_for_obs_and_final_obs(envtest):
    num_envs = 4
    inner = envs.VecEnv(envs.make("gymnax:CartPole-v1"), num_envs)
    env = envs.NormalizeObservation(inner)
    params = env.default_params()
    key = jax.random.key(0)

    state, ts = env.reset(key, params)
    inner_state, raw = inner.reset(key, params)
    expected_stats = envs.RunningStats.create((4,)).update(raw.obs)
    assert state.stats.mean.shape == (4,)  # one set of statistics shared by all copies
    np.testing.assert_allclose(state.stats.mean, expected_stats.mean, rtol=1e-6)
    np.testing.assert_allclose(ts.obs, expected_stats.normalize(raw.obs), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ts.final_obs, ts.obs)

    action = jnp.ones(num_envs, jnp.int32)  # push right: episodes end within ~10 steps
    step = envtest.compile_cheap(env.step, key, state, action, params)
    inner_step = envtest.compile_cheap(inner.step, key, inner_state, action, params)
    saw_done = False
    for t in range(20):
        step_key = jax.random.fold_in(key, t)
        old_stats = state.stats
        state, ts = step(step_key, state, action, params)
        inner_state, raw = inner_step(step_key, inner_state, action, params)
        stats = old_stats.update(raw.obs)
        for field in ("mean", "var", "count"):
            np.testing.assert_allclose(
                getattr(state.stats, field), getattr(stats, field), rtol=1e-5, atol=1e-6
            )
        np.testing.assert_allclose(ts.obs, stats.normalize(raw.obs), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            ts.final_obs, stats.normalize(raw.final_obs), rtol=1e-5, atol=1e-5
        )
        done = np.asarray(raw.terminated | raw.truncated)
        np.testing.assert_array_equal(ts.terminated, raw.terminated)
        np.testing.assert_array_equal(ts.reward, raw.reward)
        np.testing.assert_array_equal(np.asarray(ts.final_obs)[~done], np.asarray(ts.obs)[~done])
        if done.any():
            saw_done = True
            assert (np.abs(np.asarray(ts.final_obs - ts.obs))[done].max(-1) > 0).all()
    assert saw_done


def test_trainer_wrapper_stack(envtest):
    """adapter -> EpisodeStatistics -> ClipAction -> VecEnv -> NormalizeObservation."""
    base = envs.make("gymnax:Pendulum-v1")
    env = envs.NormalizeObservation(
        envs.VecEnv(envs.ClipAction(envs.EpisodeStatistics(base), mode="rescale"), 3)
    )
    assert env.unwrapped() is base
    assert env.observation_shape == base.observation_shape
    assert env.action_space == base.action_space
    assert env.name == base.name
    params = env.default_params().replace(max_steps_in_episode=4)
    first, steps = run_random_policy(envtest, env, params, 8, jax.random.key(0))
    assert first.obs.shape == (3, 3)
    assert steps.obs.shape == steps.final_obs.shape == (8, 3, 3)
    assert steps.info["episode_return"].shape == (8, 3)
    np.testing.assert_array_equal(steps.info["episode_length"][3], 4.0)
    np.testing.assert_array_equal(np.asarray(steps.truncated)[[3, 7]], True)
