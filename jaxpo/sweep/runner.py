"""Running a sweep: every member × seed trained by one compiled, sharded program, in chunks.

``run`` flattens members × seeds into ``M * S`` agents and trains them with ``vmap(train)``
(compiled once by :func:`make_sweep_fn`), sharded over every device and, optionally, in
chunks of a fixed size run one after another through the same program.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from ..config import Config
from ..hparams import HParams, validate_hparams
from ..progress import default_interval
from ..train import ProgressHook, RunnerState, TrainResult, make_trainer
from ..validation import validate_config
from .devices import AXIS, agent_inputs, devices_for, make_mesh, place, plan, seed_array, to_host
from .hooks import DISPLAY_HOOK, MergedHook
from .members import is_batched, stack


class SweepResult(NamedTuple):
    """Outputs of :func:`run`.

    Attributes:
        hparams: the batched hparams, scalar leaves ``[M]``.
        seeds: the integer seeds, ``[S]``.
        metrics: flat dict of ``[M, S, num_updates]`` NumPy arrays.
        state: the final runner states, NumPy leaves ``[M, S, ...]`` (PRNG keys as their
            key data), or ``None`` when ``run`` was asked not to keep them.
    """

    hparams: HParams
    seeds: np.ndarray
    metrics: dict[str, np.ndarray]
    state: Any


@functools.lru_cache(maxsize=8)
def make_sweep_fn(
    config: Config,
    progress: ProgressHook | None = None,
    mesh: Mesh | None = None,
    updates: int | None = None,
    resume: bool = False,
) -> tuple[Any, MergedHook | None]:
    """The compiled sweep of ``config`` over ``mesh`` and its merged progress hook.

    The function is ``f(key_data [C, ...], hparams [C], report_every) -> TrainResult [C, ...]``
    for a chunk of ``C`` agents (a multiple of the mesh size), or with ``resume``
    ``f(state [C, ...], hparams [C], report_every)``, continuing runner states (keys as key
    data); ``report_every`` (an int32 scalar, 0: never) is traced, so the progress cadence
    does not recompile:
    ``vmap`` of :func:`~jaxpo.train.make_trainer`'s ``run`` for ``updates`` updates (default
    ``config.num_updates``) inside a ``shard_map`` over :data:`AXIS`, so each device trains
    its own agents with no communication between agents (a NaN in one cannot reach another).
    Cached on the arguments: new hparam values of the same shapes reuse the program.
    """
    mesh = mesh if mesh is not None else make_mesh()
    merged = None
    if progress is not None:
        merged = MergedHook(progress, len(mesh.local_devices))
    trainer = make_trainer(config, merged)
    updates = config.num_updates if updates is None else updates

    def agents(start: Any, hparams: HParams, report_every: jax.Array) -> TrainResult:
        if resume:
            state = start.replace(key=jax.random.wrap_key_data(start.key))
            first = state.update[0]  # every agent of a sweep is at the same update
        else:
            state = jax.vmap(trainer.init)(jax.random.wrap_key_data(start), hparams)
            first = 0
        run = jax.vmap(trainer.run, in_axes=(0, 0, None, None, None))
        return run(state, hparams, updates, report_every, first)

    spec = PartitionSpec(AXIS)
    # Each device runs whole agents, so there is nothing for shard_map's check of which
    # values vary across devices to verify; train's carries mix constants with per-agent
    # values that the check would reject.
    return jax.jit(
        jax.shard_map(
            agents,
            mesh=mesh,
            in_specs=(spec, spec, PartitionSpec()),
            out_specs=spec,
            check_vma=False,
        )
    ), merged


def run(
    config: Config,
    hparams: HParams,
    seeds: int | Sequence[int] = 1,
    progress: ProgressHook | bool | None = None,
    *,
    chunk_size: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    keep_state: bool = True,
    state: RunnerState | None = None,
    updates: int | None = None,
    progress_interval: int | None = None,
) -> SweepResult:
    """Trains every member × seed: one compiled program, sharded over devices, in chunks.

    The ``M * S`` agents are flattened, padded to whole chunks and run chunk after chunk
    through the same compiled program; inside a chunk they are split evenly over the
    devices (of every process, after ``jax.distributed.initialize``: each process trains
    the agents of its own devices and the results are gathered to all of them).

    Args:
        config: the static configuration shared by all members.
        hparams: batched hparams (from :func:`~jaxpo.sweep.grid`,
            :func:`~jaxpo.sweep.random` or :func:`~jaxpo.sweep.points`), or unbatched for a
            single member.
        seeds: a count ``N`` (seeds ``0..N-1``) or explicit integer seeds. Member ``m``
            with seed ``s`` uses ``jax.random.key(s)``, exactly like a single run.
        progress: ``True`` shows a :class:`~jaxpo.progress.ProgressDisplay` of the whole
            run; a callable is a host progress hook (see :func:`jaxpo.make_train`), called once
            per report for the whole sweep, in each process for its own agents (see
            :class:`~jaxpo.sweep.hooks.MergedHook`); ``None`` or ``False`` compiles no hook in.
        chunk_size: agents per compiled call, to bound device memory (rounded up to a
            multiple of the device count). ``None``: all agents at once.
        devices: devices to shard over (default: all).
        keep_state: return the final runner states (``False`` keeps only metrics).
        state: runner states ``[M, S, ...]`` to continue from (a previous result's
            ``state`` or a checkpoint's), instead of fresh ones from the seeds' keys.
        updates: updates to run (default: up to ``config.num_updates``, from where
            ``state`` stopped); with ``state``, running ``k`` updates and then the rest from
            the returned state is the same computation as one run.
        progress_interval: updates between progress reports (and one at the end); ``None``:
            about 20 reports per run; 0: none. Traced: changing it does not recompile.

    Returns:
        A :class:`SweepResult` with NumPy metrics ``[M, S, num_updates]``.
    """
    validate_config(config)
    start = 0 if state is None else int(np.ravel(state.update)[0])
    updates = config.num_updates - start if updates is None else updates
    if updates < 0:
        raise ValueError(f"updates must be >= 0, got {updates}")
    if progress_interval is None:
        progress_interval = default_interval(config.num_updates)
    if progress_interval < 0:
        raise ValueError(f"progress_interval must be >= 0, got {progress_interval}")
    if progress is True:
        chunks = plan(config, hparams, seeds, chunk_size, devices).num_chunks
        with DISPLAY_HOOK.showing(config, start + chunks * updates) as hook:
            return run(
                config,
                hparams,
                seeds,
                hook,
                chunk_size=chunk_size,
                devices=devices,
                keep_state=keep_state,
                state=state,
                updates=updates,
                progress_interval=progress_interval,
            )
    progress = None if progress is False else progress
    seed_list = seed_array(seeds)
    validate_hparams(hparams)
    if not is_batched(hparams):
        hparams = stack(hparams, {}, 1)
    layout = plan(config, hparams, seed_list, chunk_size, devices)
    mesh = make_mesh(devices_for(layout.num_agents, devices))
    fn_updates = None if updates == config.num_updates else updates  # one cache entry
    fn, merged = make_sweep_fn(config, progress, mesh, fn_updates, state is not None)
    if merged is not None:
        merged.reset(start, updates)
    key_data, per_agent = agent_inputs(hparams, seed_list)
    if state is not None:
        key_data = jax.tree.map(lambda x: np.reshape(x, (-1,) + np.shape(x)[2:]), state)
    padded = layout.chunk_size * layout.num_chunks
    index = np.concatenate(
        [np.arange(layout.num_agents), np.zeros(padded - layout.num_agents, int)]
    )
    outputs = []
    for c in range(layout.num_chunks):
        take = index[c * layout.chunk_size : (c + 1) * layout.chunk_size]
        chunk = jax.tree.map(lambda x, take=take: x[take], (key_data, per_agent))
        result = fn(*place(chunk, mesh), np.int32(progress_interval))
        outputs.append(to_host(result if keep_state else result.metrics))
    joined = jax.tree.map(lambda *xs: np.concatenate(xs)[: layout.num_agents], *outputs)
    shaped = jax.tree.map(
        lambda x: x.reshape((layout.num_members, layout.num_seeds) + x.shape[1:]), joined
    )
    metrics, state = (shaped.metrics, shaped.state) if keep_state else (shaped, None)
    return SweepResult(hparams, seed_list, metrics, state)
