"""The partially observed environments: ``probe:memory`` and ``pomdp:CartPole-v1``.

``probe:memory`` is checked against a Python reference of its table (``envs/memory_probe.py``)
with the episode length traced; ``pomdp:CartPole-v1`` step by step against gymnax's CartPole
driven by the same keys and actions. Both pass the adapter contract of the suite tests.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_suite_adapters import contract_rollout  # tests/envs is on sys.path (rootdir)

from jaxpo import envs

CARTPOLE_KEPT = [0, 2]  # cart position, pole angle


# ----------------------------------------------------------------------------- probe:memory


def test_memory_probe_registry_and_spaces():
    env = envs.make("probe:memory")
    assert isinstance(env, envs.MemoryProbe) and env.name == "probe:memory"
    assert env.observation_shape == (2,) and env.action_space == envs.Discrete(2)
    assert env.default_params() == {"length": 4}
    assert "probe:memory" in envs.list_env_ids() and "memory" in envs.MEMORY_PROBES
    assert "memory" not in envs.PROBES  # not a ProbeEnv kind
    envs.check_env_id("probe:memory")


def test_memory_probe_contract_under_jit_and_vmap(envtest):
    env = envs.make("probe:memory")
    first, steps, *_ = contract_rollout(envtest, env, env.default_params(), 8, 10)
    assert not np.asarray(steps.truncated).any()
    # Every lane terminates on steps 4 and 8 (indices 3 and 7), and only there.
    expected = np.zeros(10, bool)
    expected[[3, 7]] = True
    np.testing.assert_array_equal(np.asarray(steps.terminated), np.tile(expected, (8, 1)))


def memory_rollout_fn(env, num_steps):
    """``run(key, length) -> (first, steps, actions)`` with random actions, ``length`` traced."""

    def run(key, length):
        params = {"length": length}
        reset_key, steps_key = jax.random.split(key)
        state, first = env.reset(reset_key, params)

        def body(state, key):
            act_key, env_key = jax.random.split(key)
            action = jax.random.randint(act_key, (), 0, 2)
            state, ts = env.step(env_key, state, action, params)
            return state, (ts, action)

        _, (steps, actions) = jax.lax.scan(body, state, jax.random.split(steps_key, num_steps))
        return first, steps, actions

    return run


@pytest.fixture(scope="module")
def memory_rollout(envtest):
    """One compiled ``jit(vmap)`` rollout, ``[64 lanes, 13 steps]``; call with a length array."""
    env = envs.make("probe:memory")
    run = jax.vmap(memory_rollout_fn(env, 13), in_axes=(0, None))
    keys = jax.random.split(jax.random.key(1), 64)
    compiled = envtest.compile_cheap(run, keys, jnp.int32(4))

    def call(length):
        out = compiled(keys, jnp.asarray(length, jnp.int32))
        return jax.tree.map(np.asarray, out)

    return call


@pytest.mark.parametrize("length", [1, 3, 4, 6])
def test_memory_probe_matches_python_reference(length, memory_rollout):
    """The same compiled rollout (length traced) against a step-by-step Python model."""
    first, steps, actions = memory_rollout(length)
    lanes, num_steps = actions.shape
    seen = set()  # (cue, action) pairs scored on a last step
    for e in range(lanes):
        cue, t = float(first.obs[e, 0]), 0
        assert cue in (-1.0, 1.0)
        assert first.obs[e, 1] == float(length == 1)
        for i in range(num_steps):
            where = f"length {length}, lane {e}, step {i}, episode step {t}"
            action, last = int(actions[e, i]), t == length - 1
            assert steps.reward[e, i] == float(last and action == int(cue > 0)), where
            assert bool(steps.terminated[e, i]) == last, where
            assert not steps.truncated[e, i], where
            if last:
                seen.add((cue, action))
                np.testing.assert_array_equal(steps.final_obs[e, i], [0.0, 0.0], err_msg=where)
                cue, t = float(steps.obs[e, i, 0]), 0  # auto-reset: a fresh cue
                assert cue in (-1.0, 1.0), where
                assert steps.obs[e, i, 1] == float(length == 1), where
            else:
                t += 1
                # No cue after the first step; the query exactly on the last step.
                np.testing.assert_array_equal(
                    steps.obs[e, i], [0.0, float(t == length - 1)], err_msg=where
                )
                np.testing.assert_array_equal(steps.final_obs[e, i], steps.obs[e, i])
    assert seen == {(-1.0, 0), (-1.0, 1), (1.0, 0), (1.0, 1)}, "every cue/action pair scored"
    # Terminated exactly every `length` steps in every lane.
    pattern = (np.arange(num_steps) + 1) % length == 0
    np.testing.assert_array_equal(steps.terminated, np.tile(pattern, (lanes, 1)))


def test_memory_probe_rewards_the_matching_action_for_both_cues():
    env = envs.make("probe:memory")
    params = {"length": jnp.asarray(3)}  # a traced length, given as an array
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    cues = set()
    for seed in range(16):
        state, ts = reset(jax.random.key(seed), params)
        cue = float(ts.obs[0])
        for _ in range(2):
            state, ts = step(jax.random.key(0), state, jnp.int32(seed % 2), params)
            assert float(ts.reward) == 0.0 and not bool(ts.terminated)
        assert ts.obs.tolist() == [0.0, 1.0]  # the query, the cue gone
        good, bad = (1, 0) if cue > 0 else (0, 1)
        for action, reward in ((good, 1.0), (bad, 0.0)):
            _, last = step(jax.random.key(0), state, jnp.int32(action), params)
            assert float(last.reward) == reward, (cue, action)
            assert bool(last.terminated) and not bool(last.truncated)
            assert last.final_obs.tolist() == [0.0, 0.0]
        cues.add(cue)
    assert cues == {-1.0, 1.0}, "both cue signs drawn"


def test_memory_probe_returns_of_memoryless_and_remembering_policies(envtest):
    """Always 1 or always 0: ≈ 0.5 per episode; playing the remembered cue: exactly 1."""
    env = envs.make("probe:memory")
    episodes = 4096

    def run(key, length, mode):
        params = {"length": length}
        state, first = env.reset(key, params)

        def body(carry, key):
            state, remembered = carry
            action = jnp.where(mode == 2, (remembered > 0).astype(jnp.int32), mode)
            state, ts = env.step(key, state, action, params)
            return (state, remembered), (ts.reward, ts.terminated)

        keys = jax.random.split(key, 8)  # only the first `length` steps are summed
        _, (rewards, terminated) = jax.lax.scan(body, (state, first.obs[0]), keys)
        in_episode = jnp.arange(8) < length
        return jnp.sum(rewards * in_episode), jnp.sum(terminated * in_episode)

    batched = jax.vmap(run, in_axes=(0, None, None))
    keys = jax.random.split(jax.random.key(7), episodes)
    compiled = envtest.compile_cheap(batched, keys, jnp.int32(4), jnp.int32(1))
    for length in (4, 7):
        returns = {}
        for mode in (0, 1, 2):
            ret, ends = map(np.asarray, compiled(keys, jnp.int32(length), jnp.int32(mode)))
            np.testing.assert_array_equal(ends, 1)  # one episode per lane
            returns[mode] = ret.mean()
        assert abs(returns[1] - 0.5) < 0.04, returns
        assert returns[0] + returns[1] == pytest.approx(1.0)
        assert returns[2] == 1.0, returns


# ----------------------------------------------------------------------------- pomdp:CartPole


def test_pomdp_cartpole_registry_and_spaces():
    env = envs.make("pomdp:CartPole-v1")
    gymnax_env = envs.make("gymnax:CartPole-v1")
    assert isinstance(env, envs.SelectObservation) and env.name == "pomdp:CartPole-v1"
    assert env.observation_shape == (2,) and env.action_space == envs.Discrete(2)
    assert env.indices == (0, 2)
    assert env.default_params() == gymnax_env.default_params()
    assert env.default_params().max_steps_in_episode == 500
    assert "pomdp" in envs.BACKEND_NAMES and "pomdp:CartPole-v1" in envs.list_env_ids()
    envs.check_env_id("pomdp:CartPole-v1")
    for entry in (envs.make, envs.check_env_id):
        with pytest.raises(ValueError, match=r"pomdp has \['CartPole-v1'\]"):
            entry("pomdp:Acrobot-v1")


@pytest.fixture(scope="module")
def cartpole_pair(envtest):
    """``call(params)``: pomdp and gymnax CartPole, same keys and actions, ``[4, 150]`` steps."""
    pomdp, full = envs.make("pomdp:CartPole-v1"), envs.make("gymnax:CartPole-v1")

    def run(key, params):
        reset_key, steps_key = jax.random.split(key)
        p_state, p_first = pomdp.reset(reset_key, params)
        f_state, f_first = full.reset(reset_key, params)

        def body(carry, key):
            p_state, f_state = carry
            act_key, env_key = jax.random.split(key)
            action = jax.random.randint(act_key, (), 0, 2)
            p_state, p_ts = pomdp.step(env_key, p_state, action, params)
            f_state, f_ts = full.step(env_key, f_state, action, params)
            return (p_state, f_state), (p_ts, f_ts)

        keys = jax.random.split(steps_key, 150)
        _, (p_steps, f_steps) = jax.lax.scan(body, (p_state, f_state), keys)
        return p_first, f_first, p_steps, f_steps

    batched = jax.vmap(run, in_axes=(0, None))
    keys = jax.random.split(jax.random.key(3), 4)
    params = envs.with_time_limit(pomdp.default_params(), 30)
    compiled = envtest.compile_cheap(batched, keys, params)
    return lambda params: jax.tree.map(np.asarray, compiled(keys, params))


def assert_same_but_cut(p_ts, f_ts):
    assert p_ts.obs.shape == (*f_ts.obs.shape[:-1], 2)
    np.testing.assert_array_equal(p_ts.obs, f_ts.obs[..., CARTPOLE_KEPT])
    np.testing.assert_array_equal(p_ts.final_obs, f_ts.final_obs[..., CARTPOLE_KEPT])
    for name in ("reward", "terminated", "truncated"):
        np.testing.assert_array_equal(getattr(p_ts, name), getattr(f_ts, name), err_msg=name)


def test_pomdp_cartpole_is_gymnax_cartpole_without_velocities(cartpole_pair):
    params = envs.with_time_limit(envs.make("pomdp:CartPole-v1").default_params(), 30)
    p_first, f_first, p_steps, f_steps = cartpole_pair(params)
    assert_same_but_cut(p_first, f_first)
    assert_same_but_cut(p_steps, f_steps)
    # Both ways of ending happened (so final_obs was compared at both), never at once.
    terminated, truncated = p_steps.terminated, p_steps.truncated
    assert terminated.any() and truncated.any() and not (terminated & truncated).any()
    done = terminated | truncated
    assert (np.abs(p_steps.final_obs - p_steps.obs)[done].max(axis=-1) > 0).all()
    # The pole angle alone ends episodes by termination: past gymnax's 12 degrees.
    assert (np.abs(p_steps.final_obs[..., 1][terminated]) > 12 * 2 * np.pi / 360).any()


def test_pomdp_cartpole_time_limit_is_truncation(cartpole_pair):
    params = envs.with_time_limit(envs.make("pomdp:CartPole-v1").default_params(), 5)
    p_first, f_first, p_steps, f_steps = cartpole_pair(params)
    assert_same_but_cut(p_steps, f_steps)
    # CartPole cannot fall within 5 steps: every episode is cut by the time limit.
    pattern = (np.arange(150) + 1) % 5 == 0
    np.testing.assert_array_equal(p_steps.truncated, np.tile(pattern, (4, 1)))
    assert not p_steps.terminated.any()


def test_pomdp_cartpole_contract_under_jit_and_vmap(envtest):
    env = envs.make("pomdp:CartPole-v1")
    params = envs.with_time_limit(env.default_params(), 12)
    first, steps, *_ = contract_rollout(envtest, env, params, 3, 30)
    assert np.asarray(steps.truncated).any()


# ----------------------------------------------------------------------------- the wrapper


def test_select_observation_passes_masks_through(envtest):
    inner = envs.make("probe:masked")
    env = envs.SelectObservation(inner, [3, 0, 1])
    assert env.observation_shape == (3,) and env.name == inner.name

    def run(key):
        params = inner.default_params()
        state, first = env.reset(key, params)
        i_state, i_first = inner.reset(key, params)
        _, ts = env.step(key, state, jnp.int32(0), params)
        _, i_ts = inner.step(key, i_state, jnp.int32(0), params)
        return first, i_first, ts, i_ts

    first, i_first, ts, i_ts = envtest.run_jit(run, jax.random.key(0))
    for ours, theirs in ((first, i_first), (ts, i_ts)):
        for name in ("obs", "final_obs"):
            mine, full = getattr(ours, name), getattr(theirs, name)
            assert isinstance(mine, envs.MaskedObs)
            np.testing.assert_array_equal(mine.obs, np.asarray(full.obs)[[3, 0, 1]])
            np.testing.assert_array_equal(mine.action_mask, full.action_mask)


def test_select_observation_refuses_bad_selections():
    cartpole = envs.make("gymnax:CartPole-v1")
    for indices in ([], [4], [-1], [0, 7]):
        with pytest.raises(ValueError, match="indices"):
            envs.SelectObservation(cartpole, indices)
    with pytest.raises(ValueError, match="flat observation"):
        envs.SelectObservation(envs.make("gymnax:Breakout-MinAtar"), [0])
