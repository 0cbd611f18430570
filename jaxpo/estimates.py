"""Interval estimates over seeds: the interquartile mean and percentile-bootstrap intervals.

:func:`iqm` is what sweeps and searches rank members by (:mod:`jaxpo.sweep_table`,
:mod:`jaxpo.search`); :func:`iqm_interval` is its 95% interval in ``jaxpo tune``'s table
(``scipy.stats.bootstrap``; rliable's stratified bootstrap reduces to it for one task, and
rliable 1.2 does not import under pandas 3); :func:`bootstrap_interval` is the band of the
mean in learning-curve plots.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """The interquartile mean along ``axis``: the mean of the middle 50% of the values.

    ``scipy.stats.trim_mean(x, 0.25)``, the aggregate Agarwal et al. (2021) recommend over a
    few seeds; with fewer than 4 values nothing is trimmed (it is the mean). NaN gives NaN.
    """
    return np.asarray(stats.trim_mean(np.asarray(values, np.float64), 0.25, axis=axis))


def iqm_interval(values: np.ndarray, resamples: int = 2000) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the IQM of ``values [S]`` over the seeds.

    ``scipy.stats.bootstrap`` with a fixed generator (seed 0), so a table is reproducible.
    (rliable's stratified bootstrap reduces to this for one task.) ``(nan, nan)`` for fewer
    than 2 seeds or any NaN.
    """
    values = np.asarray(values, np.float64)
    if values.size < 2 or not np.isfinite(values).all():
        return float("nan"), float("nan")
    if np.ptp(values) == 0:  # every resample gives the same IQM
        return float(values[0]), float(values[0])
    ci = stats.bootstrap(
        (values,),
        iqm,
        method="percentile",
        n_resamples=resamples,
        rng=np.random.default_rng(0),
    ).confidence_interval
    return float(ci.low), float(ci.high)


def bootstrap_interval(
    x: np.ndarray,
    stat: Callable[..., np.ndarray] = np.mean,
    rng: np.random.Generator | None = None,
    resamples: int = 5000,
) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile-bootstrap interval of ``stat`` over the seeds (axis 0) of ``x [S, ...]``.

    Args:
        x: values ``[S, ...]``.
        stat: ``stat(samples, axis=1)`` reduces resampled seeds ``[R, S, ...]`` to ``[R, ...]``.
        rng: the resampling generator (``default_rng(0)`` if ``None``).
        resamples: number of bootstrap resamples.

    Returns:
        ``(lower, upper)``, each of shape ``x.shape[1:]``.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    idx = rng.integers(0, x.shape[0], size=(resamples, x.shape[0]))
    # resample in blocks: [R, S, ...] at once can take gigabytes for long runs
    blocks = np.array_split(idx, max(1, resamples // 256))
    stats = np.concatenate([stat(x[block], axis=1) for block in blocks])
    return np.percentile(stats, 2.5, axis=0), np.percentile(stats, 97.5, axis=0)
