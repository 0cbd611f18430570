"""Learning curves of training runs: ``jaxpo plot DIR [DIR ...] --out FILE.png``.

Each run directory's ``metrics.csv`` (``jaxpo train``: one row per seed per update) gives a
curve: the mean over seeds of a metric against env steps, with the shaded 95% bootstrap
interval of that mean (:func:`jaxpo.sweep_table.draw_mean_band`). Several runs share one
figure for comparison.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .sweep_table import draw_mean_band, started

METRICS_FILE = "metrics.csv"
#: the columns of ``metrics.csv`` that are not metrics.
ID_COLUMNS = ("seed", "update", "env_steps")
#: metrics carried forward from 0.0 until an agent's first finished episode.
EPISODE_METRICS = ("episode_return", "episode_length")


class Curves(NamedTuple):
    """One run's curves of one metric.

    Attributes:
        label: the legend label.
        steps: env steps per agent at each update, ``[U]``.
        values: the metric per seed, ``[S, U]``.
    """

    label: str
    steps: np.ndarray
    values: np.ndarray


def run_label(directory: Path) -> str:
    """The directory's name, with the algorithm and env from its ``summary.json`` if any."""
    summary = directory / "summary.json"
    if not summary.exists():
        return directory.name
    run = json.loads(summary.read_text())
    return f"{directory.name} ({run['algo']}, {run['env_id']})"


def read_curves(directory: str | Path, metric: str = "episode_return") -> Curves:
    """The curves of ``metric`` from a training run's ``metrics.csv``.

    For :data:`EPISODE_METRICS` the curves start at the first update by which every seed
    has finished an episode (before it they hold a placeholder 0.0), as in
    :func:`jaxpo.sweep_table.plot_curves`.

    Raises:
        FileNotFoundError: ``directory`` has no ``metrics.csv``.
        ValueError: the file is a sweep's, or has no ``metric`` column, or no seed of the
            run finished an episode.
    """
    directory = Path(directory)
    path = directory / METRICS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {METRICS_FILE} in {directory} (written by jaxpo train --out)")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    columns = list(rows[0]) if rows else []
    if "member" in columns:
        raise ValueError(f"{path} is a sweep's (it has a member column); see its curves.png")
    if metric not in columns:
        raise ValueError(
            f"{path} has no metric {metric!r}; it has {[c for c in columns if c not in ID_COLUMNS]}"
        )

    def per_seed(column: str) -> np.ndarray:
        seeds = sorted({int(r["seed"]) for r in rows})
        return np.array(
            [[float(r[column]) for r in rows if int(r["seed"]) == s] for s in seeds], np.float64
        )

    steps, values = per_seed("env_steps")[0], per_seed(metric)
    if metric in EPISODE_METRICS and "episodes" in columns:
        ready = started(per_seed("episodes")).all(axis=0)
        if not ready.any():
            raise ValueError(f"{directory}: some seed never finished an episode")
        start = int(np.argmax(ready))
        steps, values = steps[start:], values[:, start:]
    return Curves(run_label(directory), steps, values)


def plot_runs(
    directories: Sequence[str | Path], out: str | Path, metric: str = "episode_return"
) -> Path:
    """Writes a PNG with one mean-over-seeds curve of ``metric`` per run directory.

    Args:
        directories: training run directories (each with ``metrics.csv``).
        out: the PNG to write (matplotlib's Agg canvas; no pyplot state).
        metric: a column of ``metrics.csv``.

    Returns:
        The path written.

    Raises:
        FileNotFoundError: a directory without ``metrics.csv``.
        ValueError: ``out`` is not a ``.png`` path in an existing folder; see also
            :func:`read_curves`.
    """
    out = Path(out)
    if out.suffix.lower() != ".png" or out.is_dir() or not out.parent.is_dir():
        raise ValueError(f"the plot's --out must name a .png file in an existing folder: {out}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves = [read_curves(d, metric) for d in directories]
    rng = np.random.default_rng(0)
    fig = Figure(figsize=(8, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for curve in curves:
        label = f"{curve.label}, {curve.values.shape[0]} seed(s)"
        draw_mean_band(ax, curve.steps, curve.values, label, rng)
    ax.set_title(f"{metric}: mean over seeds, 95% bootstrap interval")
    ax.set_xlabel("env steps per agent")
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    return out
