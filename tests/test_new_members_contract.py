"""The sweep contract for GRPO, TIC-GRPO, Adaptive-PPO and V-trace: a sweep over their traced
knobs compiles once, other values reuse the program, and each member is its single run."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import tiny_config
from sweeps import sweep_twice_and_alone

from jaxpo import default_hparams, sweep

ACTOR_CRITIC = tiny_config(updates=3)
GROUPED = tiny_config("grpo", num_envs=4, group_size=2, num_steps=24, updates=3, hidden_sizes=(8,))
#: algorithm -> (config, swept hparam, values, other values)
CASES = {
    "grpo": (GROUPED, "kl_coef", [0.0, 0.5], [0.1, 2.0]),
    "tic_grpo": (GROUPED.replace(algo="tic_grpo"), "learning_rate", [3e-3, 3e-2], [1e-2, 0.1]),
    # (the first updates try every arm whatever ucb_coef is, so sweep another knob)
    "adaptive_ppo": (ACTOR_CRITIC.replace(algo="adaptive_ppo"), "ent_coef", [0, 0.05], [0.01, 1]),
    "ppo_vtrace": (
        ACTOR_CRITIC.replace(advantage="vtrace"),
        "vtrace_rho_bar",
        [0.5, 1.0],
        [0.8, 2.0],
    ),
}
SEEDS = 2


@pytest.fixture(scope="module", params=list(CASES))
def runs(request):
    config, name, values, other = CASES[request.param]
    hp = default_hparams(config)
    grid, other_grid = sweep.grid(hp, **{name: values}), sweep.grid(hp, **{name: other})
    return sweep_twice_and_alone(config, grid, other_grid, SEEDS)


def test_sweep_compiles_once_and_values_matter(runs):
    assert runs["traces"] == 1  # the second sweep reused the compiled program
    assert not np.allclose(runs["again"]["loss"], runs["swept"]["loss"])


def test_each_member_is_its_single_run(runs):
    for (member, seed), alone in runs["alone"].items():
        assert set(alone) == set(runs["swept"])
        for name, value in alone.items():
            np.testing.assert_allclose(
                runs["swept"][name][member, seed], value, rtol=1e-5, atol=1e-5, err_msg=name
            )
