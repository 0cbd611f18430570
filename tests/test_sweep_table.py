"""The sweep table, ranking, CSV/Parquet files and curves, on a hand-built sweep result."""

import csv
import sys

import numpy as np
import pytest

import jaxpo
from jaxpo import estimates, sweep, sweep_table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# [member, seed, update]: member 0 seed 1 never finishes an episode; member 1's returns are
# negative, so the 0.0 it reports before its first episode must not count as its best.
RETURNS = np.array(
    [
        [[0.0, 10.0, 30.0, 20.0], [0.0, 0.0, 0.0, 0.0]],
        [[0.0, -50.0, -20.0, -40.0], [-5.0, -5.0, -10.0, -10.0]],
    ],
    np.float32,
)
EPISODES = np.array(
    [
        [[0, 1, 1, 0], [0, 0, 0, 0]],
        [[0, 2, 1, 1], [1, 0, 1, 0]],
    ],
    np.float32,
)
LOSS = np.array([[[9, 9, 9, 4], [9, 9, 9, 2]], [[9, 9, 9, 1], [9, 9, 9, 0.5]]], np.float32)


@pytest.fixture(scope="module")
def setup():
    config, hparams = jaxpo.presets.get("ppo", "gymnax:CartPole-v1")
    config = config.replace(num_envs=2, num_steps=16)  # batch_size 32
    members = sweep.grid(hparams, learning_rate=[1e-3, 3e-4])
    metrics = {"episode_return": RETURNS, "episodes": EPISODES, "loss": LOSS}
    result = sweep.SweepResult(members, np.array([3, 7]), metrics, None)
    return result, config, sweep_table.table(result, config)


def test_rows_columns_and_values(setup):
    _, config, table = setup
    hparams = list(sweep.columns(jaxpo.presets.get("ppo", "gymnax:CartPole-v1")[1]))
    assert table.columns == [
        "member",
        "seed",
        *hparams,
        "final_return",
        "best_return",
        "env_steps",
        "episode_return",
        "episodes",
        "loss",
    ]
    assert table.hparams == tuple(hparams)
    assert [(r["member"], r["seed"]) for r in table.rows] == [(0, 3), (0, 7), (1, 3), (1, 7)]
    assert [r["learning_rate"] for r in table.rows] == [0.001, 0.001, 0.0003, 0.0003]
    assert {r["clip_eps"] for r in table.rows} == {0.2}
    assert [r["final_return"] for r in table.rows] == [20.0, 0.0, -40.0, -10.0]
    assert [r["episode_return"] for r in table.rows] == [20.0, 0.0, -40.0, -10.0]
    assert [r["loss"] for r in table.rows] == [4.0, 2.0, 1.0, 0.5]
    assert [r["episodes"] for r in table.rows] == [0.0, 0.0, 1.0, 0.0]
    assert {r["env_steps"] for r in table.rows} == {4 * config.batch_size}
    assert table.swept() == ["learning_rate"]
    assert table.members == [0, 1]


def test_best_return_skips_updates_before_the_first_episode(setup):
    best = [r["best_return"] for r in setup[2].rows]
    # member 1 seed 0: -20, not the 0.0 of update 0; member 0 seed 1 never finished: NaN
    np.testing.assert_array_equal(best, [30.0, np.nan, -20.0, -5.0])


def test_best_picks_member_by_mean_over_seeds(setup):
    table = setup[2]
    top = sweep_table.best(table)
    assert (top.member, top.mean, top.std) == (0, 10.0, 10.0)  # (20 + 0) / 2 vs (-40 - 10) / 2
    assert top.hparams["learning_rate"] == 0.001 and top.hparams["clip_eps"] == 0.2
    worst = sweep_table.best(table, "final_return", mode="min")
    assert (worst.member, worst.mean, worst.std) == (1, -25.0, 15.0)
    assert sweep_table.best(table, "loss", mode="min").member == 1  # 0.75 vs 3
    # member 0's best_return mean is NaN (a seed never finished): it ranks last
    assert sweep_table.best(table, "best_return").member == 1
    assert [r.member for r in sweep_table.top_k(table, 5, "best_return")] == [1, 0]


@pytest.mark.parametrize(
    "metric, mode, k, message",
    [
        ("nope", "max", 1, "unknown metric 'nope'"),
        ("seed", "max", 1, "unknown metric 'seed'"),
        ("final_return", "median", 1, "unknown mode 'median'"),
        ("final_return", "max", 0, "k must be >= 1"),
    ],
)
def test_ranking_errors(setup, metric, mode, k, message):
    with pytest.raises(ValueError, match=message):
        sweep_table.top_k(setup[2], k, metric, mode)


def test_top_k_text_shows_swept_hparams_and_mean_std(setup):
    text = sweep_table.format_top_k(setup[2], 2)
    title, header, first, second = text.splitlines()
    assert title == "top 2 of 2 members by final_return (max; mean ± std over 2 seed(s))"
    assert header.split() == ["rank", "member", "learning_rate", "final_return"]
    assert first.split() == ["1", "0", "0.001", "10", "±", "10"]
    assert second.split() == ["2", "1", "0.0003", "-25", "±", "15"]
    assert len(sweep_table.format_top_k(setup[2], 1).splitlines()) == 3


def test_csv_round_trip(setup, tmp_path):
    table = setup[2]
    sweep_table.write_csv(table, tmp_path / "table.csv")
    with (tmp_path / "table.csv").open() as f:
        read = list(csv.DictReader(f))
    assert list(read[0]) == table.columns
    for row, back in zip(table.rows, read, strict=True):
        np.testing.assert_array_equal(
            [float(back[c]) for c in table.columns], [row[c] for c in table.columns]
        )


def test_parquet_skipped_without_pyarrow(setup, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    assert sweep_table.write_parquet(setup[2], tmp_path / "t.parquet") is False
    assert not (tmp_path / "t.parquet").exists()


def test_parquet_round_trip(setup, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    table = setup[2]
    assert sweep_table.write_parquet(table, tmp_path / "t.parquet")
    back = pq.read_table(tmp_path / "t.parquet").to_pydict()
    assert list(back) == table.columns
    np.testing.assert_array_equal(back["final_return"], [20.0, 0.0, -40.0, -10.0])


def test_bootstrap_interval_by_hand():
    # two seeds with values 0 and 1: resampled means are 0, 0.5, 1 with chances 1/4, 1/2, 1/4
    low, high = estimates.bootstrap_interval(np.array([[0.0, 5.0], [1.0, 5.0]]))
    np.testing.assert_array_equal(low, [0.0, 5.0])
    np.testing.assert_array_equal(high, [1.0, 5.0])


def test_plot_curves_writes_png_of_members_whose_seeds_all_finished(setup, tmp_path, monkeypatch):
    result, config, _ = setup
    drawn = []
    real = sweep_table.draw_mean_band

    def record(ax, steps, values, label, rng, color=None):
        drawn.append((steps, values, label))
        real(ax, steps, values, label, rng, color)

    monkeypatch.setattr(sweep_table, "draw_mean_band", record)
    sweep_table.plot_curves(result, config, tmp_path / "curves.png")
    data = (tmp_path / "curves.png").read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000
    # member 0 has a seed that never finished; member 1's seeds have both finished by update 1
    [(steps, values, label)] = drawn
    assert label == "learning_rate=0.0003"
    np.testing.assert_array_equal(steps, [64, 96, 128])
    np.testing.assert_array_equal(values, RETURNS[1, :, 1:])


def test_member_labels():
    hparams = jaxpo.presets.get("ppo", "gymnax:CartPole-v1")[1]
    two = sweep.grid(hparams, learning_rate=[1e-3, 3e-4], clip_eps=[0.1])
    assert sweep_table.member_labels(two) == [
        "learning_rate=0.001",
        "learning_rate=0.0003",
    ]
    both = sweep.grid(hparams, learning_rate=[1e-3, 3e-4], clip_eps=[0.1, 0.3])
    assert sweep_table.member_labels(both)[1] == "learning_rate=0.001, clip_eps=0.3"
    assert sweep_table.member_labels(sweep.grid(hparams, clip_eps=[0.1])) == ["member 0"]


def test_failed_seeds_are_marked_in_the_top_k():
    rows = [
        {"member": m, "seed": s, "lr": lr, "final_return": ret, "failed": float(bad)}
        for m, s, lr, ret, bad in [
            (0, 0, 1e-3, 500.0, 0),
            (0, 1, 1e-3, 480.0, 1),  # frozen by NaN safety, still a high return
            (1, 0, 3e-4, 300.0, 0),
            (1, 1, 3e-4, 310.0, 0),
        ]
    ]
    table = sweep_table.Table(rows, ("lr",))
    text = sweep_table.format_top_k(table, 2)
    first, second = text.splitlines()[2:4]
    assert first.split()[-1] == "1/2" and second.split()[-1] == "-"
    assert "failed" in text.splitlines()[1] and "NaN safety froze" in text
    assert sweep_table.best(table).failed == 1
    clean = sweep_table.Table([dict(r, failed=0.0) for r in rows], ("lr",))
    assert "failed" not in sweep_table.format_top_k(clean, 2)
