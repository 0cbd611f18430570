"""Ranking the members of a search: the interquartile mean over seeds of a final metric.

Every search method (:mod:`~jaxpo.search.halving`, :mod:`~jaxpo.search.pbt`,
:mod:`~jaxpo.search.ask_tell`) ranks by the same rule: a member's score is the interquartile
mean (IQM: the mean of the middle 50%, ``scipy.stats.trim_mean(x, 0.25)``, the aggregate
Agarwal et al., 2021 recommend over a few seeds) over its seeds of a metric's value at the
last update; the metric is ``eval_return`` when the run evaluates in training
(``config.eval_interval > 0``), else ``episode_return``. Higher is better; a NaN score
(no evaluation yet, or a seed with NaN) ranks last; ties go to the lower member index.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np

from ..estimates import iqm

__all__ = [
    "EVAL_METRIC",
    "TRAIN_METRIC",
    "check_metric",
    "default_metric",
    "iqm",
    "order",
    "scores",
]

#: the metric ranked on when the run evaluates in training, and otherwise.
EVAL_METRIC, TRAIN_METRIC = "eval_return", "episode_return"


def default_metric(metrics: Mapping[str, np.ndarray]) -> str:
    """``eval_return`` if ``metrics`` has it (the run evaluated), else ``episode_return``."""
    return EVAL_METRIC if EVAL_METRIC in metrics else TRAIN_METRIC


def check_metric(names: Collection[str], metric: str) -> None:
    """Raises ``ValueError`` unless ``metric`` is one of a run's metric ``names``.

    A missing ``eval_return`` gets the fix: it needs in-training evaluation.
    """
    if metric in names:
        return
    if metric == EVAL_METRIC:
        raise ValueError(
            "eval_return needs in-training evaluation: set config.eval_interval "
            "(--set eval_interval=K), or rank by episode_return"
        )
    raise ValueError(f"unknown metric {metric!r}; the run records {sorted(names)}")


def scores(metrics: Mapping[str, np.ndarray], metric: str | None = None) -> np.ndarray:
    """Each member's score: the IQM over seeds of ``metric`` at the last update.

    Args:
        metrics: ``{name: [M, S, U]}`` (a :class:`~jaxpo.sweep.SweepResult`'s metrics).
        metric: the metric (default: :func:`default_metric`).

    Returns:
        ``[M]`` float64.

    Raises:
        ValueError: ``metric`` is not in ``metrics``.
    """
    metric = default_metric(metrics) if metric is None else metric
    check_metric(metrics, metric)
    return iqm(np.asarray(metrics[metric])[..., -1], axis=1)


def order(values: np.ndarray) -> np.ndarray:
    """Indices of ``values [M]`` best first: highest first, NaN last, ties by lower index."""
    values = np.asarray(values, np.float64)
    index = np.arange(values.size)
    return np.lexsort((index, -np.nan_to_num(values, nan=-np.inf), np.isnan(values)))
