"""``jaxpo tune``: run a search and write what it found.

:func:`run` runs one method of :mod:`jaxpo.search` — successive halving, population-based
training or Optuna's batched ask/tell — and :func:`write_outputs` writes into the output
folder ``table.csv`` (one row per member, PBT agent or Optuna trial, best first),
``curves.png`` (learning curves), ``lineage.png`` (PBT: each explored hparam over the
generations, coloured by score, with the copies), ``best.json`` (the best member's complete
settings, which ``jaxpo train --config`` and :func:`jaxpo.presets.load` read),
``metrics.npz`` and ``summary.json``.
"""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import estimates, search, sweep, sweep_table
from .config import Config
from .hparams import HParams

#: the search methods of ``jaxpo tune``.
METHODS = ("halving", "pbt", "optuna")


class Outcome(NamedTuple):
    """What a search found, in one shape for every method.

    Attributes:
        method: one of :data:`METHODS`.
        metric: the metric ranked on.
        rows: one dict per member (agent for PBT, trial for Optuna), best first: ``rank``,
            ``member``, every swept hparam, ``score`` and the method's own columns.
        best: the best member's hparams (unbatched).
        score: its score.
        curves: the members' metrics as a :class:`~jaxpo.sweep.SweepResult` (no states;
            PBT's has one row per agent and one seed each).
        seeds: the seeds the search trained, ``[S]``.
        details: what ``summary.json`` adds for the method (rungs, generations, ...).
        lineage: PBT's :class:`~jaxpo.search.Lineage` (``None`` for the others).
    """

    method: str
    metric: str
    rows: list[dict[str, Any]]
    best: HParams
    score: float
    curves: sweep.SweepResult
    seeds: np.ndarray
    details: dict[str, Any]
    lineage: Any = None


def ranked_rows(
    hparams: HParams, scores: np.ndarray, order: np.ndarray, **extra: np.ndarray
) -> list[dict[str, Any]]:
    """Rows in ``order`` (best first): rank, member, swept hparams, score, ``extra`` columns."""
    columns = sweep.columns(hparams)
    names = sweep_table.swept_names(columns) or list(columns)[:1]
    rows = []
    for rank, m in enumerate(order):
        row: dict[str, Any] = {"rank": rank + 1, "member": int(m)}
        row.update({n: sweep_table.short_float(columns[n][m]) for n in names})
        row["score"] = float(scores[m])
        row.update({k: np.asarray(v)[m].item() for k, v in extra.items()})
        rows.append(row)
    return rows


def intervals(values: np.ndarray) -> dict[str, np.ndarray]:
    """``score_low``/``score_high`` columns: each member's IQM interval over seeds ``[M, S]``."""
    bounds = np.array([estimates.iqm_interval(v) for v in values]).reshape(-1, 2)
    return {"score_low": bounds[:, 0], "score_high": bounds[:, 1]}


def _halving(config: Config, hparams: HParams, seeds: np.ndarray, **options: Any) -> Outcome:
    found = search.halving(config, hparams, seeds, **options)
    last = len(found.rung_updates) - 1
    members = np.arange(len(found.stopped_at))
    reached = np.minimum(found.stopped_at, last)
    final = found.rung_scores[reached, members]  # each member's score where it stopped
    # finishers first, then by the rung reached; within a rung by score (ties: member index)
    position = np.empty(len(members), int)
    position[search.order(final)] = members
    order = np.lexsort((position, -reached))
    metric = options.get("metric") or search.default_metric(found.metrics)
    at_stop = found.metrics[metric][members, :, found.rung_updates[reached] - 1]  # [M, S]
    details = {
        "eta": options.get("eta", 3),
        "rung_updates": found.rung_updates.tolist(),
        "rung_members": [int(np.sum(found.stopped_at >= r)) for r in range(last + 1)],
    }
    return Outcome(
        "halving",
        metric,
        ranked_rows(found.hparams, final, order, **intervals(at_stop), rungs_done=reached + 1),
        sweep.member_hparams(found.hparams, found.best),
        float(final[found.best]),
        sweep.SweepResult(found.hparams, found.seeds, found.metrics, None),
        found.seeds,
        details,
    )


def _pbt(config: Config, hparams: HParams, seeds: np.ndarray, **options: Any) -> Outcome:
    found = search.pbt(config, hparams, seeds, **options)
    final = found.lineage.scores[-1]
    copied = np.zeros(len(final), int)
    for pairs in found.lineage.copies:
        for copier, _ in pairs:
            copied[copier] += 1
    order = search.order(np.where(found.lineage.failed[-1], np.nan, final))
    details = {
        "interval": options["interval"],
        "generations": found.generations,
        "finished": found.finished,
        "copies": [[list(p) for p in pairs] for pairs in found.lineage.copies],
    }
    return Outcome(
        "pbt",
        found.metric,
        ranked_rows(found.hparams, final, order, times_copied=copied),
        sweep.member_hparams(found.hparams, found.best),
        float(final[found.best]),
        sweep.SweepResult(found.hparams, np.zeros(1, int), found.metrics, None),
        found.seeds,
        details,
        found.lineage,
    )


def _optuna(config: Config, hparams: HParams, seeds: np.ndarray, **options: Any) -> Outcome:
    with contextlib.suppress(ImportError):  # without it, ask_tell says how to install it
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not one line per trial
    found = search.ask_tell(config, hparams, seeds, **options)
    details = {
        "trials_per_generation": options["trials_per_generation"],
        "generations": options["generations"],
        "sampler": type(found.study.sampler).__name__,
    }
    return Outcome(
        "optuna",
        found.metric,
        ranked_rows(
            found.hparams,
            found.scores,
            search.order(found.scores),
            **intervals(found.metrics[found.metric][..., -1]),
            generation=found.generation,
        ),
        found.best_hparams(),
        float(found.best_score),
        sweep.SweepResult(found.hparams, found.seeds, found.metrics, None),
        found.seeds,
        details,
    )


def run(
    method: str, config: Config, hparams: HParams, seeds: np.ndarray, **options: Any
) -> Outcome:
    """Runs ``method`` and gathers its :class:`Outcome`.

    Args:
        method: one of :data:`METHODS`.
        config: the static config of every member.
        hparams: halving and PBT: the members ``[M]``; Optuna: the base hparams (unbatched).
        seeds: ``[S]``.
        options: the method's keyword arguments (:func:`jaxpo.search.halving`,
            :func:`jaxpo.search.pbt`, :func:`jaxpo.search.ask_tell`), ``progress`` included.

    Raises:
        ValueError: an unknown method, or what the method refuses.
    """
    methods = {"halving": _halving, "pbt": _pbt, "optuna": _optuna}
    if method not in methods:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    return methods[method](config, hparams, seeds, **options)


def plot_lineage(lineage: Any, interval: int, path: str | Path) -> None:
    """Writes PBT's lineage: each explored hparam of each agent over the generations.

    One panel per hparam that changed; x is the update at the end of a generation, y the
    hparam the agent trained with in it (log scale when the values span more than 10×),
    each point coloured by the agent's score then; a dashed line joins a copier's next
    point to the source it copied.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [n for n, v in lineage.hparams.items() if np.unique(v).size > 1]
    names = names or list(lineage.hparams)[:1]
    scores = np.asarray(lineage.scores, np.float64)
    finite = scores[np.isfinite(scores)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    norm = matplotlib.colors.Normalize(low, high if high > low else low + 1)
    cmap = matplotlib.colormaps["viridis"]
    fig = Figure(figsize=(8, 2.6 * len(names) + 0.6))
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0])
    generations, agents = scores.shape
    x = (np.arange(generations) + 1) * interval
    for ax, name in zip(axes, names, strict=True):
        values = np.asarray(lineage.hparams[name], np.float64)
        for a in range(agents):
            ax.plot(x, values[:, a], color="0.8", lw=0.6, zorder=1)
        for g, pairs in enumerate(lineage.copies[: generations - 1]):
            for copier, source in pairs:
                ax.plot(
                    [x[g], x[g + 1]],
                    [values[g, source], values[g + 1, copier]],
                    color="0.4",
                    lw=0.6,
                    ls="--",
                    zorder=2,
                )
        points = ax.scatter(
            np.repeat(x, agents),
            values.ravel(),
            c=scores.ravel(),
            cmap=cmap,
            norm=norm,
            s=14,
            zorder=3,
        )
        positive = values[values > 0]
        if positive.size == values.size and positive.max() > 10 * positive.min():
            ax.set_yscale("log")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("update (end of generation)")
    axes[0].set_title(f"PBT lineage: {agents} agents, {generations} generations")
    fig.colorbar(points, ax=list(axes), label="score")
    fig.savefig(Path(path), dpi=110, bbox_inches="tight")


def write_outputs(out: Path, config: Config, outcome: Outcome, wall: float) -> list[Path]:
    """Writes the search's files into ``out`` (see the module) and returns their paths."""
    written = [out / "table.csv", out / "curves.png", out / "metrics.npz"]
    with open(written[0], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(outcome.rows[0]))
        writer.writeheader()
        writer.writerows(outcome.rows)
    sweep_table.plot_curves(outcome.curves, config, written[1])
    np.savez_compressed(written[2], **outcome.curves.metrics)
    if outcome.lineage is not None:
        written.append(out / "lineage.png")
        plot_lineage(outcome.lineage, outcome.details["interval"], written[-1])
    provenance = {"method": outcome.method, "metric": outcome.metric, "score": outcome.score}
    written.append(search.write_best(out / "best.json", config, outcome.best, provenance))
    summary = {
        "method": outcome.method,
        "algo": config.algo,
        "env_id": config.env_id,
        "config": config.to_record(),
        "seeds": [int(s) for s in outcome.seeds],
        "metric": outcome.metric,
        "best": {**outcome.rows[0], "score": outcome.score},
        **outcome.details,
        "wall_seconds": wall,
    }
    written.append(out / "summary.json")
    written[-1].write_text(json.dumps(summary, indent=2))
    return written


def format_table(outcome: Outcome, top: int) -> str:
    """The ``top`` rows of the ranking as text, with a title naming the method and metric."""
    rows = outcome.rows[:top]
    cells = [list(rows[0])] + [
        [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()] for row in rows
    ]
    how = (
        "score: the agent's value at the last update"
        if outcome.method == "pbt"
        else "score: IQM over seeds at the last update, 95% bootstrap interval"
    )
    title = f"{outcome.method}: top {len(rows)} of {len(outcome.rows)} by {outcome.metric} ({how})"
    return "\n".join([title, *sweep_table.aligned(cells)])
