"""TRPO and NPG inside ``make_train``: compile-once sweeps over max_kl, sweep == single run,
their metrics, the CLI, and checks of their static and traced knobs."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from helpers import tiny_config
from sweeps import sweep_twice_and_alone

from jaxpo import cli, default_hparams, make_train, presets, sweep
from jaxpo.algos.natural import fisher_samples

CONFIG = tiny_config(
    "trpo",
    num_steps=32,
    updates=4,
    update_epochs=1,
    hidden_sizes=(12, 12),
    cg_iters=5,
    line_search_steps=4,
)
MAX_KLS = [1e-3, 5e-2]
SEEDS = 2
NATURAL_METRICS = {
    "kl",
    "step_norm",
    "backtracks",
    "accepted",
    "improvement",
    "cg_residual",
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "ess_frac",
    "explained_variance",
    "episode_return",
}

#: Batched and unbatched programs reduce in different orders; CG and the KL-scaled step turn
#: those float32 round-off differences into drifts of up to ~3e-4 (relative) in the step's own
#: diagnostics after a few updates (measured here), while returns, losses, entropy and
#: explained variance stay equal to 1e-5. CG's relative residual is itself round-off once CG
#: has converged.
STEP_DIAGNOSTICS = {
    "kl",
    "approx_kl",
    "step_norm",
    "improvement",
    "policy_grad_norm",
    "cg_residual",
    "ess_frac",
}


@pytest.fixture(scope="module")
def runs():
    """A sweep over MAX_KLS × SEEDS, a second sweep with other values, and the single runs."""
    hp = default_hparams(CONFIG)
    # other values of every TRPO knob, same shapes: no new program
    other = hp.set(cg_damping=0.05, backtrack_ratio=0.5, learning_rate=3e-3)
    return sweep_twice_and_alone(
        CONFIG, sweep.grid(hp, max_kl=MAX_KLS), sweep.grid(other, max_kl=[1e-2, 1e-4]), SEEDS
    )


def test_max_kl_sweep_compiles_once(runs):
    assert runs["traces"] == 1  # the second sweep reused the compiled program
    for name in ("step_norm", "value_loss"):
        assert not np.allclose(runs["again"][name], runs["swept"][name]), name


@pytest.mark.parametrize("member", range(len(MAX_KLS)))
@pytest.mark.parametrize("seed", range(SEEDS))
def test_sweep_member_equals_single_run(runs, member, seed):
    alone = runs["alone"][member, seed]
    assert NATURAL_METRICS <= set(alone) and set(alone) == set(runs["swept"])
    for name, value in alone.items():
        swept = runs["swept"][name][member, seed]
        # the first update, before any round-off has gone through CG, matches to 1e-5 ...
        np.testing.assert_allclose(swept[0], value[0], rtol=1e-5, atol=1e-5, err_msg=name)
        # ... and so does everything later but the natural step's own diagnostics
        tol = 1e-3 if name in STEP_DIAGNOSTICS else 1e-5
        np.testing.assert_allclose(swept, value, rtol=tol, atol=tol, err_msg=name)


def test_trpo_metrics_respect_the_bound(runs):
    m = runs["swept"]
    max_kl = np.asarray(MAX_KLS)[:, None, None]
    accepted = m["accepted"] == 1.0
    assert set(np.unique(m["accepted"])) <= {0.0, 1.0} and accepted.any()
    assert (m["kl"] <= max_kl).all()
    assert (m["improvement"][accepted] > 0).all()
    assert (m["backtracks"][~accepted] == CONFIG.line_search_steps).all()
    assert (m["step_norm"][~accepted] == 0).all()
    # a 50x larger trust region takes larger steps
    assert m["step_norm"][1].mean() > m["step_norm"][0].mean()


def test_fisher_samples_keep_every_env():
    config = CONFIG.replace(num_envs=3, num_steps=5, fisher_subsample=2)
    obs = np.arange(15.0).reshape(15, 1)  # time-major: sample t*3 + b is env b at step t
    got = np.asarray(fisher_samples(config, jax.numpy.asarray(obs)))[:, 0]
    np.testing.assert_array_equal(got, [0, 1, 2, 6, 7, 8, 12, 13, 14])  # steps 0, 2, 4
    assert fisher_samples(config.replace(fisher_subsample=1), obs) is obs


@pytest.mark.parametrize("natural_step", ["normalized", "fixed"])
def test_npg_steps(natural_step):
    config = CONFIG.replace(algo="npg", natural_step=natural_step, total_timesteps=2 * 32 * 2)
    hp = default_hparams(config, step_size=0.01)
    metrics = jax.tree.map(np.asarray, jax.jit(make_train(config))(jax.random.key(0), hp).metrics)
    assert NATURAL_METRICS <= set(metrics)
    np.testing.assert_array_equal(metrics["accepted"], 1.0)
    assert (metrics["step_norm"] > 0).all() and np.isfinite(metrics["kl"]).all()
    if natural_step == "normalized":
        # the damped quadratic model ½αxᵀ(F + λI)αx is δ; damping only makes the true KL smaller
        assert (metrics["kl"] > 1e-4).all() and (metrics["kl"] < 0.015).all(), metrics["kl"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cg_iters", 0),
        ("line_search_steps", 0),
        ("fisher_subsample", 0),
        ("fisher_subsample", 10_000),
        ("fisher_form", "dense"),
        ("natural_step", "adaptive"),
    ],
)
def test_bad_natural_config(field, value):
    with pytest.raises(ValueError, match=field):
        make_train(CONFIG.replace(**{field: value}))


@pytest.mark.parametrize(
    ("algo", "field", "value"),
    [
        ("trpo", "max_kl", 0.0),
        ("trpo", "max_kl", math.nan),
        ("trpo", "backtrack_ratio", 1.0),
        ("trpo", "backtrack_ratio", 0.0),
        ("trpo", "cg_damping", -0.1),
        ("npg", "step_size", 0.0),
    ],
)
def test_bad_natural_hparams(algo, field, value):
    with pytest.raises(ValueError, match=rf"hparam {field}="):
        default_hparams(CONFIG.replace(algo=algo), **{field: value})


def test_presets_exist_and_traced_knobs_are_hparams():
    config, hp = presets.get("trpo", "gymnax:CartPole-v1")
    assert config.algo == "trpo" and config.batch_size >= 1024
    for name in ("max_kl", "cg_damping", "backtrack_ratio", "learning_rate"):
        assert np.asarray(getattr(hp, name)).dtype == np.float32
    _, hp = presets.get("npg", "gymnax:Pendulum-v1")
    assert float(hp.step_size) > 0


@pytest.mark.parametrize("algo", ["trpo", "npg"])
def test_cli_trains_natural_algorithms(algo, tmp_path, capsys):
    out = tmp_path / algo
    argv = ["train", "--algo", algo, "--total-timesteps", "256", "--out", str(out)]
    for setting in ("num_envs=2", "num_steps=64", "hidden_sizes=8", "cg_iters=3", "max_kl=0.02"):
        if algo == "npg" and setting.startswith("max_kl"):
            setting = "step_size=0.02"
        argv += ["--set", setting]
    assert cli.main(argv) == 0
    assert "final return" in capsys.readouterr().out
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"kl", "accepted", "backtracks", "cg_residual"} <= set(header)
