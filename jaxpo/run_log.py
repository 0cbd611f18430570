"""Run logs written on the host from a finished run: CSV, JSON Lines, TensorBoard, W&B.

Nothing here runs inside the compiled program. The writers take NumPy metrics once
training is over: a sweep's ``{name: [M, S, U]}`` (members, seeds, updates), as
:func:`jaxpo.sweep.run` returns them, or a training run's ``{name: [S, U]}``, whose records
and tags carry no member index. :func:`nan_report` turns the NaN-safety metrics into the
lines printed at the end of a run.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config


def by_member(metrics: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], bool]:
    """``metrics`` as ``{name: [M, S, U]}`` in name order, and whether they are a sweep's.

    Args:
        metrics: ``{name: [M, S, U]}`` (a sweep) or ``{name: [S, U]}`` (``M = 1``).
    """
    arrays = {name: np.asarray(metrics[name]) for name in sorted(metrics)}
    members = next(iter(arrays.values())).ndim == 3
    return {name: a if members else a[None] for name, a in arrays.items()}, members


def records(
    metrics: Mapping[str, np.ndarray], seeds: Sequence[int], steps_per_update: int
) -> Iterator[dict[str, Any]]:
    """One record per agent per update, member by member, seed by seed, update by update.

    Args:
        metrics: ``{name: [M, S, U]}`` (a sweep) or ``{name: [S, U]}`` (a training run).
        seeds: the integer seeds, ``[S]``.
        steps_per_update: env steps per agent per update (``config.batch_size``).

    Yields:
        ``{"member" (a sweep's only), "seed", "update" (1-based), "env_steps", *metrics}``,
        the metrics in name order, as Python numbers.
    """
    arrays, members = by_member(metrics)
    for m in range(next(iter(arrays.values())).shape[0]):
        for s, seed in enumerate(seeds):
            columns = [a[m, s].tolist() for a in arrays.values()]
            for u, values in enumerate(zip(*columns, strict=True)):
                head = {"member": m} if members else {}
                step = {"seed": int(seed), "update": u + 1, "env_steps": (u + 1) * steps_per_update}
                yield {**head, **step, **dict(zip(arrays, values, strict=True))}


def write_metrics_csv(
    path: Path,
    metrics: Mapping[str, np.ndarray],
    seeds: Sequence[int],
    steps_per_update: int,
) -> None:
    """One row per agent per update: ``[member,] seed, update, env_steps, <metrics>``.

    Arguments as for :func:`records`.
    """
    rows = records(metrics, seeds, steps_per_update)
    first = next(rows)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(first))
        writer.writeheader()
        writer.writerow(first)
        writer.writerows(rows)


def write_metrics_jsonl(
    path: Path,
    metrics: Mapping[str, np.ndarray],
    seeds: Sequence[int],
    steps_per_update: int,
) -> None:
    """One JSON object per line per agent per update (a :func:`records` record).

    Non-finite values (a diverged agent) are written as ``null``, so every line is strict
    JSON. Arguments as for :func:`records`.
    """

    def strict(value: float) -> float | None:
        return value if math.isfinite(value) else None

    with path.open("w") as f:
        for record in records(metrics, seeds, steps_per_update):
            line = {k: strict(v) for k, v in record.items()}
            f.write(json.dumps(line, allow_nan=False) + "\n")


def scalar_curves(metrics: Mapping[str, np.ndarray], seeds: Sequence[int]) -> dict[str, np.ndarray]:
    """The scalar series logged to TensorBoard and W&B, ``{tag: [U]}``.

    Args:
        metrics: ``{name: [M, S, U]}``, a sweep: per member the mean over seeds,
            ``member_<m>/mean/<metric>``. Or ``{name: [S, U]}``, a training run: each seed,
            ``seed_<s>/<metric>``, and their mean, ``mean/<metric>``.
        seeds: the integer seeds, ``[S]``.
    """
    arrays, members = by_member(metrics)
    curves = {}
    for name, array in arrays.items():
        values = array.astype(np.float64)
        if members:
            for m, curve in enumerate(values.mean(axis=1)):
                curves[f"member_{m}/mean/{name}"] = curve
            continue
        for seed, curve in zip(seeds, values[0], strict=True):
            curves[f"seed_{int(seed)}/{name}"] = curve
        curves[f"mean/{name}"] = values[0].mean(axis=0)
    return curves


def write_tensorboard(
    logdir: Path, curves: Mapping[str, np.ndarray], steps_per_update: int
) -> None:
    """Writes ``curves`` (``{tag: [U]}``) as TensorBoard scalars, step = env steps per agent.

    The curves are a run's whole history (a resumed run's included), so event files already
    in ``logdir`` are replaced rather than added to.
    """
    from tensorboardX import SummaryWriter  # imported only when asked for (~0.1 s)

    for old in Path(logdir).glob("events.out.tfevents.*"):
        old.unlink()
    with SummaryWriter(str(logdir)) as writer:
        for tag, curve in curves.items():
            for u, value in enumerate(curve.tolist()):
                writer.add_scalar(tag, value, (u + 1) * steps_per_update)


def log_wandb(
    project: str,
    run_config: Mapping[str, Any],
    curves: Mapping[str, np.ndarray],
    steps_per_update: int,
) -> bool:
    """Logs ``curves`` (``{tag: [U]}``) as one W&B run in ``project``, step = env steps.

    Returns:
        Whether it logged: ``False``, with a warning on stderr, when ``wandb`` is not
        installed (it is not a dependency of jaxpo).
    """
    try:
        import wandb
    except ImportError:
        print(
            "jaxpo: warning: Weights & Biases logging was asked for but wandb is not "
            "installed (pip install wandb); the other logs are written as usual",
            file=sys.stderr,
        )
        return False
    run = wandb.init(project=project, config=dict(run_config))
    for u in range(len(next(iter(curves.values())))):
        run.log({tag: float(c[u]) for tag, c in curves.items()}, step=(u + 1) * steps_per_update)
    run.finish()
    return True


def write_logs(
    out: Path,
    metrics: Mapping[str, np.ndarray],
    seeds: Sequence[int],
    steps_per_update: int,
    *,
    tensorboard: bool = False,
    wandb_project: str | None = None,
    run_config: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Writes ``metrics.csv`` and ``metrics.jsonl`` to ``out``, and the optional logs.

    Args:
        out: the run's output directory.
        metrics: ``{name: [M, S, U]}`` (a sweep) or ``{name: [S, U]}`` (a training run).
        seeds: the integer seeds, ``[S]``.
        steps_per_update: env steps per agent per update.
        tensorboard: also write TensorBoard event files under ``out/tensorboard``.
        wandb_project: also log to this W&B project, if ``wandb`` is installed.
        run_config: the W&B run's config (e.g. the run's ``summary.json``).

    Returns:
        The paths written (the TensorBoard directory included).
    """
    written = [out / "metrics.csv", out / "metrics.jsonl"]
    write_metrics_csv(written[0], metrics, seeds, steps_per_update)
    write_metrics_jsonl(written[1], metrics, seeds, steps_per_update)
    if not tensorboard and wandb_project is None:
        return written
    curves = scalar_curves(metrics, seeds)
    if tensorboard:
        written.append(out / "tensorboard")
        write_tensorboard(written[-1], curves, steps_per_update)
    if wandb_project is not None:
        log_wandb(wandb_project, run_config or {}, curves, steps_per_update)
    return written


#: how many update numbers, and how many agents, a NaN-safety report lists before "...".
REPORT_LIMIT = 5


def first_updates(flags: np.ndarray) -> str:
    """The 1-based numbers of the updates where ``flags [U]`` is nonzero, the first few."""
    numbers = [str(u + 1) for u in np.flatnonzero(flags)]
    return ", ".join(numbers[:REPORT_LIMIT] + (["..."] if len(numbers) > REPORT_LIMIT else []))


def nan_report(metrics: dict[str, np.ndarray], seeds: np.ndarray, config: Config) -> list[str]:
    """End-of-run lines on non-finite environment output, skipped updates and failed agents.

    Update numbers are 1-based, as in ``metrics.csv``; nothing is reported for a clean run.

    Args:
        metrics: ``{name: [S, U]}`` of a training run or ``{name: [M, S, U]}`` of a sweep,
            with :func:`jaxpo.train.make_trainer`'s ``env_nonfinite``, ``update_skipped``,
            ``skipped_total`` and ``failed``.
        seeds: the integer seeds, ``[S]``.
        config: the run's configuration (env id, ``max_consecutive_skips``).
    """
    arrays, members = by_member(metrics)
    lines, agents = [], 0
    for m, s in np.ndindex(arrays["failed"].shape[:2]):
        agent = f"member {m}, seed {seeds[s]}" if members else f"seed {seeds[s]}"
        env_updates, skips, failed = (
            arrays[name][m, s] for name in ("env_nonfinite", "update_skipped", "failed")
        )
        if not (env_updates.any() or skips.any()):
            continue
        agents += 1
        if agents > REPORT_LIMIT:
            continue
        if env_updates.any():
            lines.append(
                f"environment {config.env_id} emitted non-finite observations or rewards at "
                f"update(s) {first_updates(env_updates)} ({agent})"
            )
        if skips.any():
            lines.append(
                f"{agent}: {int(arrays['skipped_total'][m, s, -1])} of {skips.size} updates "
                f"skipped for non-finite losses, gradients or parameters, at update(s) "
                f"{first_updates(skips)}"
            )
        if failed.any():
            lines.append(
                f"{agent} failed after {config.max_consecutive_skips} consecutive skipped "
                f"updates at update {np.flatnonzero(failed)[0] + 1}; its parameters "
                f"stayed frozen from then on"
            )
    if agents > REPORT_LIMIT:
        lines.append(f"... and {agents - REPORT_LIMIT} more agent(s) (see metrics.csv)")
    return lines
