"""Group-relative losses (GRPO, TIC-GRPO, k3 KL), their lower-clip switch and ratio metrics,
and asymmetric ppo_clip against NumPy."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpo import losses
from jaxpo.losses import group

# Jitted once each (every argument traced but the static group size) so the tests stay fast.
group_advantages = jax.jit(losses.group_advantages, static_argnums=1)
masked_trajectory_mean = jax.jit(losses.masked_trajectory_mean)
trajectory_log_ratio = jax.jit(losses.trajectory_log_ratio)
grpo_surrogate = jax.jit(losses.grpo_surrogate)
tic_grpo_surrogate = jax.jit(losses.tic_grpo_surrogate)
k3_kl = jax.jit(losses.k3_kl)
ppo_clip = jax.jit(losses.ppo_clip)

CLIP_LOW, CLIP_HIGH = 0.2, 0.28


def np_group_advantages(returns, group_size, eps=1e-8):
    g = np.asarray(returns, np.float64).reshape(-1, group_size)
    return ((g - g.mean(1, keepdims=True)) / (g.std(1, keepdims=True) + eps)).reshape(-1)


def np_ppo_clip(log_prob, old_log_prob, adv, eps_low, eps_high):
    r = np.exp(np.float64(log_prob) - np.float64(old_log_prob))
    return -np.minimum(r * adv, np.clip(r, 1 - eps_low, 1 + eps_high) * adv)


def random_trajectories(seed, n=64, horizon=5, spread=0.5):
    """Per-step log-probs, prefix masks of random lengths 1..H, and advantages of both signs."""
    rng = np.random.default_rng(seed)
    old = rng.normal(-1.0, 0.5, (n, horizon)).astype(np.float32)
    lp = (old + rng.uniform(-spread, spread, (n, horizon))).astype(np.float32)
    lengths = rng.integers(1, horizon + 1, n)
    lengths[:4] = [1, horizon, 1, horizon]
    mask = (np.arange(horizon)[None, :] < lengths[:, None]).astype(np.float32)
    adv = rng.normal(0.0, 1.5, n).astype(np.float32)
    return lp, old, adv, mask


def with_garbage(x, mask, seed=0):
    """``x`` with huge, infinite and NaN values at the padded steps."""
    rng = np.random.default_rng(seed)
    junk = rng.choice(np.array([1e30, -1e30, np.inf, -np.inf, np.nan, 88.0], np.float32), x.shape)
    return np.where(mask > 0, x, junk).astype(np.float32)


# --------------------------------------------------------------------------- group advantages


@pytest.mark.parametrize("group_size", [2, 4, 8])
@pytest.mark.parametrize("seed", range(2))
def test_group_advantages_match_numpy_and_are_standardised(group_size, seed):
    rng = np.random.default_rng(seed)
    returns = rng.normal(3.0, 4.0, 6 * group_size).astype(np.float32)
    got = np.asarray(group_advantages(returns, group_size))
    np.testing.assert_allclose(got, np_group_advantages(returns, group_size), rtol=1e-5, atol=1e-5)
    per_group = got.reshape(-1, group_size)
    np.testing.assert_allclose(per_group.mean(1), 0.0, atol=1e-5)
    np.testing.assert_allclose(per_group.std(1), 1.0, rtol=1e-4)


def test_group_advantages_are_within_groups_not_across():
    # group 0 is all larger than group 1: a batch-wide baseline would give group 0 all > 0
    returns = np.array([10.0, 11.0, 12.0, 0.0, 1.0, 2.0], np.float32)
    got = np.asarray(group_advantages(returns, 3))
    np.testing.assert_allclose(got[:3], got[3:], atol=1e-6)
    np.testing.assert_allclose(got[:3], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("scale", "shift"),
    [(1.0, 0.0), (1e-3, 0.0), (1e3, 0.0), (0.25, 3.0), (1.0, -1e3), (1e3, -1e3), (1e-3, -1.0)],
)
def test_group_advantages_invariant_to_affine_maps(scale, shift):
    rng = np.random.default_rng(7)
    group_size = 4
    returns = rng.normal(0.0, 5.0, 8 * group_size)
    base = np.asarray(group_advantages(returns.astype(np.float32), group_size))
    mapped = (scale * returns + shift).astype(np.float32)
    got = np.asarray(group_advantages(mapped, group_size))
    assert np.abs(base).max() > 0.5
    np.testing.assert_allclose(got, base, atol=1e-4)


@pytest.mark.parametrize("group_size", [3, 7, 8])
@pytest.mark.parametrize("value", [0.1, 500.0, 0.0, 123.456])
@pytest.mark.parametrize("eps", [1e-8, 0.0])
def test_group_advantages_identical_returns_give_exact_zeros(group_size, value, eps):
    rng = np.random.default_rng(3)
    normal_a = rng.normal(1.0, 2.0, group_size)
    normal_b = rng.normal(-5.0, 0.5, group_size)
    returns = np.concatenate(
        [np.full(group_size, value), normal_a, np.full(group_size, value), normal_b]
    ).astype(np.float32)
    got = np.asarray(group_advantages(returns, group_size, eps))
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got[:group_size], 0.0)
    np.testing.assert_array_equal(got[2 * group_size : 3 * group_size], 0.0)
    for start in (group_size, 3 * group_size):
        block = slice(start, start + group_size)
        np.testing.assert_allclose(
            got[block], np_group_advantages(returns[block], group_size, eps), rtol=1e-5, atol=1e-5
        )


def test_identical_returns_defeat_the_naive_formula():
    # Why the guard is max == min: the float32 mean of identical values is not always the value.
    naive_nonzero = []
    for value in (0.1, 500.0, 123.456):
        for group_size in (3, 7, 8):
            x = jnp.full(group_size, value, jnp.float32)
            naive = (x - x.mean()) / (x.std() + 1e-8)
            naive_nonzero.append(bool(jnp.any(naive != 0)))
    assert any(naive_nonzero)


@pytest.mark.parametrize(
    ("shape", "group_size"), [((10,), 3), ((10,), 0), ((10,), -2), ((10,), 2.0), ((4, 2), 2)]
)
def test_group_advantages_bad_group_size_raises(shape, group_size):
    with pytest.raises(ValueError):
        losses.group_advantages(jnp.zeros(shape), group_size)


def test_group_advantages_group_size_one_is_zero():
    got = np.asarray(group_advantages(np.arange(5, dtype=np.float32), 1))
    np.testing.assert_array_equal(got, 0.0)


# --------------------------------------------------------------------------- masked mean


def test_masked_trajectory_mean_ignores_padding():
    x = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 7.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]], np.float32)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], np.float32)
    expected = [2.5, 6.0, 2.0]
    np.testing.assert_allclose(masked_trajectory_mean(x, mask), expected, rtol=1e-6)
    np.testing.assert_allclose(
        masked_trajectory_mean(with_garbage(x, mask), mask), expected, rtol=1e-6
    )
    # an all-padding row divides by max(0, 1) = 1
    np.testing.assert_array_equal(masked_trajectory_mean(x[:1], np.zeros((1, 4))), [0.0])


# --------------------------------------------------------------------------- trajectory ratio


@pytest.mark.parametrize("seed", range(3))
def test_trajectory_ratio_is_product_of_step_ratios(seed):
    lp, old, _, mask = random_trajectories(seed)
    got = np.exp(np.float64(trajectory_log_ratio(lp, old, mask)))
    step_ratio = np.exp(np.float64(lp) - np.float64(old))
    expected = np.prod(np.where(mask > 0, step_ratio, 1.0), axis=1)
    # the product is not the unmasked one: padding really was excluded
    assert not np.allclose(expected, np.prod(step_ratio, axis=1), rtol=1e-3)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_trajectory_log_ratio_no_gradient_into_old_log_prob():
    lp, old, _, mask = random_trajectories(1, n=8)
    g_old = jax.grad(lambda o: trajectory_log_ratio(lp, o, mask).sum())(jnp.asarray(old))
    g_lp = jax.grad(lambda x: trajectory_log_ratio(x, old, mask).sum())(jnp.asarray(lp))
    np.testing.assert_array_equal(g_old, 0.0)
    np.testing.assert_array_equal(g_lp, mask)


def test_trajectory_log_ratio_sums_low_precision_inputs_in_float32():
    lp, old, _, mask = random_trajectories(2, n=8)
    got = trajectory_log_ratio(jnp.asarray(lp, jnp.bfloat16), jnp.asarray(old, jnp.bfloat16), mask)
    assert got.dtype == jnp.float32


def test_huge_log_ratios_are_clamped_and_stay_finite():
    n, horizon = 4, 5
    mask = np.ones((n, horizon), np.float32)
    old = np.zeros((n, horizon), np.float32)
    lp = np.array([[100.0] * horizon, [-100.0] * horizon, [30.0] * horizon, [0.1] * horizon])
    lp = lp.astype(np.float32)
    log_w = np.asarray(trajectory_log_ratio(lp, old, mask))
    np.testing.assert_allclose(log_w, [20.0, -20.0, 20.0, 0.5], rtol=1e-5)
    np.testing.assert_allclose(
        losses.trajectory_log_ratio(lp, old, mask, limit=5.0), [5.0, -5.0, 5.0, 0.5], rtol=1e-5
    )
    adv = np.array([-1.0, 1.0, -2.0, 1.0], np.float32)
    loss = np.asarray(tic_grpo_surrogate(lp, old, adv, mask, CLIP_LOW, CLIP_HIGH))
    assert np.isfinite(loss).all()
    g = np.asarray(
        jax.grad(lambda x: tic_grpo_surrogate(x, old, adv, mask, CLIP_LOW, CLIP_HIGH).sum())(
            jnp.asarray(lp)
        )
    )
    assert np.isfinite(g).all()


def test_padding_garbage_changes_no_output_or_gradient():
    lp, old, adv, mask = random_trajectories(4)
    dirty_lp, dirty_old = with_garbage(lp, mask, 1), with_garbage(old, mask, 2)
    clean_lp = np.where(mask > 0, lp, 0.0).astype(np.float32)
    clean_old = np.where(mask > 0, old, 0.0).astype(np.float32)
    assert not np.isfinite(dirty_lp).all() and not np.isfinite(dirty_old).all()

    def outputs(lp_, old_):
        return {
            "log_ratio": trajectory_log_ratio(lp_, old_, mask),
            "grpo": grpo_surrogate(lp_, old_, adv, mask, CLIP_LOW, CLIP_HIGH),
            "tic": tic_grpo_surrogate(lp_, old_, adv, mask, CLIP_LOW, CLIP_HIGH),
            "mean": masked_trajectory_mean(lp_, mask),
            "grad_grpo": jax.grad(
                lambda x: grpo_surrogate(x, old_, adv, mask, CLIP_LOW, CLIP_HIGH).sum()
            )(jnp.asarray(lp_)),
            "grad_tic": jax.grad(
                lambda x: tic_grpo_surrogate(x, old_, adv, mask, CLIP_LOW, CLIP_HIGH).sum()
            )(jnp.asarray(lp_)),
        }

    clean, dirty = outputs(clean_lp, clean_old), outputs(dirty_lp, dirty_old)
    for key in clean:
        assert np.isfinite(np.asarray(dirty[key])).all(), key
        np.testing.assert_array_equal(np.asarray(dirty[key]), np.asarray(clean[key]), err_msg=key)
    np.testing.assert_array_equal(np.asarray(dirty["grad_grpo"])[mask == 0], 0.0)
    np.testing.assert_array_equal(np.asarray(dirty["grad_tic"])[mask == 0], 0.0)


# --------------------------------------------------------------------------- GRPO surrogate


@pytest.mark.parametrize("seed", range(3))
def test_grpo_surrogate_matches_loop_reference(seed):
    lp, old, adv, mask = random_trajectories(seed)
    got = np.asarray(grpo_surrogate(lp, old, adv, mask, CLIP_LOW, CLIP_HIGH))
    expected = []
    for i in range(lp.shape[0]):
        steps = []
        for t in range(lp.shape[1]):
            if mask[i, t] == 0:
                continue
            r = np.exp(np.float64(lp[i, t]) - np.float64(old[i, t]))
            clipped = min(max(r, 1 - CLIP_LOW), 1 + CLIP_HIGH)
            steps.append(-min(r * adv[i], clipped * adv[i]))
        expected.append(sum(steps) / len(steps))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_grpo_surrogate_mean_ignores_padded_steps():
    lp, old, adv, mask = random_trajectories(5, n=16)
    lengths = mask.sum(1).astype(int)
    got = np.asarray(grpo_surrogate(lp, old, adv, mask, CLIP_LOW, CLIP_HIGH))
    for i, length in enumerate(lengths):
        alone = grpo_surrogate(
            lp[i : i + 1, :length],
            old[i : i + 1, :length],
            adv[i : i + 1],
            np.ones((1, length), np.float32),
            CLIP_LOW,
            CLIP_HIGH,
        )
        np.testing.assert_allclose(got[i], np.asarray(alone)[0], rtol=1e-6)


def test_grpo_surrogate_gradient_is_zero_where_clipped():
    # one step per case: r=1.5, A>0 clipped at 1.28 (no gradient); r=0.5, A<0 clipped at 0.8;
    # r=1.25, A>0 inside [0.8, 1.28]: gradient −r·A / H per valid step.
    lp = np.log(np.array([[1.5, 1.0], [0.5, 1.0], [1.25, 1.0]], np.float32))
    old = np.zeros_like(lp)
    adv = np.array([1.0, -1.0, 1.0], np.float32)
    mask = np.array([[1, 0], [1, 0], [1, 1]], np.float32)
    g = jax.grad(lambda x: grpo_surrogate(x, old, adv, mask, CLIP_LOW, CLIP_HIGH).sum())(lp)
    np.testing.assert_allclose(g, [[0.0, 0.0], [0.0, 0.0], [-0.625, -0.5]], rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- TIC-GRPO


@pytest.mark.parametrize("seed", range(3))
def test_tic_grpo_equals_grpo_for_one_step_trajectories(seed):
    n = 256
    rng = np.random.default_rng(seed)
    old = rng.normal(-1.0, 0.5, (n, 1)).astype(np.float32)
    lp = (old + rng.uniform(-0.6, 0.6, (n, 1))).astype(np.float32)
    adv = rng.normal(0.0, 1.0, n).astype(np.float32)
    mask = np.ones((n, 1), np.float32)
    r = np.exp(lp - old)[:, 0]
    outside = (r < 1 - CLIP_LOW) | (r > 1 + CLIP_HIGH)
    for sign in (adv > 0, adv < 0):
        assert (sign & outside).any() and (sign & ~outside).any()

    def grpo(x):
        return grpo_surrogate(x, old, adv, mask, CLIP_LOW, CLIP_HIGH)

    def tic(x):
        return tic_grpo_surrogate(x, old, adv, mask, CLIP_LOW, CLIP_HIGH)

    np.testing.assert_allclose(tic(lp), grpo(lp), rtol=1e-6, atol=1e-7)
    g_grpo = np.asarray(jax.grad(lambda x: grpo(x).sum())(jnp.asarray(lp)))
    g_tic = np.asarray(jax.grad(lambda x: tic(x).sum())(jnp.asarray(lp)))
    assert (g_grpo == 0).any() and (np.abs(g_grpo) > 1e-3).any()
    np.testing.assert_allclose(g_tic, g_grpo, rtol=1e-6, atol=1e-7)


def test_tic_grpo_matches_numpy_on_trajectories():
    lp, old, adv, mask = random_trajectories(6, spread=0.3)
    w = np.exp(np.sum(np.where(mask > 0, np.float64(lp) - np.float64(old), 0.0), axis=1))
    expected = -np.minimum(w * adv, np.clip(w, 1 - CLIP_LOW, 1 + CLIP_HIGH) * adv)
    got = np.asarray(tic_grpo_surrogate(lp, old, adv, mask, CLIP_LOW, CLIP_HIGH))
    # the data clip some trajectories, and GRPO's per-step average is something else
    assert ((w < 1 - CLIP_LOW) | (w > 1 + CLIP_HIGH)).any()
    assert not np.allclose(got, grpo_surrogate(lp, old, adv, mask, CLIP_LOW, CLIP_HIGH))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- k3 KL


def test_k3_kl_zero_at_equality_and_nonnegative():
    lp = np.linspace(-8.0, 0.0, 33, dtype=np.float32)
    np.testing.assert_array_equal(k3_kl(lp, lp), 0.0)
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-10.0, 0.0, (2, 4096)).astype(np.float32)
    small = a + rng.normal(0.0, 1e-4, 4096).astype(np.float32)
    for ref in (b, small):
        got = np.asarray(k3_kl(a, ref))
        assert np.isfinite(got).all() and (got >= 0).all()
    x = np.float64(b) - np.float64(a)
    np.testing.assert_allclose(k3_kl(a, b), np.exp(x) - x - 1, rtol=1e-4, atol=1e-6)


def test_k3_kl_no_gradient_into_reference():
    lp = jnp.array([-1.0, -2.0, -0.5])
    ref = jnp.array([-1.5, -1.0, -0.5])
    np.testing.assert_array_equal(jax.grad(lambda r: k3_kl(lp, r).sum())(ref), 0.0)
    # d/dlog π_θ [exp(x) − x − 1] = 1 − exp(x), x = log π_ref − log π_θ
    expected = 1.0 - np.exp(np.asarray(ref) - np.asarray(lp))
    np.testing.assert_allclose(jax.grad(lambda x: k3_kl(x, ref).sum())(lp), expected, rtol=1e-6)


def test_k3_kl_monte_carlo_estimates_true_kl():
    p_logits = jnp.array([1.0, 0.2, -0.5, -1.5])
    q_logits = jnp.array([-0.3, 0.8, 0.4, -0.2])
    log_p, log_q = jax.nn.log_softmax(p_logits), jax.nn.log_softmax(q_logits)
    actions = jax.random.categorical(jax.random.key(0), p_logits, shape=(200_000,))
    estimate = float(jnp.mean(k3_kl(log_p[actions], log_q[actions])))
    true_kl = float(losses.categorical_kl(p_logits, q_logits))
    reverse_kl = float(losses.categorical_kl(q_logits, p_logits))
    assert abs(true_kl - reverse_kl) > 0.1 * true_kl
    np.testing.assert_allclose(estimate, true_kl, rtol=0.03)


# --------------------------------------------------------------------------- asymmetric ppo_clip


def test_ppo_clip_default_high_is_the_symmetric_formula():
    rng = np.random.default_rng(0)
    old = rng.normal(-1.0, 0.5, 256).astype(np.float32)
    lp = (old + rng.uniform(-0.6, 0.6, 256)).astype(np.float32)
    adv = rng.normal(0.0, 2.0, 256).astype(np.float32)
    sym = np.asarray(ppo_clip(lp, old, adv, 0.2))
    np.testing.assert_array_equal(np.asarray(ppo_clip(lp, old, adv, 0.2, None)), sym)
    np.testing.assert_array_equal(np.asarray(ppo_clip(lp, old, adv, 0.2, 0.2)), sym)
    np.testing.assert_allclose(sym, np_ppo_clip(lp, old, adv, 0.2, 0.2), rtol=1e-5, atol=1e-6)


def test_ppo_clip_asymmetric_bounds():
    eps_low, eps_high = 0.2, 0.3
    r = np.array([0.7, 0.7, 1.25, 1.25, 1.4, 1.4], np.float32)
    adv = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0], np.float32)
    got = np.asarray(ppo_clip(np.log(r), np.zeros(6, np.float32), adv, eps_low, eps_high))
    # r=0.7: A>0 unclipped 0.7, A<0 clipped at 0.8; r=1.25 inside [0.8, 1.3] (a symmetric 0.2
    # would clip it at 1.2); r=1.4: A>0 clipped at 1.3, A<0 unclipped.
    np.testing.assert_allclose(got, [-0.7, 0.8, -1.25, 1.25, -1.3, 1.4], rtol=1e-5)
    g = jax.grad(lambda x: ppo_clip(x, jnp.zeros(6), adv, eps_low, eps_high).sum())(jnp.log(r))
    np.testing.assert_allclose(g, [-0.7, 0.0, -1.25, 1.25, 0.0, 1.4], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("eps_low", "eps_high"), [(0.1, 0.3), (0.3, 0.1), (0.2, 0.28)])
def test_ppo_clip_asymmetric_matches_numpy(eps_low, eps_high):
    rng = np.random.default_rng(1)
    old = rng.normal(-1.0, 0.5, 256).astype(np.float32)
    lp = (old + rng.uniform(-0.6, 0.6, 256)).astype(np.float32)
    adv = rng.normal(0.0, 2.0, 256).astype(np.float32)
    got = np.asarray(ppo_clip(lp, old, adv, eps_low, eps_high))
    np.testing.assert_allclose(
        got, np_ppo_clip(lp, old, adv, eps_low, eps_high), rtol=1e-5, atol=1e-6
    )


# --------------------------------------------------------------------------- lower clip switch


def np_grpo_loss_and_grad(lp, old, adv, mask, eps_low, eps_high, lower_clip):
    """Per-trajectory loss ``[n]`` and its gradient in the log-probs ``[n, H]``, by hand."""
    r = np.exp(np.float64(lp) - np.float64(old))
    a = np.float64(adv)[:, None]
    low = 1 - eps_low if lower_clip else -np.inf
    clipped = np.clip(r, low, 1 + eps_high)
    per_step = -np.minimum(r * a, clipped * a)
    # the unclipped branch carries the gradient −r·Â, the clipped one none
    frozen = ((a > 0) & (r > 1 + eps_high)) | ((a < 0) & (r < low))
    length = mask.sum(1, keepdims=True)
    loss = np.where(mask > 0, per_step, 0.0).sum(1) / length[:, 0]
    grad = np.where((mask > 0) & ~frozen, -r * a, 0.0) / length
    return loss, grad


def np_tic_loss_and_grad(lp, old, adv, mask, eps_low, eps_high, lower_clip):
    log_w = np.sum(np.where(mask > 0, np.float64(lp) - np.float64(old), 0.0), axis=1)
    w, a = np.exp(log_w), np.float64(adv)
    low = 1 - eps_low if lower_clip else -np.inf
    loss = -np.minimum(w * a, np.clip(w, low, 1 + eps_high) * a)
    frozen = ((a > 0) & (w > 1 + eps_high)) | ((a < 0) & (w < low))
    d_log_w = np.where(frozen, 0.0, -w * a)
    return loss, d_log_w[:, None] * mask, w


def lower_clip_fns(surrogate):
    """The jitted surrogate with the lower clip on and off, and their gradients."""
    on = jax.jit(functools.partial(surrogate, lower_clip=True))
    off = jax.jit(functools.partial(surrogate, lower_clip=False))
    grads = [jax.jit(jax.grad(lambda x, *a, f=f: f(x, *a).sum())) for f in (on, off)]
    return on, off, *grads


@pytest.mark.parametrize("seed", range(2))
def test_grpo_lower_clip_off_changes_exactly_the_steps_below_with_negative_advantage(seed):
    lp, old, adv, mask = random_trajectories(seed, spread=0.5)
    on, off, grad_on, grad_off = lower_clip_fns(losses.grpo_surrogate)
    args = (old, adv, mask, CLIP_LOW, CLIP_HIGH)
    r = np.exp(np.float64(lp) - np.float64(old))
    changed = (mask > 0) & (r < 1 - CLIP_LOW) & (adv[:, None] < 0)
    below_positive = (mask > 0) & (r < 1 - CLIP_LOW) & (adv[:, None] > 0)
    assert changed.any() and below_positive.any() and (~changed & (mask > 0)).any()
    for lower_clip, loss_fn, grad_fn in ((True, on, grad_on), (False, off, grad_off)):
        want_loss, want_grad = np_grpo_loss_and_grad(
            lp, old, adv, mask, CLIP_LOW, CLIP_HIGH, lower_clip
        )
        np.testing.assert_allclose(loss_fn(lp, *args), want_loss, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(grad_fn(lp, *args), want_grad, rtol=1e-5, atol=1e-6)
    # on is today's two-sided loss, bit for bit
    np.testing.assert_array_equal(on(lp, *args), grpo_surrogate(lp, *args))
    # off moves exactly the changed steps (and the losses of their trajectories) ...
    g_on, g_off = np.asarray(grad_on(lp, *args)), np.asarray(grad_off(lp, *args))
    np.testing.assert_array_equal(g_on[changed], 0.0)
    assert (g_off[changed] > 0).all()  # −r·Â/L > 0: the step's probability is pushed down
    np.testing.assert_array_equal(g_off[~changed], g_on[~changed])
    touched = changed.any(1)
    l_on, l_off = np.asarray(on(lp, *args)), np.asarray(off(lp, *args))
    np.testing.assert_array_equal(l_off[~touched], l_on[~touched])
    assert (l_off[touched] < l_on[touched]).all()  # −r·Â < −(1−ε)·Â when r < 1−ε, Â < 0


@pytest.mark.parametrize("seed", range(2))
def test_tic_grpo_lower_clip_off_changes_exactly_the_trajectories_below(seed):
    lp, old, adv, mask = random_trajectories(seed + 10, spread=0.3)
    on, off, grad_on, grad_off = lower_clip_fns(losses.tic_grpo_surrogate)
    args = (old, adv, mask, CLIP_LOW, CLIP_HIGH)
    results = {}
    for lower_clip, loss_fn, grad_fn in ((True, on, grad_on), (False, off, grad_off)):
        want_loss, want_grad, w = np_tic_loss_and_grad(
            lp, old, adv, mask, CLIP_LOW, CLIP_HIGH, lower_clip
        )
        got_loss, got_grad = np.asarray(loss_fn(lp, *args)), np.asarray(grad_fn(lp, *args))
        np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-6)
        results[lower_clip] = got_loss, got_grad
    changed = (w < 1 - CLIP_LOW) & (adv < 0)
    assert changed.any() and ((w < 1 - CLIP_LOW) & (adv > 0)).any() and (~changed).any()
    (l_on, g_on), (l_off, g_off) = results[True], results[False]
    np.testing.assert_array_equal(l_on, tic_grpo_surrogate(lp, *args))  # today's numbers
    np.testing.assert_array_equal(l_off[~changed], l_on[~changed])
    np.testing.assert_array_equal(g_off[~changed], g_on[~changed])
    assert (l_off[changed] < l_on[changed]).all()
    np.testing.assert_array_equal(g_on[changed], 0.0)
    valid_changed = changed[:, None] & (mask > 0)
    assert (g_off[valid_changed] > 0).all()


def test_lower_clip_must_be_a_static_bool():
    lp, old, adv, mask = random_trajectories(0, n=4)
    for surrogate in (losses.grpo_surrogate, losses.tic_grpo_surrogate):
        with pytest.raises(TypeError, match="lower_clip must be a static Python bool"):
            surrogate(lp, old, adv, mask, CLIP_LOW, CLIP_HIGH, jnp.bool_(False))


# --------------------------------------------------------------------------- ratio metrics

#: Per-step ratios of a hand-built batch: 4 trajectories (lengths 3, 2, 1, 3) and one with no
#: valid step. With ε_low = 0.2, ε_high = 0.28 the steps 1.5, 0.5, 0.7 and 1.3 are clipped
#: (1.5 and 1.3 from above); the trajectory ratios are 0.75, 0.99, 0.7 and 1.56.
HAND_RATIOS = np.array(
    [[1.5, 1.0, 0.5], [0.9, 1.1, 1.0], [0.7, 1.0, 1.0], [1.0, 1.3, 1.2], [1.0, 1.0, 1.0]]
)
HAND_MASK = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0]], np.float32)


def hand_batch(seed=0):
    """``(log_prob, old_log_prob)`` with ``HAND_RATIOS`` at the valid steps, garbage elsewhere."""
    old = np.random.default_rng(seed).normal(-1.0, 0.5, HAND_RATIOS.shape).astype(np.float32)
    lp = (old + np.log(HAND_RATIOS)).astype(np.float32)
    return with_garbage(lp, HAND_MASK, seed + 1), with_garbage(old, HAND_MASK, seed + 2)


def np_ess(r):
    r = np.float64(r)
    return r.sum() ** 2 / (r.size * np.square(r).sum())


@pytest.mark.parametrize("lower_clip", [True, False])
def test_grpo_ratio_metrics_on_a_hand_built_batch(lower_clip):
    lp, old = hand_batch()
    metrics = jax.jit(functools.partial(group.grpo_ratio_metrics, lower_clip=lower_clip))
    got = {k: float(v) for k, v in metrics(lp, old, HAND_MASK, CLIP_LOW, CLIP_HIGH).items()}
    steps = HAND_RATIOS[HAND_MASK > 0]  # the 9 valid steps
    # clipped: 1.5, 0.5, 0.7, 1.3 of 9 steps; only 1.5, 1.3 with the lower clip off
    assert got["clip_frac"] == pytest.approx(4 / 9 if lower_clip else 2 / 9, abs=1e-7)
    assert got["ess_frac"] == pytest.approx(np_ess(steps), rel=1e-5)
    assert np_ess(steps) < 0.95  # the padded steps (ratio 1 if counted) would raise it


@pytest.mark.parametrize("lower_clip", [True, False])
def test_tic_grpo_ratio_metrics_on_a_hand_built_batch(lower_clip):
    lp, old = hand_batch()
    metrics = jax.jit(functools.partial(group.tic_grpo_ratio_metrics, lower_clip=lower_clip))
    got = {k: float(v) for k, v in metrics(lp, old, HAND_MASK, CLIP_LOW, CLIP_HIGH).items()}
    w = np.prod(np.where(HAND_MASK > 0, HAND_RATIOS, 1.0), axis=1)[:4]  # the empty one is out
    np.testing.assert_allclose(w, [0.75, 0.99, 0.7, 1.56], rtol=1e-12)
    # clipped: 0.75, 0.7 (below 0.8) and 1.56 (above 1.28) of 4 trajectories
    assert got["clip_frac"] == pytest.approx(3 / 4 if lower_clip else 1 / 4, abs=1e-7)
    assert got["ess_frac"] == pytest.approx(np_ess(w), rel=1e-5)


@pytest.mark.parametrize("seed", range(2))
def test_ratio_metrics_match_numpy_on_random_trajectories(seed):
    lp, old, _, mask = random_trajectories(seed, spread=0.4)
    valid = mask > 0
    r = np.exp(np.float64(lp) - np.float64(old))[valid]
    w = np.exp(np.sum(np.where(valid, np.float64(lp) - np.float64(old), 0.0), axis=1))
    dirty_lp, dirty_old = with_garbage(lp, mask, 3), with_garbage(old, mask, 4)
    for lower_clip in (True, False):
        low = 1 - CLIP_LOW if lower_clip else -np.inf
        expected = {
            group.grpo_ratio_metrics: (np.mean((r < low) | (r > 1 + CLIP_HIGH)), np_ess(r)),
            group.tic_grpo_ratio_metrics: (np.mean((w < low) | (w > 1 + CLIP_HIGH)), np_ess(w)),
        }
        for fn, (clip_frac, ess) in expected.items():
            got = fn(dirty_lp, dirty_old, mask, CLIP_LOW, CLIP_HIGH, lower_clip)
            assert 0 < clip_frac < 1
            np.testing.assert_allclose(got["clip_frac"], clip_frac, atol=1e-6)
            np.testing.assert_allclose(got["ess_frac"], ess, rtol=1e-5)


def test_ratio_metrics_without_valid_entries_and_at_ratio_one():
    none = group.ratio_metrics(np.full(5, np.nan, np.float32), np.zeros(5), CLIP_LOW, CLIP_HIGH)
    assert float(none["clip_frac"]) == 0.0 and float(none["ess_frac"]) == 1.0
    ones = group.ratio_metrics(np.zeros((3, 4), np.float32), np.ones((3, 4)), CLIP_LOW, CLIP_HIGH)
    assert float(ones["clip_frac"]) == 0.0
    np.testing.assert_allclose(ones["ess_frac"], 1.0, rtol=1e-6)
