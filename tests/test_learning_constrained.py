"""PPO-KL, A2C, MDPO and MCPO learn, with 8 seeds in one vmapped call, to thresholds a broken one
would miss. Each runs its preset for at most the issue's budget ("within N env steps")."""

import numpy as np
import pytest
from learning import returns_at

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("algo", "total", "threshold"),
    [
        ("ppo_kl", 500_000, 475),
        ("mdpo", 500_000, 475),
        ("mcpo", 500_000, 475),
        ("a2c", 1_000_000, 400),
    ],
)
def test_cartpole(algo, total, threshold):
    _, returns = returns_at(algo, "gymnax:CartPole-v1", total)
    final = returns[:, -1]
    print(f"{algo} CartPole at {total:.0e}:", np.round(final, 1))
    assert (final >= threshold).sum() >= 6, final


@pytest.mark.parametrize("algo", ["mdpo", "mcpo"])
def test_pendulum_reaches_minus_400_by_5e5(algo):
    """The issue asks for ≥ −400 within 2e6 env steps; the presets get there by 5e5."""
    _, returns = returns_at(algo, "gymnax:Pendulum-v1", 500_000)
    final = returns[:, -1]
    print(f"{algo} Pendulum at 5e5:", np.round(final))
    assert (final >= -400).sum() >= 6, final


@pytest.mark.extended
@pytest.mark.parametrize(
    ("algo", "total"), [("ppo_kl", 2_000_000), ("mdpo", 2_000_000), ("mcpo", 2_000_000)]
)
def test_brax_inverted_pendulum_reaches_800_within_2e6(algo, total):
    """About 4-6 minutes each on 2 CPU cores; the figures are in the README.

    MCPO's preset met the bar in one of three 8-seed draws (6/8, 4/8, 4/8 seeds), so its
    case fails in about half of them (experiments/results/presets_sweep.md, sixth round).
    """
    _, returns = returns_at(algo, "brax:inverted_pendulum", total)
    final = returns[:, -1]
    print(f"{algo} inverted_pendulum at {total:.0e}:", np.round(final))
    assert (final >= 800).sum() >= 6, final
