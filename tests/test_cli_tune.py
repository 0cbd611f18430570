"""``jaxpo tune``: each method's files, a ranking that matches its metrics, a ``best.json``
that ``presets.load`` and ``jaxpo train --config`` read, and refused flag mixes."""

import csv
import json

import numpy as np
import pytest

import jaxpo
from jaxpo import cli, estimates, search, sweep

TINY = ["--seeds", "2", "--total-timesteps", "288", "--no-progress"]
TINY += ["--set", "num_envs=2", "--set", "num_steps=16", "--set", "hidden_sizes=8,8"]
TINY += ["--set", "update_epochs=1", "--set", "num_minibatches=1"]
LRS = "learning_rate=3e-2,1e-2,3e-3,1e-3,3e-4,1e-4,3e-5,1e-5,3e-6"


def read_table(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_halving_ranks_finishers_first_and_writes_a_loadable_best(tmp_path, capsys):
    out = tmp_path / "h"
    argv = ["tune", "--method", "halving", *TINY, "--grid", LRS, "--eta", "3"]
    assert cli.main([*argv, "--min-updates", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "halving: top 5 of 9 by episode_return" in printed
    for name in ("table.csv", "curves.png", "metrics.npz", "best.json", "summary.json"):
        assert (out / name).exists(), name
    rows = read_table(out / "table.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rung_updates"] == [1, 3, 9] and summary["rung_members"] == [9, 3, 1]
    # 9 updates of 32 steps; rungs keep 9 -> 3 -> 1: rungs_done 3, 2, 2, 1 x 6
    assert [int(r["rungs_done"]) for r in rows] == [3, 2, 2] + [1] * 6
    metrics = np.load(out / "metrics.npz")["episode_return"]  # [9, 2, 9], NaN once stopped
    winner = int(rows[0]["member"])
    assert np.isfinite(metrics[winner]).all()
    np.testing.assert_allclose(float(rows[0]["score"]), metrics[winner, :, -1].mean(), rtol=1e-6)
    low, high = float(rows[0]["score_low"]), float(rows[0]["score_high"])
    assert metrics[winner, :, -1].min() <= low <= float(rows[0]["score"]) <= high
    assert high <= metrics[winner, :, -1].max()
    for row in rows[3:]:  # stopped after rung 0: scored at update 1, NaN after
        m = int(row["member"])
        np.testing.assert_allclose(float(row["score"]), metrics[m, :, 0].mean(), rtol=1e-6)
        assert np.isnan(metrics[m, :, 1:]).all()
    config, hparams = jaxpo.presets.load(out / "best.json")
    assert config.num_steps == 16 and config.hidden_sizes == (8, 8)
    assert float(hparams.learning_rate) == pytest.approx(float(rows[0]["learning_rate"]))


def test_pbt_writes_its_lineage_and_continue_reads_the_finished_run(tmp_path, capsys):
    out = tmp_path / "p"
    argv = ["tune", "--method", "pbt", *TINY, "--random", "4"]
    argv += ["--dist", "learning_rate=loguniform:1e-4:1e-2", "--interval", "3"]
    argv += ["--set", "eval_interval=3", "--set", "eval_episodes=2", "--out", str(out)]
    assert cli.main(argv) == 0
    assert "pbt: top 5 of 8 by eval_return" in capsys.readouterr().out
    assert (out / "lineage.png").stat().st_size > 1000 and (out / "pbt").is_dir()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["generations"] == 3 and summary["finished"] is True
    assert summary["metric"] == "eval_return"
    assert len(summary["copies"]) == 3 and all(len(p) == 2 for p in summary["copies"][:2])
    first = read_table(out / "table.csv")
    assert len(first) == 8 and all(
        1e-4 <= float(r["learning_rate"]) <= 1e-2 for r in first
    )  # explored within the --dist bounds
    best = jaxpo.presets.load(out / "best.json")[1]
    assert float(best.learning_rate) == pytest.approx(float(first[0]["learning_rate"]))
    assert cli.main([*argv[:-2], "--out", str(out), "--continue"]) == 0  # nothing to train
    assert read_table(out / "table.csv") == first


def test_optuna_tells_every_trial_and_trains_the_best_again(tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["tune", "--method", "optuna", *TINY, "--trials", "3", "--generations", "2"]
    argv += ["--dist", "learning_rate=loguniform:1e-4:1e-2", "--out", str(out)]
    assert cli.main(argv) == 0
    rows = read_table(out / "table.csv")
    assert sorted(int(r["generation"]) for r in rows) == [0, 0, 0, 1, 1, 1]
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    metrics = np.load(out / "metrics.npz")["episode_return"]
    iqms = search.iqm(metrics[..., -1], axis=1)
    np.testing.assert_allclose(sorted(iqms, reverse=True), scores, rtol=1e-6)
    trained = tmp_path / "again"
    again = ["train", "--config", str(out / "best.json"), "--seeds", "1", "--no-progress"]
    assert cli.main([*again, "--out", str(trained)]) == 0
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["hparams"]["learning_rate"] == pytest.approx(float(rows[0]["learning_rate"]))


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--method", "halving", "--grid", LRS, "--interval", "2"], "--interval do(es) not apply"),
        (["--method", "pbt", "--grid", LRS], "--method pbt needs --interval, --dist"),
        (["--method", "optuna"], "--method optuna needs --trials"),
        (
            ["--method", "optuna", "--grid", LRS, "--trials", "2", "--generations", "1"]
            + ["--dist", "learning_rate=uniform:0.1:0.2"],
            "drop --grid, --point, --random",
        ),
        (["--method", "pbt", "--continue", "--interval", "2"], "--continue needs --out"),
        (["--method", "halving", "--grid", LRS, "--eta", "1"], "eta must be an integer >= 2"),
        (["--method", "halving", "--grid", LRS, "--tensorboard"], "writes no --tensorboard"),
        (["--method", "pbt", "--grid", LRS, "--quantile", "0.5"], "--method pbt needs"),
        (["--method", "halving", "--grid", LRS, "--quantile", "0.5"], "--quantile do(es) not"),
    ],
)
def test_bad_tune_flags_exit_2_naming_the_problem(extra, message, tmp_path, capsys):
    argv = ["tune", *TINY, *extra]
    if "--continue" not in extra:
        argv += ["--out", str(tmp_path / "t")]
    else:
        argv += ["--dist", "learning_rate=uniform:0.1:0.2", "--out", str(tmp_path / "none")]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_tune_members_match_the_sweep_flags():
    """halving/pbt start from the sweep's members; PBT's --dist alone explores."""
    args = cli.build_parser().parse_args(
        ["tune", "--method", "pbt", "--grid", "learning_rate=1e-3,1e-4", "--interval", "1"]
        + ["--dist", "learning_rate=loguniform:1e-5:1e-2"]
    )
    _, hparams = jaxpo.presets.get("ppo", "gymnax:CartPole-v1")
    members = cli.tune_members(args, hparams)
    np.testing.assert_allclose(sweep.columns(members)["learning_rate"], [1e-3, 1e-4])


def test_iqm_interval_limit_cases():
    assert estimates.iqm_interval(np.full(8, 3.0)) == (3.0, 3.0)  # no spread, no width
    assert all(np.isnan(estimates.iqm_interval(np.array([1.0]))))  # one seed: none
    assert all(np.isnan(estimates.iqm_interval(np.array([1.0, np.nan, 2.0]))))
    values = np.array([0.0, 10, 10, 10, 10, 10, 10, 500])  # IQM 10, outliers trimmed
    low, high = estimates.iqm_interval(values)
    assert 0 <= low <= 10 <= high < 500 and estimates.iqm_interval(values) == (low, high)
