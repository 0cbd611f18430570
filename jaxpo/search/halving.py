"""Successive halving: train every member a little, keep the best ``1/eta``, train them longer.

Rung ``r`` trains its members up to ``min_updates * eta**r`` updates (the last rung up to
``config.num_updates``), ranks them by :func:`~jaxpo.search.ranking.scores` and keeps the top
``max(1, n // eta)`` of its ``n`` (Hyperband's rule, Li et al. 2018), until one member is
left: ``M`` members give ``1 + floor(log_eta M)`` rungs when ``M`` is a power of ``eta``.
Survivors continue from their exact runner states, so a survivor's curve is the one a plain
run of it would give (Jamieson & Talwalkar 2016, "Non-stochastic best arm identification and
hyperparameter optimization"; Li et al. 2018, "Hyperband").

Every rung is trained in segments of ``min_updates`` updates by :func:`jaxpo.sweep.run`
with one chunk size and one device list, and each segment's members are padded (with copies
of the first) to fill a chunk, so the whole search compiles two programs: the initial states
(``updates=0``) and the segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from .. import sweep
from ..config import Config
from ..hparams import HParams
from ..train import ProgressHook
from ..validation import validate_config
from . import ranking
from .progress import SEARCH_PROGRESS


class HalvingResult(NamedTuple):
    """Outputs of :func:`halving` (``M`` members, ``S`` seeds, ``R`` rungs, ``U`` updates).

    Attributes:
        hparams: the batched hparams searched, scalar leaves ``[M]``.
        seeds: the integer seeds, ``[S]``.
        metrics: ``{name: [M, S, U]}``; NaN from the update after a member was dropped.
        stopped_at: ``[M]`` int, the rung after which a member was dropped (``R``: it finished).
        rung_updates: ``[R]`` int, the cumulative updates at the end of each rung.
        rung_scores: ``[R, M]`` float64, each member's score at the end of each rung (NaN
            for members not in it).
        best: the member index of the best finisher.
        survivors: ``[K]`` int, the members of the last rung (rows of ``state``).
        state: the survivors' final runner states, NumPy leaves ``[K, S, ...]``.
    """

    hparams: HParams
    seeds: np.ndarray
    metrics: dict[str, np.ndarray]
    stopped_at: np.ndarray
    rung_updates: np.ndarray
    rung_scores: np.ndarray
    best: int
    survivors: np.ndarray
    state: Any


def rung_sizes(num_members: int, eta: int) -> list[int]:
    """Members in each rung: ``num_members``, then ``max(1, n // eta)`` of the ``n``, down to 1."""
    sizes = [num_members]
    while sizes[-1] > 1:
        sizes.append(max(1, sizes[-1] // eta))
    return sizes


def select(scores: np.ndarray, eta: int) -> np.ndarray:
    """Positions of the ``max(1, n // eta)`` best of ``scores [n]``, best first.

    Higher is better, NaN last, ties to the lower position (:func:`~ranking.order`).
    """
    return ranking.order(scores)[: max(1, np.size(scores) // eta)]


def default_min_updates(num_updates: int, num_rungs: int, eta: int) -> int:
    """The largest divisor of ``num_updates`` at most ``num_updates / eta**(num_rungs - 1)``.

    So the rungs end at ``d, d * eta, ...`` and the last at ``num_updates`` (about
    ``d * eta**(num_rungs - 1)``, exactly when ``eta**(num_rungs - 1)`` divides it).
    """
    cap = max(1, num_updates // eta ** (num_rungs - 1))
    return max(d for d in range(1, cap + 1) if num_updates % d == 0)


def call_members(sizes: Sequence[int], num_seeds: int, width: int, num_devices: int) -> list[int]:
    """Members per segment call of each rung, padded so every call compiles alike.

    ``sweep.run`` keeps a call's layout (and so its compiled program) when its ``p * S``
    agents fill every device (it uses no more devices than agents) and more than one chunk
    less a device's share (a chunk never exceeds the agents rounded up to whole devices):
    ``p * S >= max(D, width - D + 1)``. Smaller rungs are padded up to that.

    Args:
        sizes: members of each rung.
        num_seeds: ``S``.
        width: the chunk size (a multiple of ``D``).
        num_devices: ``D``.
    """
    floor = -(-max(num_devices, width - num_devices + 1) // num_seeds)
    return [max(n, floor) for n in sizes]


def rung_updates(num_updates: int, num_rungs: int, eta: int, min_updates: int) -> np.ndarray:
    """Cumulative updates at the end of each rung: ``min_updates * eta**r``, then ``num_updates``.

    Raises:
        ValueError: naming the fix, if ``min_updates`` does not divide ``num_updates`` or a
            rung before the last would not end before ``num_updates``.
    """
    if not isinstance(min_updates, int | np.integer) or min_updates < 1:
        raise ValueError(f"min_updates must be a positive integer, got {min_updates!r}")
    ends = [min_updates * eta**r for r in range(num_rungs - 1)] + [num_updates]
    fits = [d for d in range(1, num_updates + 1) if num_updates % d == 0]
    fits = [d for d in fits if num_rungs < 2 or d * eta ** (num_rungs - 2) < num_updates]
    if num_updates % min_updates == 0 and min_updates in fits:
        return np.asarray(ends)
    rungs = f"{num_rungs} rungs (eta={eta})"
    if not fits:
        raise ValueError(
            f"config.num_updates={num_updates} is too few for {rungs}: it must exceed "
            f"{eta ** (num_rungs - 2)}; raise total_timesteps or eta, or search fewer members"
        )
    raise ValueError(
        f"min_updates={min_updates} does not fit config.num_updates={num_updates} with "
        f"{rungs}: it must divide num_updates (rungs run in segments of min_updates) and "
        f"end rung {num_rungs - 2} (at min_updates * eta**{num_rungs - 2}) before it; "
        f"use one of {fits[-8:]} or leave min_updates unset"
    )


def halving(
    config: Config,
    hparams: HParams,
    seeds: int | Sequence[int] = 1,
    *,
    eta: int = 3,
    min_updates: int | None = None,
    metric: str | None = None,
    chunk_size: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    progress: ProgressHook | bool | None = None,
    progress_interval: int | None = None,
) -> HalvingResult:
    """Successive halving over the members of ``hparams``, all rungs in one compiled program.

    Args:
        config: the static configuration; the last rung ends at ``config.num_updates``.
        hparams: batched hparams, ``[M]`` members.
        seeds: a count or explicit seeds, as for :func:`jaxpo.sweep.run`; a member's score
            is over all of them.
        eta: the cut per rung (an integer >= 2): rung ``r + 1`` keeps ``max(1, n // eta)``
            of rung ``r``'s ``n`` members and trains them ``eta`` times as long in total.
        min_updates: updates of the first rung, dividing ``config.num_updates`` (default
            :func:`default_min_updates`: the last rung ends near ``min_updates * eta**(R-1)``).
        metric: ranked on (default :func:`~jaxpo.search.ranking.default_metric`); with
            ``eval_return``, choose ``config.eval_interval`` dividing ``min_updates`` so
            every rung ends on a fresh evaluation (before the first one a score is NaN).
        chunk_size: agents per compiled call (default: the last rung's ``S`` agents,
            rounded up to whole devices). A rung of ``n`` members runs
            ``ceil(n * S / chunk_size)`` calls per segment, padded to whole chunks, so a
            chunk larger than a later rung makes it train padding; on an accelerator a
            larger chunk may still pay (fewer, wider calls).
        devices: devices to shard over (default: all, at most ``M * S``).
        progress: ``True`` shows one display of the whole search, counting every chunk's
            updates (exactly the display's total); a callable is called with that running
            count, as ``hook(count, count * config.batch_size, returns)``.
        progress_interval: updates between reports, as for :func:`jaxpo.sweep.run`.

    Returns:
        A :class:`HalvingResult`.

    Raises:
        ValueError: ``eta < 2``, a ``min_updates`` that does not fit ``config.num_updates``,
            or a ``metric`` the run does not record.
    """
    validate_config(config)
    if not isinstance(eta, int | np.integer) or eta < 2:
        raise ValueError(f"eta must be an integer >= 2 (the cut per rung), got {eta!r}")
    if not sweep.is_batched(hparams):
        hparams = sweep.stack(hparams, {}, 1)
    hparams = jax.tree.map(np.asarray, hparams)
    seed_list = sweep.seed_array(seeds)
    num, num_seeds, total = sweep.num_members(hparams), len(seed_list), config.num_updates
    sizes = rung_sizes(num, eta)
    if min_updates is None:
        min_updates = default_min_updates(total, len(sizes), eta)
    ends = rung_updates(total, len(sizes), eta, min_updates)
    device_list = sweep.devices_for(num * num_seeds, devices)
    if chunk_size is None:  # the last rung's agents: no rung trains padding beyond a chunk
        chunk_size = sizes[-1] * num_seeds
    width = sweep.plan(config, hparams, seed_list, chunk_size, device_list).chunk_size
    padded = call_members(sizes, num_seeds, width, len(device_list))
    steps = np.diff(ends, prepend=0) // min_updates
    # what one segment call adds to the progress count: its chunks x its updates
    chunk_updates = [-(-p * num_seeds // width) * min_updates for p in padded]
    run = {"chunk_size": width, "devices": device_list, "progress_interval": progress_interval}

    start = sweep.run(config, hparams, seed_list, updates=0, **run)
    metric = ranking.default_metric(start.metrics) if metric is None else metric
    ranking.check_metric(start.metrics, metric)
    metrics = {
        name: np.full((num, num_seeds, total), np.nan, np.result_type(x.dtype, np.float32))
        for name, x in start.metrics.items()
    }
    stopped_at = np.full(num, len(sizes))
    scores = np.full((len(sizes), num), np.nan)
    active, state, done = np.arange(num), start.state, 0
    total_count = sum(c * k for c, k in zip(chunk_updates, steps, strict=True))
    with SEARCH_PROGRESS.showing(config, progress, total_count) as counted:
        for r, (n, p) in enumerate(zip(sizes, padded, strict=True)):
            rows = np.concatenate([np.arange(n), np.zeros(p - n, int)])  # pad with row 0
            for _ in range(steps[r]):
                result = counted.run(
                    config,
                    jax.tree.map(lambda x, i=active[rows]: x[i], hparams),
                    seed_list,
                    state=jax.tree.map(lambda x, i=rows: x[i], state),
                    updates=min_updates,
                    **run,
                )
                state = jax.tree.map(lambda x, n=n: x[:n], result.state)
                for name, values in result.metrics.items():
                    metrics[name][active, :, done : done + min_updates] = values[:n]
                done += min_updates
            scores[r, active] = ranking.scores({metric: metrics[metric][active, :, :done]}, metric)
            if r + 1 < len(sizes):
                keep = np.sort(select(scores[r, active], eta))
                stopped_at[np.delete(active, keep)] = r
                active = active[keep]
                state = jax.tree.map(lambda x, k=keep: x[k], state)
    best = int(active[ranking.order(scores[-1, active])[0]])
    return HalvingResult(hparams, seed_list, metrics, stopped_at, ends, scores, best, active, state)
