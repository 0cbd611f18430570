"""Contract tests for the optional suite adapters: xminigrid, jumanji and craftax.

Each suite's tests skip when its package (the jaxpo extra of the same name) is missing. Every
compiled function is a short ``lax.scan`` rollout compiled once with cheap CPU code generation
(``envtest`` helpers from ``conftest.py``). Craftax's step compiles slowly: one slow test.
"""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpo import envs

INT32_MAX = int(np.iinfo(np.int32).max)


def need(package):
    pytest.importorskip(package, reason=f"the optional suite {package} is not installed")


def masked_random(env, key, obs):
    """A uniformly random legal action (any action where the obs carries no mask)."""
    if isinstance(obs, envs.MaskedObs) and isinstance(env.action_space, envs.Discrete):
        return jax.random.categorical(key, jnp.where(obs.action_mask, 0.0, -jnp.inf))
    if isinstance(env.action_space, envs.Discrete):
        return jax.random.randint(key, (), 0, env.action_space.n)
    return jax.random.randint(key, env.action_space.shape, 0, jnp.asarray(env.action_space.nvec))


def unmasked_random(env, key, obs):
    return jax.random.randint(key, (), 0, env.action_space.n)


def rollout_fn(env, num_steps, policy=masked_random):
    """``run(key, params) -> (reset TimeStep, steps, actions, states)``; the policy sees obs."""

    def run(key, params):
        reset_key, steps_key = jax.random.split(key)
        state, first = env.reset(reset_key, params)

        def body(carry, key):
            state, obs = carry
            act_key, env_key = jax.random.split(key)
            action = policy(env, act_key, obs)
            state, ts = env.step(env_key, state, action, params)
            return (state, ts.obs), (ts, action, state, obs)

        keys = jax.random.split(steps_key, num_steps)
        _, (steps, actions, states, acted_on) = jax.lax.scan(body, (state, first.obs), keys)
        return first, steps, actions, states, acted_on

    return run


def contract_rollout(envtest, env, params, lanes, num_steps):
    """``rollout_fn``'s outputs for ``lanes`` keys under ``jit(vmap)``, once the reset and the
    steps (masks aside) have passed the adapter contract."""
    run = rollout_fn(env, num_steps)
    keys = jax.random.split(jax.random.key(0), lanes)
    out = envtest.run_jit(jax.vmap(lambda k: run(k, params)), keys)
    first, steps = plain(out[0]), plain(out[1])
    envtest.assert_timestep_contract(first, env, (lanes,))
    envtest.assert_reset_timestep(first)
    envtest.assert_timestep_contract(steps, env, (lanes, num_steps))
    envtest.assert_final_obs_semantics(steps)
    return out


def plain(ts):
    """``ts`` with the observation proper in place of any ``MaskedObs``."""
    return ts._replace(obs=envs.features(ts.obs), final_obs=envs.features(ts.final_obs))


def assert_masked_contract(ts, env, batch):
    """MaskedObs in obs and final_obs: bool ``[n]`` masks, float32 features of the env's shape."""
    assert isinstance(ts.obs, envs.MaskedObs) and isinstance(ts.final_obs, envs.MaskedObs)
    for value in (ts.obs.action_mask, ts.final_obs.action_mask):
        assert value.shape == (*batch, env.action_space.n) and value.dtype == jnp.bool_


# ----------------------------------------------------------------------------- registry


def test_suite_ids_refusals_and_missing_extras(monkeypatch):
    installed = envs.suites.installed_suites()
    ids = envs.list_env_ids()
    for backend in envs.SUITES:
        assert backend in envs.BACKEND_NAMES
        assert any(i.startswith(f"{backend}:") for i in ids) == (backend in installed)
    with pytest.raises(ValueError, match="stable-gymnax"):
        envs.check_env_id("popgym_arcade:CartPoleEasy")
    with pytest.raises(ValueError, match="stable-gymnax"):
        envs.make("popgym_arcade:CartPoleEasy")
    if "jumanji" in installed:
        assert "jumanji:Snake-v1" in ids and "jumanji:Connector-v3" not in ids
        with pytest.raises(ValueError, match="reward per agent"):
            envs.check_env_id("jumanji:Connector-v3")
        with pytest.raises(ValueError, match="unknown environment"):
            envs.check_env_id("jumanji:NoSuchEnv-v0")
    if "craftax" in installed:
        envs.check_env_id("craftax:Craftax-Classic-Symbolic-v1")
        with pytest.raises(ValueError, match="unknown environment"):
            envs.check_env_id("craftax:Craftax-Classic-v0")
    # A suite that is not installed is refused with the extra to install, from both entries.
    monkeypatch.setattr(envs.suites, "suite_installed", lambda backend: False)
    for backend in envs.SUITES:
        for entry in (envs.check_env_id, envs.make):
            with pytest.raises(ValueError, match=rf"pip install 'jaxpo\[{backend}\]'"):
                entry(f"{backend}:Whatever")


def test_jaxpo_envs_imports_without_the_suites():
    blocked = "; ".join(f"sys.modules[{s!r}] = None" for s in envs.SUITES)
    code = (
        f"import sys; {blocked}\n"
        "from jaxpo import envs\n"
        "assert not envs.suites.installed_suites()\n"
        "assert not [i for i in envs.list_env_ids() if i.split(':')[0] in envs.SUITES]\n"
        "try:\n    envs.make('jumanji:Snake-v1')\n"
        "except ValueError as e:\n    assert \"pip install 'jaxpo[jumanji]'\" in str(e)\n"
        "else:\n    raise AssertionError('made without jumanji')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


# ----------------------------------------------------------------------------- xminigrid


def test_xminigrid_contract_under_jit_and_vmap(envtest):
    need("xminigrid")
    env = envs.make("xminigrid:MiniGrid-EmptyRandom-6x6")
    assert env.action_space == envs.Discrete(6) and env.observation_shape == (7, 7, 2)
    assert int(env.default_params().max_steps_in_episode) == 144  # xminigrid's 4 * H * W
    params = envs.with_time_limit(env.default_params(), 5)
    first, steps, _, states, _ = contract_rollout(envtest, env, params, 3, 12)
    # A 5-step limit: every lane is done by its 5th step; the counter restarts at 0.
    assert np.asarray(steps.terminated | steps.truncated)[:, :5].any(axis=1).all()
    done = np.asarray(steps.terminated | steps.truncated)
    assert (np.asarray(states.time)[done] == 0).all()
    # Different keys give different starts (EmptyRandom places the agent at random).
    assert np.abs(np.asarray(first.obs[0] - first.obs[1])).max() > 0


def test_xminigrid_termination_truncation_and_keys(envtest):
    need("xminigrid")
    env = envs.make("xminigrid:MiniGrid-Empty-5x5")
    forward, right = 0, 1
    path = jnp.array([forward, forward, right, forward, forward, forward], jnp.int32)

    def scripted(params, stored_key):
        state, first = env.reset(jax.random.key(0), params)

        def body(state, xs):
            key, action = xs
            inner = state.timestep.state.replace(key=stored_key)  # garbage: must be ignored
            state = state.replace(timestep=state.timestep.replace(state=inner))
            state, ts = env.step(key, state, action, params)
            return state, (ts, state)

        keys = jax.random.split(jax.random.key(1), len(path))
        return first, *jax.lax.scan(body, state, (keys, path))[1]

    default = env.default_params()
    run = envtest.compile_cheap(scripted, default, jnp.zeros(2, jnp.uint32))
    first, free, free_states = run(default, jnp.zeros(2, jnp.uint32))
    _, other_key, other_states = run(default, jnp.full(2, 7, jnp.uint32))
    _, cut, _ = run(envs.with_time_limit(default, 3), jnp.zeros(2, jnp.uint32))

    # Right, down, down from (1, 1) reaches the goal at (3, 3) on step 5: termination, with
    # xminigrid's reward 1 - 0.9 * 5 / 100; the next obs is the fixed start view again.
    np.testing.assert_array_equal(free.terminated, [0, 0, 0, 0, 1, 0])
    assert not np.asarray(free.truncated).any()
    np.testing.assert_allclose(free.reward[4], 1 - 0.9 * 5 / 100, rtol=1e-6)
    np.testing.assert_array_equal(free.obs[4], first.obs)
    assert np.abs(free.final_obs[4] - free.obs[4]).max() > 0
    # A 3-step limit truncates (not terminates) on step 3 and restarts the episode.
    np.testing.assert_array_equal(cut.truncated, [0, 0, 1, 0, 0, 1])
    assert not np.asarray(cut.terminated).any()
    np.testing.assert_array_equal(cut.final_obs[2], free.obs[2])
    np.testing.assert_array_equal(cut.obs[2], first.obs)
    # The key stored in xminigrid's state plays no part: the step key replaces it.
    scrambled = jax.tree.leaves((other_key, other_states))
    for got, want in zip(scrambled, jax.tree.leaves((free, free_states)), strict=True):
        np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------- jumanji

JUMANJI_SPACES = {
    "Minesweeper-v0": (100, (102,)),
    "Knapsack-v1": (50, (150,)),
    "Snake-v1": (4, (721,)),
}


@pytest.mark.parametrize("name", list(JUMANJI_SPACES))
def test_jumanji_contract_masks_and_autoreset(name, envtest):
    need("jumanji")
    env = envs.make(f"jumanji:{name}")
    n, obs_shape = JUMANJI_SPACES[name]
    assert env.action_space == envs.Discrete(n) and env.observation_shape == obs_shape
    params = envs.with_time_limit(env.default_params(), 12)
    first, steps, actions, _, acted_on = contract_rollout(envtest, env, params, 3, 30)

    assert_masked_contract(first, env, (3,))
    assert_masked_contract(steps, env, (3, 30))
    going_on = ~np.asarray(steps.terminated | steps.truncated)
    np.testing.assert_array_equal(
        np.asarray(steps.final_obs.action_mask)[going_on],
        np.asarray(steps.obs.action_mask)[going_on],
    )
    # The masked random policy only ever plays legal actions.
    legal = np.take_along_axis(np.asarray(acted_on.action_mask), np.asarray(actions)[..., None], -1)
    assert legal.all()
    # Every lane ends an episode within the 12-step limit; keys give different first obs.
    assert np.asarray(~going_on)[:, :12].any(axis=1).all()
    if name != "Minesweeper-v0":  # Minesweeper's first obs is the same all-unexplored board
        assert np.abs(np.asarray(first.obs.obs[0] - first.obs.obs[1])).max() > 0


def test_jumanji_minesweeper_flat_action_maps_to_row_col(envtest):
    need("jumanji")
    env = envs.make("jumanji:Minesweeper-v0")
    suite = env.jumanji_env
    flat = jnp.array([0, 9, 10, 37, 99], jnp.int32)

    def compare(key, a):
        state, first = env.reset(key, env.default_params())
        _, ts = env.step(jax.random.key(5), state, a, env.default_params())
        _, want = suite.step(state.env_state, jnp.stack([a // 10, a % 10]))
        return first, ts, want

    first, ts, want = envtest.run_jit(jax.vmap(compare, (None, 0)), jax.random.key(3), flat)
    np.testing.assert_array_equal(
        jax.vmap(env.suite_action)(flat), np.stack([flat // 10, flat % 10], 1)
    )
    np.testing.assert_array_equal(
        ts.final_obs.obs[:, :100], np.asarray(want.observation.board).reshape(5, 100)
    )
    np.testing.assert_array_equal(
        ts.final_obs.action_mask, np.asarray(want.observation.action_mask).reshape(5, 100)
    )
    np.testing.assert_array_equal(ts.reward, want.reward)
    # Each revealed square is the one the flat index names (row-major), and is now illegal.
    assert first.obs.action_mask.all()
    board = np.asarray(ts.final_obs.obs[:, :100])
    assert (board[np.arange(5), flat] != -1).all()
    assert not np.asarray(ts.final_obs.action_mask)[np.arange(5), flat].any()


def test_jumanji_minesweeper_unmasked_policy_is_punished(envtest):
    need("jumanji")
    env = envs.make("jumanji:Minesweeper-v0")
    keys = jax.random.split(jax.random.key(1), 8)
    params = env.default_params()
    runs = {}
    for label, policy in (("masked", masked_random), ("unmasked", unmasked_random)):
        run = rollout_fn(env, 25, policy)
        runs[label] = envtest.run_jit(jax.vmap(run, (0, None)), keys, params)

    def illegal(run):
        _, steps, actions, _, acted_on = run
        legal = np.take_along_axis(
            np.asarray(acted_on.action_mask), np.asarray(actions)[..., None], -1
        )
        return ~legal[..., 0], steps

    never, _ = illegal(runs["masked"])
    assert not never.any()
    bad, steps = illegal(runs["unmasked"])
    # Unmasked, random picks hit revealed squares: each such step ends the episode, unrewarded.
    assert bad.any()
    assert np.asarray(steps.terminated)[bad].all()
    np.testing.assert_array_equal(np.asarray(steps.reward)[bad], 0.0)
    assert not np.asarray(steps.truncated).any()


def test_jumanji_snake_time_limit_is_truncation(envtest):
    need("jumanji")
    env = envs.make("jumanji:Snake-v1")
    assert int(env.default_params().max_steps_in_episode) == 4000  # the suite's time_limit
    assert env.jumanji_env.time_limit > 10**9  # the suite's own limit is out of reach
    knapsack = envs.make("jumanji:Knapsack-v1").default_params()
    assert int(knapsack.max_steps_in_episode) == INT32_MAX  # no limit of its own

    key, params = jax.random.key(4), env.default_params()
    run = envtest.compile_cheap(rollout_fn(env, 7), key, params)
    _, free, _, _, _ = run(key, params)
    _, cut, _, states, _ = run(key, envs.with_time_limit(params, 3))
    assert not np.asarray(free.terminated | free.truncated)[:7].any()
    np.testing.assert_array_equal(cut.truncated, [0, 0, 1, 0, 0, 1, 0])
    assert not np.asarray(cut.terminated).any()
    np.testing.assert_array_equal(states.time, [1, 2, 0, 1, 2, 0, 1])
    np.testing.assert_array_equal(cut.final_obs.obs[2], free.obs.obs[2])
    assert np.abs(cut.obs.obs[2] - cut.final_obs.obs[2]).max() > 0

    # The key kept in Snake's state (which places new fruit) is overwritten by the step key.
    state, _ = env.reset(key, params)
    scrambled = state.replace(env_state=state.env_state.replace(key=jnp.full(2, 9, jnp.uint32)))
    for action in range(4):
        a = env.step(jax.random.key(6), state, action, params)
        b = env.step(jax.random.key(6), scrambled, action, params)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------------------- craftax


@pytest.mark.slow
def test_craftax_classic_contract_and_time_limit(envtest):
    need("craftax")
    env = envs.make("craftax:Craftax-Classic-Symbolic-v1")
    assert env.action_space == envs.Discrete(17) and env.observation_shape == (1345,)
    default = env.default_params()
    assert int(default.max_steps_in_episode) == 10000
    assert int(default.suite.max_timesteps) == INT32_MAX  # the suite's own limit out of reach

    params = envs.with_time_limit(default, 3)
    first, steps, _, states, _ = contract_rollout(envtest, env, params, 2, 7)
    # Random play does not die in 7 steps: the 3-step limit is truncation, never termination.
    np.testing.assert_array_equal(steps.truncated, [[0, 0, 1, 0, 0, 1, 0]] * 2)
    assert not np.asarray(steps.terminated).any()
    np.testing.assert_array_equal(states.time, [[1, 2, 0, 1, 2, 0, 1]] * 2)
    assert np.abs(np.asarray(first.obs[0] - first.obs[1])).max() > 0  # worlds from the key
