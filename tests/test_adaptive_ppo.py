"""Adaptive-PPO: the bandit's reward path by hand, its first picks inside ``train``, and
equality with PPO when there is a single clip candidate."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from helpers import tiny_config, to_numpy

from jaxpo import default_hparams, make_train
from jaxpo.algos.adaptive_ppo import clip_bandit
from jaxpo.batches import RolloutData, SampleBatch

CONFIG = tiny_config("adaptive_ppo", updates=6, clip_candidates=(0.1, 0.2, 0.3))


def batch_with_return(value: float, episodes: int = 1) -> SampleBatch:
    rollout = RolloutData(None, None, None, None, jnp.float32(value), jnp.float32(episodes))
    return SampleBatch(None, None, None, None, None, None, rollout=rollout)


def test_arms_are_rewarded_with_the_return_improvement_they_led_to():
    hparams = default_hparams(CONFIG, ucb_coef=0.0)
    bandit = clip_bandit(CONFIG, hparams, None)
    state = bandit.init(None)
    arms = []
    # Rollouts 1-2 finish no episode (return: the 0 placeholder), rollout 3 finishes the first
    # (10), rollout 4 none (10 carried: no reward, no pull), then 14, NaN, 13, 20, 30. Rewards
    # go to the arm of the previous update: 4 (arm 0), -1 (arm 1, after the NaN), 7 and 10
    # (arm 2).
    rollouts = [(0.0, 0), (0.0, 0), (10.0, 2), (10.0, 0), (14.0, 1)]
    rollouts += [(float("nan"), 1), (13.0, 1), (20.0, 1), (30.0, 1)]
    for value, episodes in rollouts:
        state, _ = bandit.prepare(None, state, batch_with_return(value, episodes))
        arms.append(int(state["arm"]))
    # Unrewarded arms first, lowest index first: 0 four times (no reward yet, and none for the
    # rollout that finished no episode), then 0 is rewarded 4 -> 1; NaN: no reward -> 1 again;
    # 1 gets -1 -> 2; greedy (c = 0) on means {0: 4, 1: -1, 2: 7} -> 2; 2 gets 10 -> 2.
    assert arms == [0, 0, 0, 0, 1, 1, 2, 2, 2]
    np.testing.assert_allclose(np.asarray(state["bandit"].value_sum), [4.0, -1.0, 17.0])
    np.testing.assert_allclose(np.asarray(state["bandit"].counts), [1.0, 1.0, 2.0])
    np.testing.assert_allclose(np.asarray(state["picks"]), [4.0, 2.0, 3.0])
    assert float(state["last_return"]) == 30.0
    _, metrics = bandit.finish(state, None, None, None)
    assert float(metrics["clip_eps"]) == np.float32(0.3)
    assert float(metrics["arm_picks_1"]) == 2.0


def test_train_reports_the_chosen_clip_and_its_picks():
    out = jax.jit(make_train(CONFIG))(jax.random.key(0), default_hparams(CONFIG))
    metrics = to_numpy(out.metrics)
    assert metrics["clip_eps"][0] == np.float32(0.1)  # nothing rewarded yet: the first arm
    picks = np.stack([metrics[f"arm_picks_{k}"] for k in range(3)], axis=-1)
    np.testing.assert_array_equal(picks.sum(-1), np.arange(1, 7))
    assert len(set(metrics["clip_eps"].tolist())) > 1  # rewarded arms make way for the rest
    chosen = np.asarray(CONFIG.clip_candidates, np.float32)[np.argmax(np.diff(picks, axis=0), 1)]
    np.testing.assert_allclose(metrics["clip_eps"][1:], chosen)


def test_a_single_candidate_is_ppo():
    adaptive = CONFIG.replace(clip_candidates=(0.15,))
    ppo = CONFIG.replace(algo="ppo")
    hparams = default_hparams(ppo, clip_eps=0.15)
    a = jax.jit(make_train(adaptive))(jax.random.key(4), default_hparams(adaptive))
    b = jax.jit(make_train(ppo))(jax.random.key(4), hparams)
    jax.tree.map(np.testing.assert_array_equal, a.state.params, b.state.params)
    for name in ("policy_loss", "value_loss", "clip_frac", "episode_return"):
        np.testing.assert_array_equal(a.metrics[name], b.metrics[name])
    np.testing.assert_allclose(a.metrics["clip_eps"], 0.15)
