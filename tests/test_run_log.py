"""Run logs (``jaxpo.run_log``): CSV, JSON Lines, TensorBoard and the W&B fallback, from the
library and from ``jaxpo train``/``jaxpo sweep``; and ``sweep.run(progress=True)``."""

import csv
import json
import math
import struct
import sys

import numpy as np
import pytest
from helpers import tiny_config
from sweeps import compiles_callback
from tensorboardX.proto import event_pb2
from tensorboardX.record_writer import masked_crc32c
from test_cli_sweep import TINY

from jaxpo import cli, default_hparams, run_log, sweep

NAMES = ["episode_return", "loss"]


def read_scalars(logdir):
    """Every scalar of the TensorBoard event files in ``logdir``: ``{tag: {step: value}}``.

    Reads the TFRecord framing (length, masked CRC, event, masked CRC) and checks the CRCs.
    """
    scalars = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            length, length_crc = struct.unpack_from("<QI", data, offset)
            assert length_crc == masked_crc32c(data[offset : offset + 8])
            body = data[offset + 12 : offset + 12 + length]
            assert struct.unpack_from("<I", data, offset + 12 + length)[0] == masked_crc32c(body)
            offset += 16 + length
            event = event_pb2.Event.FromString(body)
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def numbers(row):
    """A record's values as float64: CSV strings parsed, JSON's ``null`` (non-finite) as nan."""
    values = [float(v) if isinstance(v, str) else v for v in row.values()]
    return np.array([math.nan if v is None else v for v in values], np.float64)


def expected_records(metrics, seeds, steps_per_update, members):
    """The records of ``metrics {name: [M, S, U]}`` in member, seed, update order."""
    count, _, updates = metrics[NAMES[0]].shape
    return [
        {
            **({"member": m} if members else {}),
            "seed": int(seed),
            "update": u + 1,
            "env_steps": (u + 1) * steps_per_update,
            **{n: float(metrics[n][m, s, u]) for n in sorted(metrics)},
        }
        for m in range(count)
        for s, seed in enumerate(seeds)
        for u in range(updates)
    ]


def assert_records_equal(rows, expected):
    """Rows read back (strings from CSV, ``None`` for non-finite in JSON) equal ``expected``."""
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected, strict=True):
        assert list(row) == list(want)
        np.testing.assert_array_equal(numbers(row), numbers(want))


@pytest.mark.parametrize("members", [False, True])
def test_logs_match_the_metric_arrays_exactly(tmp_path, members):
    rng = np.random.default_rng(0)
    metrics = {n: rng.normal(size=(2, 3, 4)).astype(np.float32) for n in NAMES}
    metrics["loss"][0, 2, 3] = np.nan  # a diverged agent: null in JSON, nan in the CSV
    if not members:
        metrics = {n: v[:1] for n, v in metrics.items()}
    seeds = np.array([5, 6, 7])
    given = metrics if members else {n: v[0] for n, v in metrics.items()}  # [S, U] for a train

    written = run_log.write_logs(tmp_path, given, seeds, 10, tensorboard=True)

    assert written == [tmp_path / n for n in ("metrics.csv", "metrics.jsonl", "tensorboard")]
    expected = expected_records(metrics, seeds, 10, members)
    jsonl = read_jsonl(tmp_path / "metrics.jsonl")
    assert_records_equal(jsonl, expected)
    assert_records_equal(list(csv.DictReader((tmp_path / "metrics.csv").open())), expected)
    assert jsonl[11]["loss"] is None  # member 0, seed 7, update 4

    scalars = read_scalars(tmp_path / "tensorboard")
    steps = [10, 20, 30, 40]
    curves = {}
    for n in NAMES:
        if members:
            for m in range(2):
                curves[f"member_{m}/mean/{n}"] = metrics[n][m].mean(axis=0, dtype=np.float64)
        else:
            for s, seed in enumerate(seeds):
                curves[f"seed_{seed}/{n}"] = metrics[n][0, s]
            curves[f"mean/{n}"] = metrics[n][0].mean(axis=0, dtype=np.float64)
    assert set(scalars) == set(curves)
    for tag, curve in curves.items():
        assert list(scalars[tag]) == steps
        np.testing.assert_array_equal(list(scalars[tag].values()), curve.astype(np.float32))


def test_train_logs_and_warns_without_wandb(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # ``import wandb`` raises ImportError
    out = tmp_path / "train"
    argv = ["train", *TINY, "--seed-offset", "3", "--out", str(out), "--tensorboard", "--wandb"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "wandb is not installed" in captured.err
    assert str(out / "metrics.jsonl") in captured.out and str(out / "tensorboard") in captured.out

    rows = read_jsonl(out / "metrics.jsonl")
    assert len(rows) == 2 * 4 and {r["seed"] for r in rows} == {3, 4}
    assert "member" not in rows[0] and rows[-1]["env_steps"] == 128
    assert_records_equal(list(csv.DictReader((out / "metrics.csv").open())), rows)
    final = [r["episode_return"] for r in rows if r["update"] == 4]
    assert json.loads((out / "summary.json").read_text())["final_return"] == final

    scalars = read_scalars(out / "tensorboard")
    assert {"seed_3/episode_return", "seed_4/episode_return", "mean/episode_return"} <= set(scalars)
    assert scalars["seed_4/episode_return"][128] == pytest.approx(final[1])
    assert scalars["mean/episode_return"][128] == pytest.approx(np.mean(final))


def test_sweep_logs_match_metrics_npz(tmp_path):
    out = tmp_path / "sweep"
    grid = ["--grid", "learning_rate=1e-2,1e-4"]  # its program serves progress=True below
    assert cli.main(["sweep", *TINY, *grid, "--out", str(out), "--tensorboard"]) == 0

    metrics = dict(np.load(out / "metrics.npz"))
    expected = expected_records(metrics, [0, 1], 32, members=True)
    assert_records_equal(read_jsonl(out / "metrics.jsonl"), expected)
    assert_records_equal(list(csv.DictReader((out / "metrics.csv").open())), expected)
    scalars = read_scalars(out / "tensorboard")
    assert not any(tag.startswith("seed_") for tag in scalars)
    for m in range(2):
        curve = scalars[f"member_{m}/mean/episode_return"]
        mean = metrics["episode_return"][m].mean(axis=0, dtype=np.float64).astype(np.float32)
        np.testing.assert_array_equal(list(curve.values()), mean)


CONFIG = tiny_config(updates=4, update_epochs=1, num_minibatches=1, hidden_sizes=(8, 8))


@pytest.mark.parametrize("progress", [True, False])
def test_run_progress_true_shows_a_display_and_false_compiles_no_hook(progress, capsys):
    config = CONFIG  # no progress_interval: progress=True reports at the default interval
    hparams = sweep.grid(default_hparams(config), learning_rate=[1e-3, 3e-4])
    built = []
    real_make_sweep_fn = sweep.make_sweep_fn

    def spying_make_sweep_fn(*args, **kwargs):
        built.append(real_make_sweep_fn(*args, **kwargs))
        return built[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sweep.runner, "make_sweep_fn", spying_make_sweep_fn)
        for _ in range(2):  # a second run reuses the compiled program
            result = sweep.run(config, hparams, seeds=2, progress=progress, keep_state=False)
    assert result.metrics["episode_return"].shape == (2, 2, 4)
    assert built[0] is built[1]
    lines = [line for line in capsys.readouterr().err.splitlines() if "update " in line]

    fn, _ = built[0]
    mesh = sweep.make_mesh(sweep.devices_for(4))
    inputs = sweep.place(sweep.agent_inputs(hparams, np.arange(2)), mesh)
    assert compiles_callback(fn, *inputs, np.int32(4)) == progress
    # progress=True: a report per update (the default interval of 4 updates), per run
    reports = [f"ppo: update {u}/4" for u in (1, 2, 3, 4)] * 2 if progress else []
    assert [line.split(" |")[0] for line in lines] == reports
    assert all("(4 agents)" in line for line in lines)
