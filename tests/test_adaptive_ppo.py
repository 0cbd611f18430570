"""Adaptive-PPO: the bandit's reward path by hand, its first picks inside ``train``, and
equality with PPO when there is a single clip candidate."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxpo import Config, default_hparams, make_train
from jaxpo.algos.adaptive_ppo import clip_bandit
from jaxpo.algos.base import Batch, RolloutData

CONFIG = Config(
    algo="adaptive_ppo",
    num_envs=2,
    num_steps=16,
    total_timesteps=2 * 16 * 6,
    update_epochs=2,
    num_minibatches=2,
    hidden_sizes=(16,),
    clip_candidates=(0.1, 0.2, 0.3),
)


def batch_with_return(value: float) -> Batch:
    rollout = RolloutData(None, None, None, None, jnp.float32(value))
    return Batch(None, None, None, None, None, None, rollout=rollout)


def test_arms_are_rewarded_with_the_return_improvement_they_led_to():
    hparams = default_hparams(CONFIG, ucb_coef=0.0)
    bandit = clip_bandit(CONFIG, hparams)
    state = bandit.init(None)
    arms = []
    # Rollout returns 10, 14, 13, 20, 30: rewards 4 (arm 0), -1 (arm 1), 7 (arm 2), 10 (arm 2).
    for value in (10.0, 14.0, 13.0, 20.0, 30.0):
        state, _ = bandit.prepare(None, state, batch_with_return(value))
        arms.append(int(state["arm"]))
    # First each arm once (0, 1, 2); then greedy (c = 0) on means {0: 4, 1: -1, 2: 7} -> 2,
    # and on {0: 4, 1: -1, 2: 8.5} -> 2.
    assert arms == [0, 1, 2, 2, 2]
    np.testing.assert_allclose(np.asarray(state["bandit"].value_sum), [4.0, -1.0, 17.0])
    np.testing.assert_allclose(np.asarray(state["bandit"].counts), [1.0, 1.0, 2.0])
    np.testing.assert_allclose(np.asarray(state["picks"]), [1.0, 1.0, 3.0])
    assert float(state["last_return"]) == 30.0
    _, metrics = bandit.finish(state, None, None, None)
    assert float(metrics["clip_eps"]) == np.float32(0.3)
    assert float(metrics["arm_picks_2"]) == 3.0


def test_train_reports_the_chosen_clip_and_picks_each_arm_first():
    out = jax.jit(make_train(CONFIG))(jax.random.key(0), default_hparams(CONFIG))
    metrics = {k: np.asarray(v) for k, v in out.metrics.items()}
    np.testing.assert_allclose(metrics["clip_eps"][:3], [0.1, 0.2, 0.3])
    picks = np.stack([metrics[f"arm_picks_{k}"] for k in range(3)], axis=-1)
    np.testing.assert_array_equal(picks.sum(-1), np.arange(1, 7))
    np.testing.assert_array_equal(picks[2], [1, 1, 1])
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
