"""The five probe environments follow the dynamics table in ``envs/probes.py``.

Each probe is rolled out over many keys with random actions, and every transition is checked
against a reference model of the table, written from the previous observation and the action.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpo import envs

NUM_ENVS, NUM_STEPS = 64, 6


def rollout(envtest, env):
    """``(first, steps, actions)`` for a vmapped random-action rollout; steps ``[envs, T]``."""

    def run(key):
        reset_key, steps_key = jax.random.split(key)
        state, first = env.reset(reset_key, {})

        def body(state, key):
            act_key, env_key = jax.random.split(key)
            action = jax.random.randint(act_key, (), 0, 2)
            state, ts = env.step(env_key, state, action, {})
            return state, (ts, action)

        _, (steps, actions) = jax.lax.scan(body, state, jax.random.split(steps_key, NUM_STEPS))
        return first, steps, actions

    keys = jax.random.split(jax.random.key(0), NUM_ENVS)
    first, steps, actions = envtest.run_jit(jax.vmap(run), keys)
    return first, jax.tree.map(np.asarray, steps), np.asarray(actions)


def expected_transition(kind, prev_obs, action):
    """The table: ``(reward, terminated, final_obs or None, next obs or None)``.

    ``None`` where the value is random (a fresh ±1 start) or left open by the table.
    """
    if kind == "constant":
        return 1.0, True, 0.0, 0.0
    if kind == "observation":
        return prev_obs, True, prev_obs, None
    if kind == "delayed":
        if prev_obs == 0.0:
            return 0.0, False, 1.0, 1.0
        assert prev_obs == 1.0
        return 1.0, True, None, 0.0  # the terminal observation is never bootstrapped from
    if kind == "action":
        return float(action == 1), True, 0.0, 0.0
    assert kind == "observation_action"
    return float(action == int(prev_obs > 0)), True, prev_obs, None


def test_probe_spaces_and_errors():
    assert set(envs.PROBES) == {
        "constant",
        "observation",
        "delayed",
        "action",
        "observation_action",
    }
    for kind in envs.PROBES:
        env = envs.make(f"probe:{kind}")
        assert isinstance(env, envs.ProbeEnv)
        assert env.name == f"probe:{kind}"
        assert env.observation_shape == (1,)
        assert env.action_space == envs.Discrete(2)
        assert env.default_params() == {}
    with pytest.raises(ValueError):
        envs.make("probe:nope")
    with pytest.raises(ValueError):
        envs.ProbeEnv("nope")


@pytest.mark.parametrize("kind", envs.PROBES)
def test_probe_dynamics_match_table(kind, envtest):
    env = envs.make(f"probe:{kind}")
    first, steps, actions = rollout(envtest, env)

    envtest.assert_timestep_contract(first, env, (NUM_ENVS,))
    envtest.assert_reset_timestep(first)
    envtest.assert_timestep_contract(steps, env, (NUM_ENVS, NUM_STEPS))
    envtest.assert_continuing_final_obs(steps)
    assert not steps.truncated.any(), "probe episodes only end by termination"

    start_values = {-1.0, 1.0} if kind in ("observation", "observation_action") else {0.0}
    assert set(np.unique(first.obs)) == start_values

    for e in range(NUM_ENVS):
        prev_obs = float(first.obs[e, 0])
        for t in range(NUM_STEPS):
            reward, terminated, final_obs, obs = expected_transition(
                kind, prev_obs, int(actions[e, t])
            )
            where = f"{kind}: env {e} step {t} prev_obs {prev_obs} action {actions[e, t]}"
            assert steps.reward[e, t] == reward, where
            assert bool(steps.terminated[e, t]) == terminated, where
            if final_obs is not None:
                assert steps.final_obs[e, t, 0] == final_obs, where
            if obs is not None:
                assert steps.obs[e, t, 0] == obs, where
            # After a termination the next episode starts from a valid start observation.
            if terminated:
                assert float(steps.obs[e, t, 0]) in start_values, where
            prev_obs = float(steps.obs[e, t, 0])

    if kind in ("observation", "observation_action"):
        # Both signs occur, roughly equally often, including after auto-resets.
        share = (steps.obs > 0).mean()
        assert 0.35 < share < 0.65
    if kind in ("action", "observation_action"):
        # Random actions earn the reward about half of the time: the action matters.
        assert 0.35 < steps.reward.mean() < 0.65
    if kind == "delayed":
        # Episodes alternate obs 0 -> 1 -> (reset) 0, so reward 1 comes every second step.
        period = np.tile([[1.0, 0.0]], (NUM_ENVS, NUM_STEPS // 2))
        np.testing.assert_array_equal(steps.obs[:, :, 0], period)
        np.testing.assert_array_equal(steps.reward, 1.0 - period)
        np.testing.assert_array_equal(steps.terminated, period == 0.0)


def test_probe_observation_action_rewards_matching_sign():
    env = envs.make("probe:observation_action")
    for seed in range(8):
        state, ts = env.reset(jax.random.key(seed), {})
        sign = float(ts.obs[0])
        good, bad = (1, 0) if sign > 0 else (0, 1)
        assert float(env.step(jax.random.key(99), state, jnp.int32(good), {})[1].reward) == 1.0
        assert float(env.step(jax.random.key(99), state, jnp.int32(bad), {})[1].reward) == 0.0
