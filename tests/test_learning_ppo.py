"""PPO learns, with 8 seeds in one vmapped call, to thresholds a broken PPO would miss."""

import numpy as np
import pytest
from learning import returns_at, value_within

pytestmark = pytest.mark.slow


def test_ppo_cartpole_reaches_475_within_5e5():
    config, returns = returns_at("ppo", "gymnax:CartPole-v1", 500_000)
    final = returns[:, -1]
    print("CartPole final returns:", np.round(final, 1))
    assert (final >= 475).sum() >= 7, final


def test_ppo_pendulum_reaches_thresholds():
    # Pendulum only ever ends by its 200-step time limit, so every advantage near an episode
    # end goes through the V(final_obs) bootstrap. experiments/truncation_bootstrap.py shows
    # what treating truncation as termination costs: far slower learning (around -800 vs
    # -250 at 6e4 steps), though both presets end near -200 by 1e5 with gamma 0.95, so the
    # GAE oracle tests, not this threshold, guard the rule itself.
    config, returns = returns_at("ppo", "gymnax:Pendulum-v1", 500_000)
    at_1e5 = value_within(config, returns, 100_000)
    final = returns[:, -1]
    print("Pendulum at 1e5:", np.round(at_1e5), "at 5e5:", np.round(final))
    assert (at_1e5 >= -400).sum() >= 7, at_1e5
    assert (final >= -250).sum() >= 7, final


def test_ppo_brax_inverted_pendulum_reaches_800_within_2e6():
    # The preset anneals over 1e6 steps and is at 1000 in most seeds by then; reaching the
    # threshold within 1e6 satisfies "within 2e6" at half the CI time.
    config, returns = returns_at("ppo", "brax:inverted_pendulum", 1_000_000)
    final = returns[:, -1]
    print("inverted_pendulum final returns:", np.round(final))
    assert (final >= 800).sum() >= 6, final
