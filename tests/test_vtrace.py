"""V-trace against GAE on-policy, against a float64 loop over IMPALA's explicit sum, and traced."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_rollout

from jaxpo.advantages import gae, vtrace

vtrace_jit = jax.jit(vtrace)


def as_f32(rollout):
    return tuple(x.astype(np.float32) if x.dtype == np.float64 else x for x in rollout)


def reference_vtrace(
    rewards, values, next_values, terminated, done, log_rhos, gamma, lam, rho_bar, c_bar
):
    """IMPALA's explicit sum per column, in float64, cut after the first done step.

    v_s = V(s_s) + Σ_{t≥s} γ^{t−s}(Π_{s≤i<t} c_i)ρ_t δ_t;
    pg_s = ρ_s(δ_s + γλ(1−done_s)(v_{s+1} − V(s_{s+1}))), with v_T − V_T := 0.
    """
    T, B = rewards.shape
    ratios = np.exp(log_rhos.astype(np.float64))
    rho = np.minimum(rho_bar, ratios)
    c = lam * np.minimum(c_bar, ratios)
    delta = rewards + gamma * (1.0 - terminated) * next_values - values
    targets = np.zeros((T, B), np.float64)
    pg = np.zeros((T, B), np.float64)
    for b in range(B):
        for s in range(T):
            acc, weight = 0.0, 1.0  # weight = γ^{t−s} Π_{s≤i<t} c_i
            for t in range(s, T):
                acc += weight * rho[t, b] * delta[t, b]
                if done[t, b]:
                    break
                weight *= gamma * c[t, b]
            targets[s, b] = values[s, b] + acc
        for s in range(T):
            next_corr = targets[s + 1, b] - values[s + 1, b] if s + 1 < T else 0.0
            cont = 1.0 - float(done[s, b])
            pg[s, b] = rho[s, b] * (delta[s, b] + gamma * lam * cont * next_corr)
    return pg, targets


@pytest.mark.parametrize("lam", [0.0, 0.95, 1.0])
@pytest.mark.parametrize("seed", range(3))
def test_on_policy_unclipped_is_gae(seed, lam):
    rng = np.random.default_rng(seed)
    T, B = 16, 4
    rollout = as_f32(random_rollout(rng, T, B))
    assert rollout[3].any() and (rollout[4] & ~rollout[3]).any()  # terminations, truncations
    gamma = 0.97
    log_rhos = np.zeros((T, B), np.float32)
    pg, targets = vtrace_jit(*rollout, log_rhos, gamma, lam, 1.0, 1.0)
    adv, ret = gae(*rollout, gamma, lam)
    assert pg.dtype == jnp.float32 and pg.shape == targets.shape == (T, B)
    np.testing.assert_allclose(pg, adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets, ret, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rho_bar", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("c_bar", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("seed", range(4))
def test_matches_explicit_sum(seed, rho_bar, c_bar):
    rng = np.random.default_rng(100 + seed)
    T, B = 7, 3
    rollout = random_rollout(rng, T, B)
    log_rhos = rng.normal(scale=0.7, size=(T, B))
    gamma, lam = rng.uniform(0.8, 1.0), rng.uniform(0.5, 1.0)
    expected_pg, expected_targets = reference_vtrace(*rollout, log_rhos, gamma, lam, rho_bar, c_bar)
    with jax.enable_x64(True):
        pg, targets = vtrace_jit(*rollout, log_rhos, gamma, lam, rho_bar, c_bar)
        assert pg.dtype == jnp.float64
        np.testing.assert_allclose(pg, expected_pg, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(targets, expected_targets, rtol=1e-10, atol=1e-10)
    pg32, targets32 = vtrace_jit(
        *as_f32(rollout), log_rhos.astype(np.float32), gamma, lam, rho_bar, c_bar
    )
    np.testing.assert_allclose(pg32, expected_pg, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets32, expected_targets, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_lambda_one_policy_advantage_is_impalas(seed):
    """At λ = 1 the policy advantage is IMPALA's ρ_s(r_s + γ·v_{s+1} − V(s_s)), with the
    bootstrap V(final_obs_s) where the episode ended at s and after the last step."""
    rng = np.random.default_rng(100 + seed)
    T, B, gamma = 6, 3, 0.9
    rewards, values, next_values, terminated, done = random_rollout(rng, T, B)
    # consistent data: where the episode goes on, the next observation is the next step's
    next_values[:-1] = np.where(done[:-1], next_values[:-1], values[1:])
    log_rhos = rng.normal(scale=0.5, size=(T, B))
    pg, targets = vtrace_jit(
        *as_f32((rewards, values, next_values, terminated, done, log_rhos)), gamma, 1.0, 1.2, 0.9
    )
    targets = np.asarray(targets, np.float64)
    rho = np.minimum(1.2, np.exp(log_rhos))
    expected = np.zeros((T, B))
    for s in range(T):
        for b in range(B):
            ended = done[s, b] or s == T - 1
            next_v = next_values[s, b] if ended else targets[s + 1, b]
            bootstrap = 0.0 if terminated[s, b] else gamma * next_v
            expected[s, b] = rho[s, b] * (rewards[s, b] + bootstrap - values[s, b])
    np.testing.assert_allclose(np.asarray(pg), expected, rtol=1e-4, atol=1e-4)


def test_clipping_matters_and_is_a_min():
    rng = np.random.default_rng(7)
    T, B = 8, 3
    rollout = as_f32(random_rollout(rng, T, B, p_term=0.0, p_trunc=0.0))
    gamma, lam = 0.9, 0.9
    big = np.full((T, B), np.log(5.0), np.float32)  # π/μ = 5
    small = np.full((T, B), np.log(0.5), np.float32)  # π/μ = 0.5

    pg1, tg1 = vtrace_jit(*rollout, big, gamma, lam, 1.0, 1.0)
    pg10, tg10 = vtrace_jit(*rollout, big, gamma, lam, 10.0, 10.0)
    assert not np.allclose(pg1, pg10) and not np.allclose(tg1, tg10)
    # Ratios above ρ̄ = c̄ = 1 clip to 1: the same as on-policy.
    adv, ret = gae(*rollout, gamma, lam)
    np.testing.assert_allclose(pg1, adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tg1, ret, rtol=1e-5, atol=1e-5)
    # Ratios below ρ̄ and c̄ are not clipped: 1 and 10 give the same.
    pg1s, tg1s = vtrace_jit(*rollout, small, gamma, lam, 1.0, 1.0)
    pg10s, tg10s = vtrace_jit(*rollout, small, gamma, lam, 10.0, 10.0)
    np.testing.assert_allclose(pg1s, pg10s, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tg1s, tg10s, rtol=1e-6, atol=1e-6)
    assert not np.allclose(tg1s, ret)  # and the weights do act

    # ρ̄ clips only ρ (the TD-error weight), c̄ only c (the trace): at the last step the trace
    # plays no part, so c̄ cannot change it while ρ̄ does.
    _, tg_c = vtrace_jit(*rollout, big, gamma, lam, 1.0, 10.0)
    _, tg_r = vtrace_jit(*rollout, big, gamma, lam, 10.0, 1.0)
    np.testing.assert_allclose(tg_c[-1], tg1[-1], rtol=1e-6)
    np.testing.assert_allclose(tg_r[-1], tg10[-1], rtol=1e-6)
    assert not np.allclose(tg_c[:-1], tg1[:-1]) and not np.allclose(tg_r[:-1], tg10[:-1])


def test_lambda_zero_is_one_step():
    rng = np.random.default_rng(8)
    T, B = 6, 3
    rollout = as_f32(random_rollout(rng, T, B))
    r, v, nv, term, _ = rollout
    log_rhos = rng.normal(size=(T, B)).astype(np.float32)
    gamma, rho_bar = 0.9, 1.5
    pg, targets = vtrace_jit(*rollout, log_rhos, gamma, 0.0, rho_bar, 1.0)
    rho = np.minimum(rho_bar, np.exp(log_rhos))
    delta = r + gamma * (1.0 - term) * nv - v
    np.testing.assert_allclose(targets, v + rho * delta, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pg, rho * delta, rtol=1e-5, atol=1e-5)


def test_jit_and_vmap_over_traced_clip_levels():
    rng = np.random.default_rng(9)
    T, B = 7, 3
    rollout = as_f32(random_rollout(rng, T, B))
    log_rhos = rng.normal(size=(T, B)).astype(np.float32)
    rho_bars = jnp.array([0.5, 1.0, 2.0, 10.0])
    c_bars = jnp.array([2.0, 1.0, 0.5, 10.0])
    gamma, lam = jnp.float32(0.95), jnp.float32(0.9)

    in_axes = (None,) * 8 + (0, 0)
    batched = jax.jit(jax.vmap(vtrace, in_axes=in_axes))
    pgs, tgs = batched(*rollout, log_rhos, gamma, lam, rho_bars, c_bars)
    assert pgs.shape == tgs.shape == (4, T, B)
    for k in range(4):
        pg, tg = vtrace(*rollout, log_rhos, gamma, lam, float(rho_bars[k]), float(c_bars[k]))
        np.testing.assert_allclose(pgs[k], pg, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(tgs[k], tg, rtol=1e-6, atol=1e-6)
    # The clip levels reach the result: different ones give different targets.
    assert not np.allclose(tgs[0], tgs[3])
