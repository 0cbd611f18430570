"""Natural-gradient numerics: Fisher products, CG, line search, KL, surrogate and TRPO's step.

The Fisher-vector products are checked against dense matrices built independently (score
outer products summed exactly over actions, ``Jᵀ M J`` from ``jax.jacobian``, and the dense
Hessian of the mean KL from ``jax.hessian``) in float64, then the float32 path against the
float64 one.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import OBS_DIM, np_categorical_kl, np_gaussian_kl, tiny_actor
from hypothesis import event, given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree
from rule_helpers import cheap_jit

from jaxpo.algos.natural import kl_step_scale, make_natural_loss, make_policy_problem
from jaxpo.algos.npg import NPGHParams, npg_step
from jaxpo.algos.trpo import TRPOHParams, trpo_step
from jaxpo.batches import SampleBatch
from jaxpo.config import Config
from jaxpo.losses import categorical_kl, gaussian_kl, importance_surrogate, kl_divergence
from jaxpo.natgrad import (
    backtracking_line_search,
    categorical_fisher,
    conjugate_gradient,
    fisher_vector_product,
    gaussian_fisher,
    kl_hessian_vector_product,
    make_fisher_vector_product,
    output_fisher,
)
from jaxpo.natgrad.fisher import make_kl_hessian_vector_product
from jaxpo.networks import Actor, Networks, distribution

# These tests check numerics, not speed, so XLA's expensive CPU code generation is skipped (as
# in tests/envs/conftest.py): it roughly halves compile time, which dominates here.
ACTION_DIM = 3  # both kinds
N = 16


def make_actor(discrete: bool) -> Actor:
    """The tiny (8, 8) actor of ``ACTION_DIM`` logits or Gaussian dimensions."""
    return tiny_actor("categorical" if discrete else "gaussian", action_dim=ACTION_DIM)


def cast(tree, dtype):
    return jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)


@functools.cache
def param_shapes(discrete: bool):
    obs = jax.ShapeDtypeStruct((1, OBS_DIM), jnp.float32)
    return jax.eval_shape(make_actor(discrete).init, jax.random.key(0), obs)


def leaf_scale(shape) -> float:
    """Kernels ~ N(0, 1.5²/fan_in), biases and log-std ~ N(0, 0.3²): outputs are O(1)."""
    return 1.5 / np.sqrt(shape[0]) if len(shape) == 2 else 0.3


def random_case(discrete: bool, seed: int, n: int = N):
    """An actor, random NumPy float64 params shaped like its own, ``n`` obs and batch noise.

    Everything random comes from NumPy: ``jax.random`` inside a jitted function costs about
    a second of compile time each on this machine.
    """
    rng = np.random.default_rng(seed)
    params = jax.tree.map(
        lambda s: leaf_scale(s.shape) * rng.normal(size=s.shape), param_shapes(discrete)
    )
    obs = 2.0 * rng.normal(size=(n, OBS_DIM))
    noise = BatchNoise(
        gumbel=rng.gumbel(size=(n, ACTION_DIM)),
        eps=rng.normal(size=(n, ACTION_DIM)),
        advantages=rng.normal(size=n),
    )
    return make_actor(discrete), params, obs, noise


class BatchNoise(NamedTuple):
    """The randomness of a batch: action noise (both kinds) and advantages."""

    gumbel: np.ndarray
    eps: np.ndarray
    advantages: np.ndarray


def flat(tree) -> np.ndarray:
    """Leaves concatenated in NumPy (ravel_pytree outside x64 would truncate float64)."""
    return np.concatenate([np.asarray(x).ravel() for x in jax.tree.leaves(tree)])


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


# Reference KLs written out here, independent of jaxpo.losses.kl.
def ref_kl(p, q):
    if p[1] is None:
        log_p = jax.nn.log_softmax(p[0], axis=-1)
        log_q = jax.nn.log_softmax(q[0], axis=-1)
        return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)
    (mp, lp), (mq, lq) = p, q
    vp, vq = jnp.exp(2 * lp), jnp.exp(2 * lq)
    return jnp.sum(lq - lp + (vp + (mp - mq) ** 2) / (2 * vq) - 0.5, axis=-1)


# --------------------------------------------------------------------------- dense Fishers


def dense_score_fisher(actor, params, obs):
    """Categorical: mean_n Σ_a p_a ∇log π(a|s_n) ∇log π(a|s_n)ᵀ, exact over actions."""
    theta, unravel = ravel_pytree(params)

    def log_pi(t):
        return jax.nn.log_softmax(actor.apply(unravel(t), obs)[0], axis=-1)

    scores = jax.jacobian(log_pi)(theta)  # [N, A, P]
    p = jnp.exp(log_pi(theta))
    return jnp.einsum("na,nap,naq->pq", p, scores, scores) / obs.shape[0]


def dense_gauss_newton_fisher(actor, params, obs):
    """Gaussian: mean_n J_nᵀ M_n J_n with M = diag(1/σ², 2) on (mean, log_std)."""
    theta, unravel = ravel_pytree(params)
    j_mean, j_log_std = jax.jacobian(lambda t: actor.apply(unravel(t), obs))(theta)  # [N, D, P]
    _, log_std = actor.apply(params, obs)
    fisher = jnp.einsum("nd,ndp,ndq->pq", jnp.exp(-2 * log_std), j_mean, j_mean)
    fisher += 2.0 * jnp.einsum("ndp,ndq->pq", j_log_std, j_log_std)
    return fisher / obs.shape[0]


def dense_kl_hessian(actor, params, obs):
    """∇²_θ mean KL(π_old ‖ π_θ) at θ_old, by jax.hessian on the flat parameters."""
    theta, unravel = ravel_pytree(params)
    old = jax.lax.stop_gradient(actor.apply(params, obs))
    return jax.hessian(lambda t: jnp.mean(ref_kl(old, actor.apply(unravel(t), obs))))(theta)


@functools.cache
def fisher_oracle(discrete: bool):
    """Jitted (once per kind): dense Fisher, dense KL Hessian and both products with v."""
    actor = make_actor(discrete)

    @cheap_jit
    def oracle(params, obs, v_flat, damping):
        _, unravel = ravel_pytree(params)
        if discrete:
            fisher = dense_score_fisher(actor, params, obs)
        else:
            fisher = dense_gauss_newton_fisher(actor, params, obs)
        hessian = dense_kl_hessian(actor, params, obs)
        v = unravel(v_flat)

        def apply_fn(p):
            return actor.apply(p, obs)

        gn = fisher_vector_product(apply_fn, params, v, damping)
        kl = kl_hessian_vector_product(apply_fn, params, v, damping)
        return fisher, hessian, ravel_pytree(gn)[0], ravel_pytree(kl)[0]

    return actor, oracle


@functools.cache
def fvp_float32(discrete: bool):
    """Jitted (once per kind): the two ``make_`` products, for the float32 path."""
    actor = make_actor(discrete)

    @cheap_jit
    def products(params, obs, v, damping):
        def apply_fn(p):
            return actor.apply(p, obs)

        gn = make_fisher_vector_product(apply_fn, params, damping)(v)
        kl = make_kl_hessian_vector_product(apply_fn, params, damping)(v)
        return gn, kl

    return products


@pytest.mark.parametrize("discrete", [True, False], ids=["categorical", "gaussian"])
def test_fvp_matches_dense_fisher(discrete):
    actor, oracle = fisher_oracle(discrete)
    _, params_np, obs_np, _ = random_case(discrete, seed=1)
    rng = np.random.default_rng(2)
    v_flat = rng.normal(size=flat(params_np).size)
    for damping in (0.0, 0.1):
        with jax.enable_x64(True):
            params, obs = cast(params_np, jnp.float64), jnp.asarray(obs_np, jnp.float64)
            _, unravel = ravel_pytree(params)
            v = unravel(jnp.asarray(v_flat))
            fisher, hessian, gn, kl_hvp = map(
                np.asarray, oracle(params, obs, jnp.asarray(v_flat), damping)
            )
        assert gn.dtype == np.float64 and fisher.shape == (v_flat.size, v_flat.size)
        # the two dense oracles agree: the KL's Hessian at θ_old is the Fisher
        assert rel_err(hessian, fisher) <= 1e-10
        want = (fisher + damping * np.eye(v_flat.size)) @ v_flat
        assert rel_err(gn, want) <= 1e-10
        assert rel_err(kl_hvp, want) <= 1e-10
        assert rel_err(gn, kl_hvp) <= 1e-10

        # float32 path, relative to the float64 result
        params32, obs32 = cast(params_np, jnp.float32), jnp.asarray(obs_np, jnp.float32)
        gn32, kl32 = fvp_float32(discrete)(params32, obs32, cast(v, jnp.float32), damping)
        gn32, kl32 = flat(gn32), flat(kl32)
        assert gn32.dtype == np.float32 and kl32.dtype == np.float32
        assert rel_err(gn32, want) <= 1e-5
        assert rel_err(kl32, want) <= 1e-5


@pytest.mark.parametrize("discrete", [True, False], ids=["categorical", "gaussian"])
def test_fisher_is_psd(discrete):
    _, oracle = fisher_oracle(discrete)
    _, params_np, obs_np, _ = random_case(discrete, seed=3)
    rng = np.random.default_rng(4)
    size = flat(params_np).size
    with jax.enable_x64(True):
        params, obs = cast(params_np, jnp.float64), jnp.asarray(obs_np, jnp.float64)
        for _ in range(10):
            v = rng.normal(size=size) * rng.uniform(0.01, 100.0)
            fisher, _, gn, _ = map(np.asarray, oracle(params, obs, jnp.asarray(v), 0.0))
            assert v @ gn >= 0.0
    # and the dense Fisher it represents is symmetric PSD (up to rounding)
    np.testing.assert_allclose(fisher, fisher.T, atol=1e-12)
    eig = np.linalg.eigvalsh(fisher)
    assert eig.min() >= -1e-12 * eig.max()


# --------------------------------------------------------------------------- output Fishers


def test_categorical_fisher_matches_numpy():
    rng = np.random.default_rng(5)
    logits, u = rng.normal(size=(2, 6, 4)) * 2.0
    with jax.enable_x64(True):
        got = np.asarray(categorical_fisher(jnp.asarray(logits), jnp.asarray(u)))
        got_out, none = output_fisher((jnp.asarray(logits), None), (jnp.asarray(u), None))
        got_out = np.asarray(got_out)
        # the logit-shift direction carries no information: M·1 = 0
        ones = np.asarray(categorical_fisher(jnp.asarray(logits), jnp.ones((6, 4))))
    assert none is None
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    for n in range(6):
        m = np.diag(p[n]) - np.outer(p[n], p[n])
        np.testing.assert_allclose(got[n], m @ u[n], rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(got_out, got)
    np.testing.assert_allclose(ones, 0.0, atol=1e-15)


def test_gaussian_fisher_matches_numpy():
    rng = np.random.default_rng(6)
    log_std, u_mean, u_log_std = rng.normal(size=(3, 5, 3))
    with jax.enable_x64(True):
        args = tuple(jnp.asarray(x) for x in (log_std, u_mean, u_log_std))
        got = tuple(map(np.asarray, gaussian_fisher(*args)))
        out = tuple(map(np.asarray, output_fisher((jnp.zeros((5, 3)), args[0]), args[1:])))
    np.testing.assert_allclose(got[0], u_mean / np.exp(log_std) ** 2, rtol=1e-12)
    np.testing.assert_allclose(got[1], 2.0 * u_log_std, rtol=1e-12)
    np.testing.assert_array_equal(out[0], got[0])
    np.testing.assert_array_equal(out[1], got[1])


# --------------------------------------------------------------------------- conjugate gradient


def test_cg_matches_dense_solve():
    actor, oracle = fisher_oracle(True)
    _, params_np, obs_np, _ = random_case(True, seed=7)
    damping = 0.1
    b = np.random.default_rng(8).normal(size=flat(params_np).size)

    @cheap_jit
    def solve(params, obs, b):
        _, unravel = ravel_pytree(params)
        fvp = make_fisher_vector_product(lambda p: actor.apply(p, obs), params, damping)
        return conjugate_gradient(fvp, unravel(b), b.size)

    with jax.enable_x64(True):
        params, obs = cast(params_np, jnp.float64), jnp.asarray(obs_np, jnp.float64)
        result = solve(params, obs, jnp.asarray(b))
        fisher = np.asarray(oracle(params, obs, jnp.asarray(b), 0.0)[0])
        x, residual, iterations = flat(result.x), float(result.residual_norm), result.iterations
    assert x.dtype == np.float64
    want = np.linalg.solve(fisher + damping * np.eye(b.size), b)
    assert rel_err(x, want) <= 1e-6
    assert residual <= 1e-6 * np.linalg.norm(b)
    assert 0 < int(iterations) <= b.size


@pytest.mark.parametrize("discrete", [True, False], ids=["categorical", "gaussian"])
def test_cg_undamped_tiny_batch_is_finite(discrete):
    actor, params_np, obs_np, _ = random_case(discrete, seed=9, n=2)
    rng = np.random.default_rng(10)

    @cheap_jit
    def solve(params, obs, generic):
        fvp = make_fisher_vector_product(lambda p: actor.apply(p, obs), params, 0.0)
        # a right-hand side in the Fisher's range (a policy gradient) and a generic one
        grad = jax.grad(lambda p: jnp.sum(actor.apply(p, obs)[0][:, 0]))(params)
        both = jax.tree.map(lambda a, b: jnp.stack([a, b]), grad, generic)

        def one(b):
            result = conjugate_gradient(fvp, b, 20)
            return result, fvp(result.x)

        return jax.vmap(one)(both)  # CG is documented as safe under vmap

    params = cast(params_np, jnp.float32)
    generic = cast(jax.tree.map(lambda x: rng.normal(size=x.shape), params_np), jnp.float32)
    result, product = solve(params, jnp.asarray(obs_np, jnp.float32), generic)
    x = flat(result.x)
    assert x.dtype == np.float32 and x.size == 2 * flat(params).size
    assert np.isfinite(x).all()
    assert np.isfinite(np.asarray(result.residual_norm)).all()
    assert np.isfinite(flat(product)).all()
    assert (np.asarray(result.iterations) > 0).all()


def test_cg_zero_rhs():
    b = {"a": jnp.zeros((3, 2)), "b": jnp.zeros(4)}

    def matvec(v):
        return jax.tree.map(lambda x: 2.0 * x, v)

    for fn in (matvec, lambda v: jax.tree.map(jnp.zeros_like, v)):
        result = conjugate_gradient(fn, b, 5)
        for leaf in jax.tree.leaves(result.x):
            np.testing.assert_array_equal(np.asarray(leaf), 0.0)
        assert float(result.residual_norm) == 0.0
        assert int(result.iterations) == 0


def test_cg_negative_curvature_is_guarded():
    b = {"w": jnp.array([1.0, -2.0, 0.5])}
    result = conjugate_gradient(lambda v: jax.tree.map(jnp.negative, v), b, 10)
    assert np.isfinite(np.asarray(result.x["w"])).all()
    np.testing.assert_array_equal(np.asarray(result.x["w"]), 0.0)
    assert int(result.iterations) == 0

    # indefinite diag(2, −1), b = (1, 1): one step (pᵀAp = 1, α = 2, x = (2, 2)), then
    # r = (−3, 3), p = r + 9·b = (6, 12) has pᵀAp = −72 < 0 and x stays (2, 2)
    a = jnp.diag(jnp.array([2.0, -1.0]))
    result = conjugate_gradient(lambda v: a @ v, jnp.array([1.0, 1.0]), 10)
    np.testing.assert_allclose(np.asarray(result.x), [2.0, 2.0], rtol=1e-6)
    assert int(result.iterations) == 1

    # a vector that makes pᵀAp = 0 at once (a singular direction) also leaves x at 0
    a = jnp.diag(jnp.array([1.0, -1.0]))
    result = conjugate_gradient(lambda v: a @ v, jnp.array([1.0, 1.0]), 10)
    np.testing.assert_array_equal(np.asarray(result.x), 0.0)


def test_cg_overflowing_matvec_stays_finite():
    # the docstring promises a finite x for finite b, overflow included
    b = jnp.ones(2, jnp.float32)
    for matvec in (lambda v: v * jnp.float32(1e38) * 10.0, lambda v: v * jnp.inf):
        result = conjugate_gradient(matvec, b, 5)
        assert np.isfinite(np.asarray(result.x)).all()
        assert np.isfinite(float(result.residual_norm))


def test_cg_counts_only_iterations_that_change_x():
    # A·v = 3e38·v is finite, but pᵀAp overflows: x never moves, so no iteration should count
    result = conjugate_gradient(lambda v: v * jnp.float32(3e38), jnp.ones(2, jnp.float32), 5)
    np.testing.assert_array_equal(np.asarray(result.x), 0.0)
    assert int(result.iterations) == 0


def test_cg_two_by_two_by_hand():
    # A = [[4, 1], [1, 3]], b = (1, 2) from x0 = 0:
    # r0 = p0 = (1, 2), Ap0 = (6, 7), α0 = 5/20, x1 = (1/4, 1/2), r1 = (−1/2, 1/4),
    # β0 = (5/16)/5, p1 = (−7/16, 3/8), α1 = 4/11, x2 = (1/11, 7/11) = A⁻¹b.
    with jax.enable_x64(True):
        a = jnp.array([[4.0, 1.0], [1.0, 3.0]])
        b = {"x": jnp.array([1.0, 2.0])}

        def matvec(v):
            return {"x": a @ v["x"]}

        one = conjugate_gradient(matvec, b, 1)
        two = conjugate_gradient(matvec, b, 2)
        stopped = conjugate_gradient(matvec, b, 5, tol=0.5)  # ‖r1‖² = 5/16 ≤ 0.5
    np.testing.assert_allclose(np.asarray(one.x["x"]), [0.25, 0.5], rtol=1e-14)
    np.testing.assert_allclose(float(one.residual_norm), np.sqrt(5 / 16), rtol=1e-14)
    assert int(one.iterations) == 1
    np.testing.assert_allclose(np.asarray(two.x["x"]), [1 / 11, 7 / 11], rtol=1e-13)
    assert float(two.residual_norm) <= 1e-14
    assert int(two.iterations) == 2
    np.testing.assert_allclose(np.asarray(stopped.x["x"]), [0.25, 0.5], rtol=1e-14)
    assert int(stopped.iterations) == 1


# --------------------------------------------------------------------------- line search


def quadratic_evaluate(p):
    """kl = w², improvement = 0.4 − w: KL passes for w ≤ √δ, improvement for w < 0.4."""
    w = p["w"]
    return w * w, 0.4 - w


line_search = cheap_jit(backtracking_line_search, static_argnums=(0, 5))


def test_line_search_takes_first_good_fraction():
    params = {"w": jnp.float32(0.0)}
    step = {"w": jnp.float32(1.0)}
    # fractions 1, 1/2, 1/4, 1/8, 1/16 -> w = fraction;
    # k=0: kl 1 > 0.3; k=1: kl 0.25 ok but improvement −0.1; k=2: kl 1/16, improvement 0.15
    res = line_search(quadratic_evaluate, params, step, jnp.float32(0.3), jnp.float32(0.5), 5)
    assert bool(res.accepted)
    assert int(res.backtracks) == 2
    assert float(res.fraction) == 0.25
    assert float(res.params["w"]) == 0.25
    assert float(res.kl) == 0.0625
    np.testing.assert_allclose(float(res.improvement), 0.15, rtol=1e-6)

    # a loose bound and improvement everywhere: the full step (k=0) is taken
    res = line_search(
        lambda p: (p["w"] ** 2, 1.0 - p["w"] ** 2 / 2), params, step, 2.0, jnp.float32(0.5), 5
    )
    assert int(res.backtracks) == 0 and float(res.fraction) == 1.0

    # non-finite candidates are skipped, and the first good one wins over a later one
    def evaluate(p):
        w = p["w"]
        kl = jnp.where(w > 0.6, jnp.nan, jnp.where(w == 0.25, 1.0, 0.0))
        return kl, jnp.ones_like(w)

    res = line_search(evaluate, params, step, jnp.float32(0.1), jnp.float32(0.5), 5)
    assert bool(res.accepted)
    assert int(res.backtracks) == 1 and float(res.fraction) == 0.5
    assert float(res.kl) == 0.0


def test_line_search_rejects_bit_identically():
    rng = np.random.default_rng(11)
    params = {"a": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "b": jnp.float32(0.3)}
    step = jax.tree.map(lambda x: jnp.ones_like(x) * 1e-3, params)

    def evaluate(p):
        d = sq_dist(p, params)
        return d, jnp.float32(1.0)

    num_steps = 6
    res = line_search(evaluate, params, step, jnp.float32(1e-30), jnp.float32(0.9), num_steps)
    assert not bool(res.accepted)
    assert int(res.backtracks) == num_steps
    assert float(res.fraction) == 0.0 and float(res.kl) == 0.0 and float(res.improvement) == 0.0
    for new, old in zip(jax.tree.leaves(res.params), jax.tree.leaves(params), strict=True):
        assert new.dtype == old.dtype
        assert jnp.array_equal(new, old)

    # no improvement anywhere: also rejected
    res = line_search(
        lambda p: (jnp.float32(0.0), -sq_dist(p, params)),
        params,
        step,
        jnp.float32(1.0),
        jnp.float32(0.9),
        num_steps,
    )
    assert not bool(res.accepted)
    for new, old in zip(jax.tree.leaves(res.params), jax.tree.leaves(params), strict=True):
        assert jnp.array_equal(new, old)

    # a non-finite step (every candidate NaN) is rejected and no NaN leaks into the params
    nan_step = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), params)
    res = line_search(evaluate, params, nan_step, jnp.float32(1.0), jnp.float32(0.9), num_steps)
    assert not bool(res.accepted)
    for new, old in zip(jax.tree.leaves(res.params), jax.tree.leaves(params), strict=True):
        assert jnp.array_equal(new, old)


def sq_dist(p, q):
    return sum(
        jnp.sum((x - y) ** 2) for x, y in zip(jax.tree.leaves(p), jax.tree.leaves(q), strict=True)
    )


def test_line_search_rechecks_the_pick():
    """A pick that passed under vmap but fails when evaluated on its own is rejected."""

    @jax.custom_batching.custom_vmap
    def kl_fn(w):
        return w * w

    @kl_fn.def_vmap
    def _kl_fn_vmap(axis_size, in_batched, w):
        return jnp.zeros_like(w), in_batched[0]  # the batched evaluation under-reports

    def evaluate(p):
        return kl_fn(p["w"]), jnp.ones_like(p["w"])

    params = {"w": jnp.float32(0.0)}
    res = backtracking_line_search(
        evaluate, params, {"w": jnp.float32(1.0)}, jnp.float32(0.1), jnp.float32(0.5), 3
    )
    assert not bool(res.accepted)
    assert int(res.backtracks) == 3
    assert jnp.array_equal(res.params["w"], params["w"])
    assert float(res.kl) == 0.0


# --------------------------------------------------------------------------- KL and surrogate


def test_categorical_kl_matches_references():
    rng = np.random.default_rng(12)
    p, q = rng.normal(size=(2, 7, 5)) * 2.0
    with jax.enable_x64(True):
        got = np.asarray(categorical_kl(jnp.asarray(p), jnp.asarray(q)))
        via_dispatch = np.asarray(kl_divergence((jnp.asarray(p), None), (jnp.asarray(q), None)))
        want = np.asarray(
            distrax.Categorical(logits=jnp.asarray(p)).kl_divergence(
                distrax.Categorical(logits=jnp.asarray(q))
            )
        )
        self_kl = np.asarray(categorical_kl(jnp.asarray(p), jnp.asarray(p)))
    assert got.shape == (7,)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    np.testing.assert_allclose(got, np_categorical_kl(p, q), rtol=1e-10)
    np.testing.assert_array_equal(via_dispatch, got)
    np.testing.assert_allclose(self_kl, 0.0, atol=1e-14)
    assert (got > 0).all()


def test_gaussian_kl_matches_references():
    rng = np.random.default_rng(13)
    mp, lp, mq, lq = rng.normal(size=(4, 7, 3))
    with jax.enable_x64(True):
        args = [jnp.asarray(x) for x in (mp, lp, mq, lq)]
        got = np.asarray(gaussian_kl(*args))
        via_dispatch = np.asarray(kl_divergence((args[0], args[1]), (args[2], args[3])))
        want = np.asarray(
            distrax.MultivariateNormalDiag(args[0], jnp.exp(args[1])).kl_divergence(
                distrax.MultivariateNormalDiag(args[2], jnp.exp(args[3]))
            )
        )
        self_kl = np.asarray(gaussian_kl(args[0], args[1], args[0], args[1]))
    assert got.shape == (7,)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    np.testing.assert_allclose(got, np_gaussian_kl(mp, lp, mq, lq), rtol=1e-10)
    np.testing.assert_array_equal(via_dispatch, got)
    np.testing.assert_allclose(self_kl, 0.0, atol=1e-14)


def test_kl_is_asymmetric():
    p, q = jnp.array([[2.0, 0.0, -1.0]]), jnp.array([[0.0, 0.0, 0.0]])
    pq, qp = float(categorical_kl(p, q)[0]), float(categorical_kl(q, p)[0])
    assert pq > 0 and qp > 0 and abs(pq - qp) > 1e-2
    np.testing.assert_allclose(pq, np_categorical_kl(np.asarray(p), np.asarray(q))[0], rtol=1e-5)
    np.testing.assert_allclose(qp, np_categorical_kl(np.asarray(q), np.asarray(p))[0], rtol=1e-5)

    m0, l0 = jnp.zeros((1, 2)), jnp.zeros((1, 2))
    m1, l1 = jnp.array([[1.0, -0.5]]), jnp.array([[0.7, -0.3]])
    pq, qp = float(gaussian_kl(m0, l0, m1, l1)[0]), float(gaussian_kl(m1, l1, m0, l0)[0])
    assert abs(pq - qp) > 1e-2
    want = np_gaussian_kl(*(np.asarray(x) for x in (m0, l0, m1, l1)))[0]
    np.testing.assert_allclose(pq, want, rtol=1e-5)


def test_importance_surrogate():
    rng = np.random.default_rng(14)
    old = rng.normal(-1.0, 0.5, 32)
    lp = old + rng.uniform(-0.5, 0.5, 32)
    adv = rng.normal(size=32)
    with jax.enable_x64(True):
        got = np.asarray(importance_surrogate(lp, old, adv))
        np.testing.assert_allclose(got, -np.exp(lp - old) * adv, rtol=1e-12)
        # at θ = θ_old the gradient w.r.t. log π is −Â (the plain policy gradient), and none
        # flows into the old log-probs or the advantages
        g_lp, g_old, g_adv = jax.grad(
            lambda a, b, c: jnp.sum(importance_surrogate(a, b, c)), argnums=(0, 1, 2)
        )(jnp.asarray(old), jnp.asarray(old), jnp.asarray(adv))
    np.testing.assert_allclose(np.asarray(g_lp), -adv, rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(g_old), 0.0)
    np.testing.assert_array_equal(np.asarray(g_adv), 0.0)


# --------------------------------------------------------------------------- policy problem


def policy_problem(config, actor, params, batch, damping):
    """The natural-gradient problem of the family's public loss at ``params``."""
    networks = Networks(actor, None)
    loss_fn = make_natural_loss(config, None, networks)
    return make_policy_problem(config, networks, loss_fn, params, batch, damping)


def make_batch(actor, params, obs, noise, adv_scale=1.0):
    """A batch with actions drawn from the policy at ``params`` (Gumbel-max, or μ + σ·ε)."""
    noise = cast(noise, obs.dtype)
    loc, log_std = actor.apply(params, obs)
    if log_std is None:
        action = jnp.argmax(loc + noise.gumbel, axis=-1)
    else:
        action = loc + jnp.exp(log_std) * noise.eps
    log_prob = distribution((loc, log_std)).log_prob(action)
    zeros = jnp.zeros(obs.shape[:1], obs.dtype)
    return SampleBatch(obs, action, log_prob, zeros, adv_scale * noise.advantages, zeros)


def config_for(**changes):
    base = Config(algo="trpo", num_envs=4, num_steps=4, cg_iters=10, line_search_steps=10)
    return base.replace(**changes)


@pytest.mark.parametrize("discrete", [True, False], ids=["categorical", "gaussian"])
def test_policy_problem_direction(discrete):
    actor, params_np, obs_np, noise = random_case(discrete, seed=15)
    damping = 0.1
    subsamples = (1, 2)

    @cheap_jit
    def directions(params, obs, noise):
        batch = make_batch(actor, params, obs, noise)
        # the surrogate gradient, written out independently: mean(Â_norm · ∇log π(a|s))
        adv = batch.advantages
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        grad = jax.grad(
            lambda p: jnp.mean(adv * distribution(actor.apply(p, obs)).log_prob(batch.action))
        )(params)
        out = {}
        for sub in subsamples:
            config = config_for(fisher_subsample=sub)
            problem = policy_problem(config, actor, params, batch, damping)
            fvp = make_fisher_vector_product(
                # every s-th step of each of the 4 envs (the batch is time-major, 4 x 4)
                lambda p, s=sub: actor.apply(p, obs.reshape(4, 4, -1)[::s].reshape(-1, OBS_DIM)),
                params,
                damping,
            )
            want = conjugate_gradient(fvp, grad, config.cg_iters).x
            out[sub] = {
                "direction": problem.direction,
                "want": want,
                "curvature": problem.curvature,
                "want_curvature": optax.tree.vdot(problem.direction, fvp(problem.direction)),
                "grad_norm": problem.grad_norm,
                "want_grad_norm": optax.tree.norm(grad),
                "at_old": problem.evaluate(params),
            }
        return out

    with jax.enable_x64(True):
        params, obs = cast(params_np, jnp.float64), jnp.asarray(obs_np, jnp.float64)
        out = jax.tree.map(np.asarray, directions(params, obs, noise))
    dirs = {}
    for sub in subsamples:
        r = out[sub]
        dirs[sub] = flat(r["direction"])
        assert dirs[sub].dtype == np.float64
        assert rel_err(dirs[sub], flat(r["want"])) <= 1e-10
        np.testing.assert_allclose(r["curvature"], r["want_curvature"], rtol=1e-10)
        np.testing.assert_allclose(r["grad_norm"], r["want_grad_norm"], rtol=1e-10)
        kl, improvement = r["at_old"]
        assert abs(kl) <= 1e-15 and abs(improvement) <= 1e-15
    # subsampling really changes the Fisher used
    assert rel_err(dirs[2], dirs[1]) > 1e-3


@pytest.mark.parametrize("discrete", [True, False], ids=["categorical", "gaussian"])
def test_fisher_forms_agree_float32(discrete):
    actor, params_np, obs_np, noise = random_case(discrete, seed=17)

    @cheap_jit
    def directions(params, obs, noise):
        batch = make_batch(actor, params, obs, noise)
        return {
            form: policy_problem(config_for(fisher_form=form), actor, params, batch, 0.1).direction
            for form in ("gauss_newton", "kl_hessian")
        }

    params, obs = cast(params_np, jnp.float32), jnp.asarray(obs_np, jnp.float32)
    dirs = {k: flat(v) for k, v in directions(params, obs, noise).items()}
    assert dirs["gauss_newton"].dtype == np.float32
    assert rel_err(dirs["kl_hessian"], dirs["gauss_newton"]) <= 1e-4


def test_kl_step_scale():
    np.testing.assert_allclose(float(kl_step_scale(0.01, 0.5)), np.sqrt(0.04), rtol=1e-6)
    assert float(kl_step_scale(0.01, 0.0)) == 0.0
    assert float(kl_step_scale(0.01, -1.0)) == 0.0


def test_npg_step_lengths():
    actor, params_np, obs_np, noise = random_case(True, seed=19)
    hp = NPGHParams.create(
        None,
        learning_rate=1e-3,
        gamma=0.99,
        gae_lambda=0.95,
        max_grad_norm=0.5,
        reward_scale=1.0,
        cg_damping=0.1,
        step_size=0.01,
    )

    @cheap_jit
    def steps(params, obs, noise):
        batch = make_batch(actor, params, obs, noise)
        out = {}
        for mode in ("normalized", "fixed"):
            config = config_for(algo="npg", natural_step=mode)
            problem = policy_problem(config, actor, params, batch, hp.cg_damping)
            new, metrics = npg_step(config, problem, hp)
            out[mode] = (problem.direction, problem.curvature, new, metrics, problem.evaluate(new))
        return out

    params = cast(params_np, jnp.float32)
    out = steps(params, jnp.asarray(obs_np, jnp.float32), noise)
    for mode, (direction, curvature, new, metrics, (kl, improvement)) in out.items():
        alpha = np.sqrt(2 * 0.01 / float(curvature)) if mode == "normalized" else 0.01
        delta = flat(new) - flat(params)
        np.testing.assert_allclose(delta, alpha * flat(direction), rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(float(metrics["kl"]), float(kl), rtol=1e-6)
        np.testing.assert_allclose(float(metrics["improvement"]), float(improvement), rtol=1e-6)
        assert float(metrics["improvement"]) > 0
        assert float(metrics["accepted"]) == 1.0


# --------------------------------------------------------------------------- TRPO property


TRPO_N = 32
LINE_SEARCH_STEPS = 10
# Float32 rounding of a small KL is absolute, not relative: Σ p·(log p − log q) cancels
# terms of size ~1, so the KL of two nearly equal outputs comes out within about ±5e-8 of the
# exact value (even negative). The accepted step's KL is checked against δ·(1 + 1e-5) plus this.
KL_ATOL = 2e-7


def trpo_hparams(max_kl, damping):
    return TRPOHParams(
        learning_rate=jnp.float32(1e-3),
        gamma=jnp.float32(0.99),
        gae_lambda=jnp.float32(0.95),
        max_grad_norm=jnp.float32(0.5),
        reward_scale=jnp.float32(1.0),
        env_params=None,
        cg_damping=damping,
        max_kl=max_kl,
        backtrack_ratio=jnp.float32(0.8),
    )


@functools.cache
def trpo_run(discrete):
    """One jitted TRPO policy step on a random actor and batch; compiled once per kind."""
    actor = make_actor(discrete)
    config = config_for(num_envs=4, num_steps=TRPO_N // 4, line_search_steps=LINE_SEARCH_STEPS)

    @cheap_jit
    def run(params, obs, noise, max_kl, adv_scale, damping):
        batch = make_batch(actor, params, obs, noise, adv_scale)
        hparams = trpo_hparams(max_kl, damping)
        problem = policy_problem(config, actor, params, batch, hparams.cg_damping)
        new_params, metrics = trpo_step(config, problem, hparams)
        return new_params, metrics

    @cheap_jit
    def mean_kl32(params, new_params, obs):
        return jnp.mean(kl_divergence(actor.apply(params, obs), actor.apply(new_params, obs)))

    @cheap_jit
    def mean_kl64(params, new_params, obs):
        params, new_params, obs = cast((params, new_params, obs), jnp.float64)
        return jnp.mean(ref_kl(actor.apply(params, obs), actor.apply(new_params, obs)))

    return run, mean_kl32, mean_kl64


def check_trpo_step(discrete, seed, max_kl, adv_scale, damping=0.1):
    """Runs one TRPO step and checks its invariants; returns (accepted, backtracks)."""
    run, mean_kl32, mean_kl64 = trpo_run(discrete)
    max_kl = np.float32(max_kl)
    _, params, obs, noise = random_case(discrete, seed, n=TRPO_N)
    params, obs = cast(params, jnp.float32), jnp.asarray(obs, jnp.float32)
    new_params, metrics = run(
        params, obs, noise, jnp.float32(max_kl), jnp.float32(adv_scale), jnp.float32(damping)
    )
    accepted = bool(metrics["accepted"])
    backtracks = int(metrics["backtracks"])
    same = [
        bool(jnp.array_equal(a, b))
        for a, b in zip(jax.tree.leaves(new_params), jax.tree.leaves(params), strict=True)
    ]
    if accepted:
        assert float(metrics["kl"]) <= max_kl  # exactly, in float32
        kl32 = float(mean_kl32(params, new_params, obs))
        with jax.enable_x64(True):
            kl64 = float(mean_kl64(params, new_params, obs))
        assert kl32 <= max_kl * (1 + 1e-5) + KL_ATOL
        assert kl64 <= max_kl * (1 + 1e-5) + KL_ATOL
        assert abs(kl32 - float(metrics["kl"])) <= 1e-5 * max_kl + KL_ATOL
        np.testing.assert_allclose(float(metrics["step_fraction"]), 0.8**backtracks, rtol=1e-5)
        assert 0 <= backtracks < LINE_SEARCH_STEPS
        assert float(metrics["improvement"]) > 0
        assert not all(same)
    else:
        assert all(same)  # bit-identical
        assert backtracks == LINE_SEARCH_STEPS
        assert float(metrics["kl"]) == 0.0
        assert float(metrics["improvement"]) == 0.0
        assert float(metrics["step_fraction"]) == 0.0
    return accepted, backtracks


@settings(max_examples=25, deadline=None)
@given(
    discrete=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
    max_kl=st.floats(1e-4, 0.1),
    damping=st.sampled_from([1e-3, 0.1]),
    # forced rejections: a bound below float32 resolution, or zero advantages (zero gradient)
    force=st.sampled_from(["none", "none", "none", "tiny_kl", "zero_adv"]),
)
def test_trpo_step_respects_kl_bound(discrete, seed, max_kl, damping, force):
    max_kl = 1e-12 if force == "tiny_kl" else max_kl
    adv_scale = 0.0 if force == "zero_adv" else 1.0
    accepted, backtracks = check_trpo_step(discrete, seed, max_kl, adv_scale, damping)
    event("accepted" if accepted else "rejected")
    event(f"backtracks={backtracks}")


@pytest.mark.parametrize("discrete", [True, False], ids=["categorical", "gaussian"])
def test_trpo_step_branches(discrete):
    # every branch is exercised, not just allowed: full steps are taken; with little damping
    # the quadratic model underestimates the KL and the line search backtracks; zero
    # advantages give a zero gradient (zero step, no improvement) and a rejection
    assert check_trpo_step(discrete, 0, 0.01, 1.0) == (True, 0)
    outcomes = [
        check_trpo_step(discrete, seed, max_kl, 1.0, damping=1e-3)
        for seed in range(8)
        for max_kl in (1e-4, 0.01, 0.1)
    ]
    assert any(accepted and backtracks > 0 for accepted, backtracks in outcomes)
    for seed in range(3):
        assert check_trpo_step(discrete, seed, 0.01, 0.0) == (False, LINE_SEARCH_STEPS)
