"""GRPO, TIC-GRPO and Adaptive-PPO learn, with 8 seeds in one vmapped call, to thresholds a
broken one would miss. Env steps count every step of the grouped rollouts, padding included."""

import numpy as np
import pytest
from learning import returns_at, value_within

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("algo", "total"), [("grpo", 1_000_000), ("tic_grpo", 2_000_000)])
def test_group_relative_cartpole_reaches_450(algo, total):
    """Within the issue's 2e6 env steps (4 groups × G = 8, horizon 500: 16,000 per update)."""
    config, returns = returns_at(algo, "gymnax:CartPole-v1", total)
    final = value_within(config, returns, total)
    print(f"{algo} CartPole at {total:.0e}:", np.round(final, 1))
    assert (final >= 450).sum() >= 6, final


def test_adaptive_ppo_cartpole_reaches_475_by_5e5():
    _, returns = returns_at("adaptive_ppo", "gymnax:CartPole-v1", 500_000)
    final = returns[:, -1]
    print("adaptive_ppo CartPole at 5e5:", np.round(final, 1))
    assert (final >= 475).sum() >= 7, final


def test_adaptive_ppo_pendulum_reaches_minus_400_by_5e5():
    """The issue allows 1e6 env steps; PPO's Pendulum settings get there by 5e5."""
    _, returns = returns_at("adaptive_ppo", "gymnax:Pendulum-v1", 500_000)
    final = returns[:, -1]
    print("adaptive_ppo Pendulum at 5e5:", np.round(final))
    assert (final >= -400).sum() >= 6, final


@pytest.mark.extended
def test_grpo_pendulum_reaches_minus_400_within_5e6():
    """About 2 minutes on 2 CPU cores: the preset's 97 updates × 51,200 steps (4,966,400)."""
    config, returns = returns_at("grpo", "gymnax:Pendulum-v1", 5_000_000)
    final = returns[:, -1]
    print("grpo Pendulum at 5e6:", np.round(final))
    assert (final >= -400).sum() >= 6, final
