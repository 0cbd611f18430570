"""GAE against a plain Python loop, in float64, and its episode-boundary semantics."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from helpers import random_rollout
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxpo.advantages import gae


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def reference_gae(rewards, values, next_values, terminated, done, gamma, lam):
    """Per env column, backwards: δ = r + γ(1−term)V(next) − V; Â = δ + γλ(1−done)Â_next."""
    T, B = rewards.shape
    adv = np.zeros((T, B), np.float64)
    for b in range(B):
        adv_next = 0.0
        for t in reversed(range(T)):
            delta = (
                rewards[t, b]
                + gamma * (1.0 - float(terminated[t, b])) * next_values[t, b]
                - values[t, b]
            )
            adv_next = delta + gamma * lam * (1.0 - float(done[t, b])) * adv_next
            adv[t, b] = adv_next
    return adv


# gamma and lambda are traced, so only new shapes compile.
gae_jit = jax.jit(gae)


def run_gae(rewards, values, next_values, terminated, done, gamma, lam):
    adv, ret = gae_jit(rewards, values, next_values, terminated, done, gamma, lam)
    return np.asarray(adv), np.asarray(ret)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    T=st.sampled_from([1, 7, 16]),
    B=st.sampled_from([1, 3]),
    p_term=st.sampled_from([0.0, 0.1, 0.3]),
    p_trunc=st.sampled_from([0.0, 0.1, 0.3]),
    gamma=st.floats(0.5, 1.0),
    lam=st.floats(0.0, 1.0),
)
def test_gae_matches_python_loop(seed, T, B, p_term, p_trunc, gamma, lam):
    rng = np.random.default_rng(seed)
    rollout = random_rollout(rng, T, B, p_term, p_trunc)
    adv, ret = run_gae(*rollout, gamma, lam)
    assert adv.dtype == np.float64
    expected = reference_gae(*rollout, gamma, lam)
    np.testing.assert_allclose(adv, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ret, expected + rollout[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_gae_matches_python_loop_eager(seed):
    rng = np.random.default_rng(1000 + seed)
    T, B = 32, 4
    gamma, lam = rng.uniform(0.8, 1.0), rng.uniform(0.0, 1.0)
    rollout = random_rollout(rng, T, B, 0.15, 0.15)
    adv, ret = gae(*rollout, gamma, lam)  # not jitted
    adv, ret = np.asarray(adv), np.asarray(ret)
    assert adv.dtype == np.float64 and adv.shape == (T, B)
    np.testing.assert_allclose(adv, reference_gae(*rollout, gamma, lam), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(ret, adv + rollout[1])


def boundary_rollout(kind, boundary=2, T=6):
    rng = np.random.default_rng(7)
    rewards = rng.normal(size=(T, 1))
    values = rng.normal(size=(T, 1))
    next_values = rng.normal(size=(T, 1))
    terminated = np.zeros((T, 1), bool)
    done = np.zeros((T, 1), bool)
    done[boundary] = True
    if kind == "terminated":
        terminated[boundary] = True
    return rewards, values, next_values, terminated, done


@pytest.mark.parametrize("kind", ["truncated", "terminated"])
def test_boundary_bootstrap(kind):
    gamma, lam, t = 0.9, 0.8, 2
    r, v, nv, term, done = boundary_rollout(kind, boundary=t)
    adv, _ = run_gae(r, v, nv, term, done, gamma, lam)
    bootstrap = gamma * nv[t, 0] if kind == "truncated" else 0.0
    # At the boundary: a one-step TD error, bootstrapped from V(final_obs) or 0.
    np.testing.assert_allclose(adv[t, 0], r[t, 0] + bootstrap - v[t, 0], rtol=1e-12)
    # One step before it: its own δ plus γλ·Â_boundary.
    delta = r[t - 1, 0] + gamma * nv[t - 1, 0] - v[t - 1, 0]
    np.testing.assert_allclose(adv[t - 1, 0], delta + gamma * lam * adv[t, 0], rtol=1e-12)


@pytest.mark.parametrize("kind", ["truncated", "terminated"])
def test_nothing_leaks_across_boundary(kind):
    gamma, lam, t = 0.99, 0.95, 2
    r, v, nv, term, done = boundary_rollout(kind, boundary=t)
    adv, _ = run_gae(r, v, nv, term, done, gamma, lam)

    # Everything after the boundary changes: rewards, values, next values.
    r2, v2, nv2 = r.copy(), v.copy(), nv.copy()
    r2[t + 1 :] += 10.0
    v2[t + 1 :] -= 7.0
    nv2[t + 1 :] += 3.0
    adv2, _ = run_gae(r2, v2, nv2, term, done, gamma, lam)
    np.testing.assert_array_equal(adv2[: t + 1], adv[: t + 1])
    assert not np.allclose(adv2[t + 1 :], adv[t + 1 :])  # the test can see a change

    # V(final_obs) at the boundary only matters when the episode was truncated.
    nv3 = nv.copy()
    nv3[t] += 5.0
    adv3, _ = run_gae(r, v, nv3, term, done, gamma, lam)
    np.testing.assert_array_equal(adv3[t + 1 :], adv[t + 1 :])
    if kind == "truncated":
        np.testing.assert_allclose(adv3[t] - adv[t], gamma * 5.0, rtol=1e-12)
        np.testing.assert_allclose(adv3[t - 1] - adv[t - 1], gamma * lam * gamma * 5.0, rtol=1e-12)
    else:
        np.testing.assert_array_equal(adv3, adv)


def test_no_boundary_bootstraps_rollout_end():
    gamma, lam = 0.9, 0.7
    rng = np.random.default_rng(3)
    T, B = 5, 2
    r, v, nv = rng.normal(size=(3, T, B))
    false = np.zeros((T, B), bool)
    adv, ret = run_gae(r, v, nv, false, false, gamma, lam)
    np.testing.assert_allclose(adv[-1], r[-1] + gamma * nv[-1] - v[-1], rtol=1e-12)
    np.testing.assert_array_equal(ret, adv + v)


def test_lambda_zero_is_td_and_lambda_one_is_monte_carlo():
    rng = np.random.default_rng(4)
    T, B = 7, 3
    r = rng.normal(size=(T, B))
    v = rng.normal(size=(T, B))
    last = rng.normal(size=(B,))
    nv = np.concatenate([v[1:], last[None]])  # consistent V(s_{t+1}), no boundaries
    false = np.zeros((T, B), bool)
    gamma = 0.9

    adv0, _ = run_gae(r, v, nv, false, false, gamma, 0.0)
    np.testing.assert_allclose(adv0, r + gamma * nv - v, rtol=1e-12, atol=1e-12)

    _, ret1 = run_gae(r, v, nv, false, false, gamma, 1.0)
    mc = np.zeros((T, B))
    acc = last.copy()
    for t in reversed(range(T)):
        acc = r[t] + gamma * acc
        mc[t] = acc
    np.testing.assert_allclose(ret1, mc, rtol=1e-12, atol=1e-12)


def test_columns_are_independent():
    rng = np.random.default_rng(5)
    rollout = random_rollout(rng, 10, 3, 0.2, 0.2)
    adv, _ = run_gae(*rollout, 0.99, 0.95)
    for b in range(3):
        column = [x[:, b : b + 1] for x in rollout]
        adv_b, _ = run_gae(*column, 0.99, 0.95)
        np.testing.assert_allclose(adv_b[:, 0], adv[:, b], rtol=1e-12, atol=1e-12)
