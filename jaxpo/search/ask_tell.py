"""Batched ask/tell with Optuna: each generation's trials trained as one sweep.

Every generation asks the sampler for ``N`` trials, trains them × seeds with
:func:`jaxpo.sweep.run` and tells it each trial's :func:`~jaxpo.search.ranking.scores`
value. Hparams are traced and every generation has the same member count, seeds and
devices, so all generations run the same compiled program: a search of ``G`` generations
compiles once.

Optuna is optional (``pip install 'jaxpo[search]'``); it is imported when :func:`ask_tell`
runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from .. import sweep
from ..config import Config
from ..hparams import HParams
from ..train import ProgressHook, make_trainer
from . import ranking
from .progress import SEARCH_PROGRESS, call_updates

INSTALL_HINT = "ask_tell needs Optuna: pip install 'jaxpo[search]'"


class AskTellResult(NamedTuple):
    """Outputs of :func:`ask_tell`; trial ``i`` is ``study.trials[i]``.

    Attributes:
        hparams: every trial's hparams, batched, scalar leaves ``[G * N]``.
        seeds: the integer seeds, ``[S]``.
        scores: each trial's score (what Optuna was told), ``[G * N]`` float64; NaN for a
            trial told as failed.
        generation: each trial's generation, ``[G * N]`` int.
        metrics: ``{name: [G * N, S, U]}`` NumPy arrays, generations one after another.
        metric: the metric ranked on.
        best: index of the best trial (:func:`~jaxpo.search.ranking.order`: highest score,
            NaN last, ties to the earlier trial).
        study: the ``optuna.Study``.
    """

    hparams: HParams
    seeds: np.ndarray
    scores: np.ndarray
    generation: np.ndarray
    metrics: dict[str, np.ndarray]
    metric: str
    best: int
    study: Any

    def best_hparams(self) -> HParams:
        """The best trial's hparams, unbatched (for :func:`~jaxpo.search.write_best`)."""
        return sweep.member_hparams(self.hparams, self.best)

    @property
    def best_score(self) -> float:
        """The best trial's score."""
        return float(self.scores[self.best])


def metric_names(config: Config, hparams: HParams) -> list[str]:
    """The metrics a run of ``config`` reports, from a trace of one update (nothing compiled).

    Args:
        config: the static config.
        hparams: unbatched hparams.
    """
    trainer = make_trainer(config)

    def one_update(key: jax.Array) -> dict[str, jax.Array]:
        return trainer.run(trainer.init(key, hparams), hparams, 1).metrics

    return list(jax.eval_shape(one_update, jax.random.key(0)))


def _extremes(parsed: Mapping[str, tuple[str, tuple[Any, ...]]]) -> list[dict[str, float]]:
    """One member per bound (or choice) of each distribution, to check them before training."""
    return [
        {name: float(v)}
        for name, (kind, args) in parsed.items()
        for v in (args[0] if kind == "choice" else args)
    ]


def _suggest(trial: Any, name: str, kind: str, args: tuple[Any, ...]) -> float:
    """The trial's value of ``name`` from its distribution (see ``parse_distribution``)."""
    if kind == "choice":
        return float(trial.suggest_categorical(name, list(args[0])))
    low, high = args
    return float(trial.suggest_float(name, low, high, log=kind == "loguniform"))


def ask_tell(
    config: Config,
    hparams: HParams,
    seeds: int | Sequence[int] = 1,
    *,
    dists: Mapping[str, Any],
    trials_per_generation: int,
    generations: int,
    metric: str | None = None,
    seed: int = 0,
    sampler: Any = None,
    devices: Sequence[jax.Device] | None = None,
    chunk_size: int | None = None,
    progress: ProgressHook | bool | None = None,
) -> AskTellResult:
    """Searches ``dists`` with an Optuna sampler, one sweep of ``N`` trials per generation.

    Each generation asks ``N = trials_per_generation`` trials, maps each distribution to
    ``trial.suggest_float`` (``uniform``; ``loguniform``: ``log=True``) or
    ``trial.suggest_categorical`` (``choice``), trains the ``N`` members × seeds with
    :func:`jaxpo.sweep.run` (the same compiled program every generation) and tells each trial
    its :func:`~jaxpo.search.ranking.scores` value (direction maximize; a NaN score is told
    as ``TrialState.FAIL``).

    Args:
        config: the static config shared by every trial.
        hparams: the base hparams (unbatched); hparams not in ``dists`` keep their values.
        seeds: a count ``S`` (seeds ``0..S-1``) or explicit seeds, the same every generation.
        dists: ``{hparam: distribution}``, as :func:`jaxpo.sweep.random` takes them.
        trials_per_generation: ``N``, the members of each generation's sweep.
        generations: ``G``, sweeps run one after another.
        metric: the metric ranked on (default: :func:`~jaxpo.search.ranking.default_metric`).
        seed: the default sampler's seed.
        sampler: an ``optuna.samplers.BaseSampler`` (default:
            ``optuna.samplers.TPESampler(seed=seed)``).
        devices: devices to shard each sweep over (default: all).
        chunk_size: agents per compiled call (see :func:`jaxpo.sweep.run`).
        progress: ``True`` shows one display of the whole search, counting every chunk's
            updates of every generation; a callable is called with that running count
            ``1 .. total``, as ``hook(count, count * config.batch_size, returns)``.

    Returns:
        An :class:`AskTellResult` of all ``G * N`` trials.

    Raises:
        ImportError: Optuna is not installed (with the install command).
        ValueError: a count below 1, batched ``hparams``, a malformed distribution, an
            unknown or static name, a distribution reaching outside the hparam's range, or an
            unknown ``metric`` (all before anything is trained).
    """
    try:
        import optuna
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    for name, count in (
        ("trials_per_generation", trials_per_generation),
        ("generations", generations),
    ):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"{name} must be a positive integer, got {count!r}")
    if sweep.is_batched(hparams):
        raise ValueError("ask_tell takes unbatched base hparams (one member)")
    if not dists:
        raise ValueError("ask_tell needs at least one hparam distribution")
    parsed = sweep.check_distributions(dists)
    sweep.points(hparams, _extremes(parsed))  # names and ranges, before anything is trained
    if metric is not None:
        ranking.check_metric(metric_names(config, hparams), metric)
    if sampler is None:
        sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    batches, values, runs = [], [], []
    shape = sweep.stack(hparams, {}, trials_per_generation)  # a generation's members
    per_generation = call_updates(config, shape, seeds, config.num_updates, chunk_size, devices)
    with SEARCH_PROGRESS.showing(config, progress, generations * per_generation) as counted:
        for _ in range(generations):
            trials = [study.ask() for _ in range(trials_per_generation)]
            members = [{n: _suggest(t, n, *spec) for n, spec in parsed.items()} for t in trials]
            batch = sweep.points(hparams, members)
            result = counted.run(
                config,
                batch,
                seeds,
                chunk_size=chunk_size,
                devices=devices,
                keep_state=False,
            )
            told = ranking.scores(result.metrics, metric)
            for trial, value in zip(trials, told, strict=True):
                if np.isnan(value):
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(trial, float(value))
            batches.append(batch)
            values.append(told)
            runs.append(result)
    scores = np.concatenate(values)
    return AskTellResult(
        hparams=sweep.concat(*batches),
        seeds=runs[0].seeds,
        scores=scores,
        generation=np.repeat(np.arange(generations), trials_per_generation),
        metrics={k: np.concatenate([r.metrics[k] for r in runs]) for k in runs[0].metrics},
        metric=ranking.default_metric(runs[0].metrics) if metric is None else metric,
        best=int(ranking.order(scores)[0]),
        study=study,
    )
