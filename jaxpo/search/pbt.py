"""Population-based training (PBT) of a sweep's agents, in one compiled program.

PBT is Jaderberg et al., 2017, "Population Based Training of Neural Networks"
(arXiv:1711.09846): truncation selection (exploit), then perturbation or resampling of
hparams (explore), between segments of training.

The population is every agent of a sweep: member ``m`` with seed ``seeds[s]`` is agent
``a = m * S + s`` (member-major), ``A = M * S`` agents. They start from the states
``sweep.run(..., updates=0)`` gives, laid out as ``A`` members of one seed (states
``[A, 1, ...]``, hparams ``[A]``), and train ``interval`` updates at a time through
``sweep.run(config, hparams, seeds=[0], state=..., updates=interval)``: since hparams are
traced and the agent count, chunk size, mesh and ``interval`` stay the same, every generation
reuses one compiled program. After each generation but the last:

* score: each agent's ``metric`` at its last update (``eval_return`` when the run evaluates,
  else ``episode_return``; :mod:`~jaxpo.search.ranking`); agents that NaN safety froze
  (``failed``) rank below every healthy one;
* exploit (:func:`~jaxpo.search.exploit.choose_pairs`,
  :func:`~jaxpo.search.exploit.copy_agents`): the bottom ``quantile``, and every failed agent,
  copy the learning state (parameters, update-rule state, normaliser statistics, latest
  returns and evaluation, NaN-safety counters) and hparams of an agent drawn from the top
  ``quantile``; a copier keeps its own environments, observations, recurrent states, PRNG key
  and update counter (its current observations, normalised with its previous statistics, are
  read as they are by the first rollout step after the copy; the next observations use the
  copied statistics);
* explore (:func:`~jaxpo.search.exploit.explore`): each hparam named in ``explore`` of a copier
  is redrawn from its distribution with probability ``resample_probability``, else
  multiplied by a factor from ``factors`` (a ``choice`` moves to a neighbouring value),
  clipped into the distribution's range and the hparam's bounds.

Every random choice comes from ``numpy.random.default_rng(seed)``. With ``directory``, each
generation ends with a checkpoint (:func:`jaxpo.checkpoint.save` of the states ``[A, 1, ...]``,
hparams ``[A]`` and metrics, beside ``pbt.json``: the lineage, the generator's state and the
settings, sealed with a digest); ``pbt`` on that directory resumes, and a run interrupted and
resumed equals an uninterrupted one bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from .. import sweep
from ..config import Config
from ..hparams import HParams
from ..train import ProgressHook, RunnerState
from .exploit import check_explore, choose_pairs, copy_agents, copy_hparams, rank
from .exploit import explore as explore_hparams
from .lineage import Lineage, empty, from_record, grow, record, restore, save, settings
from .progress import SEARCH_PROGRESS, call_updates
from .ranking import TRAIN_METRIC, check_metric, default_metric, scores


class PBTResult(NamedTuple):
    """Outputs of :func:`pbt`.

    Attributes:
        hparams: each agent's hparams at the end, leaves ``[A]``.
        seeds: the seeds ``[S]`` the agents started from (agent ``a``: seed ``seeds[a % S]``).
        metrics: ``{name: [A, 1, U]}`` NumPy, ``U`` the updates done; row ``a`` is agent
            slot ``a``'s history (a copy continues its source's learning in the copier's row).
        lineage: the :class:`Lineage`.
        state: the final runner states, NumPy leaves ``[A, 1, ...]`` (keys as key data); after
            an early stop, those the next generation starts from.
        best: the best agent of the last generation done (:func:`~jaxpo.search.exploit.rank`);
            its hparams are ``sweep.member_hparams(result.hparams, result.best)``.
        metric: the metric ranked on.
        generations: generations done.
        finished: whether all ``config.num_updates // interval`` generations are done.
    """

    hparams: HParams
    seeds: np.ndarray
    metrics: dict[str, np.ndarray]
    lineage: Lineage
    state: RunnerState
    best: int
    metric: str
    generations: int
    finished: bool


def pbt(
    config: Config,
    hparams: HParams,
    seeds: int | Sequence[int] = 1,
    *,
    interval: int,
    explore: Mapping[str, Any],
    quantile: float = 0.25,
    resample_probability: float = 0.25,
    factors: Sequence[float] = (0.8, 1.25),
    metric: str | None = None,
    seed: int = 0,
    directory: str | Path | None = None,
    stop_after: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    chunk_size: int | None = None,
    progress: ProgressHook | bool | None = None,
) -> PBTResult:
    """Population-based training of every member × seed of ``hparams`` (see the module).

    Example::

        lr = {"learning_rate": ("loguniform", 1e-4, 1e-2)}
        start = sweep.random(hp, jax.random.key(0), 8, **lr)
        result = pbt(config, start, seeds=2, interval=10, explore=lr)  # 16 agents

    Args:
        config: the static config; ``config.num_updates`` must be a multiple of ``interval``.
        hparams: the starting members ``[M]`` (e.g. from :func:`jaxpo.sweep.random`), or
            unbatched for one member.
        seeds: a count or explicit seeds, as for :func:`jaxpo.sweep.run`.
        interval: updates per generation.
        explore: ``{name: distribution}`` of the hparams to explore, as
            :func:`jaxpo.sweep.random` takes them (``("loguniform", lo, hi)``,
            ``"uniform:lo:hi"``, ``("choice", [..])``).
        quantile: the fraction of agents replaced, and copied from, each generation, in
            ``(0, 0.5]`` (at least one agent of a population of two or more).
        resample_probability: chance that an explored hparam is redrawn, not perturbed.
        factors: the multipliers of a perturbation (positive).
        metric: the metric ranked on (default: ``eval_return`` if the run evaluates, else
            ``episode_return``).
        seed: seeds the NumPy generator of every exploit and explore choice.
        directory: checkpoint after every generation here; a directory holding an
            unfinished PBT run resumes it (with the same arguments; others raise).
        stop_after: stop once this many generations (all calls together) are done;
            ``None``: all of them. The saved run can be resumed to the end.
        devices: devices to shard over (default: all).
        chunk_size: agents per compiled call, as for :func:`jaxpo.sweep.run`.
        progress: ``True`` shows one display of the generations this call runs (a resumed
            run counts only those still to run), counting every chunk's updates; a callable
            is called with that running count ``1 .. total``, as
            ``hook(count, count * config.batch_size, returns)``.

    Returns:
        A :class:`PBTResult`.

    Raises:
        ValueError: bad settings (an unknown ``metric`` is found before any update is
            trained), or a ``directory`` holding another run.
    """
    if not isinstance(interval, int | np.integer) or interval < 1:
        raise ValueError(f"interval must be a positive integer, got {interval!r}")
    if config.num_updates % interval:
        raise ValueError(
            f"config.num_updates={config.num_updates} is not a multiple of interval={interval}; "
            "set total_timesteps to a multiple of interval * num_envs * num_steps"
        )
    if not 0 < quantile <= 0.5:
        raise ValueError(f"quantile must be in (0, 0.5], got {quantile}")
    if not 0 <= resample_probability <= 1:
        raise ValueError(f"resample_probability must be in [0, 1], got {resample_probability}")
    factors = tuple(float(f) for f in factors)
    if not factors or not all(np.isfinite(f) and f > 0 for f in factors):
        raise ValueError(f"factors must be positive finite numbers, got {factors}")
    if not explore:
        raise ValueError("pbt needs at least one hparam to explore")
    if stop_after is not None and (isinstance(stop_after, bool) or int(stop_after) < 1):
        raise ValueError(f"stop_after must be a positive integer or None, got {stop_after!r}")
    dists = sweep.check_distributions(explore)
    check_explore(type(hparams), dists)
    if not sweep.is_batched(hparams):
        hparams = sweep.stack(hparams, {}, 1)
    seed_list = sweep.seed_array(seeds)
    total = config.num_updates // interval
    stop = total if stop_after is None else min(int(stop_after), total)
    agreed = settings(
        config,
        hparams,
        seed_list,
        **dict(interval=int(interval), explore=dists, quantile=quantile, factors=factors),
        **dict(resample_probability=resample_probability, metric=metric, seed=seed),
    )
    directory = None if directory is None else Path(directory).absolute()
    found = None if directory is None else restore(directory, config, agreed)
    if found is None:
        first = sweep.run(
            config, hparams, seed_list, chunk_size=chunk_size, devices=devices, updates=0
        )
        if metric is not None:  # no update run, but every metric is named
            check_metric(first.metrics, metric)
        agents = sweep.num_members(hparams) * len(seed_list)
        state = jax.tree.map(lambda x: x.reshape((agents, 1) + x.shape[2:]), first.state)
        agent_hparams = sweep.agent_inputs(hparams, seed_list)[1]
        rng = np.random.default_rng(seed)
        lineage = empty(list(sweep.columns(hparams)), agents)
        metrics: dict[str, np.ndarray] = {}
    else:
        saved_record, saved = found
        state, agent_hparams, metrics = saved.state, saved.hparams, saved.metrics
        rng = np.random.default_rng()
        rng.bit_generator.state = saved_record["rng"]
        lineage, metric = from_record(saved_record), saved_record["metric"]
    # the generations still to run, each a call of ``interval`` updates
    per_generation = call_updates(config, agent_hparams, [0], interval, chunk_size, devices)
    to_run = max(0, stop - len(lineage.copies))
    with SEARCH_PROGRESS.showing(config, progress, to_run * per_generation) as counted:
        for generation in range(len(lineage.copies), stop):
            out = counted.run(
                config,
                agent_hparams,
                [0],
                chunk_size=chunk_size,
                devices=devices,
                state=state,
                updates=interval,
            )
            metrics = {
                k: np.concatenate([metrics[k], v], -1) if k in metrics else v
                for k, v in out.metrics.items()
            }
            metric = default_metric(out.metrics) if metric is None else metric
            score, failed = scores(out.metrics, metric), np.asarray(out.state.failed)[:, 0]
            lineage = grow(lineage, agent_hparams, score, failed)
            state, pairs = out.state, []
            if generation + 1 < total:
                pairs = choose_pairs(score, failed, quantile, rng)
                state = copy_agents(state, pairs)
                agent_hparams = copy_hparams(agent_hparams, pairs)
                copiers = [c for c, _ in pairs]
                agent_hparams = explore_hparams(
                    agent_hparams, copiers, dists, rng, resample_probability, factors
                )
            lineage.copies.append(pairs)
            if directory is not None:
                sealed = record(agreed, metric, rng, lineage)
                save(directory, config, sealed, agent_hparams, state, metrics)
    done = len(lineage.copies)
    best = int(rank(lineage.scores[-1], lineage.failed[-1])[0]) if done else 0
    metric = TRAIN_METRIC if metric is None else metric  # no generation done
    return PBTResult(
        agent_hparams, seed_list, metrics, lineage, state, best, metric, done, done == total
    )
