"""Output folders are protected: a folder holding a run is never written over silently, and
``--overwrite`` leaves nothing of the old run behind; ``--resume`` writes into its own run."""

import json
from pathlib import Path

import pytest

from jaxpo import checkpoint, cli, runs

TINY = ["--total-timesteps", "512", "--seeds", "1", "--no-progress"]
SMALL = ["--set", "num_envs=2", "--set", "num_steps=32", "--set", "hidden_sizes=8"]


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished PPO run with TensorBoard logs (files the next run would not write)."""
    out = tmp_path_factory.mktemp("folders") / "run"
    assert cli.main(["train", *TINY, *SMALL, "--tensorboard", "--out", str(out)]) == 0
    assert (out / "tensorboard").is_dir()
    return out


def test_an_occupied_folder_is_refused_and_left_unchanged(ppo_run, capsys):
    before = listing(ppo_run)
    for command in (["train", "--algo", "a2c", *TINY], ["sweep", "--grid", "clip_eps=0.1"]):
        assert cli.main([*command, *SMALL, "--out", str(ppo_run)]) == 2
        assert "--overwrite" in capsys.readouterr().err
        assert listing(ppo_run) == before


def test_overwrite_leaves_nothing_of_the_old_run(ppo_run, tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    for path, data in listing(ppo_run).items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    (folder / "notes.txt").write_text("the user's own file")
    argv = ["train", "--algo", "a2c", *TINY, *SMALL, "--overwrite", "--out", str(folder)]
    assert cli.main(argv) == 0
    assert not (folder / "tensorboard").exists()  # the old run's, not written by this one
    assert json.loads((folder / checkpoint.RUN_FILE).read_text())["config"]["algo"] == "a2c"
    assert json.loads((folder / "summary.json").read_text())["algo"] == "a2c"
    assert (folder / "notes.txt").read_text() == "the user's own file"  # not jaxpo's: kept
    written = {name for name in runs.RUN_OUTPUTS if (folder / name).exists()}
    assert written == {
        checkpoint.RUN_FILE,
        checkpoint.ARRAYS,
        "summary.json",
        "metrics.csv",
        "metrics.jsonl",
    }


def test_resume_writes_into_the_run_it_resumes(ppo_run, tmp_path, capsys):
    other = tmp_path / "other"
    argv = ["train", "--resume", str(ppo_run), "--total-timesteps", "1024", "--no-progress"]
    assert cli.main([*argv, "--out", str(other)]) == 2
    assert "--resume writes into the run it resumes" in capsys.readouterr().err
    assert not other.exists()
    assert cli.main(argv) == 0
    assert checkpoint.load(ppo_run).update == 16  # 1024 / (2 envs x 32 steps)
    rows = (ppo_run / "metrics.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[1]) for row in rows] == list(range(1, 17))
