"""Saving and restoring whole training runs with orbax.

A checkpoint directory holds ``run.json`` (the static config and the seeds) and
``checkpoint/`` (an orbax checkpoint of every array: the runner states of all
agents, their hparams and the metrics so far). The runner state is complete: parameters,
optimiser state, algorithm state (PPO-KL's β, MCPO's memory, the bandit of Adaptive-PPO,
...), the environment state (observation-normaliser statistics included), the PRNG key (as
key data) and the update counter, so a restored run continues exactly where it stopped.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from .config import Config
from .hparams import HParams
from .train import RunnerState, default_hparams, make_trainer

RUN_FILE = "run.json"
ARRAYS = "checkpoint"


class Checkpoint(NamedTuple):
    """A restored run.

    Attributes:
        config: the static config.
        hparams: batched hparams ``[M]``.
        seeds: ``[S]``.
        state: host runner states ``[M, S, ...]`` (keys as key data).
        metrics: ``{name: [M, S, update]}`` so far.
        update: updates done.
    """

    config: Config
    hparams: HParams
    seeds: np.ndarray
    state: RunnerState
    metrics: dict[str, np.ndarray]
    update: int


def config_from_dict(fields: dict[str, Any]) -> Config:
    """A :class:`Config` from its flat ``to_dict()`` (JSON turns tuples into lists)."""
    return Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def state_template(config: Config) -> tuple[Any, Any]:
    """The tree structures of one agent's host runner state and of unbatched hparams."""
    hparams = default_hparams(config)
    shapes = jax.eval_shape(make_trainer(config).init, jax.random.key(0), hparams)
    shapes = shapes.replace(key=jax.eval_shape(jax.random.key_data, shapes.key))
    return jax.tree.structure(shapes), jax.tree.structure(hparams)


def _numbered(leaves: list[Any]) -> dict[str, np.ndarray]:
    return {f"{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}


def _ordered(numbered: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(numbered[k]) for k in sorted(numbered)]


def save(
    directory: str | Path,
    config: Config,
    hparams: HParams,
    seeds: np.ndarray,
    state: RunnerState,
    metrics: dict[str, np.ndarray],
) -> Path:
    """Writes (or overwrites) the checkpoint of a run in ``directory``.

    Args:
        directory: where to write; created if missing.
        config: the run's static config.
        hparams: batched hparams ``[M]``.
        seeds: ``[S]``.
        state: host runner states ``[M, S, ...]``, keys as key data (what
            :func:`jaxpo.sweep.run` returns).
        metrics: ``{name: [M, S, update]}`` so far.

    Returns:
        The directory.
    """
    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "state": _numbered(jax.tree.leaves(state)),
        "hparams": _numbered(jax.tree.leaves(hparams)),
        "metrics": {k: np.asarray(v) for k, v in metrics.items()},
    }
    # Write the new arrays beside the old ones and swap them in, so that an interruption
    # leaves the previous checkpoint (or, between the two renames, the new one) loadable.
    fresh, stale = directory / f"{ARRAYS}.new", directory / f"{ARRAYS}.old"
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(fresh, arrays, force=True)
    checkpointer.wait_until_finished()
    run = {"config": config.to_dict(), "seeds": [int(s) for s in np.asarray(seeds)]}
    partial = directory / f"{RUN_FILE}.new"
    partial.write_text(json.dumps(run, indent=2))
    if (directory / ARRAYS).exists():
        shutil.rmtree(stale, ignore_errors=True)
        (directory / ARRAYS).rename(stale)
    fresh.rename(directory / ARRAYS)
    partial.replace(directory / RUN_FILE)
    shutil.rmtree(stale, ignore_errors=True)
    return directory


def load(directory: str | Path) -> Checkpoint:
    """Restores the run saved in ``directory`` by :func:`save`.

    Raises:
        FileNotFoundError: ``directory`` holds no checkpoint.
    """
    directory = Path(directory).absolute()
    arrays_dir = directory / ARRAYS
    if not arrays_dir.exists() and (directory / f"{ARRAYS}.old").exists():
        arrays_dir = directory / f"{ARRAYS}.old"  # interrupted between the two renames
    if not (directory / RUN_FILE).exists() or not arrays_dir.exists():
        raise FileNotFoundError(f"no jaxpo checkpoint in {directory} (expected {RUN_FILE})")
    run = json.loads((directory / RUN_FILE).read_text())
    config = config_from_dict(run["config"])
    arrays = ocp.StandardCheckpointer().restore(arrays_dir)
    state_def, hparams_def = state_template(config)
    state = jax.tree.unflatten(state_def, _ordered(arrays["state"]))
    hparams = jax.tree.unflatten(hparams_def, _ordered(arrays["hparams"]))
    metrics = {k: np.asarray(v) for k, v in arrays["metrics"].items()}
    update = int(np.asarray(state.update).reshape(-1)[0])
    return Checkpoint(config, hparams, np.asarray(run["seeds"]), state, metrics, update)
