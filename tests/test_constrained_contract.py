"""PPO-KL, A2C and MDPO inside ``make_train``: sweeps over their own knobs compile once,
members equal single runs, algorithm state keeps static shapes, CLI and validation. MCPO's
sweep and state tests are in ``test_mcpo.py``; its CLI and preset checks are here."""

import math

import numpy as np
import pytest
from helpers import tiny_config
from sweeps import sweep_twice_and_alone

from jaxpo import cli, default_hparams, presets, sweep

CONFIG = tiny_config(updates=4, hidden_sizes=(12, 12))
SEEDS = 2
#: algo -> (swept hparam, its values, other values, other knobs changed in the second sweep)
CASES = {
    "ppo_kl": ("kl_target", [1e-3, 1e-1], [3e-3, 3e-2], {"kl_coef_init": 0.5}),
    "a2c": ("learning_rate", [1e-3, 3e-3], [3e-4, 1e-2], {"vf_coef": 0.25}),
    "mdpo": ("horizon", [2.0, 1000.0], [3.0, 50.0], {"value_clip": 0.1}),
}
#: algo -> its own per-update metrics
ALGO_METRICS = {
    "ppo_kl": {"kl", "kl_coef"},
    "a2c": set(),
    "mdpo": {"kl", "inv_step"},
    "mcpo": {"beta", "kl", "kl_virtual", "virtual_gain", "attention_entropy", "memory_write"},
}
COMMON = {"policy_loss", "value_loss", "entropy", "approx_kl", "ess_frac", "grad_norm"}


@pytest.fixture(scope="module", params=sorted(CASES))
def runs(request):
    algo = request.param
    name, values, others, changes = CASES[algo]
    config = CONFIG.replace(algo=algo)
    hp = default_hparams(config)
    grid = sweep.grid(hp, **{name: values})
    other = sweep.grid(hp.set(**changes), **{name: others})
    return algo, sweep_twice_and_alone(config, grid, other, SEEDS)


def test_sweep_compiles_once_and_members_equal_single_runs(runs):
    algo, out = runs
    assert out["traces"] == 1
    assert COMMON | ALGO_METRICS[algo] <= set(out["swept"])
    assert not np.allclose(out["again"]["policy_loss"], out["swept"]["policy_loss"])
    for (m, s), alone in out["alone"].items():
        for name, value in alone.items():
            np.testing.assert_allclose(
                out["swept"][name][m, s], value, rtol=1e-5, atol=1e-5, err_msg=f"{algo} {name}"
            )


def test_algorithm_state_metrics(runs):
    algo, out = runs
    m = out["swept"]
    if algo == "ppo_kl":  # β in use at update 0 is kl_coef_init, then it adapts
        np.testing.assert_allclose(m["kl_coef"][..., 0], 1.0)
        assert not np.allclose(m["kl_coef"][..., -1], 1.0)
    if algo == "mdpo":  # 1/t_k = K / (K − k + 1): with K = 2 it goes 1, 2, 2, 2
        np.testing.assert_allclose(m["inv_step"][0, 0], [1.0, 2.0, 2.0, 2.0])
        np.testing.assert_allclose(m["inv_step"][1, 0], 1000 / (1000 - np.arange(4)), rtol=1e-6)


@pytest.mark.parametrize(
    ("algo", "field", "value"),
    [
        ("ppo_kl", "kl_target", 0.0),
        ("ppo_kl", "kl_coef_init", 0.0),
        ("ppo_kl", "kl_coef_init", 1e-9),
        ("ppo_kl", "kl_coef_init", 1e7),
        ("mdpo", "horizon", 0.5),
        ("mdpo", "value_clip", math.nan),
        ("a2c", "ent_coef", -0.1),
    ],
)
def test_bad_hparams(algo, field, value):
    with pytest.raises(ValueError, match=rf"hparam {field}="):
        default_hparams(CONFIG.replace(algo=algo), **{field: value})


@pytest.mark.parametrize("algo", sorted(ALGO_METRICS))
def test_cli_trains(algo, tmp_path, capsys):
    out = tmp_path / algo
    argv = ["train", "--algo", algo, "--total-timesteps", "128", "--out", str(out)]
    for setting in ("num_envs=2", "num_steps=32", "hidden_sizes=8", "update_epochs=1"):
        argv += ["--set", setting]
    assert cli.main(argv) == 0
    assert "final return" in capsys.readouterr().out
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert COMMON | ALGO_METRICS[algo] <= set(header)


@pytest.mark.parametrize(
    ("algo", "env_id"),
    [(algo, "gymnax:CartPole-v1") for algo in sorted(ALGO_METRICS)]
    + [("mdpo", "gymnax:Pendulum-v1"), ("mcpo", "gymnax:Pendulum-v1")],
)
def test_presets_exist(algo, env_id):
    """Every tuned pair is in the table (``get`` would fall back to defaults otherwise)."""
    assert (algo, env_id) in presets.PRESETS
    config, hp = presets.get(algo, env_id)
    assert config.algo == algo and isinstance(hp, type(default_hparams(config)))


@pytest.mark.parametrize(("algo", "epochs"), [("a2c", 1), ("mdpo", 10)])
def test_method_defining_config_applies_without_a_preset(algo, epochs):
    assert (algo, "gymnax:Acrobot-v1") not in presets.PRESETS
    config, _ = presets.get(algo, "gymnax:Acrobot-v1")
    assert (config.update_epochs, config.num_minibatches) == (epochs, 1)
    config, _ = presets.get("ppo", "gymnax:Acrobot-v1")  # not for other algorithms
    assert (config.update_epochs, config.num_minibatches) == (4, 4)
