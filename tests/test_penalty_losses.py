"""KL-penalised losses (PPO-KL, MDPO, MCPO), the policy-gradient loss, and the PPO-KL and MDPO
update rules: NumPy references, the policy gradient at θ = θ_old, β adaptation, the MDPO
step-size schedule, and the direction of each method's KL.

Compiling dominates the cost on a 2-core machine, so the rule tests trace each rule once with
the hparams as arguments, and the one training run is compiled once for both KL targets.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    ACTION_DIMS,
    KINDS,
    OBS_DIM,
    init_params,
    np_categorical_kl,
    np_gaussian_kl,
    np_log_softmax,
    random_actions,
    random_batch,
    tiny_actor,
    tiny_config,
    tiny_critic,
    to_numpy,
)
from rule_helpers import cheap_jit

from jaxpo import Config, default_hparams, make_train
from jaxpo.algos import ALGORITHMS, MDPOHParams, PPOKLHParams
from jaxpo.algos.mdpo import make_mdpo_adaptation
from jaxpo.algos.ppo_kl import make_ppo_kl_adaptation
from jaxpo.losses import (
    adapt_kl_coef,
    importance_surrogate,
    kl_divergence,
    mcpo,
    mdpo,
    mdpo_inverse_step,
    policy_gradient,
    ppo_kl,
)
from jaxpo.networks import Networks, distribution

# These tests check numerics, not speed: skip XLA's expensive CPU code generation (as in
# tests/test_natgrad.py), which roughly halves compile time.
NUM_ACTIONS = ACTION_DIMS["categorical"]
ACTION_DIM = ACTION_DIMS["gaussian"]
#: hidden layers of the rule tests' actor and critic
HIDDEN = (4,)


# --------------------------------------------------------------------------- NumPy references


def np_kl(p, q):
    """KL(p‖q) per sample, closed form in float64, for ``(logits, None)`` or
    ``(mean, log_std)`` pairs."""
    if p[1] is None:
        return np_categorical_kl(np.asarray(p[0], np.float64), np.asarray(q[0], np.float64))
    return np_gaussian_kl(*(np.asarray(x, np.float64) for x in (*p, *q)))


def np_log_prob(dist, action):
    if dist[1] is None:
        log_p = np_log_softmax(np.asarray(dist[0], np.float64))
        return np.take_along_axis(log_p, np.asarray(action)[:, None], axis=-1)[:, 0]
    mean, log_std = (np.asarray(x, np.float64) for x in dist)
    z = (np.asarray(action, np.float64) - mean) * np.exp(-log_std)
    return np.sum(-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi), axis=-1)


def np_adapt(beta, kl, target):
    beta, kl, target = (np.asarray(x) for x in (beta, kl, target))
    # d < d_targ/1.5 written as 1.5·d < d_targ, in the inputs' precision
    f = np.asarray(1.5, np.result_type(kl, target))
    new = np.where(kl > f * target, 2 * beta, np.where(f * kl < target, beta / 2, beta))
    return np.clip(new, np.float32(1e-6), np.float32(1e6)).astype(new.dtype)


def np_normalize(adv):
    adv = np.asarray(adv, np.float64)
    return (adv - adv.mean()) / (adv.std() + 1e-8)


def random_dist(rng, kind, n, scale=1.0):
    if kind == "categorical":
        return scale * rng.normal(size=(n, NUM_ACTIONS)), None
    return scale * rng.normal(size=(n, ACTION_DIM)), 0.5 * rng.normal(size=(n, ACTION_DIM))


# --------------------------------------------------------------------------- losses vs NumPy


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(2))
def test_losses_match_numpy(kind, seed):
    rng = np.random.default_rng(seed)
    n = 64
    new, old, virtual = (random_dist(rng, kind, n) for _ in range(3))
    action = random_actions(rng, kind, n)
    lp, olp = np_log_prob(new, action), np_log_prob(old, action)
    adv = rng.normal(0.0, 2.0, n)
    kl_old_new, kl_new_old, kl_virtual_new = np_kl(old, new), np_kl(new, old), np_kl(virtual, new)
    # the data are asymmetric enough that the direction of each KL matters
    assert np.abs(kl_old_new - kl_new_old).mean() > 0.1
    beta, inv_step, switch = 2.5, 3.0, 0.3
    ratio = np.exp(lp - olp)

    with jax.enable_x64(True):
        jnew, jold, jvirtual = (jax.tree.map(jnp.asarray, d) for d in (new, old, virtual))
        # jaxpo's closed-form KL is the NumPy one in the same direction
        np.testing.assert_allclose(kl_divergence(jold, jnew), kl_old_new, rtol=1e-12)
        np.testing.assert_allclose(kl_divergence(jnew, jold), kl_new_old, rtol=1e-12)
        np.testing.assert_allclose(kl_divergence(jvirtual, jnew), kl_virtual_new, rtol=1e-12)
        got = {
            "pg": policy_gradient(lp, adv),
            "surrogate": importance_surrogate(lp, olp, adv),
            "ppo_kl": ppo_kl(lp, olp, adv, kl_old_new, beta),
            "mdpo": mdpo(lp, olp, adv, kl_new_old, inv_step),
            "mcpo": mcpo(lp, olp, adv, kl_old_new, kl_virtual_new, switch),
        }
    want = {
        "pg": -lp * adv,
        "surrogate": -ratio * adv,
        "ppo_kl": -ratio * adv + beta * kl_old_new,
        "mdpo": -ratio * adv + inv_step * kl_new_old,
        "mcpo": -ratio * adv + switch * kl_old_new + (1 - switch) * kl_virtual_new,
    }
    for name, value in got.items():
        assert value.shape == (n,), name
        assert value.dtype == jnp.float64, name
        np.testing.assert_allclose(value, want[name], rtol=1e-12, atol=1e-12, err_msg=name)


def test_losses_float32_match_numpy():
    rng = np.random.default_rng(7)
    n = 128
    lp, olp, kl1, kl2 = (x.astype(np.float32) for x in rng.normal(-1.0, 0.3, (4, n)))
    kl1, kl2 = np.abs(kl1), np.abs(kl2)
    adv = rng.normal(size=n).astype(np.float32)
    r = np.exp(lp.astype(np.float64) - olp)
    jit = cheap_jit  # one compile per loss
    np.testing.assert_allclose(
        jit(ppo_kl)(lp, olp, adv, kl1, 0.7), -r * adv + 0.7 * kl1, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        jit(mdpo)(lp, olp, adv, kl1, 4.0), -r * adv + 4.0 * kl1, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        jit(mcpo)(lp, olp, adv, kl1, kl2, 0.25),
        -r * adv + 0.25 * kl1 + 0.75 * kl2,
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(jit(policy_gradient)(lp, adv), -lp * adv, rtol=1e-6)


def test_coefficients_old_log_probs_and_advantages_carry_no_gradient():
    rng = np.random.default_rng(3)
    lp, olp, adv, kl1, kl2 = (jnp.asarray(x, jnp.float32) for x in rng.normal(size=(5, 16)))
    kl1, kl2 = jnp.abs(kl1), jnp.abs(kl2)
    losses = {
        "ppo_kl": lambda lp, olp, adv, kl1, kl2, c: ppo_kl(lp, olp, adv, kl1, c),
        "mdpo": lambda lp, olp, adv, kl1, kl2, c: mdpo(lp, olp, adv, kl1, c),
        "mcpo": lambda lp, olp, adv, kl1, kl2, c: mcpo(lp, olp, adv, kl1, kl2, c),
    }
    c = jnp.float32(0.4)
    for name, fn in losses.items():
        grads = jax.grad(lambda *a, fn=fn: fn(*a).sum(), argnums=(1, 2, 5))(
            lp, olp, adv, kl1, kl2, c
        )
        for g in grads:
            np.testing.assert_array_equal(g, 0.0, err_msg=name)
    # the penalties enter linearly with their (constant) coefficients
    g_ppo = jax.grad(lambda k: ppo_kl(lp, olp, adv, k, c).sum())(kl1)
    g_mdpo = jax.grad(lambda k: mdpo(lp, olp, adv, k, c).sum())(kl1)
    g_mcpo = jax.grad(lambda k1, k2: mcpo(lp, olp, adv, k1, k2, c).sum(), argnums=(0, 1))(kl1, kl2)
    np.testing.assert_allclose(g_ppo, 0.4, rtol=1e-6)
    np.testing.assert_allclose(g_mdpo, 0.4, rtol=1e-6)
    np.testing.assert_allclose(g_mcpo[0], 0.4, rtol=1e-6)
    np.testing.assert_allclose(g_mcpo[1], 0.6, rtol=1e-6)
    g_pg = jax.grad(lambda a: policy_gradient(lp, a).sum())(adv)
    np.testing.assert_array_equal(g_pg, 0.0)
    np.testing.assert_allclose(jax.grad(lambda x: policy_gradient(x, adv).sum())(lp), -adv)


# --------------------------------------------------------------------------- gradient at θ_old


def tiny_policy(kind):
    """``(params, apply)`` of a linear policy: logits = obs @ W, or mean = obs @ W and a
    state-independent log-std vector."""
    rng = np.random.default_rng(11)
    if kind == "categorical":
        params = {"W": 0.7 * rng.normal(size=(OBS_DIM, NUM_ACTIONS))}
        return params, lambda p, obs: (obs @ p["W"], None)
    params = {"W": 0.7 * rng.normal(size=(OBS_DIM, ACTION_DIM)), "log_std": np.array([-0.3, 0.4])}

    def apply(p, obs):
        mean = obs @ p["W"]
        return mean, jnp.broadcast_to(p["log_std"], mean.shape)

    return params, apply


def perturb(params, rng, scale):
    return jax.tree.map(lambda x: x + scale * rng.normal(size=np.shape(x)), params)


@pytest.mark.parametrize("kind", KINDS)
def test_penalty_gradients_at_old_policy_are_the_policy_gradient(kind):
    rng = np.random.default_rng(12)
    n = 32
    theta_old, apply = tiny_policy(kind)
    obs = rng.normal(size=(n, OBS_DIM))
    action = random_actions(rng, kind, n)
    adv = rng.normal(size=n)
    psi = perturb(theta_old, rng, 0.5)  # a virtual policy different from θ_old

    with jax.enable_x64(True):
        theta_old, psi = (jax.tree.map(jnp.asarray, p) for p in (theta_old, psi))
        obs, action, adv = jnp.asarray(obs), jnp.asarray(action), jnp.asarray(adv)
        old_out = jax.lax.stop_gradient(apply(theta_old, obs))
        old_lp = distribution(old_out).log_prob(action)

        def terms(theta):
            out = apply(theta, obs)
            return out, distribution(out).log_prob(action)

        def pg(theta):
            return policy_gradient(terms(theta)[1], adv).mean()

        def surrogate(theta):
            return importance_surrogate(terms(theta)[1], old_lp, adv).mean()

        def ppo_kl_loss(theta):
            out, lp = terms(theta)
            return ppo_kl(lp, old_lp, adv, kl_divergence(old_out, out), 3.0).mean()

        def mdpo_loss(theta):
            out, lp = terms(theta)
            return mdpo(lp, old_lp, adv, kl_divergence(out, old_out), 5.0).mean()

        def mcpo_loss(theta, virtual=old_out):
            out, lp = terms(theta)
            kl_virtual = kl_divergence(virtual, out)
            return mcpo(lp, old_lp, adv, kl_divergence(old_out, out), kl_virtual, 0.3).mean()

        def grad(fn, theta):
            return np.concatenate([np.ravel(g) for g in jax.tree.leaves(jax.grad(fn)(theta))])

        want = grad(pg, theta_old)
        assert np.abs(want).max() > 1e-2
        for name, fn in [
            ("surrogate", surrogate),
            ("ppo_kl", ppo_kl_loss),
            ("mdpo", mdpo_loss),
            ("mcpo", mcpo_loss),
        ]:
            np.testing.assert_allclose(grad(fn, theta_old), want, rtol=0, atol=1e-10, err_msg=name)
            # the loss value at θ_old is −mean(Â): ratio 1 and every KL 0
            np.testing.assert_allclose(fn(theta_old), -adv.mean(), rtol=0, atol=1e-12)

        # The KL terms are live: away from θ_old they change the gradient, and a virtual
        # policy ψ ≠ θ_old pulls MCPO's gradient away from the policy gradient even at θ_old.
        theta = perturb(theta_old, rng, 0.2)
        g_surrogate = grad(surrogate, theta)
        for fn in (ppo_kl_loss, mdpo_loss, mcpo_loss):
            assert np.abs(grad(fn, theta) - g_surrogate).max() > 1e-3
        psi_out = jax.lax.stop_gradient(apply(psi, obs))
        g_psi = grad(functools.partial(mcpo_loss, virtual=psi_out), theta_old)
        assert np.abs(g_psi - want).max() > 1e-3


# --------------------------------------------------------------------------- adapt_kl_coef


ADAPT_TARGETS = [1e-5, 0.01, 0.02, 0.3, 1.0, 3.0]


def boundary_cases(target):
    """kl values at and around both thresholds, in float32 as adapt_kl_coef sees them."""
    t = np.float32(target)
    hi, lo = np.float32(1.5) * t, t / np.float32(1.5)
    up, down = np.float32(np.inf), np.float32(0.0)
    steps = [np.float32(0.0), lo, t, hi, np.float32(2.0) * t, np.float32(1e3) * t]
    for edge in (lo, hi):
        steps += [np.nextafter(edge, down), np.nextafter(edge, up)]
        steps += [
            np.nextafter(np.nextafter(edge, down), down),
            np.nextafter(np.nextafter(edge, up), up),
        ]
    return np.array(sorted(steps), np.float32)


@pytest.mark.parametrize("target", ADAPT_TARGETS)
def test_adapt_kl_coef_rule_and_boundaries(target):
    t = np.float32(target)
    kls = boundary_cases(target)
    beta = np.float32(0.75)
    want = np_adapt(beta, kls, t)
    # the rule: halve well below d_targ/1.5, keep at d_targ and at 1.5·d_targ, double above
    factor = want / beta
    assert factor[0] == 0.5 and factor[-1] == 2.0
    assert factor[kls == t] == 1.0 and factor[kls == np.float32(1.5) * t] == 1.0
    assert (factor[kls > np.float32(1.5) * t] == 2.0).all()
    assert (factor[kls < t / np.float32(1.5) * np.float32(0.999)] == 0.5).all()
    # eager and jitted agree exactly with the float32 reference, boundaries included
    eager = [float(adapt_kl_coef(beta, kl, t)) for kl in kls]
    np.testing.assert_array_equal(eager, want)
    jitted = cheap_jit(jax.vmap(adapt_kl_coef, in_axes=(None, 0, None)))(beta, kls, t)
    np.testing.assert_array_equal(np.asarray(jitted), want)


def test_adapt_kl_coef_vmapped_matches_numpy():
    rng = np.random.default_rng(21)
    n = 512
    target = np.exp(rng.uniform(np.log(1e-4), np.log(1.0), n)).astype(np.float32)
    kl = (target * np.exp(rng.uniform(-2.0, 2.0, n))).astype(np.float32)
    beta = np.exp(rng.uniform(-3.0, 3.0, n)).astype(np.float32)
    want = np_adapt(beta, kl, target)
    # every branch is exercised
    for factor in (0.5, 1.0, 2.0):
        assert (want == factor * beta).sum() > 20
    np.testing.assert_array_equal(cheap_jit(jax.vmap(adapt_kl_coef))(beta, kl, target), want)
    np.testing.assert_array_equal(adapt_kl_coef(beta, kl, target), want)  # broadcasting
    # β stays in [1e-6, 1e6]: endless doubling never overflows, halving never reaches 0
    beta = np.float32(1e6)
    for _ in range(3):
        beta = adapt_kl_coef(beta, np.float32(1.0), np.float32(1e-3))
    np.testing.assert_allclose(beta, 1e6)
    beta = np.float32(1e-6)
    for _ in range(3):
        beta = adapt_kl_coef(beta, np.float32(0.0), np.float32(1e-3))
    np.testing.assert_allclose(beta, 1e-6)


# --------------------------------------------------------------------------- MDPO step sizes


@pytest.mark.parametrize("horizon", [1, 4, 10, 7.5, 5000])
def test_mdpo_inverse_step_schedule(horizon):
    ks = np.arange(1, int(np.ceil(horizon)) + 30)
    want = 1.0 / np.maximum(1.0 - (ks - 1.0) / horizon, 1.0 / horizon)
    got = np.asarray(cheap_jit(jax.vmap(mdpo_inverse_step, in_axes=(0, None)))(ks, horizon))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    within = ks <= horizon
    np.testing.assert_allclose(got[within], 1.0 / (1.0 - (ks[within] - 1.0) / horizon), rtol=1e-6)
    assert got[0] == 1.0  # k = 1: t_1 = 1
    # floored at t_k = 1/K: never above K, and exactly K once k ≥ K + 1
    np.testing.assert_allclose(got[ks >= horizon + 1], horizon, rtol=1e-6)
    assert np.all(got <= np.float32(horizon) * (1 + 1e-6))
    assert np.all(np.diff(got) >= 0)
    # eager with Python ints, as the algorithm's int32 counter
    assert float(mdpo_inverse_step(1, horizon)) == 1.0
    np.testing.assert_allclose(float(mdpo_inverse_step(10**6, horizon)), horizon, rtol=1e-6)


def test_mdpo_without_penalty_is_the_surrogate():
    rng = np.random.default_rng(5)
    lp, olp, adv, kl = (x.astype(np.float32) for x in rng.normal(size=(4, 64)))
    kl = np.abs(kl) + 0.1
    np.testing.assert_array_equal(mdpo(lp, olp, adv, kl, 0.0), importance_surrogate(lp, olp, adv))
    # with the first iteration's step (1/t_1 = 1) the full KL is added
    np.testing.assert_allclose(
        mdpo(lp, olp, adv, kl, mdpo_inverse_step(1, 100.0)),
        np.asarray(importance_surrogate(lp, olp, adv)) + kl,
        rtol=1e-6,
    )


# --------------------------------------------------------------------------- KL directions

# An asymmetric pair: KL(p‖q) ≈ 0.551 and KL(q‖p) ≈ 0.751 for the categoricals; 0.349 and
# 0.932 for the Gaussians N(0, 1) and N(0.5, 2²) (per dimension).
P_CAT = np.log(np.array([0.9, 0.05, 0.05]))
Q_CAT = np.log(np.array([0.4, 0.3, 0.3]))
P_GAUSS = (np.array([0.0, 0.0]), np.log(np.array([1.0, 1.0])))
Q_GAUSS = (np.array([0.5, 0.5]), np.log(np.array([2.0, 2.0])))


def asymmetric_pair(kind, n):
    """π_new and π_old outputs, broadcast to ``n`` states."""
    if kind == "categorical":
        return (np.broadcast_to(P_CAT, (n, 3)), None), (np.broadcast_to(Q_CAT, (n, 3)), None)
    p, q = ((np.broadcast_to(m, (n, 2)), np.broadcast_to(s, (n, 2))) for m, s in (P_GAUSS, Q_GAUSS))
    return p, q


@pytest.mark.parametrize("kind", KINDS)
def test_the_direction_tests_pair_is_asymmetric(kind):
    """The pair the rule-level direction test uses has clearly different KLs each way (so a
    reversed direction changes the loss), matching hand-computed values."""
    n = 8
    new, old = asymmetric_pair(kind, n)
    forward = np.asarray(kl_divergence(*jax.tree.map(jnp.asarray, (new, old))))
    reverse = np.asarray(kl_divergence(*jax.tree.map(jnp.asarray, (old, new))))
    np.testing.assert_allclose(forward, np_kl(new, old), rtol=1e-5)
    np.testing.assert_allclose(reverse, np_kl(old, new), rtol=1e-5)
    want = {"categorical": (0.5507, 0.7507), "gaussian": (2 * 0.3494, 2 * 0.9319)}[kind]
    np.testing.assert_allclose([forward[0], reverse[0]], want, atol=2e-4)


# --------------------------------------------------------------------------- the rules


TINY_CRITIC = tiny_critic(HIDDEN)


def rule_config(algo):
    return tiny_config(algo, num_steps=8, hidden_sizes=HIDDEN)


def tiny_hparams(cls, **overrides):
    return cls.default(None, **overrides)


def constant_policy_params(kind, params, dist):
    """Actor params whose output is ``dist`` (one state's) for every observation."""
    actor = jax.tree.map(lambda x: x, params["actor"])
    head = actor["params"]["MLP_0"]["Dense_1"]
    head["kernel"] = jnp.zeros_like(head["kernel"])
    head["bias"] = jnp.asarray(dist[0], jnp.float32)
    if kind == "gaussian":
        actor["params"]["log_std"] = jnp.asarray(dist[1], jnp.float32)
    return {**params, "actor": actor}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("algo", ["ppo_kl", "mdpo"])
def test_rule_policy_term_uses_the_method_kl_direction(kind, algo):
    """PPO-KL's loss penalises KL(π_old‖π_θ), MDPO's KL(π_θ‖π_old); their after-update KL
    metrics measure the same direction. π_θ and π_old are the asymmetric pair above."""
    n = 16
    rng = np.random.default_rng(1)
    new, old = asymmetric_pair(kind, n)
    batch = random_batch(rng, kind, n)
    batch = batch._replace(
        log_prob=np_log_prob(old, batch.action).astype(np.float32),
        old_outputs=jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), old),
    )
    new_dist = (P_CAT, None) if kind == "categorical" else P_GAUSS
    params = init_params(kind, hidden_sizes=HIDDEN, critic_sizes=HIDDEN)
    params = constant_policy_params(kind, params, new_dist)
    config = rule_config(algo)
    networks = Networks(tiny_actor(kind, HIDDEN), TINY_CRITIC)
    if algo == "mdpo":
        hparams = tiny_hparams(MDPOHParams, horizon=4.0)
        adaptation = make_mdpo_adaptation(config, hparams, networks)
        algo_state, coef = jnp.int32(3), 2.0  # 1/t_3 = 1/(1 − 2/4)
    else:
        hparams = tiny_hparams(PPOKLHParams, kl_target=0.01, kl_coef_init=1.0)
        adaptation = make_ppo_kl_adaptation(config, hparams, networks)
        algo_state, coef = jnp.float32(2.5), 2.5

    loss_fn = ALGORITHMS[algo].make_loss(config, hparams, networks)
    _, metrics = cheap_jit(loss_fn)(params, batch, algo_state)
    ratio = np.exp(np_log_prob(new, batch.action) - batch.log_prob)
    surrogate = -ratio * np_normalize(batch.advantages)
    forward, reverse = np_kl(new, old), np_kl(old, new)  # KL(π_θ‖π_old), KL(π_old‖π_θ)
    right, wrong = (forward, reverse) if algo == "mdpo" else (reverse, forward)
    want = np.mean(surrogate + coef * right)
    assert abs(want - np.mean(surrogate + coef * wrong)) > 0.3
    np.testing.assert_allclose(metrics["policy_loss"], want, rtol=1e-5)

    # finish: the KL metric is measured in the same direction, from the batch's π_old
    _, finish_metrics = adaptation.finish(algo_state, params, params, batch)
    np.testing.assert_allclose(finish_metrics["kl"], right.mean(), rtol=1e-5)
    assert abs(right.mean() - wrong.mean()) > 0.1
    # prepare: π_old's outputs are recorded from the pre-update parameters
    _, prepared = adaptation.prepare(params, algo_state, batch._replace(old_outputs=None))
    np.testing.assert_allclose(prepared.old_outputs[0], new[0], rtol=1e-5, atol=1e-6)


def rule_program(algo, config, actor):
    """``init`` and ``update`` jitted once each, with the hparams as traced arguments."""
    make_rule = ALGORITHMS[algo].make_update_rule

    @cheap_jit
    def init(hparams, params):
        return make_rule(config, hparams, Networks(actor, TINY_CRITIC)).init(params)

    @cheap_jit
    def update(hparams, params, state, batch, key):
        rule = make_rule(config, hparams, Networks(actor, TINY_CRITIC))
        return rule.update(params, state, batch, key)

    return init, update


def mean_kl_np(actor, p, q, obs):
    """Mean NumPy KL(π_p‖π_q) over ``obs``."""
    return np_kl(*(jax.tree.map(np.asarray, actor.apply(x["actor"], obs)) for x in (p, q))).mean()


def test_ppo_kl_rule_adapts_beta():
    kind = "categorical"
    config = rule_config("ppo_kl")
    actor = tiny_actor(kind, HIDDEN)
    init, update = rule_program("ppo_kl", config, actor)
    params = init_params(kind, seed=3, hidden_sizes=HIDDEN, critic_sizes=HIDDEN)
    rng = np.random.default_rng(4)
    batch = random_batch(rng, kind, config.batch_size)
    batch = batch._replace(
        log_prob=np.asarray(
            distribution(actor.apply(params["actor"], batch.obs)).log_prob(batch.action)
        )
    )
    key = jax.random.key(0)
    beta0 = 0.8
    hp = tiny_hparams(PPOKLHParams, kl_coef_init=beta0, kl_target=0.01, learning_rate=0.05)

    state = init(hp, params)
    assert float(state["algo"]) == np.float32(beta0)
    new_params, new_state, metrics = update(hp, params, state, batch, key)
    kl = float(metrics["kl"])
    assert float(metrics["kl_coef"]) == np.float32(beta0)  # the β the loss used
    # the metric is E_s[KL(π_old ‖ π_new)] on the batch
    np.testing.assert_allclose(kl, mean_kl_np(actor, params, new_params, batch.obs), rtol=1e-4)
    assert kl > 1e-4
    assert float(new_state["algo"]) == float(adapt_kl_coef(beta0, kl, 0.01))

    # β's next value for targets that double, keep and halve it; the step itself (and the
    # measured KL) does not depend on the target, only on β.
    for target, factor in [(kl / 3, 2.0), (kl, 1.0), (kl * 1.4, 1.0), (kl * 3, 0.5)]:
        hp_t = hp.set(kl_target=target)
        _, s, m = update(hp_t, params, init(hp_t, params), batch, key)
        assert float(m["kl"]) == kl
        assert float(s["algo"]) == np.float32(beta0) * factor, (target, factor)
        assert float(s["algo"]) == float(adapt_kl_coef(m["kl_coef"], m["kl"], hp_t.kl_target))

    # a second update uses the adapted β and adapts it again
    hp_t = hp.set(kl_target=kl / 3)
    p1, s1, _ = update(hp_t, params, init(hp_t, params), batch, key)
    _, s2, m2 = update(hp_t, p1, s1, batch, jax.random.key(1))
    assert float(m2["kl_coef"]) == float(s1["algo"]) == np.float32(2 * beta0)
    assert float(s2["algo"]) == float(adapt_kl_coef(m2["kl_coef"], m2["kl"], hp_t.kl_target))


def test_mdpo_rule_counts_iterations():
    kind = "gaussian"
    config = rule_config("mdpo")
    actor = tiny_actor(kind, HIDDEN)
    init, update = rule_program("mdpo", config, actor)
    params = init_params(kind, seed=5, hidden_sizes=HIDDEN, critic_sizes=HIDDEN)
    rng = np.random.default_rng(6)
    batch = random_batch(rng, kind, config.batch_size)
    hp = tiny_hparams(MDPOHParams, horizon=3.0, learning_rate=0.05)
    state = init(hp, params)
    assert int(state["algo"]) == 1
    want_inv = [1.0, 1.5, 3.0, 3.0, 3.0]  # 1/t_k for K = 3, floored at K
    for k, inv in enumerate(want_inv, start=1):
        key = jax.random.key(k)
        new_params, new_state, metrics = update(hp, params, state, batch, key)
        np.testing.assert_allclose(metrics["inv_step"], inv, rtol=1e-6)
        assert int(new_state["algo"]) == k + 1
        # the metric is E_s[KL(π_new ‖ π_old)] on the batch
        np.testing.assert_allclose(
            metrics["kl"], mean_kl_np(actor, new_params, params, batch.obs), rtol=1e-4
        )
        params, state = new_params, new_state
    assert np.isfinite(float(metrics["policy_loss"]))


# --------------------------------------------------------------------------- training run


# Far below the KL of an update here (1e-7 to 1e-4 over these ten updates, even as β grows):
# 1e-5 is not, and β then halves as often as it doubles.
TINY_TARGET = 1e-8


@pytest.fixture(scope="module")
def ppo_kl_runs():
    config = Config(
        algo="ppo_kl",
        env_id="gymnax:CartPole-v1",
        num_envs=4,
        num_steps=32,
        total_timesteps=4 * 32 * 10,
        hidden_sizes=(16, 16),
        anneal_lr=False,  # keeps the late updates' KL from vanishing with the learning rate
    )
    assert config.num_updates == 10
    train = cheap_jit(make_train(config))
    hp = default_hparams(config)
    runs = {}
    for target in (TINY_TARGET, 1.0):
        hp_t = hp.set(kl_target=target)
        result = train(jax.random.key(0), hp_t)
        runs[target] = (
            to_numpy(result.metrics),
            float(result.state.rule_state["algo"]),
            float(hp_t.kl_target),
            float(hp_t.kl_coef_init),
        )
    return runs


def check_beta_sequence(metrics, final_beta, target, beta0):
    beta, kl = metrics["kl_coef"], metrics["kl"]
    assert beta.shape == kl.shape == (10,)
    assert np.all(np.isfinite(kl)) and np.all(kl > 0)
    assert beta[0] == np.float32(beta0)
    np.testing.assert_array_equal(beta[1:], np_adapt(beta[:-1], kl[:-1], np.float32(target)))
    assert final_beta == np_adapt(beta[-1], kl[-1], np.float32(target))
    return beta, kl


def test_ppo_kl_training_doubles_beta_for_a_tiny_target(ppo_kl_runs):
    metrics, final_beta, target, beta0 = ppo_kl_runs[TINY_TARGET]
    beta, kl = check_beta_sequence(metrics, final_beta, target, beta0)
    doubled = beta[1:] == 2 * beta[:-1]
    assert doubled.sum() >= 5, (beta, kl)
    # strictly increasing while the measured KL stays above 1.5·target
    above = np.flatnonzero(kl[:-1] <= 1.5 * np.float32(target))
    first = above[0] if above.size else len(kl) - 1
    assert first >= 5
    assert np.all(np.diff(beta[: first + 1]) > 0)


def test_ppo_kl_training_halves_beta_for_a_huge_target(ppo_kl_runs):
    metrics, final_beta, target, beta0 = ppo_kl_runs[1.0]
    beta, kl = check_beta_sequence(metrics, final_beta, target, beta0)
    assert np.all(kl < target / 1.5)
    np.testing.assert_array_equal(beta, np.float32(beta0) * 0.5 ** np.arange(10))
    assert final_beta == beta0 * 0.5**10
