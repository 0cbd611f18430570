"""Checkpoint integrity: a damaged, incomplete, edited or mismatched checkpoint is refused
with one ``CheckpointError`` naming the folder and what failed, never loaded as wrong numbers;
a clean one loads bit for bit, and an interrupted save leaves a loadable pair."""

from __future__ import annotations

import gc
import json
import shutil
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import tiny_config

from jaxpo import checkpoint, cli, default_hparams, sweep
from jaxpo.checkpoint import CheckpointError

CONFIG = tiny_config("ppo", updates=1)
SEEDS = 2
#: runs whose run.json is put beside this run's arrays: another algorithm (PPO-KL carries
#: β), another env (Acrobot's env state is another tree), and other hidden sizes (the same
#: tree with other shapes)
OTHERS = {
    "other_algo": tiny_config("ppo_kl", updates=1),
    "other_env": tiny_config("ppo", updates=1, env_id="gymnax:Acrobot-v1"),
    "other_shapes": tiny_config("ppo", updates=1, hidden_sizes=(8,)),
}
#: the files damaged, by kind: "data" is the largest array data file; the others are orbax's
#: metadata and OCDBT manifests (paths under checkpoint/), and run.json
TARGETS = [
    "data",
    "_METADATA",
    "_CHECKPOINT_METADATA",
    "manifest.ocdbt",
    "ocdbt.process_0/manifest.ocdbt",
    "commit_success.txt",
    "run.json",
]


def leaves_equal(a, b) -> bool:
    return all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def save_run(directory: Path, config, updates: int = 1):
    result = sweep.run(config, default_hparams(config), SEEDS, updates=updates)
    metrics = result.metrics if updates else {"none": np.zeros(1)}  # orbax refuses size 0
    checkpoint.save(directory, config, result.hparams, result.seeds, result.state, metrics)
    return result


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``(folder, result)`` of one tiny saved run, never modified (tests damage copies)."""
    directory = tmp_path_factory.mktemp("saved") / "run"
    return directory, save_run(directory, CONFIG)


@pytest.fixture(scope="module")
def other_runs(tmp_path_factory):
    """``{name: run.json fields}`` of a tiny saved run of each config of ``OTHERS``."""
    runs = {}
    for name, config in OTHERS.items():
        directory = tmp_path_factory.mktemp(name)
        save_run(directory, config, updates=0)
        runs[name] = json.loads((directory / "run.json").read_text())
    return runs


@pytest.fixture
def run_copy(saved, tmp_path) -> Path:
    return Path(shutil.copytree(saved[0], tmp_path / "copy"))


def target_path(directory: Path, kind: str) -> Path:
    if kind == "run.json":
        return directory / "run.json"
    arrays = directory / "checkpoint"
    if kind == "data":
        data = [p for p in arrays.rglob("*") if p.is_file() and p.parent.name == "d"]
        assert data, "no array data file under checkpoint/*/d/"
        return max(sorted(data), key=lambda p: p.stat().st_size)
    path = arrays / kind
    assert path.is_file(), f"orbax no longer writes {kind}: update TARGETS"
    return path


def flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    start = max(0, len(data) // 2 - 4)
    data[start : start + 8] = bytes(b ^ 0xFF for b in data[start : start + 8])
    path.write_bytes(bytes(data))


DAMAGES = {
    "overwrite": flip_middle,
    "truncate": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "delete": Path.unlink,
}


def refused(directory: Path, *needles: str) -> str:
    """Loads ``directory``, expecting a one-line CheckpointError naming it and ``needles``."""
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(directory)
    message = str(info.value)
    assert str(directory) in message and "\n" not in message
    for needle in needles:
        assert needle in message
    return message


def rewrite(directory: Path, change, reseal: bool = True) -> None:
    """Applies ``change`` to run.json's fields, with a fresh digest when ``reseal``."""
    run = json.loads((directory / "run.json").read_text())
    run = change(run) or run
    (directory / "run.json").write_text(json.dumps(checkpoint.seal(run) if reseal else run))


def test_clean_checkpoint_loads_bit_identical(saved):
    directory, result = saved
    restored = checkpoint.load(directory)
    assert restored.config == CONFIG and restored.update == 1
    np.testing.assert_array_equal(restored.seeds, np.arange(SEEDS))
    assert jax.tree.structure(restored.state) == jax.tree.structure(result.state)
    assert leaves_equal(restored.state, result.state)
    assert leaves_equal(restored.hparams, result.hparams)
    assert leaves_equal(restored.metrics, result.metrics)


def test_every_file_of_the_arrays_has_a_digest(saved):
    directory = saved[0]
    run = json.loads((directory / "run.json").read_text())
    arrays = directory / "checkpoint"
    on_disk = {p.relative_to(arrays).as_posix() for p in arrays.rglob("*") if p.is_file()}
    assert set(run["files"]) == on_disk
    assert run["sha256"] == checkpoint.seal(run)["sha256"]
    assert not [p.name for p in directory.iterdir() if p.name.endswith((".new", ".old"))]


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("kind", TARGETS)
def test_damaged_file_is_refused(run_copy, kind, damage):
    path = target_path(run_copy, kind)
    DAMAGES[damage](path)
    refused(run_copy, path.name)


def test_valid_json_with_an_edited_value_is_refused(run_copy):
    rewrite(run_copy, lambda run: run["config"].update(num_envs=4), reseal=False)
    refused(run_copy, "run.json", "digest")


@pytest.mark.parametrize("name", OTHERS)
def test_run_json_of_another_run_is_refused(run_copy, other_runs, name):
    # control: resealing this run's own run.json keeps it loadable
    rewrite(run_copy, lambda run: None)
    assert checkpoint.load(run_copy).config == CONFIG
    ours = json.loads((run_copy / "run.json").read_text())["files"]
    rewrite(run_copy, lambda run: {**other_runs[name], "files": ours})
    other = OTHERS[name]
    refused(run_copy, "do not match", f"algo={other.algo}", f"env_id={other.env_id}")


@pytest.mark.parametrize(
    "change",
    [
        lambda run: run["config"].update(algo="no_such_algo"),
        lambda run: run["config"].update(no_such_field=1),
    ],
    ids=["unknown_algo", "unknown_field"],
)
def test_config_this_jaxpo_cannot_build_is_refused(run_copy, change):
    rewrite(run_copy, change)
    refused(run_copy, "do not match")


def test_checkpoint_without_digests_is_refused_unless_trusted(run_copy, saved):
    rewrite(run_copy, lambda run: {"config": run["config"], "seeds": run["seeds"]}, False)
    refused(run_copy, "without integrity digests", "trust_unverified=True")
    old = checkpoint.load(run_copy, trust_unverified=True)
    assert leaves_equal(old.state, saved[1].state)
    checkpoint.save(run_copy, *old[:5])  # saving it again adds the digests
    assert leaves_equal(checkpoint.load(run_copy).state, saved[1].state)


def test_failed_restore_is_one_line_and_quiet(run_copy, capfd, monkeypatch):
    """Orbax's own failure (reachable only unverified) becomes a CheckpointError, and the
    tracebacks of its reads still in flight are not printed (by Python's own hook, which
    pytest's would otherwise replace)."""
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    rewrite(run_copy, lambda run: {"config": run["config"], "seeds": run["seeds"]}, False)
    for path in run_copy.glob("checkpoint/**/d/*"):  # some data files are never read
        DAMAGES["truncate"](path)
    with pytest.raises(CheckpointError, match="could not be restored") as info:
        checkpoint.load(run_copy, trust_unverified=True)
    assert str(run_copy) in str(info.value) and "\n" not in str(info.value)
    time.sleep(0.5)  # the reads in flight finish
    gc.collect()  # and asyncio reports its tasks
    assert "Traceback" not in capfd.readouterr().err


def test_interrupted_saves_load_a_consistent_pair(saved, tmp_path):
    """Each state an interrupted save leaves loads the run.json and arrays that belong
    together: the old pair before the new arrays are in place, the new pair after."""
    directory, result = saved
    new = tmp_path / "new"
    doubled = {k: 2 * v for k, v in result.metrics.items()}
    checkpoint.save(new, CONFIG, result.hparams, result.seeds, result.state, doubled)
    # between the two renames: only the old arrays, as checkpoint.old
    run = Path(shutil.copytree(directory, tmp_path / "between"))
    (run / "checkpoint").rename(run / "checkpoint.old")
    assert leaves_equal(checkpoint.load(run).metrics, result.metrics)
    # the new arrays in place, run.json not yet replaced
    shutil.copytree(new / "checkpoint", run / "checkpoint")
    shutil.copy(new / "run.json", run / "run.json.new")
    assert leaves_equal(checkpoint.load(run).metrics, doubled)


@pytest.mark.parametrize("command", [["eval"], ["render", "--out", "x.gif"]])
def test_cli_on_damaged_checkpoint_exits_2(run_copy, tmp_path, capsys, command):
    DAMAGES["truncate"](target_path(run_copy, "data"))
    argv = [command[0], str(run_copy), *command[1:]]
    if command[0] == "render":
        argv[-1] = str(tmp_path / "x.gif")
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "jaxpo: error:" in err and str(run_copy) in err and "damaged" in err
    assert "Traceback" not in err
    assert not (tmp_path / "x.gif").exists()
