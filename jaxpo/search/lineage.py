"""PBT's lineage and its checkpoint: what happened to the population, saved to resume.

:func:`save` writes a generation into a directory: the arrays (runner states ``[A, 1, ...]``,
hparams ``[A]``, metrics ``[A, 1, U]``) with :func:`jaxpo.checkpoint.save`, beside
``pbt.json``: the :class:`Lineage`, the NumPy generator's state, the metric and the settings
the run was started with, sealed with a SHA-256 digest (:func:`jaxpo.checkpoint.seal`).
:func:`restore` reads them back after checking the digests and that the settings match.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .. import checkpoint, sweep
from ..config import Config
from ..hparams import HParams

#: the file beside the checkpoint holding the lineage, the generator and the settings.
PBT_FILE = "pbt.json"


class Lineage(NamedTuple):
    """What happened to the population, generation by generation (``G`` done so far).

    Attributes:
        copies: per generation, the ``(copier, source)`` pairs of the exploit after it
            (none after the last).
        hparams: ``{name: [G, A]}``, every scalar hparam each agent trained with in each
            generation.
        scores: ``[G, A]`` float64, each agent's score at the end of each generation.
        failed: ``[G, A]`` bool, agents frozen by NaN safety at the end of each generation.
    """

    copies: list[list[tuple[int, int]]]
    hparams: dict[str, np.ndarray]
    scores: np.ndarray
    failed: np.ndarray


def empty(names: list[str], agents: int) -> Lineage:
    """The lineage of no generation, for hparams ``names`` of ``agents`` agents."""
    return Lineage(
        [],
        {k: np.zeros((0, agents), np.float32) for k in names},
        np.zeros((0, agents)),
        np.zeros((0, agents), bool),
    )


def grow(lineage: Lineage, hparams: HParams, scores: np.ndarray, failed: np.ndarray) -> Lineage:
    """``lineage`` with one more generation's hparams ``[A]``, scores and failed flags ``[A]``.

    Its ``copies`` are the same list (append the generation's pairs to it).
    """
    return Lineage(
        lineage.copies,
        {
            k: np.concatenate([lineage.hparams[k], v[None]])
            for k, v in sweep.columns(hparams).items()
        },
        np.concatenate([lineage.scores, np.asarray(scores, np.float64)[None]]),
        np.concatenate([lineage.failed, np.asarray(failed, bool)[None]]),
    )


def settings(config: Config, hparams: HParams, seeds: np.ndarray, **given: Any) -> dict:
    """What a resumed run must agree on, as JSON (tuples become lists)."""
    given["explore"] = {k: [kind, list(args)] for k, (kind, args) in given["explore"].items()}
    start = {k: v.astype(np.float64).tolist() for k, v in sweep.columns(hparams).items()}
    record = {**given, "seeds": seeds.tolist(), "start": start, "config": config.to_record()}
    return json.loads(json.dumps(record))


def record(settings: dict, metric: str, rng: np.random.Generator, lineage: Lineage) -> dict:
    """The sealed contents of ``pbt.json`` after ``len(lineage.copies)`` generations.

    Args:
        settings: :func:`settings` of the run.
        metric: the metric ranked on.
        rng: the generator, after the generation's exploit and explore.
        lineage: the lineage so far.
    """
    generation = len(lineage.copies)
    return checkpoint.seal(
        {
            "settings": settings,
            "metric": metric,
            "generation": generation,
            "update": generation * settings["interval"],
            "rng": rng.bit_generator.state,
            "copies": [[list(p) for p in g] for g in lineage.copies],
            "hparams": {k: v.astype(np.float64).tolist() for k, v in lineage.hparams.items()},
            "scores": lineage.scores.tolist(),
            "failed": lineage.failed.tolist(),
        }
    )


def save(
    directory: Path,
    config: Config,
    record: dict,
    hparams: HParams,
    state: Any,
    metrics: dict[str, np.ndarray],
) -> None:
    """Saves a generation: ``pbt.json.new``, then the checkpoint, then ``pbt.json``.

    Wherever an interruption stops it, :func:`restore` finds a matching pair.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fresh = directory / f"{PBT_FILE}.new"
    fresh.write_text(json.dumps(record))
    checkpoint.save(directory, config, hparams, np.zeros(1, np.int64), state, metrics)
    fresh.replace(directory / PBT_FILE)


def restore(directory: Path, config: Config, settings: dict) -> tuple[dict, Any] | None:
    """The PBT record and checkpoint saved in ``directory``, or ``None`` when it holds none.

    Raises:
        ValueError: the directory holds another kind of checkpoint, a run with other
            settings, or records that do not match its checkpoint.
    """
    files = [directory / PBT_FILE, directory / f"{PBT_FILE}.new"]
    present = [f for f in files if f.is_file()]
    if not present:
        if (directory / checkpoint.RUN_FILE).exists():
            raise ValueError(f"{directory} holds a checkpoint that is not a PBT run's")
        return None
    saved = checkpoint.load(directory, torso=config.torso)
    for path in present:
        try:
            record = json.loads(path.read_text())
        except ValueError:  # JSONDecodeError, UnicodeDecodeError: a torn write
            continue
        sealed = (
            isinstance(record, dict) and record.get("sha256") == checkpoint.seal(record)["sha256"]
        )
        if sealed and record.get("update") == saved.update:
            break
    else:
        raise checkpoint.CheckpointError(f"no PBT record in {directory} matches its checkpoint")
    differ = sorted(k for k in settings if record["settings"].get(k) != settings[k])
    if differ:
        raise ValueError(f"the PBT run in {directory} was started with other {differ}")
    return record, saved


def from_record(record: dict) -> Lineage:
    """The :class:`Lineage` a :func:`record` holds."""
    return Lineage(
        [[(int(c), int(s)) for c, s in g] for g in record["copies"]],
        {k: np.asarray(v, np.float32) for k, v in record["hparams"].items()},
        np.asarray(record["scores"], np.float64),
        np.asarray(record["failed"], bool),
    )
