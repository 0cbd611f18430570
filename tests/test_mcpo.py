"""MCPO: the policy memory and its diversity writes, the attention-weighted virtual policy,
the switching coefficient, its reduction to PPO-KL, static shapes under a sweep, validation.

Compiling dominates the cost on a 2-core machine: the rule-level tests trace each rule piece
once with the hparams as arguments (and cheap CPU code generation), and the training-run
tests share one sweep.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    KINDS,
    init_params,
    random_batch,
    tiny_actor,
    tiny_config,
    tiny_networks,
    to_numpy,
)
from rule_helpers import cheap_jit
from sweeps import sweep_twice_and_alone

from jaxpo import Config, default_hparams, make_train, sweep
from jaxpo.algos import ALGORITHMS, MCPOHParams, PPOKLHParams
from jaxpo.algos.actor_critic import normalize
from jaxpo.algos.mcpo import (
    attention_weights,
    make_mcpo_adaptation,
    should_write,
    virtual_params,
    write_slot,
)
from jaxpo.algos.ppo_kl import make_ppo_kl_adaptation
from jaxpo.losses import kl_divergence, mcpo, ppo_kl
from jaxpo.networks import distribution
from jaxpo.train import make_trainer

# The rule tests' networks are helpers.tiny_networks(kind): an (8, 8) actor, an (8,) critic.
N_SLOTS = 4
N_SAMPLES = 32  # num_envs * num_steps of RULE_CONFIG
RULE_CONFIG = tiny_config("mcpo", hidden_sizes=(8, 8), memory_size=N_SLOTS)


def perturb(tree, seed, scale):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: x + jnp.asarray(scale * rng.normal(size=x.shape), x.dtype), tree)


def stacked(*trees):
    """Actor parameter sets stacked on a leading (memory) axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def mcpo_hparams(**overrides):
    return MCPOHParams.default(None, **overrides)


def ppo_kl_hparams(**overrides):
    return PPOKLHParams.default(None, **overrides)


def rule_parts(algo, make_adaptation, hparams, kind, config=RULE_CONFIG):
    """``(rule, loss_fn, adaptation)`` of a registered algorithm, from its public builders."""
    networks = tiny_networks(kind)
    algorithm = ALGORITHMS[algo]
    return (
        algorithm.make_update_rule(config, hparams, networks),
        algorithm.make_loss(config, hparams, networks),
        make_adaptation(config, hparams, networks),
    )


class JittedRule(NamedTuple):
    """A rule's pieces, each jitted once per kind (and pytree structure), hparams traced."""

    init: Any
    prepare: Any
    loss: Any
    update: Any


def jitted_rule(algo, make_adaptation):
    def parts(kind, hp):
        return rule_parts(algo, make_adaptation, hp, kind)

    @cheap_jit(static_argnums=0)
    def init(kind, hp, params):
        return parts(kind, hp)[0].init(params)

    @cheap_jit(static_argnums=0)
    def prepare(kind, hp, params, algo_state, batch):
        return parts(kind, hp)[2].prepare(params, algo_state, batch)

    @cheap_jit(static_argnums=0)
    def loss(kind, hp, params, batch, algo_state):
        return parts(kind, hp)[1](params, batch, algo_state)

    @cheap_jit(static_argnums=0)
    def update(kind, hp, params, state, batch, key):
        return parts(kind, hp)[0].update(params, state, batch, key)

    return JittedRule(init, prepare, loss, update)


MCPO_RULE = jitted_rule("mcpo", make_mcpo_adaptation)
PPO_KL_RULE = jitted_rule("ppo_kl", make_ppo_kl_adaptation)


def log_prob_of(kind, actor_params, obs, action):
    return distribution(tiny_actor(kind).apply(actor_params, obs)).log_prob(action)


def make_batch(kind, params, seed=0):
    """A batch whose ``log_prob`` is π_old's (``params``) log-probability of its actions."""
    return random_batch(
        np.random.default_rng(seed),
        kind,
        N_SAMPLES,
        log_prob=lambda obs, action: log_prob_of(kind, params["actor"], obs, action),
    )


def with_memory(state, memory, filled, age=None):
    filled = jnp.asarray(filled, bool)
    age = jnp.zeros(filled.shape, jnp.float32) if age is None else jnp.asarray(age, jnp.float32)
    return state._replace(memory=memory, filled=filled, age=age)


def assert_tree_close(a, b, **kwargs):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kwargs)


# --------------------------------------------------------------------------- virtual policy


@pytest.mark.parametrize("kind", KINDS)
def test_virtual_params_of_identical_copies_is_that_policy(kind, rng):
    theta = init_params(kind)["actor"]
    memory = stacked(*[theta] * 5)
    for w in [
        rng.dirichlet(np.ones(5)),
        rng.dirichlet(0.2 * np.ones(5)),
        np.array([0.0, 0.5, 0.0, 0.25, 0.25]),
    ]:
        w = jnp.asarray(w, jnp.float32)
        assert_tree_close(virtual_params(memory, w), theta, rtol=1e-5, atol=1e-7)
    # a one-hot weight selects its slot exactly
    assert_tree_close(virtual_params(memory, jnp.eye(5)[3]), theta, rtol=0, atol=0)

    # distinct slots: ψ = Σ_i w_i θ_i leaf by leaf, and a one-hot weight selects its slot
    slots = [perturb(theta, seed, 0.5) for seed in range(5)]
    memory = stacked(*slots)
    w = rng.dirichlet(np.ones(5))
    want = jax.tree.map(
        lambda *xs: sum(wi * np.asarray(x, np.float64) for wi, x in zip(w, xs, strict=True)), *slots
    )
    assert_tree_close(
        virtual_params(memory, jnp.asarray(w, jnp.float32)), want, rtol=1e-5, atol=1e-6
    )
    assert_tree_close(virtual_params(memory, jnp.eye(5)[2]), slots[2], rtol=0, atol=0)


def np_masked_softmax(scores, filled):
    s = np.where(filled, scores.astype(np.float64), -np.inf)
    e = np.exp(s - s.max())
    return e / e.sum()


def test_attention_weights_sum_to_one_and_ignore_empty_slots():
    rng = np.random.default_rng(1)
    for filled in [
        [True] * 5,
        [True, False, True, False, False],
        [False, False, False, True, True],
        [False, True, False, False, False],
    ]:
        filled = np.array(filled)
        for scale in (0.1, 3.0, 30.0):
            scores = (scale * rng.normal(size=5)).astype(np.float32)
            w = np.asarray(attention_weights(jnp.asarray(scores), jnp.asarray(filled)))
            np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)
            np.testing.assert_array_equal(w[~filled], 0.0)
            assert np.all(w[filled] > 0)
            np.testing.assert_allclose(w, np_masked_softmax(scores, filled), rtol=1e-5, atol=1e-7)
            if filled.sum() == 1:
                np.testing.assert_array_equal(w, filled.astype(np.float32))
    # an empty slot's score is ignored, however large
    w = attention_weights(jnp.array([0.0, 1e30, 2.0]), jnp.array([True, False, True]))
    np.testing.assert_allclose(
        w, np_masked_softmax(np.array([0.0, 0.0, 2.0]), [1, 0, 1]), rtol=1e-6
    )


@pytest.mark.parametrize("kind", KINDS)
def test_prepare_with_a_memory_of_pi_old_records_pi_old_as_psi(kind):
    """All filled slots hold π_old: the weights the rule uses sum to 1 (0 on empty slots) and
    ψ's recorded outputs are π_old's; a single filled slot gets weight exactly 1."""
    params = init_params(kind, seed=1)
    hp = mcpo_hparams(attention_lr=0.05)
    batch = make_batch(kind, params, seed=2)
    state0 = MCPO_RULE.init(kind, hp, params)["algo"]
    # init: slot 0 holds the initial params, the rest are empty
    np.testing.assert_array_equal(state0.filled, [True] + [False] * (N_SLOTS - 1))
    assert_tree_close(jax.tree.map(lambda m: m[0], state0.memory), params["actor"], rtol=0, atol=0)

    for filled, age in [
        ([True, False, False, False], [0, 0, 0, 0]),
        ([True, True, True, False], [2, 1, 0, 0]),
        ([True, True, True, True], [3, 0, 2, 1]),
        ([False, True, False, True], [0, 4, 0, 1]),
    ]:
        memory = stacked(*[params["actor"]] * N_SLOTS)
        state, prepared = MCPO_RULE.prepare(
            kind, hp, params, with_memory(state0, memory, filled, age), batch
        )
        w = np.asarray(state.weights)
        np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)
        np.testing.assert_array_equal(w[~np.array(filled)], 0.0)
        if sum(filled) == 1:
            np.testing.assert_array_equal(w, np.array(filled, np.float32))
        old = tiny_actor(kind).apply(params["actor"], batch.obs)
        assert_tree_close(prepared.old_outputs, old, rtol=1e-6, atol=1e-6)
        assert_tree_close(prepared.extras["virtual"], old, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state.slot_kl, 0.0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_prepare_records_psi_of_the_weights_it_reports(kind):
    """Distinct slots: ψ's recorded outputs are those of Σ_i w_i θ_i with state.weights, and
    the slot KLs are KL(π_old ‖ π_i) per slot (empty slots computed but never weighted)."""
    params = init_params(kind, seed=3)
    hp = mcpo_hparams(attention_lr=0.05)
    batch = make_batch(kind, params, seed=4)
    slots = [perturb(params["actor"], 10 + i, 0.3) for i in range(N_SLOTS)]
    filled = np.array([True, True, False, True])
    state0 = with_memory(
        MCPO_RULE.init(kind, hp, params)["algo"], stacked(*slots), filled, [1, 3, 0, 2]
    )
    state, prepared = MCPO_RULE.prepare(kind, hp, params, state0, batch)
    w = np.asarray(state.weights)
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)
    assert w[2] == 0.0 and np.all(w[filled] > 0)
    actor = tiny_actor(kind)
    psi = virtual_params(stacked(*slots), state.weights)
    assert_tree_close(prepared.extras["virtual"], actor.apply(psi, batch.obs), rtol=1e-5, atol=1e-6)
    # ψ is not simply one of the slots, nor π_old
    old = actor.apply(params["actor"], batch.obs)
    assert np.abs(np.asarray(prepared.extras["virtual"][0]) - np.asarray(old[0])).max() > 1e-2
    want_kl = [float(kl_divergence(old, actor.apply(s, batch.obs)).mean()) for s in slots]
    np.testing.assert_allclose(state.slot_kl, want_kl, rtol=1e-4, atol=1e-7)
    assert min(want_kl) > 1e-3


# --------------------------------------------------------------------------- switching β


def virtual_case(kind, sign):
    """π_old, a memory whose filled slots all hold one policy ψ ≠ π_old, and advantages
    ± (r − mean r) with r = π_ψ/π_old, so that ψ's gain is clearly above (+) or below (−)
    π_old's gain mean(Â) = 0."""
    params = init_params(kind, seed=5)
    psi = perturb(params["actor"], 6, 0.4)
    batch = make_batch(kind, params, seed=7)
    r = np.exp(
        np.asarray(log_prob_of(kind, psi, batch.obs, batch.action), np.float64) - batch.log_prob
    )
    batch = batch._replace(advantages=(sign * (r - r.mean())).astype(np.float32))
    return params, psi, batch, r


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_switching_beta_compares_the_gains(kind, sign):
    params, psi, batch, r = virtual_case(kind, sign)
    hp = mcpo_hparams(beta_high=0.9, beta_low=0.2, attention_lr=0.05, switch_margin=0.0)
    state0 = MCPO_RULE.init(kind, hp, params)["algo"]
    memory = stacked(*[psi] * N_SLOTS)
    state, _ = MCPO_RULE.prepare(kind, hp, params, with_memory(state0, memory, [1, 1, 0, 1]), batch)
    adv = np.asarray(normalize(jnp.asarray(batch.advantages)), np.float64)
    want_gain = np.mean(r * adv)  # = ± std(r) > 0 here
    assert abs(want_gain) > 0.05 and abs(adv.mean()) < 1e-6
    np.testing.assert_allclose(state.virtual_gain, want_gain, rtol=1e-4)
    # ψ looks better (sign +) → β_low pulls towards ψ; else β_high
    want_beta = 0.2 if sign > 0 else 0.9
    assert float(state.beta) == np.float32(want_beta)


@pytest.mark.parametrize("kind", KINDS)
def test_switch_margin_counts_standard_errors_of_the_gain_difference(kind):
    """ψ wins only by more than ``switch_margin`` standard errors: with z = mean(d)/(std(d)/√n)
    for d = (π_ψ/π_old − 1)·Â, computed here in float64 by a plain loop, a margin just
    under z switches to β_low and one just over keeps β_high."""
    params, psi, batch, r = virtual_case(kind, 1.0)
    adv = np.asarray(normalize(jnp.asarray(batch.advantages)), np.float64)
    d = [(ri - 1.0) * ai for ri, ai in zip(r, adv, strict=True)]
    mean = sum(d) / len(d)
    std = math.sqrt(sum((x - mean) ** 2 for x in d) / len(d))
    z = mean / (std / math.sqrt(len(d)))
    assert z > 1.0
    memory = stacked(*[psi] * N_SLOTS)
    betas = []
    for margin in (0.98 * z, 1.02 * z):
        hp = mcpo_hparams(beta_high=0.9, beta_low=0.2, switch_margin=margin)
        state0 = with_memory(MCPO_RULE.init(kind, hp, params)["algo"], memory, [1, 1, 0, 1])
        betas.append(float(MCPO_RULE.prepare(kind, hp, params, state0, batch)[0].beta))
    assert betas == [np.float32(0.2), np.float32(0.9)]


@pytest.mark.parametrize("kind", KINDS)
def test_switching_beta_when_psi_is_pi_old_is_a_tie(kind):
    """ψ = π_old: the gain difference is exactly 0, a tie, so β stays β_high (and the two KL
    terms coincide, so β would have no effect on the loss anyway)."""
    params = init_params(kind, seed=8)
    batch = make_batch(kind, params, seed=9)
    hp = mcpo_hparams(beta_high=0.9, beta_low=0.2)
    state0 = MCPO_RULE.init(kind, hp, params)["algo"]
    state, prepared = MCPO_RULE.prepare(kind, hp, params, state0, batch)
    adv = np.asarray(normalize(jnp.asarray(batch.advantages)))
    np.testing.assert_allclose(state.virtual_gain, adv.mean(), atol=1e-6)
    assert float(state.beta) == np.float32(0.9)
    theta = {**params, "actor": perturb(params["actor"], 1, 0.3)}
    losses = [
        float(MCPO_RULE.loss(kind, hp, theta, prepared, state._replace(beta=jnp.float32(b)))[0])
        for b in (0.0, 0.5, 1.0)
    ]
    np.testing.assert_allclose(losses, losses[0], rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_attention_step_raises_the_virtual_gain(kind):
    """One attention step on ψ's surrogate: the gain after it beats the gain of the initial
    attention (attention_lr = 0), and the better slot gains weight."""
    params = init_params(kind, seed=5)
    good = perturb(params["actor"], 6, 0.4)
    bad = perturb(params["actor"], 16, 0.4)
    batch = make_batch(kind, params, seed=7)
    r = np.exp(
        np.asarray(log_prob_of(kind, good, batch.obs, batch.action), np.float64) - batch.log_prob
    )
    batch = batch._replace(advantages=(r - r.mean()).astype(np.float32))
    memory = stacked(good, bad, good, bad)
    filled = [True, True, False, False]
    states = {}
    for lr in (0.0, 0.05):
        hp = mcpo_hparams(attention_lr=lr)
        state0 = with_memory(MCPO_RULE.init(kind, hp, params)["algo"], memory, filled)
        states[lr], _ = MCPO_RULE.prepare(kind, hp, params, state0, batch)
    frozen, trained = states[0.0], states[0.05]
    assert_tree_close(
        frozen.attention, MCPO_RULE.init(kind, hp, params)["algo"].attention, rtol=0, atol=0
    )
    assert float(trained.virtual_gain) > float(frozen.virtual_gain) + 1e-4
    assert float(trained.weights[0]) > float(frozen.weights[0])


def test_attention_config_knobs():
    """``attention_hidden`` sets the MLP's width, ``attention_steps`` the Adam steps per
    update; the untrained attention scores every slot 0, so its weights are uniform."""
    kind = "categorical"
    params = init_params(kind, seed=5)
    batch = make_batch(kind, params, seed=7)
    memory = stacked(*(perturb(params["actor"], seed, 0.3) for seed in range(N_SLOTS)))
    filled = [True, True, True, False]
    for hidden, steps, lr in ((16, 1, 0.0), (7, 3, 1e-2)):
        config = RULE_CONFIG.replace(attention_hidden=hidden, attention_steps=steps)
        rule, _, adaptation = rule_parts(
            "mcpo", make_mcpo_adaptation, mcpo_hparams(attention_lr=lr), kind, config
        )
        state = with_memory(rule.init(params)["algo"], memory, filled)
        assert state.attention["params"]["Dense_0"]["kernel"].shape == (3, hidden)
        state, _ = adaptation.prepare(params, state, batch)
        assert int(state.attention_opt[0].count) == steps
        if lr == 0.0:
            np.testing.assert_allclose(state.weights, [1 / 3, 1 / 3, 1 / 3, 0.0], rtol=1e-6)
        else:
            assert not np.allclose(state.weights[:3], 1 / 3)


# --------------------------------------------------------------------------- PPO-KL reduction


def test_mcpo_loss_with_beta_one_is_ppo_kl():
    rng = np.random.default_rng(2)
    n = 256
    lp, olp, adv = (x.astype(np.float32) for x in rng.normal(-1.0, 0.5, (3, n)))
    kl_old, kl_virtual = (np.abs(x).astype(np.float32) for x in rng.normal(0.0, 2.0, (2, n)))
    for c in (0.0, 0.3, 1.0, 7.5):
        want = ppo_kl(lp, olp, adv, kl_old, c)
        np.testing.assert_array_equal(mcpo(lp, olp, adv, kl_old, kl_virtual, 1.0, c), want)
        np.testing.assert_array_equal(
            cheap_jit(mcpo)(lp, olp, adv, kl_old, kl_virtual, 1.0, c),
            cheap_jit(ppo_kl)(lp, olp, adv, kl_old, c),
        )
        if c > 0:  # the virtual KL is live otherwise
            assert (
                np.abs(np.asarray(mcpo(lp, olp, adv, kl_old, kl_virtual, 0.5, c)) - want).min() > 0
            )


def reduction_case(kind):
    """π_old, θ ≠ π_old, and a memory of policies ≠ π_old (so every KL term is non-zero)."""
    params = init_params(kind, seed=11)
    theta = {**params, "actor": perturb(params["actor"], 12, 0.2)}
    memory = stacked(*[perturb(params["actor"], 20 + i, 0.3) for i in range(N_SLOTS)])
    batch = make_batch(kind, params, seed=13)
    return params, theta, memory, batch


@pytest.mark.parametrize("kind", KINDS)
def test_mcpo_rule_loss_with_beta_one_is_ppo_kl_rule_loss(kind):
    params, theta, memory, batch = reduction_case(kind)
    c = 0.7
    hp = mcpo_hparams(beta_high=1.0, beta_low=1.0, kl_coef=c)
    state0 = with_memory(MCPO_RULE.init(kind, hp, params)["algo"], memory, [1, 1, 1, 0])
    state, prepared = MCPO_RULE.prepare(kind, hp, params, state0, batch)
    assert float(state.beta) == 1.0
    hp_kl = ppo_kl_hparams(kl_coef_init=c)
    beta = PPO_KL_RULE.init(kind, hp_kl, params)["algo"]
    assert float(beta) == np.float32(c)
    _, prepared_kl = PPO_KL_RULE.prepare(kind, hp_kl, params, beta, batch)
    assert_tree_close(prepared.old_outputs, prepared_kl.old_outputs, rtol=0, atol=0)

    loss, metrics = MCPO_RULE.loss(kind, hp, theta, prepared, state)
    want, want_metrics = PPO_KL_RULE.loss(kind, hp_kl, theta, prepared_kl, beta)
    np.testing.assert_allclose(loss, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(metrics["policy_loss"], want_metrics["policy_loss"], rtol=1e-6)
    # and the terms are live: β < 1, or another c, changes MCPO's loss
    half = state._replace(beta=jnp.float32(0.5))
    assert abs(float(MCPO_RULE.loss(kind, hp, theta, prepared, half)[0]) - float(want)) > 1e-4
    other_c = hp.set(kl_coef=2 * c)
    assert abs(float(MCPO_RULE.loss(kind, other_c, theta, prepared, state)[0]) - float(want)) > 1e-4


@pytest.mark.parametrize("kind", ["categorical"])  # one kind: each compiles two updates
def test_mcpo_update_with_beta_one_is_ppo_kl_update(kind):
    params, _, memory, batch = reduction_case(kind)
    c = 0.7
    lr = 0.05
    hp = mcpo_hparams(beta_high=1.0, beta_low=1.0, kl_coef=c, learning_rate=lr)
    hp_kl = ppo_kl_hparams(kl_coef_init=c, learning_rate=lr)
    key = jax.random.key(3)
    state = MCPO_RULE.init(kind, hp, params)
    state = {**state, "algo": with_memory(state["algo"], memory, [1, 1, 1, 0])}
    state_kl = PPO_KL_RULE.init(kind, hp_kl, params)
    assert_tree_close(state["opt"], state_kl["opt"], rtol=0, atol=0)
    new, new_state, metrics = MCPO_RULE.update(kind, hp, params, state, batch, key)
    new_kl, new_state_kl, metrics_kl = PPO_KL_RULE.update(kind, hp_kl, params, state_kl, batch, key)
    assert float(metrics["beta"]) == 1.0 and float(metrics_kl["kl_coef"]) == np.float32(c)
    assert_tree_close(new, new_kl, rtol=1e-5, atol=1e-6)
    assert_tree_close(new_state["opt"], new_state_kl["opt"], rtol=1e-5, atol=1e-6)
    for name in ("policy_loss", "loss", "kl"):
        np.testing.assert_allclose(metrics[name], metrics_kl[name], rtol=1e-5, atol=1e-7)
    # the update moved the policy (so the comparison is not vacuous)
    moved = max(
        float(jnp.abs(a - b).max())
        for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params), strict=True)
    )
    assert moved > 1e-3


# --------------------------------------------------------------------------- diversity writes


def test_should_write():
    kl = jnp.array([0.5, 0.02, 0.3, 0.001])
    cases = [
        ([1, 1, 1, 1], 0.0005, True),
        ([1, 1, 1, 1], 0.001, False),  # strictly above the threshold
        ([1, 1, 1, 1], 0.01, False),
        ([1, 1, 1, 0], 0.01, True),  # the closest slot is empty: ignored
        ([1, 1, 1, 0], 0.02, False),
        ([1, 0, 1, 0], 0.2, True),
        ([1, 0, 1, 0], 0.3, False),
        ([0, 0, 0, 1], 0.0, True),
        ([0, 0, 0, 1], 0.01, False),
        ([0, 0, 0, 0], 0.0, True),  # nothing stored yet: write
        ([0, 0, 0, 0], 1e30, True),
    ]
    for filled, threshold, want in cases:
        got = should_write(kl, jnp.asarray(filled, bool), jnp.float32(threshold))
        assert got.dtype == jnp.bool_ and got.shape == ()
        assert bool(got) == want, (filled, threshold)
    # KLs of empty slots are ignored even when NaN or negative
    weird = jnp.array([jnp.nan, 0.5, -1.0])
    assert bool(should_write(weird, jnp.array([False, True, False]), jnp.float32(0.4)))


def write_case():
    memory = {"w": jnp.arange(4 * 3, dtype=jnp.float32).reshape(4, 3), "b": jnp.arange(4.0)}
    params = {"w": jnp.full((3,), -1.0), "b": jnp.float32(-2.0)}
    return memory, params


def test_write_slot():
    memory, params = write_case()
    cases = [
        # filled, age, written slot
        ([1, 0, 1, 0], [2, 0, 5, 0], 1),  # the first empty slot
        ([1, 1, 1, 0], [2, 7, 5, 0], 3),
        ([0, 0, 0, 0], [0, 0, 0, 0], 0),
        ([1, 1, 1, 1], [2, 7, 5, 1], 1),  # full: the oldest
        ([1, 1, 1, 1], [0, 1, 9, 3], 2),
        ([1, 1, 1, 1], [4, 1, 4, 3], 0),  # ties: the first oldest
    ]
    for filled, age, slot in cases:
        filled, age = jnp.asarray(filled, bool), jnp.asarray(age, jnp.float32)
        new_memory, new_filled, new_age = write_slot(memory, filled, age, params, jnp.bool_(True))
        hit = np.arange(4) == slot
        np.testing.assert_array_equal(new_memory["w"][slot], params["w"])
        assert float(new_memory["b"][slot]) == -2.0
        np.testing.assert_array_equal(new_memory["w"][~hit], memory["w"][~hit])
        np.testing.assert_array_equal(new_memory["b"][~hit], memory["b"][~hit])
        np.testing.assert_array_equal(new_filled, np.asarray(filled) | hit)
        # the written slot is age 0; the other filled slots age by one; empty ones stay
        want_age = np.where(hit, 0.0, np.asarray(age) + np.asarray(filled))
        np.testing.assert_array_equal(new_age, want_age)
        assert new_age.dtype == jnp.float32

        # no write: memory and mask bit-identical, filled slots still age
        same_memory, same_filled, aged = write_slot(memory, filled, age, params, jnp.bool_(False))
        for a, b in zip(jax.tree.leaves(same_memory), jax.tree.leaves(memory), strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(same_filled, filled)
        np.testing.assert_array_equal(aged, np.asarray(age) + np.asarray(filled))

    # jitted and repeated: a memory of 4 fills up, then rotates through the oldest
    step = cheap_jit(write_slot)
    memory, params = write_case()
    filled, age = jnp.array([True, False, False, False]), jnp.zeros(4)
    written = []
    for k in range(7):
        p = jax.tree.map(lambda x, k=k: jnp.full_like(x, 100.0 + k), params)
        memory, new_filled, age = step(memory, filled, age, p, jnp.bool_(True))
        written.append(int(np.flatnonzero(np.asarray(memory["b"]) == 100.0 + k)[0]))
        filled = new_filled
    assert written == [1, 2, 3, 0, 1, 2, 3]
    np.testing.assert_array_equal(age, [3, 2, 1, 0])


def test_write_slot_replacing_the_closest():
    memory, params = write_case()
    cases = [
        # filled, age, distance, written slot
        ([1, 1, 1, 1], [2, 7, 5, 1], [0.3, 0.2, 0.01, 0.5], 2),  # not the oldest (1)
        ([1, 1, 1, 1], [0, 0, 0, 0], [0.3, 0.2, 0.2, 0.5], 1),  # ties: the first closest
        ([1, 1, 0, 1], [2, 7, 0, 1], [0.3, 0.2, 0.9, 0.5], 2),  # an empty slot comes first
    ]
    for filled, age, distance, slot in cases:
        filled = jnp.asarray(filled, bool)
        new_memory, new_filled, _ = write_slot(
            memory, filled, jnp.asarray(age, jnp.float32), params, jnp.bool_(True),
            jnp.asarray(distance, jnp.float32),
        )  # fmt: skip
        assert float(new_memory["b"][slot]) == -2.0
        assert (np.asarray(new_memory["b"]) == -2.0).sum() == 1
        assert bool(new_filled.all())


@pytest.mark.parametrize(("replace", "slot"), [("oldest", 0), ("closest", 1)])
def test_finish_writes_pi_old_into_the_slot_memory_replace_picks(replace, slot):
    """A full memory: slot 0 is the oldest, slot 1 the closest to π_old; ``finish`` writes
    π_old (the pre-update parameters) there and leaves the other slots alone, unless ψ beat
    π_old in this update."""
    kind = "categorical"
    params = init_params(kind, seed=3)
    new = {**params, "actor": perturb(params["actor"], 4, 0.1)}
    batch = make_batch(kind, params, seed=5)
    memory = stacked(*(perturb(params["actor"], 20 + i, 0.3) for i in range(N_SLOTS)))
    config = RULE_CONFIG.replace(memory_replace=replace)
    rule, _, adaptation = rule_parts("mcpo", make_mcpo_adaptation, mcpo_hparams(), kind, config)
    state = with_memory(rule.init(params)["algo"], memory, [True] * N_SLOTS, [5, 1, 2, 3])
    state, prepared = adaptation.prepare(params, state, batch)
    state = state._replace(slot_kl=jnp.array([0.3, 0.05, 0.2, 0.4]))  # all above 0.01
    beaten, metrics = adaptation.finish(
        state._replace(virtual_ahead=jnp.bool_(True)), params, new, prepared
    )
    assert float(metrics["memory_write"]) == 0.0  # ψ beat π_old: not remembered
    assert_tree_close(beaten.memory, memory, rtol=0, atol=0)
    state, metrics = adaptation.finish(
        state._replace(virtual_ahead=jnp.bool_(False)), params, new, prepared
    )
    assert float(metrics["memory_write"]) == 1.0
    for i in range(N_SLOTS):
        want = params["actor"] if i == slot else jax.tree.map(lambda m, i=i: m[i], memory)
        assert_tree_close(jax.tree.map(lambda m, i=i: m[i], state.memory), want, rtol=0, atol=0)
    np.testing.assert_array_equal(state.age, np.where(np.arange(N_SLOTS) == slot, 0, [6, 2, 3, 4]))


# --------------------------------------------------------------------------- training runs


RUN_CONFIG = tiny_config("mcpo", updates=5, hidden_sizes=(8, 8), memory_size=3)
HUGE = 1e6
SEEDS = 2


@pytest.fixture(scope="module")
def runs():
    hp = default_hparams(RUN_CONFIG)
    grid = sweep.grid(hp, write_threshold=[HUGE, 0.0])
    changes = {"beta_low": 0.1, "kl_coef": 0.3, "attention_lr": 1e-2}
    other = sweep.grid(hp.set(**changes), write_threshold=[1e-3, 1e-1])
    return sweep_twice_and_alone(RUN_CONFIG, grid, other, SEEDS)


def test_sweep_compiles_once_and_members_equal_single_runs(runs):
    assert RUN_CONFIG.num_updates == 5
    assert runs["traces"] == 1
    want = {"beta", "kl", "kl_virtual", "attention_entropy", "virtual_gain", "memory_write"}
    assert want | {"memory_filled", "policy_loss"} <= set(runs["swept"])
    assert not np.allclose(runs["again"]["policy_loss"], runs["swept"]["policy_loss"])
    for (m, s), alone in runs["alone"].items():
        for name, value in alone.items():
            np.testing.assert_allclose(
                runs["swept"][name][m, s], value, rtol=1e-5, atol=1e-5, err_msg=name
            )


def test_run_never_writes_with_a_huge_threshold(runs):
    m = jax.tree.map(lambda x: x[0], runs["swept"])  # write_threshold = HUGE
    np.testing.assert_array_equal(m["memory_filled"], 1.0)
    np.testing.assert_array_equal(m["memory_write"], 0.0)
    # one filled slot: weight 1, zero attention entropy, and ψ is that slot
    np.testing.assert_array_equal(m["attention_entropy"], 0.0)


def test_run_writes_every_update_with_a_zero_threshold(runs):
    """Every update writes except the first (its π_old is the initial policy, which slot 0
    already holds: KL exactly 0, not > 0) and those where ψ beat π_old (a beaten π_old is
    not remembered). The memory fills up to N, then rotates."""
    m = jax.tree.map(lambda x: x[1], runs["swept"])  # write_threshold = 0
    n = RUN_CONFIG.memory_size
    want_write = 1.0 - m["virtual_ahead"]
    want_write[:, 0] = 0.0
    assert want_write.sum() >= 1  # the run does write
    np.testing.assert_array_equal(m["memory_write"], want_write)
    want_filled = np.minimum(1 + np.cumsum(want_write, axis=1), n)
    np.testing.assert_array_equal(m["memory_filled"], want_filled)
    for name in ("beta", "kl", "kl_virtual", "virtual_gain", "attention_entropy"):
        assert np.all(np.isfinite(m[name])), name
    # the attention spreads over the slots filled when the update began
    before = np.concatenate([np.ones((SEEDS, 1)), want_filled[:, :-1]], axis=1)
    entropy = m["attention_entropy"]
    np.testing.assert_array_equal(entropy[before == 1], 0.0)
    assert np.all(entropy[before > 1] > 0)
    assert np.all(entropy <= np.log(before) + 1e-5)
    hp = default_hparams(RUN_CONFIG)
    assert np.all(np.isin(m["beta"], [np.float32(hp.beta_high), np.float32(hp.beta_low)]))


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("beta_low", 1.5),
        ("beta_high", -0.1),
        ("kl_coef", -1.0),
        ("attention_lr", math.nan),
        ("write_threshold", -1e-3),
        ("write_threshold", math.inf),
    ],
)
def test_bad_hparams(field, value):
    with pytest.raises(ValueError, match=rf"hparam {field}="):
        default_hparams(RUN_CONFIG, **{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("memory_size", 0),
        ("memory_size", -1),
        ("attention_hidden", 0),
        ("attention_steps", 0),
        ("memory_replace", "newest"),
    ],
)
def test_bad_memory_config(field, value):
    with pytest.raises(ValueError, match=field):
        make_train(RUN_CONFIG.replace(**{field: value}))


# ------------------------------------------------------- the mechanism at work: a poor π_old

#: 30 updates of 512 CartPole steps leave a policy (returns ~50) and a full memory of the
#: policies before it; then π_old is made poor by negating the actor's output layer.
POOR_CONFIG = Config(
    algo="mcpo",
    num_envs=4,
    num_steps=128,
    memory_size=4,
    hidden_sizes=(32, 32),
    total_timesteps=512 * 40,
)


def negated_output_layer(actor: Any) -> Any:
    """The actor with its last layer negated: logits −z, so it prefers what it avoided."""
    inner = actor["params"]
    last = sorted(inner)[-1]
    return {"params": {**inner, last: jax.tree.map(jnp.negative, inner[last])}}


@pytest.fixture(scope="module")
def poor_and_good():
    """10 updates' metrics from the trained state (good), from it with a poor π_old, and from
    a run trained with ``attention_lr = 0`` (weights uniform throughout) made poor alike."""
    trainer = make_trainer(POOR_CONFIG)
    run = jax.jit(trainer.run, static_argnums=2)
    init = jax.jit(trainer.init)

    def trained(hparams):
        state = init(jax.random.key(0), hparams)
        for _ in range(3):
            state = run(state, hparams, 10).state
        return state

    def made_poor(state):
        actor = negated_output_layer(state.params["actor"])
        return state.replace(params={**state.params, "actor": actor})

    hparams = default_hparams(POOR_CONFIG)
    uniform = hparams.set(attention_lr=0.0)
    state = trained(hparams)
    return {
        "good": to_numpy(run(state, hparams, 10).metrics),
        "poor": to_numpy(run(made_poor(state), hparams, 10).metrics),
        "poor_uniform": to_numpy(run(made_poor(trained(uniform)), uniform, 10).metrics),
    }


def test_a_poor_pi_old_switches_to_the_virtual_policy(poor_and_good):
    """Measured: the poor π_old's first update has ψ's gain 0.139 > 0 and KL(π_ψ‖π_old)
    0.44 (against −0.024 and 0.008 for the good π_old), so β drops to β_low. ψ stays ahead
    in all 10 updates (still 0.27 from π_old at the tenth) and β_low is chosen in 9 (in the
    seventh ψ's lead, 0.036, was within one standard error); the poor policies are never
    written to the memory. From the good π_old β stays high."""
    good, poor = poor_and_good["good"], poor_and_good["poor"]
    assert good["memory_filled"][0] == POOR_CONFIG.memory_size
    assert good["beta_low_chosen"][0] == 0.0 and good["virtual_gain"][0] < 0
    assert poor["beta_low_chosen"][0] == 1.0 and poor["virtual_gain"][0] > 0
    assert float(poor["beta"][0]) == pytest.approx(0.5)
    assert poor["kl_virtual_old"][0] > 10 * good["kl_virtual_old"][0]
    assert poor["beta_low_chosen"].mean() >= 0.8 and good["beta_low_chosen"].mean() == 0.0
    assert np.all(poor["virtual_ahead"] == 1.0)
    assert np.all(poor["beta_low_chosen"] <= poor["virtual_ahead"])  # the margin only delays
    assert poor["memory_write"].sum() == 0.0


def test_a_poor_pi_old_moves_the_attention_off_uniform(poor_and_good):
    """The attention steps of that update move the weights well off uniform (entropy 0.85
    against ln 4 = 1.386 measured); trained with ``attention_lr = 0`` they stay uniform."""
    uniform = math.log(POOR_CONFIG.memory_size)
    assert poor_and_good["poor"]["attention_entropy"][0] < uniform - 0.2
    np.testing.assert_allclose(
        poor_and_good["poor_uniform"]["attention_entropy"], uniform, rtol=1e-5
    )
