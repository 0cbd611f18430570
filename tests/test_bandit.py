"""UCB1 bandit: a hand-worked run, a float64 Python-loop reference, K = 1, jit/vmap, ties."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpo.bandit import UCBState, ucb_init, ucb_observe, ucb_scores, ucb_select

# --------------------------------------------------------------------------------------------
# 1. Hand-worked sequence, K = 3, c = 1.
#
# score_k = (Q̂_k − low)/(high − low) + sqrt(ln t / N_k), t = Σ N_k; unpulled arms first.
#
# step 1: nothing pulled, all scores +inf            -> arm 0; reward 1.0
# step 2: arms 1, 2 unpulled                         -> arm 1; reward 0.0
# step 3: arm 2 unpulled                             -> arm 2; reward 0.5
# step 4: sums [1, 0, .5], N [1, 1, 1], t = 3, low 0, high 1 (range 1)
#         Q̃ = [1, 0, .5]; bonus sqrt(ln 3 / 1) = sqrt(1.0986) = 1.0481 for all
#         scores [2.0481, 1.0481, 1.5481]             -> arm 0  (greedy: argmax Q̃ = 0, SAME)
#         reward 0.6
# step 5: sums [1.6, 0, .5], N [2, 1, 1], t = 4, low 0, high 1
#         Q̂ = [.8, 0, .5], Q̃ = [.8, 0, .5]
#         bonus: N=2 sqrt(1.3863/2) = .8326, N=1 sqrt(1.3863) = 1.1774
#         scores [1.6326, 1.1774, 1.6774]             -> arm 2  (greedy: 0, DIFFERS)
#         reward 2.0 (new high)
# step 6: sums [1.6, 0, 2.5], N [2, 1, 2], t = 5, low 0, high 2 (range 2)
#         Q̂ = [.8, 0, 1.25], Q̃ = [.4, 0, .625]
#         bonus: N=2 sqrt(1.6094/2) = .8971, N=1 sqrt(1.6094) = 1.2686
#         scores [1.2971, 1.2686, 1.5221]             -> arm 2  (greedy: 2, SAME)
#         reward −1.0 (new low)
# step 7: sums [1.6, 0, 1.5], N [2, 1, 3], t = 6, low −1, high 2 (range 3)
#         Q̂ = [.8, 0, .5], Q̃ = [1.8/3, 1/3, 1.5/3] = [.6, .3333, .5]
#         bonus: N=1 sqrt(1.7918) = 1.3386, N=2 sqrt(1.7918/2) = .9465,
#                N=3 sqrt(1.7918/3) = .7728
#         scores [1.5465, 1.6719, 1.2728]             -> arm 1  (greedy: 0, DIFFERS)
#         (without the normalisation it would be 0: .8 + .9465 > 0 + 1.3386)
#         reward 0.5
# step 8: sums [1.6, .5, 1.5], N [2, 2, 3], t = 7, low −1, high 2
#         Q̂ = [.8, .25, .5], Q̃ = [.6, .4167, .5]
#         bonus: N=2 sqrt(1.9459/2) = .9864, N=3 sqrt(1.9459/3) = .8054
#         scores [1.5864, 1.4031, 1.3054]             -> arm 0  (greedy: 0, SAME)
# --------------------------------------------------------------------------------------------
HAND_REWARDS = [1.0, 0.0, 0.5, 0.6, 2.0, -1.0, 0.5]
HAND_ARMS = [0, 1, 2, 0, 2, 2, 1, 0]
HAND_GREEDY = [None, None, None, 0, 0, 2, 0, 0]  # argmax Q̃ once every arm is pulled
HAND_SCORES = {
    4: [2.0481, 1.0481, 1.5481],
    5: [1.6326, 1.1774, 1.6774],
    6: [1.2971, 1.2686, 1.5221],
    7: [1.5465, 1.6719, 1.2728],
    8: [1.5864, 1.4031, 1.3054],
}


def test_hand_worked_sequence():
    state = ucb_init(3)
    arms = []
    for step in range(1, len(HAND_ARMS) + 1):
        scores = np.asarray(ucb_scores(state, 1.0))
        arm = int(ucb_select(state, 1.0))
        arms.append(arm)
        if step in HAND_SCORES:
            np.testing.assert_allclose(scores, HAND_SCORES[step], atol=2e-4)
            greedy = int(np.argmax(np.asarray(ucb_scores(state, 0.0))))  # c = 0: argmax Q̃
            assert greedy == HAND_GREEDY[step - 1]
        else:
            assert np.all(np.isinf(scores[np.asarray(state.counts) == 0]))
        if step <= len(HAND_REWARDS):
            state = ucb_observe(state, arm, HAND_REWARDS[step - 1])
    assert arms == HAND_ARMS
    # the exploration bonus changes the choice at least once, and not always
    ucb_steps = range(4, 9)
    assert any(HAND_ARMS[s - 1] != HAND_GREEDY[s - 1] for s in ucb_steps)
    assert any(HAND_ARMS[s - 1] == HAND_GREEDY[s - 1] for s in ucb_steps)


# --------------------------------------------------------------------------------------------
# 2. float64 Python-loop reference.
# --------------------------------------------------------------------------------------------
class ReferenceUCB:
    """UCB1 with range-normalised means, in float64 Python, written from the rule directly."""

    def __init__(self, num_arms):
        self.rewards = [[] for _ in range(num_arms)]

    def select(self, coef):
        for k, rs in enumerate(self.rewards):
            if not rs:
                return k
        every = [r for rs in self.rewards for r in rs]
        low, high = min(every), max(every)
        t = len(every)
        best, best_score = None, -math.inf
        for k, rs in enumerate(self.rewards):
            # normalise every past reward by the current range, then average
            normed = [0.5 if high == low else (r - low) / (high - low) for r in rs]
            score = sum(normed) / len(rs) + coef * math.sqrt(math.log(t) / len(rs))
            if score > best_score:  # strict: ties keep the lowest index
                best, best_score = k, score
        return best

    def observe(self, arm, reward):
        self.rewards[arm].append(float(reward))


def _reward_table(kind, steps, num_arms, seed):
    """reward_table[i, k]: the reward arm k earns if pulled at step i (float32 values)."""
    rng = np.random.default_rng(seed)
    if kind == "bernoulli":
        p = rng.uniform(0.1, 0.9, size=num_arms)
        table = (rng.uniform(size=(steps, num_arms)) < p).astype(np.float64)
    else:
        mu = rng.normal(size=num_arms)
        table = mu + rng.normal(size=(steps, num_arms)) * 2.0
    return table.astype(np.float32)


@jax.jit
def _run_jax(table, coef):
    def step(state, rewards_i):
        arm = ucb_select(state, coef)
        return ucb_observe(state, arm, rewards_i[arm]), arm

    _, arms = jax.lax.scan(step, ucb_init(table.shape[1]), table)
    return arms


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("coef", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("num_arms,seed", [(3, 0), (5, 1)])
def test_matches_float64_reference(kind, coef, num_arms, seed):
    steps = 200
    table = _reward_table(kind, steps, num_arms, seed)
    ref = ReferenceUCB(num_arms)
    ref_arms = []
    for i in range(steps):
        arm = ref.select(coef)
        ref_arms.append(arm)
        ref.observe(arm, np.float64(table[i, arm]))
    jax_arms = np.asarray(_run_jax(jnp.asarray(table), coef))
    assert jax_arms.dtype == np.int32
    np.testing.assert_array_equal(jax_arms, ref_arms)
    assert len(set(ref_arms)) == num_arms  # every arm was tried (initial round)


# --------------------------------------------------------------------------------------------
# 3. K = 1.
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("coef", [0.0, 1.0, 5.0])
def test_single_arm_always_zero(coef):
    state = ucb_init(1)
    for reward in [0.3, -2.0, 7.0, 7.0, 0.0, 1e6]:
        arm = ucb_select(state, coef)
        assert int(arm) == 0
        assert np.all(np.isfinite(np.asarray(ucb_scores(state, coef))[state.counts > 0]))
        state = ucb_observe(state, arm, reward)
    assert float(state.counts[0]) == 6.0


# --------------------------------------------------------------------------------------------
# 4. jit + vmap over coef and states.
# --------------------------------------------------------------------------------------------
def test_jit_vmap_matches_unbatched():
    num_arms, batch, steps = 4, 5, 30
    rng = np.random.default_rng(3)
    coefs = jnp.asarray([0.0, 0.1, 0.5, 1.0, 3.0], jnp.float32)
    tables = jnp.asarray(rng.normal(size=(batch, steps, num_arms)), jnp.float32)

    @jax.jit
    @jax.vmap
    def run(table, coef):
        def step(state, rewards_i):
            arm = ucb_select(state, coef)
            return ucb_observe(state, arm, rewards_i[arm]), (arm, ucb_scores(state, coef))

        return jax.lax.scan(step, ucb_init(num_arms), table)

    final, (arms, scores) = run(tables, coefs)
    assert arms.shape == (batch, steps) and arms.dtype == jnp.int32
    assert scores.shape == (batch, steps, num_arms)
    assert final.value_sum.shape == (batch, num_arms) and final.low.shape == (batch,)

    # the same per member, unbatched and eager
    for b in range(batch):
        state = ucb_init(num_arms)
        for i in range(steps):
            np.testing.assert_allclose(scores[b, i], ucb_scores(state, float(coefs[b])), rtol=1e-6)
            arm = int(ucb_select(state, float(coefs[b])))
            assert arm == int(arms[b, i])
            state = ucb_observe(state, arm, tables[b, i, arm])
        for field in ("value_sum", "counts", "low", "high"):
            np.testing.assert_allclose(
                getattr(final, field)[b], getattr(state, field), rtol=1e-6, atol=1e-6
            )
    # different coefs explored differently
    assert len({tuple(np.asarray(a)) for a in arms}) > 1

    # vmapped select/observe on a batch of states, one coef per state
    sel = jax.jit(jax.vmap(ucb_select))(final, coefs)
    obs = jax.jit(jax.vmap(ucb_observe))(final, sel, jnp.ones(batch))
    for b in range(batch):
        state_b = jax.tree.map(lambda x, b=b: x[b], final)
        assert int(sel[b]) == int(ucb_select(state_b, float(coefs[b])))
        assert float(obs.counts[b, sel[b]]) == float(state_b.counts[sel[b]]) + 1.0


# --------------------------------------------------------------------------------------------
# 5. Constant rewards and the empty state give no NaN.
# --------------------------------------------------------------------------------------------
def test_constant_rewards_no_nan():
    state = ucb_init(3)
    assert isinstance(state, UCBState)
    scores = np.asarray(ucb_scores(state, 1.0))
    assert np.all(np.isposinf(scores))  # nothing pulled: all +inf, no NaN
    assert int(ucb_select(state, 1.0)) == 0

    arms = []
    for _ in range(9):
        arm = ucb_select(state, 1.0)
        arms.append(int(arm))
        state = ucb_observe(state, arm, 0.7)
        scores = np.asarray(ucb_scores(state, 1.0))
        assert not np.any(np.isnan(scores))
    assert float(state.low) == float(state.high) == np.float32(0.7)
    # high == low: every normalised mean is 0.5, so the scores are 0.5 + bonus
    counts = np.asarray(state.counts, np.float64)
    expected = 0.5 + np.sqrt(np.log(counts.sum()) / counts)
    np.testing.assert_allclose(ucb_scores(state, 1.0), expected, rtol=1e-6)
    np.testing.assert_allclose(ucb_scores(state, 0.0), 0.5, rtol=0)
    # equal rewards, equal counts: round-robin in index order
    assert arms == [0, 1, 2] * 3
    # c = 0 with all scores tied: lowest index
    assert int(ucb_select(state, 0.0)) == 0
