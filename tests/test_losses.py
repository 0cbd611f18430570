"""Array-level losses and health statistics against NumPy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpo import losses

# Jitted once each (every argument traced) so the tests stay fast; the eager path is the same
# code.
approx_kl = jax.jit(losses.approx_kl)
clip_fraction = jax.jit(losses.clip_fraction)
ess_fraction = jax.jit(losses.ess_fraction)
explained_variance = jax.jit(losses.explained_variance)
ppo_clip = jax.jit(losses.ppo_clip)
value_loss = jax.jit(losses.value_loss)


def np_ppo_clip(log_prob, old_log_prob, adv, eps):
    r = np.exp(log_prob - old_log_prob)
    return -np.minimum(r * adv, np.clip(r, 1 - eps, 1 + eps) * adv)


def random_ratios(seed, n=256):
    """Log-ratios spread so that r lands both inside and outside [0.8, 1.2]."""
    rng = np.random.default_rng(seed)
    old = rng.normal(-1.0, 0.5, n).astype(np.float32)
    log_ratio = rng.uniform(-0.6, 0.6, n).astype(np.float32)
    adv = rng.normal(0.0, 2.0, n).astype(np.float32)
    return old + log_ratio, old, adv


# --------------------------------------------------------------------------- ppo_clip


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("eps", [0.1, 0.2, 0.3])
def test_ppo_clip_matches_numpy(seed, eps):
    lp, old, adv = random_ratios(seed)
    r = np.exp(lp - old)
    outside = (r < 1 - eps) | (r > 1 + eps)
    # the data exercise every case: both signs, inside and outside the clip range
    for sign in (adv > 0, adv < 0):
        assert (sign & outside).any() and (sign & ~outside).any()
    got = np.asarray(ppo_clip(lp, old, adv, eps))
    np.testing.assert_allclose(got, np_ppo_clip(lp, old, adv, eps), rtol=1e-5, atol=1e-6)


def test_ppo_clip_pessimistic_cases():
    eps = 0.2
    log_r = np.log(np.array([1.5, 1.5, 0.5, 0.5, 1.1], np.float32))
    adv = np.array([1.0, -1.0, 1.0, -1.0, 2.0], np.float32)
    got = np.asarray(ppo_clip(log_r, np.zeros(5, np.float32), adv, eps))
    # r=1.5, A>0: clipped to 1.2; r=1.5, A<0: unclipped 1.5 (pessimistic);
    # r=0.5, A>0: unclipped 0.5; r=0.5, A<0: clipped to 0.8; r=1.1 inside: r·A.
    np.testing.assert_allclose(got, [-1.2, 1.5, -0.5, 0.8, -2.2], rtol=1e-5)


def test_ppo_clip_huge_eps_is_unclipped_surrogate():
    lp, old, adv = random_ratios(5)
    got = np.asarray(ppo_clip(lp, old, adv, 1e9))
    np.testing.assert_allclose(got, -np.exp(lp - old) * adv, rtol=1e-5, atol=1e-6)


def categorical_log_prob(logits, actions):
    return jnp.take_along_axis(jax.nn.log_softmax(logits), actions[:, None], axis=1)[:, 0]


def test_ppo_clip_gradient_at_ratio_one_is_policy_gradient():
    rng = np.random.default_rng(0)
    n, k = 64, 4
    logits = jnp.asarray(rng.normal(size=(n, k)), jnp.float32)
    actions = jnp.asarray(rng.integers(0, k, n))
    adv = jnp.asarray(rng.normal(size=n), jnp.float32)
    old = categorical_log_prob(logits, actions)

    def clip_loss(theta):
        lp = categorical_log_prob(theta, actions)
        return ppo_clip(lp, old, adv, 0.2).mean()

    def pg_loss(theta):
        return -(categorical_log_prob(theta, actions) * adv).mean()

    np.testing.assert_array_equal(np.exp(categorical_log_prob(logits, actions) - old), 1.0)
    g_clip = np.asarray(jax.jit(jax.grad(clip_loss))(logits))
    g_pg = np.asarray(jax.jit(jax.grad(pg_loss))(logits))
    assert np.abs(g_pg).max() > 1e-3
    np.testing.assert_allclose(g_clip, g_pg, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(clip_loss(logits), -adv.mean(), rtol=1e-5, atol=1e-7)


def test_ppo_clip_no_gradient_through_old_log_prob_or_advantages():
    lp, old, adv = (jnp.asarray(x) for x in random_ratios(1, n=16))
    g_old = jax.grad(lambda o: ppo_clip(lp, o, adv, 0.2).mean())(old)
    g_adv = jax.grad(lambda a: ppo_clip(lp, old, a, 0.2).mean())(adv)
    np.testing.assert_array_equal(g_old, 0.0)
    np.testing.assert_array_equal(g_adv, 0.0)


def test_ppo_clip_gradient_vanishes_where_clipped():
    eps = 0.2
    log_r = jnp.log(jnp.array([1.5, 1.5, 0.5, 0.5], jnp.float32))
    adv = jnp.array([1.0, -1.0, 1.0, -1.0], jnp.float32)
    g = np.asarray(jax.grad(lambda x: ppo_clip(x, jnp.zeros(4), adv, eps).sum())(log_r))
    # dL/dlog r = -r·A where unclipped, 0 where the clipped term is the minimum
    np.testing.assert_allclose(g, [0.0, 1.5, -0.5, 0.0], rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- value loss


def test_value_loss_unclipped_matches_numpy():
    rng = np.random.default_rng(2)
    v, ret = rng.normal(size=(2, 128)).astype(np.float32)
    got = np.asarray(value_loss(v, ret))
    np.testing.assert_allclose(got, 0.5 * (v - ret) ** 2, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("eps", [0.1, 0.2, 1.0])
def test_value_loss_clipped_matches_numpy(eps):
    rng = np.random.default_rng(3)
    old = rng.normal(size=256).astype(np.float32)
    v = (old + rng.uniform(-0.6, 0.6, 256)).astype(np.float32)
    ret = rng.normal(size=256).astype(np.float32)
    clipped = old + np.clip(v - old, -eps, eps)
    expected = 0.5 * np.maximum((v - ret) ** 2, (clipped - ret) ** 2)
    got = np.asarray(value_loss(v, ret, old, eps))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    if eps < 0.6:  # clipping changes some samples
        assert not np.allclose(got, 0.5 * (v - ret) ** 2)


def test_value_loss_clipped_needs_old_values():
    with pytest.raises(ValueError, match="old_values"):
        losses.value_loss(jnp.zeros(3), jnp.zeros(3), None, 0.2)


def test_value_loss_no_gradient_into_returns():
    v, ret = jnp.ones(4), jnp.zeros(4)
    g = jax.grad(lambda r: value_loss(v, r).sum())(ret)
    np.testing.assert_array_equal(g, 0.0)


# --------------------------------------------------------------------------- health


def test_approx_kl_matches_numpy():
    rng = np.random.default_rng(4)
    log_r = rng.normal(0.0, 0.3, 512).astype(np.float32)
    r = np.exp(log_r.astype(np.float64))
    np.testing.assert_allclose(approx_kl(log_r), np.mean((r - 1) - np.log(r)), rtol=1e-4)
    assert float(approx_kl(log_r)) > 0
    assert float(approx_kl(np.zeros(8, np.float32))) == 0.0


def test_clip_fraction_matches_numpy():
    rng = np.random.default_rng(5)
    log_r = rng.uniform(-0.5, 0.5, 1000).astype(np.float32)
    expected = np.mean(np.abs(np.exp(log_r) - 1) > 0.2)
    assert 0.1 < expected < 0.9
    np.testing.assert_allclose(clip_fraction(log_r, 0.2), expected, atol=1e-6)
    assert float(clip_fraction(np.zeros(8, np.float32), 0.2)) == 0.0
    np.testing.assert_allclose(clip_fraction(np.log([1.3, 0.7, 1.0, 1.1]), 0.2), 0.5)


def test_ess_fraction():
    n = 100
    np.testing.assert_allclose(ess_fraction(np.zeros(n, np.float32)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(ess_fraction(np.full(n, 3.0, np.float32)), 1.0, rtol=1e-6)
    dominant = np.zeros(n, np.float32)
    dominant[17] = 50.0
    np.testing.assert_allclose(ess_fraction(dominant), 1.0 / n, rtol=1e-5)
    # huge log-ratios must not overflow
    huge = np.zeros(n, np.float32)
    huge[0] = 500.0
    np.testing.assert_allclose(ess_fraction(huge), 1.0 / n, rtol=1e-5)

    rng = np.random.default_rng(6)
    log_r = rng.normal(0.0, 0.5, n)
    w = np.exp(log_r)
    expected = w.sum() ** 2 / (n * np.sum(w**2))
    assert 0.1 < expected < 0.99
    np.testing.assert_allclose(ess_fraction(log_r.astype(np.float32)), expected, rtol=1e-5)


def test_explained_variance():
    rng = np.random.default_rng(7)
    ret = rng.normal(size=200).astype(np.float32)
    np.testing.assert_allclose(explained_variance(ret, ret), 1.0, atol=1e-6)
    np.testing.assert_allclose(
        explained_variance(np.full_like(ret, ret.mean()), ret), 0.0, atol=1e-6
    )
    v = (ret + rng.normal(0, 0.5, 200)).astype(np.float32)
    expected = 1 - np.var(ret - v) / np.var(ret)
    np.testing.assert_allclose(explained_variance(v, ret), expected, rtol=1e-4)
    # shape-agnostic ([T, B] like the rollout)
    np.testing.assert_allclose(
        explained_variance(v.reshape(20, 10), ret.reshape(20, 10)), expected, rtol=1e-4
    )


def test_explained_variance_constant_returns_is_zero_not_nan():
    const = np.full(50, 3.0, np.float32)
    preds = np.linspace(0, 1, 50, dtype=np.float32)
    for v in (preds, const):
        ev = explained_variance(v, const)
        assert np.isfinite(ev) and float(ev) == 0.0
    g = jax.jit(jax.grad(explained_variance))(jnp.asarray(preds), jnp.asarray(const))
    assert np.isfinite(np.asarray(g)).all()
