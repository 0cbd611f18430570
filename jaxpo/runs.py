"""Training runs and sweeps as library calls: what ``jaxpo train`` and ``jaxpo sweep`` do.

Everything here takes plain values (a :class:`~jaxpo.config.Config`, hparams, seeds, paths,
numbers), so a notebook can do what the command line does:

- :func:`train_in_segments` trains one member's seeds to ``config.num_updates``, saving a
  checkpoint after every segment; :func:`resume` loads a checkpointed run to continue it.
- :func:`timed_run` runs a sweep with its progress display and times it.
- :func:`train_summary` and :func:`sweep_summary` are what ``summary.json`` holds;
  :func:`write_summary` writes the summary and the logs, :func:`write_sweep_outputs` every
  file of a sweep.
- :func:`prepare_output` creates an output folder, refusing one that holds another run.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint, run_log, sweep, sweep_table
from .config import Config
from .hparams import HParams
from .progress import ProgressDisplay
from .validation import validate_config

#: what a run or a sweep writes into its output folder (its checkpoint's temporary names
#: included); an occupied folder holds at least one of these.
RUN_OUTPUTS = (
    checkpoint.RUN_FILE,
    f"{checkpoint.RUN_FILE}.new",
    checkpoint.ARRAYS,
    f"{checkpoint.ARRAYS}.new",
    f"{checkpoint.ARRAYS}.old",
    "summary.json",
    "metrics.csv",
    "metrics.jsonl",
    "metrics.npz",
    "table.csv",
    "table.parquet",
    "curves.png",
    "tensorboard",
    "eval.json",
    "best.json",
    "lineage.png",
    "pbt",
)


def prepare_output(out: str | Path, *, overwrite: bool = False) -> Path:
    """Creates the output folder ``out``, refusing one that holds another run.

    Args:
        out: the folder a new run or sweep writes to.
        overwrite: replace the run already there: every file of :data:`RUN_OUTPUTS` is
            removed first, so nothing of it is left beside the new one (other files in the
            folder are not jaxpo's and stay).

    Raises:
        ValueError: ``out`` is a file or cannot be created, or holds a run and
            ``overwrite`` is off.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out} is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create the output folder {out}: {err.strerror}") from None
    found = [name for name in RUN_OUTPUTS if (out / name).exists()]
    if found and not overwrite:
        raise ValueError(
            f"{out} holds another run ({', '.join(found)}); choose another output folder "
            "or overwrite it (--overwrite; overwrite=True in Python)"
        )
    for name in found:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return out


def resume(
    directory: str | Path, total_timesteps: int | None = None
) -> tuple[Config, HParams, np.ndarray, checkpoint.Checkpoint]:
    """The run checkpointed in ``directory``, ready for :func:`train_in_segments`.

    Args:
        directory: a run directory with a checkpoint (:mod:`jaxpo.checkpoint`).
        total_timesteps: a new budget (default: the saved one); a longer one extends the
            run, which also stretches ``anneal_lr``'s schedule.

    Returns:
        ``(config, hparams, seeds, checkpoint)``, with the saved hparams and seeds.

    Raises:
        ValueError: the run already did more updates than the budget allows.
    """
    saved = checkpoint.load(directory)
    config = saved.config
    if total_timesteps is not None:
        config = config.replace(total_timesteps=total_timesteps)
    validate_config(config)
    if saved.update > config.num_updates:
        raise ValueError(
            f"resume: the run already did {saved.update} updates, more than the "
            f"{config.num_updates} of total_timesteps={config.total_timesteps}"
        )
    return config, saved.hparams, saved.seeds, saved


def train_in_segments(
    config: Config,
    hparams: HParams,
    seeds: np.ndarray,
    out: str | Path,
    saved: checkpoint.Checkpoint | None = None,
    *,
    checkpoint_every: int | None = None,
    progress: bool = True,
    progress_interval: int | None = None,
) -> tuple[dict[str, np.ndarray], float]:
    """Trains to ``config.num_updates`` in segments of ``checkpoint_every`` updates.

    After each segment the complete state is saved to ``out`` (:mod:`jaxpo.checkpoint`); the
    next segment continues from the state in memory, which is the same computation as one
    run. One progress display covers all segments.

    Args:
        config: the static configuration.
        hparams: one member's hparams, batched ``[1]`` (``sweep.stack(hparams, {}, 1)``).
        seeds: the integer seeds, ``[S]``.
        out: the directory the checkpoint is saved to.
        saved: a checkpoint to continue (see :func:`resume`); ``None`` starts afresh.
        checkpoint_every: updates per segment; ``None``: one segment, saved at the end.
        progress: ``False`` compiles no progress hook in (the display gets no reports).
        progress_interval: updates between reports (``None``: about 20; 0: none).

    Returns:
        ``({metric: [S, U]}, seconds)``, the metrics including a resumed run's earlier ones.
    """
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    every = checkpoint_every or config.num_updates
    state, metrics = (saved.state, saved.metrics) if saved else (None, {})
    done = saved.update if saved else 0
    start = time.perf_counter()
    with ProgressDisplay(config.num_updates, config.batch_size, label=config.algo) as display:
        while done < config.num_updates:
            updates = min(every, config.num_updates - done)
            result = sweep.run(
                config,
                hparams,
                seeds=seeds,
                progress=display if progress else None,
                state=state,
                updates=updates,
                progress_interval=progress_interval,
            )
            state, done = result.state, done + updates
            metrics = {
                k: np.concatenate([metrics[k], v], -1) if k in metrics else v
                for k, v in result.metrics.items()
            }
            checkpoint.save(out, config, hparams, seeds, state, metrics)
    return {k: v[0] for k, v in metrics.items()}, time.perf_counter() - start


def timed_run(
    config: Config,
    hparams: HParams,
    seeds: np.ndarray,
    chunk_size: int | None = None,
    *,
    progress: bool = True,
    progress_interval: int | None = None,
) -> tuple[sweep.SweepResult, float]:
    """Runs :func:`jaxpo.sweep.run` with its progress display (none if ``progress`` is off).

    Returns:
        The result (metrics only, no final states) and the seconds it took, compile included.
    """
    start = time.perf_counter()
    result = sweep.run(
        config,
        hparams,
        seeds=seeds,
        progress=progress,
        chunk_size=chunk_size,
        keep_state=False,
        progress_interval=progress_interval,
    )
    return result, time.perf_counter() - start


def train_summary(
    config: Config,
    hparams: HParams,
    seeds: np.ndarray,
    metrics: dict[str, np.ndarray],
    wall: float,
) -> dict[str, Any]:
    """What a training run's ``summary.json`` holds: config, hparams, final returns per seed.

    Args:
        config: the run's configuration.
        hparams: its hparams, batched ``[1]``.
        seeds: the integer seeds, ``[S]``.
        metrics: ``{name: [S, U]}``, as :func:`train_in_segments` returns them.
        wall: the seconds training took.
    """
    final = metrics["episode_return"][:, -1]
    return {
        "algo": config.algo,
        "env_id": config.env_id,
        "config": config.to_record(),
        "hparams": {k: float(v[0]) for k, v in sweep.columns(hparams).items()},
        "seeds": [int(s) for s in seeds],
        "final_return": [float(v) for v in final],
        "final_return_mean": float(final.mean()),
        "final_return_std": float(final.std()),
        "env_steps_per_seed": config.num_updates * config.batch_size,
        "wall_seconds": wall,
    }


def sweep_summary(
    config: Config, table: sweep_table.Table, layout: sweep.SweepPlan, wall: float
) -> dict[str, Any]:
    """What a sweep's ``summary.json`` holds: config, seeds, swept columns and the best member."""
    metric, centre = sweep_table.ranking_of(config)
    top = sweep_table.best(table, metric, centre=centre)
    return {
        "algo": config.algo,
        "env_id": config.env_id,
        "config": config.to_record(),
        "seeds": sorted({int(row["seed"]) for row in table.rows}),
        "num_members": layout.num_members,
        "num_chunks": layout.num_chunks,
        "env_steps_per_agent": config.num_updates * config.batch_size,
        "swept": {n: [table.hparams_of(m)[n] for m in table.members] for n in table.swept()},
        "best": {
            "metric": metric,
            "centre": centre,
            "member": top.member,
            "iqm": top.iqm,
            "mean": top.mean,
            "std": top.std,
            "failed_seeds": top.failed,
            "hparams": top.hparams,
        },
        "wall_seconds": wall,
    }


def write_summary(
    out: Path,
    summary: dict[str, Any],
    metrics: dict[str, np.ndarray],
    seeds: np.ndarray,
    config: Config,
    *,
    tensorboard: bool = False,
    wandb_project: str | None = None,
) -> list[Path]:
    """Writes ``OUT/summary.json`` and the :mod:`jaxpo.run_log` logs of a run.

    Args:
        out: the output directory.
        summary: what ``summary.json`` holds (:func:`train_summary`, :func:`sweep_summary`),
            also the W&B run's config.
        metrics: ``{name: [S, U]}`` of a training run or ``{name: [M, S, U]}`` of a sweep.
        seeds: the integer seeds, ``[S]``.
        config: the run's configuration.
        tensorboard: also write TensorBoard event files.
        wandb_project: also log to this Weights & Biases project (``None``: no W&B run).

    Returns:
        The paths of the logs written (``summary.json`` not included).
    """
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return run_log.write_logs(
        out,
        metrics,
        seeds,
        config.batch_size,
        tensorboard=tensorboard,
        wandb_project=wandb_project,
        run_config=summary,
    )


def write_sweep_outputs(
    out: Path,
    result: sweep.SweepResult,
    config: Config,
    layout: sweep.SweepPlan,
    wall: float,
    *,
    tensorboard: bool = False,
    wandb_project: str | None = None,
) -> tuple[sweep_table.Table, list[Path]]:
    """Writes a sweep's table, curves, arrays, summary and logs.

    The files: ``table.csv``, ``curves.png``, ``metrics.npz``, ``summary.json`` and the logs
    of :func:`write_summary` (with its options) and, with pyarrow, ``table.parquet``.

    Returns:
        ``(table, paths written)``.
    """
    table = sweep_table.table(result, config)
    written = [out / "table.csv", out / "curves.png", out / "metrics.npz", out / "summary.json"]
    sweep_table.write_csv(table, written[0])
    sweep_table.plot_curves(result, config, written[1])
    np.savez(written[2], **result.metrics)
    summary = sweep_summary(config, table, layout, wall)
    written += write_summary(
        out,
        summary,
        result.metrics,
        result.seeds,
        config,
        tensorboard=tensorboard,
        wandb_project=wandb_project,
    )
    if sweep_table.write_parquet(table, out / "table.parquet"):
        written.append(out / "table.parquet")
    return table, written
