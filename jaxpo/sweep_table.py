"""A sweep's results as a table (one row per member × seed), its ranking and its curves.

``table(result, config)`` flattens a :class:`jaxpo.sweep.SweepResult` into rows; ``best`` and
``top_k`` rank members by the mean of a column over their seeds; ``write_csv`` and
``write_parquet`` save the rows; ``plot_curves`` draws a learning curve per member.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import sweep
from .config import Config
from .estimates import bootstrap_interval, iqm
from .hparams import HParams

#: the columns that identify a row (an agent), and those computed from its whole run.
ID_COLUMNS = ("member", "seed")
SUMMARY_COLUMNS = ("final_return", "best_return", "env_steps")
MODES = ("max", "min")
#: what a member's seeds are reduced to for ranking: their mean, or their interquartile mean.
CENTRES = ("mean", "iqm")
#: members beyond which the curves plot has no legend (it would cover the figure).
MAX_LEGEND = 20


@dataclasses.dataclass(frozen=True)
class Table:
    """The rows of a sweep, member-major.

    Attributes:
        rows: one dict per member × seed with the columns ``member``, ``seed``, every scalar
            hparam, ``final_return``, ``best_return``, ``env_steps`` and every metric's value
            at the last update (column = metric name).
        hparams: the names of the hparam columns.
    """

    rows: list[dict[str, float]]
    hparams: tuple[str, ...]

    @property
    def columns(self) -> list[str]:
        """The column names, in order."""
        return list(self.rows[0])

    @property
    def members(self) -> list[int]:
        """The member indices, ascending."""
        return sorted({int(row["member"]) for row in self.rows})

    def hparams_of(self, member: int) -> dict[str, float]:
        """The hparam values of ``member``."""
        row = next(r for r in self.rows if r["member"] == member)
        return {name: row[name] for name in self.hparams}

    def swept(self) -> list[str]:
        """The hparams whose value differs between members."""
        return swept_names({n: [row[n] for row in self.rows] for n in self.hparams})


class Ranked(NamedTuple):
    """A member and the mean, standard deviation (ddof 0) and IQM of a column over its seeds.

    ``failed`` counts its seeds that NaN safety froze (the ``failed`` metric at the end).
    """

    member: int
    hparams: dict[str, float]
    mean: float
    std: float
    failed: int = 0
    iqm: float = float("nan")


def ranking_of(config: Config) -> tuple[str, str]:
    """``(metric, centre)`` that a sweep of ``config`` ranks its members by.

    The in-training evaluation's IQM over seeds when the run evaluates
    (``config.eval_interval > 0``), else the mean final training return.
    """
    return ("eval_return", "iqm") if config.eval_interval else ("final_return", "mean")


def short_float(x: Any) -> float:
    """A NumPy scalar as the Python float of its shortest repr (float32 ``3e-4`` -> ``0.0003``)."""
    return float(str(x))


def swept_names(columns: Mapping[str, Sequence[float]]) -> list[str]:
    """The names of the columns that hold more than one distinct value."""
    return [name for name, values in columns.items() if np.unique(np.asarray(values)).size > 1]


def started(episodes: np.ndarray) -> np.ndarray:
    """Whether an agent has finished an episode by each update.

    Args:
        episodes: episodes finished per update, ``[..., U]``.

    Returns:
        Booleans ``[..., U]``: cumulative episodes > 0.
    """
    return np.cumsum(episodes, axis=-1) > 0


def best_returns(returns: np.ndarray, episodes: np.ndarray) -> np.ndarray:
    """The best episode return of each agent, ignoring updates before its first episode.

    Args:
        returns: ``episode_return`` per update, ``[..., U]`` (0.0 before the first episode).
        episodes: episodes finished per update, ``[..., U]``.

    Returns:
        ``[...]``: the max over updates since the first finished episode; NaN if none finished.
    """
    done = started(episodes)
    best = np.where(done, returns, -np.inf).max(axis=-1)
    return np.where(done.any(axis=-1), best, np.nan)


def table(result: sweep.SweepResult, config: Config) -> Table:
    """One row per member × seed of a sweep (see :class:`Table`).

    Args:
        result: a sweep's result; metrics ``[M, S, U]`` with ``episode_return`` and
            ``episodes``.
        config: the sweep's config (``env_steps = U * config.batch_size``).

    Raises:
        ValueError: a metric is named like an hparam or a summary column.
    """
    metrics = {name: np.asarray(v) for name, v in sorted(result.metrics.items())}
    hparams = sweep.columns(result.hparams)
    clash = set(metrics) & (set(hparams) | set(ID_COLUMNS) | set(SUMMARY_COLUMNS))
    if clash:
        raise ValueError(f"metric names {sorted(clash)} clash with table columns")
    returns = metrics["episode_return"]
    best = best_returns(returns, metrics["episodes"])
    num_members, num_seeds, num_updates = returns.shape
    rows = []
    for m in range(num_members):
        for s in range(num_seeds):
            row: dict[str, float] = {"member": m, "seed": int(result.seeds[s])}
            row.update({name: short_float(v[m]) for name, v in hparams.items()})
            row["final_return"] = short_float(returns[m, s, -1])
            row["best_return"] = short_float(best[m, s])
            row["env_steps"] = num_updates * config.batch_size
            row.update({name: short_float(v[m, s, -1]) for name, v in metrics.items()})
            rows.append(row)
    return Table(rows, tuple(hparams))


def write_csv(table: Table, path: str | Path) -> None:
    """Writes the rows to ``path`` as CSV with a header line."""
    with Path(path).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=table.columns)
        writer.writeheader()
        writer.writerows(table.rows)


def write_parquet(table: Table, path: str | Path) -> bool:
    """Writes the rows to ``path`` as Parquet if ``pyarrow`` is installed.

    ``pyarrow`` is not a dependency of jaxpo: without it nothing is written.

    Returns:
        Whether the file was written.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return False
    columns = {name: [row[name] for row in table.rows] for name in table.columns}
    pq.write_table(pa.table(columns), str(path))
    return True


def aligned(cells: Sequence[Sequence[str]]) -> list[str]:
    """Rows of text cells as lines, each column right-aligned to its widest cell."""
    widths = [max(len(cell) for cell in column) for column in zip(*cells, strict=True)]
    return ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]


def top_k(
    table: Table, k: int, metric: str = "final_return", mode: str = "max", centre: str = "mean"
) -> list[Ranked]:
    """The ``k`` best members by the mean (or IQM) of ``metric`` over their seeds, best first.

    Members whose value is NaN rank last; ties keep member order.

    Args:
        table: from :func:`table`.
        k: how many members (all of them if fewer).
        metric: a column other than ``member``/``seed``.
        mode: ``"max"`` (higher is better) or ``"min"``.
        centre: ``"mean"`` or ``"iqm"`` (see :data:`CENTRES`) over the seeds.

    Raises:
        ValueError: unknown metric, mode or centre, or ``k < 1``.
    """
    choices = [c for c in table.columns if c not in ID_COLUMNS]
    if metric not in choices:
        raise ValueError(f"unknown metric {metric!r}; choose from {choices}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")
    if centre not in CENTRES:
        raise ValueError(f"unknown centre {centre!r}; use one of {CENTRES}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    values: dict[int, list[float]] = {}
    first: dict[int, dict[str, float]] = {}
    failed: dict[int, int] = {}
    for row in table.rows:  # one pass: sweeps have many members
        member = int(row["member"])
        values.setdefault(member, []).append(row[metric])
        first.setdefault(member, row)
        failed[member] = failed.get(member, 0) + int(row.get("failed", 0) > 0)
    ranked = []
    for m, vals in values.items():
        vals_arr = np.asarray(vals, float)
        hparams = {name: first[m][name] for name in table.hparams}
        mean, std = float(vals_arr.mean()), float(vals_arr.std())
        ranked.append(Ranked(m, hparams, mean, std, failed[m], float(iqm(vals_arr))))
    sign = -1.0 if mode == "max" else 1.0
    ranked.sort(key=lambda r: (np.isnan(getattr(r, centre)), sign * getattr(r, centre)))
    return ranked[:k]


def best(
    table: Table, metric: str = "final_return", mode: str = "max", centre: str = "mean"
) -> Ranked:
    """The best member by the mean (or IQM) of ``metric`` over its seeds (see :func:`top_k`)."""
    return top_k(table, 1, metric, mode, centre)[0]


def format_top_k(
    table: Table, k: int, metric: str = "final_return", mode: str = "max", centre: str = "mean"
) -> str:
    """The top-``k`` members as a text table: rank, member, swept hparams, mean ± std.

    Ranked by IQM (``centre="iqm"``), the table shows the IQM and then mean ± std. If any
    listed member has failed seeds (frozen by NaN safety), a ``failed`` column shows how many
    of its seeds, and a last line says what that means.
    """
    ranked = top_k(table, k, metric, mode, centre)
    swept = table.swept()
    seeds = len(table.rows) // len(table.members)
    marked = any(r.failed for r in ranked)
    by_iqm = centre == "iqm"
    cells = [
        ["rank", "member", *swept]
        + (["IQM"] if by_iqm else [])
        + [metric]
        + (["failed"] if marked else [])
    ] + [
        [str(i + 1), str(r.member), *(f"{r.hparams[n]:.4g}" for n in swept)]
        + ([f"{r.iqm:.4g}"] if by_iqm else [])
        + [f"{r.mean:.4g} ± {r.std:.2g}"]
        + ([f"{r.failed}/{seeds}" if r.failed else "-"] if marked else [])
        for i, r in enumerate(ranked)
    ]
    how = "IQM; mean ± std" if by_iqm else "mean ± std"
    title = (
        f"top {len(ranked)} of {len(table.members)} members by {metric} "
        f"({mode}; {how} over {seeds} seed(s))"
    )
    lines = aligned(cells)
    if marked:
        lines.append(
            "failed: seeds whose agent NaN safety froze (non-finite updates); their "
            "returns are those of the frozen policy"
        )
    return "\n".join([title, *lines])


def draw_mean_band(
    ax: Any,
    steps: np.ndarray,
    values: np.ndarray,
    label: str,
    rng: np.random.Generator,
    color: Any = None,
) -> None:
    """Draws a mean curve over seeds with its shaded 95% bootstrap interval.

    Args:
        ax: a matplotlib ``Axes``.
        steps: x values, ``[U]``.
        values: y values per seed, ``[S, U]``; the curve is their mean over seeds and the
            band the 95% interval of that mean (see :func:`bootstrap_interval`).
        label: the legend label.
        rng: the resampling generator.
        color: the line's and band's color (the axes' next color if ``None``).
    """
    low, high = bootstrap_interval(values, np.mean, rng)
    (line,) = ax.plot(steps, values.mean(axis=0), label=label, lw=1.2, color=color)
    ax.fill_between(steps, low, high, alpha=0.2, facecolor=line.get_color())


def member_labels(hparams: HParams) -> list[str]:
    """A legend label per member: its swept hparam values (``member m`` if none vary)."""
    columns = sweep.columns(hparams)
    swept = swept_names(columns)
    return [
        ", ".join(f"{n}={columns[n][m]:.3g}" for n in swept) or f"member {m}"
        for m in range(sweep.num_members(hparams))
    ]


def plot_curves(result: sweep.SweepResult, config: Config, path: str | Path) -> None:
    """Writes one PNG with a learning curve per member (matplotlib's Agg backend).

    x is env steps per agent; y is the mean over seeds of ``episode_return`` with a shaded 95%
    percentile-bootstrap interval over seeds. A member's curve starts at the first update by
    which every one of its seeds has finished an episode (``episode_return`` is 0.0 before);
    a member with a seed that never finished one is left out. Sweeps of more than
    :data:`MAX_LEGEND` members get no legend.

    Args:
        result: a sweep's result; metrics ``[M, S, U]`` with ``episode_return`` and
            ``episodes``.
        config: the sweep's config (``config.batch_size`` env steps per update).
        path: where to write the PNG.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    returns = np.asarray(result.metrics["episode_return"], np.float64)
    ready = started(np.asarray(result.metrics["episodes"])).all(axis=1)  # [M, U]
    num_members, num_seeds, num_updates = returns.shape
    steps = (np.arange(num_updates) + 1) * config.batch_size
    cmap = matplotlib.colormaps["tab10" if num_members <= 10 else "viridis"]
    rng = np.random.default_rng(0)
    fig = Figure(figsize=(8, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for m, label in enumerate(member_labels(result.hparams)):
        if not ready[m].any():
            continue
        start = int(np.argmax(ready[m]))
        color = cmap(m if num_members <= 10 else m / (num_members - 1))
        draw_mean_band(ax, steps[start:], returns[m, :, start:], label, rng, color)
    ax.set_title(f"{config.algo} on {config.env_id}: mean of {num_seeds} seed(s), 95% bootstrap")
    ax.set_xlabel("env steps per agent")
    ax.set_ylabel("episode return")
    ax.grid(alpha=0.3)
    if ax.get_lines() and num_members <= MAX_LEGEND:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=110, bbox_inches="tight")
