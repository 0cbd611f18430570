"""Saving and restoring whole training runs with orbax, verified before they are used.

A checkpoint directory holds ``run.json`` (the static config, the seeds and SHA-256 digests)
and ``checkpoint/`` (an orbax checkpoint of every array: the runner states of all agents,
their hparams and the metrics so far). The runner state is complete: parameters, optimiser
state, algorithm state (PPO-KL's β, MCPO's memory, the bandit of Adaptive-PPO, ...), the
environment state (observation-normaliser statistics included), the PRNG key (as key data)
and the update counter, so a restored run continues exactly where it stopped.

Integrity: ``run.json`` records the SHA-256 of every file of the array folder (``files``)
and of its own other fields (``sha256``, over their sorted-keys JSON). :func:`load` checks
them before orbax reads a byte, then the arrays' tree and shapes against the recorded config:
a damaged, incomplete or mismatched checkpoint raises :class:`CheckpointError`, never loads
wrong numbers. Checkpoints of older jaxpo versions have no digests and are refused unless
``load(..., trust_unverified=True)`` (saving one again adds them). Extra files in the array
folder are ignored: orbax reads only what the digested metadata names.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from .config import Config, config_from_dict
from .hparams import HParams
from .train import RunnerState, default_hparams, make_trainer

RUN_FILE = "run.json"
ARRAYS = "checkpoint"


class CheckpointError(ValueError):
    """A checkpoint that is damaged, cannot be verified, or does not match its config."""


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


def state_template(config: Config) -> tuple[Any, Any]:
    """One agent's host runner state as shapes (key as key data), and default hparams."""
    hparams = default_hparams(config)
    shapes = jax.eval_shape(make_trainer(config).init, jax.random.key(0), hparams)
    return shapes.replace(key=jax.eval_shape(jax.random.key_data, shapes.key)), hparams


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def seal(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with ``sha256``: the digest of their canonical (sorted-keys) JSON."""
    fields = {k: v for k, v in fields.items() if k != "sha256"}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return {**fields, "sha256": hashlib.sha256(canonical.encode()).hexdigest()}


_paths = jax.tree.leaves_with_path


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
    """Writes (or overwrites) the checkpoint of a run in ``directory``, with its digests.

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
    # leaves the previous checkpoint (or, between the renames, the new one) loadable.
    fresh, stale = directory / f"{ARRAYS}.new", directory / f"{ARRAYS}.old"
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(fresh, arrays, force=True)
    checkpointer.wait_until_finished()
    found = sorted(p for p in fresh.rglob("*") if p.is_file())
    files = {p.relative_to(fresh).as_posix(): file_sha256(p) for p in found}
    run = {
        "config": config.to_record(),
        "seeds": [int(s) for s in np.asarray(seeds)],
        "update": int(np.asarray(state.update).reshape(-1)[0]),  # for watchers; arrays rule
    }
    partial = directory / f"{RUN_FILE}.new"
    partial.write_text(json.dumps(seal({**run, "files": files}), indent=2))
    if (directory / ARRAYS).exists():
        shutil.rmtree(stale, ignore_errors=True)
        (directory / ARRAYS).rename(stale)
    fresh.rename(directory / ARRAYS)
    partial.replace(directory / RUN_FILE)
    shutil.rmtree(stale, ignore_errors=True)
    return directory


def _verified(directory: Path, run_file: Path, arrays: Path, trust: bool) -> dict[str, Any]:
    """``run_file``'s fields once it and every file of ``arrays`` match their digests."""
    name, damaged = run_file.name, f"checkpoint in {directory} is damaged"
    try:
        run = json.loads(run_file.read_bytes())
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        at = f" (line {err.lineno} column {err.colno})" if hasattr(err, "lineno") else ""
        raise CheckpointError(f"{name} in {directory} is not valid JSON{at}") from None
    if isinstance(run, dict) and "sha256" not in run and "files" not in run:
        if trust:
            return run
        raise CheckpointError(
            f"the checkpoint in {directory} was saved without integrity digests (older "
            "jaxpo); to trust it anyway, load it with checkpoint.load(directory, "
            "trust_unverified=True) and save it again"
        )
    sealed = isinstance(run, dict) and isinstance(run.get("files"), dict)
    if not sealed or run.get("sha256") != seal(run)["sha256"]:
        raise CheckpointError(f"{damaged}: {name} does not match its recorded digest")
    for rel, digest in run["files"].items():
        shown = (arrays / rel).relative_to(directory).as_posix()
        if not (arrays / rel).is_file():
            raise CheckpointError(f"{damaged}: {shown} is missing")
        if file_sha256(arrays / rel) != digest:
            raise CheckpointError(
                f"{damaged}: {shown} does not match the digest recorded when it was saved"
            )
    return run


def _locate(directory: Path, trust: bool) -> tuple[Path, dict[str, Any]]:
    """The array folder to restore and the verified fields of the run file describing it.

    Besides ``run.json`` with ``checkpoint/``, an interrupted :func:`save` can leave the new
    ``run.json.new`` with ``checkpoint/``, or ``run.json`` with ``checkpoint.old/``: the first
    pair that verifies wins; if none does, the first present pair's error is raised.
    """
    pairs = [(RUN_FILE, ARRAYS), (f"{RUN_FILE}.new", ARRAYS), (RUN_FILE, f"{ARRAYS}.old")]
    pairs = [(directory / r, directory / a) for r, a in pairs]
    present = [(r, a) for r, a in pairs if r.is_file() and a.is_dir()]
    if not present:
        if not any((directory / name).exists() for name in (RUN_FILE, ARRAYS, f"{ARRAYS}.old")):
            raise FileNotFoundError(f"no jaxpo checkpoint in {directory} (expected {RUN_FILE})")
        missing = RUN_FILE if not (directory / RUN_FILE).is_file() else f"{ARRAYS}/"
        raise CheckpointError(f"checkpoint in {directory} is damaged: {missing} is missing")
    errors = []
    for run_file, arrays in present:
        try:
            return arrays, _verified(directory, run_file, arrays, trust)
        except CheckpointError as err:
            errors.append(err)
    raise errors[0]


@contextlib.contextmanager
def _hushed(arrays: Path) -> Iterator[None]:
    """Drops what a failed restore prints besides its one-line error.

    That is: reads in flight calling back into orbax's closed event loop (unraisable
    RuntimeErrors of ``asyncio``'s ``_check_closed``), kept after a failure, and asyncio's
    "Task exception was never retrieved" about ``arrays``.
    """
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        tb = unraisable.exc_traceback
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is None or tb.tb_frame.f_code.co_name != "_check_closed":
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    except Exception:
        logging.getLogger("asyncio").addFilter(
            lambda record: not (record.exc_info and str(arrays) in str(record.exc_info[1]))
        )
        raise
    if sys.unraisablehook is hook:
        sys.unraisablehook = previous


def load(directory: str | Path, *, trust_unverified: bool = False, torso: Any = None) -> Checkpoint:
    """Restores the run saved in ``directory`` by :func:`save`, after verifying it.

    Args:
        directory: the run directory.
        trust_unverified: load a checkpoint saved without digests (older jaxpo) unverified;
            one with digests is always verified.
        torso: the flax module instance of a run trained with a user torso (a file
            records only its class).

    Raises:
        FileNotFoundError: ``directory`` holds no checkpoint.
        CheckpointError: (a ``ValueError``) ``run.json`` is not valid JSON or does not match
            its digest, a file of the arrays is missing or does not match its digest, the
            checkpoint has no digests (and ``trust_unverified`` is off), the arrays do not
            match the config ``run.json`` records (another algorithm or env, an unknown
            field), or orbax fails to restore them. The message names the folder.
    """
    directory = Path(directory).absolute()
    arrays_dir, run = _locate(directory, trust_unverified)
    fields = run.get("config") if isinstance(run.get("config"), dict) else {}

    def mismatch(why: str) -> CheckpointError:
        return CheckpointError(
            f"checkpoint in {directory}: its arrays do not match the config its {RUN_FILE} "
            f"records (algo={fields.get('algo')}, env_id={fields.get('env_id')}): {why}"
        )

    try:
        config = config_from_dict(fields, torso)
        state_shapes, hparams_template = state_template(config)
        seeds = np.asarray(run["seeds"], np.int64).reshape(-1)
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise mismatch(f"this jaxpo cannot build it ({err})") from None
    try:
        with _hushed(arrays_dir):
            arrays = ocp.StandardCheckpointer().restore(arrays_dir)
        saved_state, saved_hparams = _ordered(arrays["state"]), _ordered(arrays["hparams"])
        metrics = {k: np.asarray(v) for k, v in arrays["metrics"].items()}
    except Exception as err:  # orbax and tensorstore raise many kinds
        why = (str(err).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"checkpoint in {directory} could not be restored from {arrays_dir.name}/: "
            f"{type(err).__name__}: {why}"
        ) from err
    lead, keystr = (saved_state[0].shape[:1] if saved_state else ()), jax.tree_util.keystr
    want = {  # [M, S, ...] states and [M, ...] hparams
        "state": [(keystr(p), lead + seeds.shape + s.shape) for p, s in _paths(state_shapes)],
        "hparams": [(keystr(p), lead + np.shape(h)) for p, h in _paths(hparams_template)],
    }
    for part, saved in (("state", saved_state), ("hparams", saved_hparams)):
        if len(saved) != len(want[part]):
            raise mismatch(f"{len(saved)} {part} arrays saved, the config has {len(want[part])}")
        for array, (path, shape) in zip(saved, want[part], strict=True):
            if array.shape != tuple(shape):
                raise mismatch(f"{part}{path} has shape {array.shape}, it needs {tuple(shape)}")
    state = jax.tree.unflatten(jax.tree.structure(state_shapes), saved_state)
    hparams = jax.tree.unflatten(jax.tree.structure(hparams_template), saved_hparams)
    update = int(np.asarray(state.update).reshape(-1)[0])
    return Checkpoint(config, hparams, seeds, state, metrics, update)
