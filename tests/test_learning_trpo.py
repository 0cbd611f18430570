"""TRPO and NPG learn, with 8 seeds in one vmapped call, to thresholds a broken one would miss.

Each test runs the preset for less than the issue's budget ("within N env steps"): reaching
the threshold at the end of a shorter run satisfies it, at a fraction of the CI time.
"""

import numpy as np
import pytest
from learning import returns_at

pytestmark = pytest.mark.slow


def test_trpo_cartpole_reaches_475_within_1e6():
    # 32 envs x 128 steps: with 16 x 128 TRPO peaks and then slides on CartPole.
    _, returns = returns_at("trpo", "gymnax:CartPole-v1", 500_000)
    final = returns[:, -1]
    print("TRPO CartPole at 5e5:", np.round(final, 1))
    assert (final >= 475).sum() >= 6, final


def test_npg_cartpole_reaches_450_within_1e6():
    _, returns = returns_at("npg", "gymnax:CartPole-v1", 500_000)
    final = returns[:, -1]
    print("NPG CartPole at 5e5:", np.round(final, 1))
    assert (final >= 450).sum() >= 6, final


def test_trpo_pendulum_reaches_minus_400_within_2e6():
    # A random policy scores about -1200; the preset is near -200 by 2.5e5 steps.
    _, returns = returns_at("trpo", "gymnax:Pendulum-v1", 250_000)
    final = returns[:, -1]
    print("TRPO Pendulum at 2.5e5:", np.round(final))
    assert (final >= -400).sum() >= 6, final
