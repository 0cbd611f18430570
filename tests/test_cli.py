"""The ``jaxpo`` command line: training output files, table, progress and errors."""

import csv
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxpo
from jaxpo import cli, flags


def test_train_writes_metrics_summary_and_table(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(
        [
            "train",
            "--seeds",
            "2",
            "--total-timesteps",
            "2048",
            "--out",
            str(out),
            "--set",
            "num_envs=2",
            "--set",
            "num_steps=64",
            "--set",
            "learning_rate=1e-3",
            "--set",
            "hidden_sizes=16,16",
            "--progress-interval",
            "4",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "final return" in printed and "mean" in printed and "±" in printed
    assert "update " not in printed  # progress goes to stderr
    # one progress display for both seeds: updates 4, 8, 12, 16 — each line covers 2 agents
    progress_lines = [line for line in captured.err.splitlines() if "update " in line]
    assert len(progress_lines) == 4 and all("(2 agents)" in line for line in progress_lines)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 2 * 16  # one row per update per seed
    assert {"seed", "update", "env_steps", "episode_return", "approx_kl"} <= set(rows[0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["num_envs"] == 2 and summary["config"]["hidden_sizes"] == [16, 16]
    assert summary["hparams"]["learning_rate"] == pytest.approx(1e-3)
    assert len(summary["final_return"]) == 2
    last = [float(r["episode_return"]) for r in rows if int(r["update"]) == 16]
    assert summary["final_return"] == pytest.approx(last)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "nope=1"], "unknown name 'nope'"),
        (["--set", "learning_rate"], "NAME=VALUE"),
        (["--set", "learning_rate=-1"], "learning_rate"),
        (["--set", "gamma=abc"], "cannot parse"),
        (["--set", "num_minibatches=7"], "num_minibatches"),
        (["--env", "gymnax:Nope-v0"], "env_id"),
        (["--algo", "nope"], "algo"),
        (["--seeds", "0"], "--seeds"),
    ],
)
def test_bad_input_exits_2_with_named_field(argv, message, capsys):
    assert cli.main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert "jaxpo: error:" in err and message in err


def test_python_dash_m_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "jaxpo", "train", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert "--total-timesteps" in done.stdout and "--set" in done.stdout


def test_set_episode_length_rebuilds_brax_env_params():
    config, hparams = jaxpo.presets.get("ppo", "brax:inverted_pendulum")
    config, hparams = flags.apply_sets(config, hparams, ["episode_length=50", "gamma=0.9"])
    assert not hasattr(config, "episode_length")  # the time limit lives in the env params only
    assert int(hparams.env_params.max_steps_in_episode) == 50
    assert float(hparams.gamma) == pytest.approx(0.9)


def test_set_episode_length_limits_gymnax_episodes_too():
    config, hparams = jaxpo.presets.get("ppo", "gymnax:CartPole-v1")
    sets = ["episode_length=5", "num_envs=2", "num_steps=16", "hidden_sizes=8"]
    config, hparams = flags.apply_sets(config, hparams, [*sets, "total_timesteps=64"])
    assert int(hparams.env_params.max_steps_in_episode) == 5
    result = jax.jit(jaxpo.make_train(config))(jax.random.key(0), hparams)
    assert np.all(np.asarray(result.metrics["episode_length"]) <= 5)
    with pytest.raises(ValueError, match="episode_length.*no time limit"):
        probe, hp = jaxpo.presets.get("ppo", "probe:constant")
        flags.apply_sets(probe, hp, ["episode_length=5"])


def test_set_names_a_field_of_another_algorithm():
    config, hparams = jaxpo.presets.get("ppo", "gymnax:CartPole-v1")
    with pytest.raises(ValueError, match=r"--set: config field 'cg_iters' belongs to .*'trpo'"):
        flags.apply_sets(config, hparams, ["cg_iters=3"])
    trpo, hp = jaxpo.presets.get("trpo", "gymnax:CartPole-v1")
    assert flags.apply_sets(trpo, hp, ["cg_iters=3"])[0].cg_iters == 3
