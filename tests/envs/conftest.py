"""Shared helpers for the environment-layer tests.

Test modules reach the helpers through the ``envtest`` fixture (this module itself), so no
``sys.path`` tricks or ``__init__.py`` files are needed.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpo import envs

# These tests check behaviour, not speed, so XLA's expensive CPU code generation is skipped:
# it roughly halves compile time (which dominates) on a small CPU-only machine.
_CHEAP_CPU_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
}


def compile_cheap(fn, *example_args):
    """``jax.jit(fn)`` compiled for ``example_args`` (cheap code generation on CPU)."""
    options = _CHEAP_CPU_COMPILE if jax.default_backend() == "cpu" else {}
    return jax.jit(fn).lower(*example_args).compile(compiler_options=options)


def run_jit(fn, *args):
    """``jax.jit(fn)(*args)``, compiled cheaply."""
    return compile_cheap(fn, *args)(*args)


def sample_action(env, key):
    """A uniformly random action of the right kind: int for Discrete, vector for Box."""
    if isinstance(env.action_space, envs.Discrete):
        return jax.random.randint(key, (), 0, env.action_space.n)
    low = jnp.asarray(env.action_space.low, jnp.float32)
    high = jnp.asarray(env.action_space.high, jnp.float32)
    return jax.random.uniform(key, env.action_space.shape, minval=low, maxval=high)


def constant_action(value):
    """A policy that always plays ``value`` (broadcast to a Box's shape)."""

    def policy(env, key):
        del key
        if isinstance(env.action_space, envs.Discrete):
            return jnp.int32(value)
        return jnp.full(env.action_space.shape, value, jnp.float32)

    return policy


def rollout_fn(env, num_steps, policy=sample_action):
    """``run(key, params) -> (reset TimeStep, step TimeSteps [num_steps], states [num_steps])``."""

    def run(key, params):
        reset_key, steps_key = jax.random.split(key)
        state, first = env.reset(reset_key, params)

        def body(state, key):
            act_key, env_key = jax.random.split(key)
            state, ts = env.step(env_key, state, policy(env, act_key), params)
            return state, (ts, state)

        _, (steps, states) = jax.lax.scan(body, state, jax.random.split(steps_key, num_steps))
        return first, steps, states

    return run


def assert_timestep_contract(ts, env, batch):
    """Field shapes and dtypes of a (batched) TimeStep."""
    assert isinstance(ts, envs.TimeStep)
    obs_shape = (*batch, *env.observation_shape)
    for name in ("obs", "final_obs"):
        value = getattr(ts, name)
        assert value.shape == obs_shape, (name, value.shape, obs_shape)
        assert value.dtype == jnp.float32, (name, value.dtype)
        assert np.isfinite(np.asarray(value)).all(), name
    assert ts.reward.shape == batch and ts.reward.dtype == jnp.float32
    assert np.isfinite(np.asarray(ts.reward)).all()
    for name in ("terminated", "truncated"):
        value = getattr(ts, name)
        assert value.shape == batch and value.dtype == jnp.bool_, (name, value.shape, value.dtype)
    assert isinstance(ts.info, dict)


def assert_reset_timestep(first):
    """``reset`` returns reward 0, no done flags and ``final_obs == obs``."""
    np.testing.assert_array_equal(first.reward, 0.0)
    assert not np.asarray(first.terminated).any()
    assert not np.asarray(first.truncated).any()
    np.testing.assert_array_equal(first.final_obs, first.obs)


def assert_continuing_final_obs(steps):
    """Wherever the episode goes on, ``final_obs == obs``; the done flags are exclusive."""
    terminated = np.asarray(steps.terminated)
    truncated = np.asarray(steps.truncated)
    assert not (terminated & truncated).any(), "terminated and truncated are exclusive"
    going_on = ~(terminated | truncated)
    np.testing.assert_array_equal(
        np.asarray(steps.final_obs)[going_on], np.asarray(steps.obs)[going_on]
    )


def assert_final_obs_semantics(steps):
    """final_obs == obs while the episode goes on; differs from the fresh obs when done."""
    assert_continuing_final_obs(steps)
    done = np.asarray(steps.terminated | steps.truncated)
    assert done.any(), "rollout too short to test auto-reset"
    assert (~done).any()
    obs, final_obs = np.asarray(steps.obs), np.asarray(steps.final_obs)
    per_step_diff = np.abs(final_obs[done] - obs[done]).reshape(int(done.sum()), -1).max(axis=1)
    assert (per_step_diff > 0).all(), "on a done step obs must be the next episode's first obs"


@pytest.fixture(scope="session")
def envtest():
    """This module: ``envtest.rollout_fn``, ``envtest.compile_cheap``, the assertions, ..."""
    return sys.modules[__name__]
