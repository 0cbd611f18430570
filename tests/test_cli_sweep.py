"""``jaxpo sweep``: output files, top-k table, member construction and bad specs."""

import csv
import importlib.util
import json

import jax
import numpy as np
import pytest

import jaxpo
from jaxpo import cli, flags, sweep

TINY = [
    "--seeds",
    "2",
    "--total-timesteps",
    "128",
    "--set",
    "num_envs=2",
    "--set",
    "num_steps=16",
    "--set",
    "hidden_sizes=8,8",
    "--set",
    "update_epochs=1",
    "--set",
    "num_minibatches=1",
]


def test_sweep_writes_table_curves_metrics_and_summary(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", *TINY, "--grid", "learning_rate=1e-2,1e-4", "--progress-interval", "2"]
    code = cli.main([*argv, "--chunk-size", "2", "--top", "1", "--out", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    printed = captured.out
    devices = jax.device_count()
    assert f"2 member(s) x 2 seed(s) = 4 agents in 2 chunk(s) on {devices} device(s)" in printed
    assert "4 updates x 32 env steps" in printed
    # one display for the whole sweep: 2 chunks x 4 updates, reports every 2 updates
    progress = [line for line in captured.err.splitlines() if "update " in line]
    assert len(progress) == 4 and progress[-1].startswith("ppo: update 8/8")
    title, header, row = printed.split("top 1 of 2 members")[1].splitlines()[:3]
    assert "by final_return" in title
    assert header.split() == ["rank", "member", "learning_rate", "final_return"]

    metrics = np.load(out / "metrics.npz")
    assert metrics["episode_return"].shape == (2, 2, 4) and "approx_kl" in metrics
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert [(r["member"], r["seed"]) for r in rows] == [
        ("0", "0"),
        ("0", "1"),
        ("1", "0"),
        ("1", "1"),
    ]
    assert [float(r["learning_rate"]) for r in rows] == [1e-2, 1e-2, 1e-4, 1e-4]
    final = np.array([float(r["final_return"]) for r in rows], np.float32).reshape(2, 2)
    np.testing.assert_array_equal(final, metrics["episode_return"][:, :, -1])
    losses = np.array([float(r["loss"]) for r in rows], np.float32).reshape(2, 2)
    np.testing.assert_array_equal(losses, metrics["loss"][:, :, -1])
    assert {int(r["env_steps"]) for r in rows} == {128}

    summary = json.loads((out / "summary.json").read_text())
    best = int(np.argmax(final.mean(axis=1)))
    assert summary["best"]["member"] == best
    assert summary["best"]["mean"] == pytest.approx(final[best].mean())
    assert row.split()[:3] == ["1", str(best), f"{[0.01, 0.0001][best]:.4g}"]
    assert summary["swept"] == {"learning_rate": [0.01, 0.0001]}
    assert summary["num_chunks"] == 2 and summary["seeds"] == [0, 1]
    assert summary["config"]["num_envs"] == 2
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    has_pyarrow = importlib.util.find_spec("pyarrow") is not None
    assert (out / "table.parquet").exists() == has_pyarrow


def members_of(argv):
    args = cli.build_parser().parse_args(["sweep", *argv])
    _, hparams = jaxpo.presets.get("ppo", "gymnax:CartPole-v1")
    return sweep.columns(flags.sweep_members(args, hparams))


def test_grid_random_and_points_concatenate_in_order():
    argv = [
        "--grid",
        "learning_rate=1e-3,3e-4",
        "--grid",
        "clip-eps=0.1,0.2",
        "--random",
        "3",
        "--dist",
        "ent_coef=uniform:0.02:0.1",
        "--point",
        "learning_rate=5e-4,clip_eps=0.3",
    ]
    cols = members_of(argv)
    np.testing.assert_allclose(cols["learning_rate"], [1e-3, 1e-3, 3e-4, 3e-4, *[2.5e-4] * 3, 5e-4])
    np.testing.assert_allclose(cols["clip_eps"], [0.1, 0.2, 0.1, 0.2, 0.2, 0.2, 0.2, 0.3])
    ent = cols["ent_coef"]
    np.testing.assert_allclose(ent[[0, 1, 2, 3, 7]], 0.01)  # the preset's value
    assert np.all((ent[4:7] >= 0.02) & (ent[4:7] <= 0.1)) and np.unique(ent[4:7]).size == 3
    other_key = members_of([*argv, "--sweep-seed", "1"])["ent_coef"]
    assert not np.allclose(other_key[4:7], ent[4:7])


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "nothing to sweep"),
        (["--grid", "nope=1,2"], "--grid: unknown hparam 'nope'"),
        (["--grid", "learning_rate="], "grid over 'learning_rate' is empty"),
        (["--grid", "num_envs=4,8"], "'num_envs' is a static config field"),
        (["--grid", "learning_rate=1e-3,abc"], "--grid learning_rate: cannot parse 'abc'"),
        (["--grid", "learning_rate"], "--grid expects NAME=VALUE"),
        (["--grid", "learning_rate=1e-3,-1"], "--grid: hparam learning_rate="),
        (["--grid", "gamma=0.9", "--grid", "gamma=0.99"], "--grid names 'gamma' twice"),
        (["--random", "4", "--dist", "learning_rate=loguniform:abc"], "malformed distribution"),
        (["--random", "2", "--dist", "learning_rate=gauss:0:1"], "unknown distribution 'gauss'"),
        (["--random", "2", "--dist", "num_steps=uniform:8:16"], "static config field"),
        (["--random", "4"], "--random needs at least one --dist"),
        (["--random", "-1", "--dist", "gamma=uniform:0.9:0.99"], "--random must be >= 0"),
        (["--dist", "learning_rate=loguniform:1e-5:1e-2"], "--dist needs --random N"),
        (["--point", "clip_eps=0.1,nope=2"], "--point: unknown hparam 'nope'"),
        (["--point", "gamma=0.9,gamma=0.8"], "--point names 'gamma' twice"),
        (["--point", "gamma="], "--point gamma: cannot parse ''"),
        (["--grid", "gamma=0.9", "--chunk-size", "0"], "--chunk-size must be >= 1"),
        (["--grid", "gamma=0.9", "--top", "0"], "--top must be >= 1"),
        (["--grid", "gamma=0.9", "--set", "nope=1"], "--set: unknown name 'nope'"),
        (["--grid", "gamma=0.9", "--seeds", "0"], "--seeds must be >= 1"),
    ],
)
def test_bad_specs_exit_2_naming_the_problem(argv, message, tmp_path, capsys):
    assert cli.main(["sweep", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxpo: error:") and message in err
    assert not (tmp_path / "out").exists()


def test_sweep_help_lists_its_flags(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["sweep", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--grid",
        "--random",
        "--dist",
        "--point",
        "--chunk-size",
        "--top",
        "--sweep-seed",
    ):
        assert flag in text
