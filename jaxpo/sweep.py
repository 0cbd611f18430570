"""Sweeps: many agents (hparam members × seeds) in one compiled program.

``grid``, ``random`` and ``points`` turn one ``HParams`` into a batched one whose scalar leaves
have a leading member axis ``[M]``. ``run`` flattens members × seeds into ``M * S`` agents and
trains them with ``vmap(train)`` in one compiled program, sharded over every device (of every
process after ``jax.distributed.initialize``) and, optionally, in chunks of a fixed size run
one after another through the same program. Only traced hparams can be swept: a static config
field (a shape or a loop count) is refused with a clear error rather than compiled per value.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .config import Config, field_names
from .hparams import HParams, scalar_names, validate_hparams
from .progress import ProgressDisplay, default_interval
from .train import ProgressHook, RunnerState, TrainResult, make_trainer

DISTRIBUTIONS = ("uniform", "loguniform", "choice")


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


def _check_names(hparams: HParams, names: Sequence[str]) -> None:
    known = scalar_names(type(hparams))
    for name in names:
        if name in known:
            continue
        if name in field_names(Config):
            raise ValueError(
                f"{name!r} is a static config field (it changes shapes or control flow) and "
                f"cannot be swept in one compiled program; sweepable hparams: {known}"
            )
        raise ValueError(f"unknown hparam {name!r} for {type(hparams).__name__}; known: {known}")


def is_batched(hparams: HParams) -> bool:
    """Whether the scalar hparams carry a member axis."""
    return any(np.ndim(getattr(hparams, n)) > 0 for n in scalar_names(type(hparams)))


def num_members(hparams: HParams) -> int:
    """Size of the member axis of batched hparams (1 if unbatched)."""
    shapes = {np.shape(getattr(hparams, n)) for n in scalar_names(type(hparams))}
    leading = {s[0] for s in shapes if s}
    if len(leading) > 1:
        raise ValueError(f"batched hparams disagree on the member axis: {sorted(leading)}")
    return leading.pop() if leading else 1


def stack(hparams: HParams, columns: dict[str, Sequence[float]], size: int) -> HParams:
    """Broadcasts ``hparams`` to ``size`` members with ``columns`` as per-member values."""

    def broadcast(x: Any) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.broadcast_to(x, (size,) + x.shape)

    base = jax.tree.map(broadcast, hparams)
    values = {k: jnp.asarray(np.asarray(v, np.float32)) for k, v in columns.items()}
    return base.replace(**values)


def grid(hparams: HParams, **values: Sequence[float]) -> HParams:
    """The cartesian product of the given values; other hparams are broadcast.

    Example: ``grid(hp, learning_rate=[1e-4, 3e-4], clip_eps=[0.1, 0.2])`` has 4 members,
    ordered with the last name varying fastest.
    """
    if not values:
        raise ValueError("grid needs at least one hparam with a list of values")
    _check_names(hparams, list(values))
    for name, vals in values.items():
        if len(vals) == 0:
            raise ValueError(f"grid over {name!r} is empty; give at least one value")
    product = list(itertools.product(*values.values()))
    columns = {name: [p[i] for p in product] for i, name in enumerate(values)}
    batched = stack(hparams, columns, len(product))
    validate_hparams(batched)
    return batched


def parse_distribution(spec: Any) -> tuple[str, tuple[Any, ...]]:
    """Checks and normalises a distribution spec.

    Accepts ``("loguniform", lo, hi)``, ``("uniform", lo, hi)``, ``("choice", [..])`` or
    the CLI string forms ``"loguniform:1e-5:1e-2"`` / ``"choice:0.1,0.2"``.
    """
    if isinstance(spec, str):
        kind, _, rest = spec.partition(":")
        try:
            if kind == "choice":
                spec = (kind, [float(v) for v in rest.split(",") if v])
            else:
                spec = (kind, *[float(v) for v in rest.split(":") if v])
        except ValueError as err:
            raise ValueError(f"malformed distribution {spec!r}: {err}") from None
    if not isinstance(spec, tuple | list) or not spec:
        raise ValueError(f"malformed distribution {spec!r}; e.g. ('loguniform', 1e-5, 1e-2)")
    kind, args = spec[0], tuple(spec[1:])
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {kind!r}; use one of {DISTRIBUTIONS}")
    if kind == "choice":
        if len(args) != 1 or len(args[0]) == 0:
            raise ValueError(f"choice needs one non-empty list of values, got {spec!r}")
        return kind, (tuple(float(v) for v in args[0]),)
    if len(args) != 2 or not all(math.isfinite(float(a)) for a in args):
        raise ValueError(f"{kind} needs finite (low, high), got {spec!r}")
    low, high = float(args[0]), float(args[1])
    if not low < high:
        raise ValueError(f"{kind} needs low < high, got {spec!r}")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"loguniform needs low > 0, got {spec!r}")
    return kind, (low, high)


def random(hparams: HParams, key: jax.Array, num: int, **dists: Any) -> HParams:
    """``num`` members with each named hparam drawn independently from its distribution.

    Distributions: ``("uniform", lo, hi)``, ``("loguniform", lo, hi)``, ``("choice", values)``
    (or the strings ``"uniform:lo:hi"``, ``"loguniform:lo:hi"``, ``"choice:a,b,c"``).
    """
    if num < 1:
        raise ValueError(f"random search needs num >= 1, got {num}")
    if not dists:
        raise ValueError("random search needs at least one hparam distribution")
    _check_names(hparams, list(dists))
    columns = {}
    for name, k in zip(dists, jax.random.split(key, len(dists)), strict=True):
        kind, args = parse_distribution(dists[name])
        if kind == "choice":
            idx = np.asarray(jax.random.randint(k, (num,), 0, len(args[0])))
            columns[name] = np.asarray(args[0], np.float64)[idx]
        else:
            u = np.asarray(jax.random.uniform(k, (num,)), np.float64)
            low, high = args
            if kind == "loguniform":
                low, high = math.log(low), math.log(high)
            draw = low + u * (high - low)
            columns[name] = np.exp(draw) if kind == "loguniform" else draw
    batched = stack(hparams, columns, num)
    validate_hparams(batched)
    return batched


def points(hparams: HParams, members: Sequence[Mapping[str, float]]) -> HParams:
    """An explicit list of members, one per mapping; names a mapping omits keep ``hparams``.

    Example: ``points(hp, [{"learning_rate": 1e-3}, {"learning_rate": 3e-4, "clip_eps": 0.1}])``
    has 2 members.
    """
    if len(members) == 0:
        raise ValueError("points needs at least one member (a mapping of hparam values)")
    names = list(dict.fromkeys(name for member in members for name in member))
    _check_names(hparams, names)
    columns = {
        name: [float(member.get(name, getattr(hparams, name))) for member in members]
        for name in names
    }
    batched = stack(hparams, columns, len(members))
    validate_hparams(batched)
    return batched


def concat(*batches: HParams) -> HParams:
    """Joins batched hparams along the member axis (an explicit list of members)."""
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *batches)


#: name of the mesh axis the flattened (member, seed) agents are laid out over.
AXIS = "agents"


class SweepPlan(NamedTuple):
    """How a sweep's agents are laid out over devices and compiled calls.

    Attributes:
        num_members: hparam members ``M``.
        num_seeds: seeds ``S``.
        num_agents: ``M * S``, one ``train`` each.
        num_devices: devices of the mesh (all processes together).
        chunk_size: agents per compiled call, a multiple of ``num_devices``.
        num_chunks: compiled calls, run one after another; the last one is padded with
            copies of agent 0 to ``chunk_size``.
        total_updates: ``num_chunks * config.num_updates``, what a progress display counts.
    """

    num_members: int
    num_seeds: int
    num_agents: int
    num_devices: int
    chunk_size: int
    num_chunks: int
    total_updates: int


def seed_array(seeds: int | Sequence[int]) -> np.ndarray:
    """Seeds ``0..N-1`` for a count ``N``, else the given integer seeds, ``[S]``."""
    seed_list = np.arange(seeds) if isinstance(seeds, int | np.integer) else np.asarray(list(seeds))
    if seed_list.size == 0:
        raise ValueError("seeds must name at least one seed")
    if not np.issubdtype(seed_list.dtype, np.integer) or seed_list.min() < 0:
        raise ValueError(f"seeds must be non-negative integers, got {seed_list.tolist()}")
    return seed_list


def plan(
    config: Config,
    hparams: HParams,
    seeds: int | Sequence[int] = 1,
    chunk_size: int | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> SweepPlan:
    """Lays ``num_members(hparams) * len(seeds)`` agents over ``devices`` and chunks.

    Args:
        config: the static configuration (for the number of updates).
        hparams: batched or unbatched hparams.
        seeds: a count or explicit seeds, as for :func:`run`.
        chunk_size: agents per compiled call; ``None`` runs all agents in one call. It is
            rounded up to a multiple of the number of devices, so every device gets an equal
            share.
        devices: the devices to shard over; all devices of all processes by default (in a
            single process, no more devices than agents, so nothing is padded for them).

    Raises:
        ValueError: a chunk size that is not a positive integer.
    """
    members, num_seeds = num_members(hparams), len(seed_array(seeds))
    agents = members * num_seeds
    num_devices = len(devices_for(agents, devices))
    whole = -(-agents // num_devices) * num_devices
    if chunk_size is not None and (not isinstance(chunk_size, int | np.integer) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    chunk = whole if chunk_size is None else -(-int(chunk_size) // num_devices) * num_devices
    chunk = min(chunk, whole)
    chunks = -(-agents // chunk)
    return SweepPlan(
        members, num_seeds, agents, num_devices, chunk, chunks, chunks * config.num_updates
    )


def devices_for(agents: int, devices: Sequence[jax.Device] | None = None) -> list[jax.Device]:
    """The devices a sweep of ``agents`` runs on.

    ``devices`` (default: all of every process); in a single process no more of them than
    there are agents, so a small sweep is not padded to fill idle devices.
    """
    chosen = list(devices) if devices is not None else jax.devices()
    if jax.process_count() == 1:
        chosen = chosen[: max(agents, 1)]
    return chosen


def use_host_devices(count: int | None = None) -> bool:
    """Splits the CPU into ``count`` JAX devices (default: one per core).

    XLA:CPU runs one small program on about one core; a sweep sharded over one host device
    per core uses them all (see ``benchmarks/sweep_scaling.py``). Accelerators are
    unaffected. It only works before JAX has run anything, and it leaves an explicit
    ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS`` alone.

    Returns:
        Whether the setting was applied (``False`` once JAX's backends are running, unless
        the count asked for is the one they already have).
    """
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return False
    count = (os.cpu_count() or 1) if count is None else count
    if count < 1:
        raise ValueError(f"host device count must be >= 1, got {count}")
    try:
        jax.config.update("jax_num_cpu_devices", int(count))
    except RuntimeError:  # backends already initialised: keep what they have
        return False
    return True


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh (axis :data:`AXIS`) over ``devices`` (default: every device)."""
    return Mesh(np.asarray(list(devices) if devices is not None else jax.devices()), (AXIS,))


class MergedHook:
    """Turns the per-device progress calls of a sharded sweep into one call per report.

    Each device calls the hook with its own agents' returns; this waits until all
    ``shards`` local devices reported an update, then calls ``hook`` once with every
    local agent's return (order across devices unspecified; a partly filled last chunk's
    padding, copies of agent 0, included). Updates of later chunks continue the count: a run
    of ``updates`` updates from update ``start`` reports chunk ``c``'s update ``start + u`` as
    ``start + c * updates + u``. With several processes, each one's hook sees its own
    devices' agents.
    """

    def __init__(self, hook: ProgressHook, shards: int) -> None:
        self.hook, self.shards = hook, shards
        self._lock = threading.Lock()
        self.reset(0, 1)

    def reset(self, start: int, updates: int) -> None:
        """Forgets partial reports; counts a run of ``updates`` updates from ``start``."""
        self._pending: dict[int, list[np.ndarray]] = {}
        self._offset, self._last = 0, start + updates
        self._updates = updates

    def __call__(self, update: int, env_steps: int, returns: np.ndarray) -> None:
        """Records one device's report of ``update``; forwards once all shards reported."""
        with self._lock:
            parts = self._pending.setdefault(update, [])
            parts.append(np.ravel(returns))
            if len(parts) < self.shards:
                return
            del self._pending[update]
            done = self._offset + update
            if update == self._last:
                self._offset += self._updates
            self.hook(done, env_steps // update * done, np.concatenate(parts))


class DisplayHook:
    """The progress hook of ``run(progress=True)``: forwards each report to ``display``.

    One instance, :data:`DISPLAY_HOOK`, serves every such run (its ``display`` set for the
    run's duration), so :func:`make_sweep_fn`'s cache keeps one compiled program per config
    rather than compiling again for each new display.
    """

    def __init__(self) -> None:
        self.display: ProgressDisplay | None = None

    @contextlib.contextmanager
    def showing(self, config: Config, total_updates: int) -> Iterator[DisplayHook]:
        """Forwards to a new display of ``total_updates`` updates (label ``config.algo``)."""
        with ProgressDisplay(total_updates, config.batch_size, label=config.algo) as display:
            self.display = display
            try:
                yield self
            finally:
                self.display = None

    def __call__(self, update: int, env_steps: int, returns: np.ndarray) -> None:
        """Reports to the current display, if any."""
        if self.display is not None:
            self.display(update, env_steps, returns)


#: the progress hook of every ``run(progress=True)``.
DISPLAY_HOOK = DisplayHook()


@functools.lru_cache(maxsize=8)
def make_sweep_fn(
    config: Config,
    progress: ProgressHook | None = None,
    mesh: Mesh | None = None,
    updates: int | None = None,
    resume: bool = False,
) -> tuple[Any, MergedHook | None]:
    """The compiled sweep of ``config`` over ``mesh`` and its merged progress hook.

    The function is ``f(key_data [C, ...], hparams [C]) -> TrainResult [C, ...]`` for a
    chunk of ``C`` agents (a multiple of the mesh size), or with ``resume``
    ``f(state [C, ...], hparams [C])``, continuing runner states (keys as key data):
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

    def agents(start: Any, hparams: HParams) -> TrainResult:
        if resume:
            state = start.replace(key=jax.random.wrap_key_data(start.key))
        else:
            state = jax.vmap(trainer.init)(jax.random.wrap_key_data(start), hparams)
        return jax.vmap(trainer.run, in_axes=(0, 0, None))(state, hparams, updates)

    spec = PartitionSpec(AXIS)
    # Each device runs whole agents, so there is nothing for shard_map's check of which
    # values vary across devices to verify; train's carries mix constants with per-agent
    # values that the check would reject.
    return jax.jit(
        jax.shard_map(agents, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)
    ), merged


def agent_inputs(hparams: HParams, seeds: np.ndarray) -> tuple[np.ndarray, HParams]:
    """Flattens members × seeds into agents: agent ``m * S + s`` is member ``m``, seed ``s``.

    Returns:
        ``(key_data [M * S, ...], hparams [M * S])`` as host arrays; agent ``a``'s key is
        ``jax.random.key(seeds[a % S])``, exactly like a single run.
    """
    members = num_members(hparams)
    key_data = np.asarray(
        jax.vmap(jax.random.key_data)(jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32)))
    )
    per_agent = jax.tree.map(lambda x: np.repeat(np.asarray(x), len(seeds), axis=0), hparams)
    return np.tile(key_data, (members,) + (1,) * (key_data.ndim - 1)), per_agent


def place(tree: Any, mesh: Mesh) -> Any:
    """Host arrays with a leading agent axis as global arrays sharded over ``mesh``.

    Every process passes the same full arrays and keeps only the shards of its own devices,
    so this works unchanged across hosts after ``jax.distributed.initialize``.
    """
    sharding = NamedSharding(mesh, PartitionSpec(AXIS))

    def put(x: np.ndarray) -> jax.Array:
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree)


def to_host(tree: Any) -> Any:
    """Global arrays to NumPy, gathered from every process (keys become their key data)."""

    def raw(x: jax.Array) -> jax.Array:
        return jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x

    tree = jax.tree.map(raw, tree)
    if jax.process_count() > 1:
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(np.asarray, tree)


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
) -> SweepResult:
    """Trains every member × seed: one compiled program, sharded over devices, in chunks.

    The ``M * S`` agents are flattened, padded to whole chunks and run chunk after chunk
    through the same compiled program; inside a chunk they are split evenly over the
    devices (of every process, after ``jax.distributed.initialize``: each process trains
    the agents of its own devices and the results are gathered to all of them).

    Args:
        config: the static configuration shared by all members.
        hparams: batched hparams (from :func:`grid`/:func:`random`/:func:`points`), or
            unbatched for a single member.
        seeds: a count ``N`` (seeds ``0..N-1``) or explicit integer seeds. Member ``m``
            with seed ``s`` uses ``jax.random.key(s)``, exactly like a single run.
        progress: ``True`` shows a :class:`~jaxpo.progress.ProgressDisplay` of the whole
            run (every ``config.progress_interval`` updates, about 20 reports if that is 0);
            a callable is a host progress hook (see :func:`jaxpo.make_train`), called once
            per report for the whole sweep, in each process for its own agents (see
            :class:`MergedHook`); ``None`` or ``False`` compiles no hook in.
        chunk_size: agents per compiled call, to bound device memory (rounded up to a
            multiple of the device count). ``None``: all agents at once.
        devices: devices to shard over (default: all).
        keep_state: return the final runner states (``False`` keeps only metrics).
        state: runner states ``[M, S, ...]`` to continue from (a previous result's
            ``state`` or a checkpoint's), instead of fresh ones from the seeds' keys.
        updates: updates to run (default: up to ``config.num_updates``, from where
            ``state`` stopped); with ``state``, running ``k`` updates and then the rest from
            the returned state is the same computation as one run.

    Returns:
        A :class:`SweepResult` with NumPy metrics ``[M, S, num_updates]``.
    """
    start = 0 if state is None else int(np.ravel(state.update)[0])
    updates = config.num_updates - start if updates is None else updates
    if updates < 0:
        raise ValueError(f"updates must be >= 0, got {updates}")
    if progress is True:
        if config.progress_interval == 0:
            config = config.replace(progress_interval=default_interval(config.num_updates))
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
        result = fn(*place(chunk, mesh))
        outputs.append(to_host(result if keep_state else result.metrics))
    joined = jax.tree.map(lambda *xs: np.concatenate(xs)[: layout.num_agents], *outputs)
    shaped = jax.tree.map(
        lambda x: x.reshape((layout.num_members, layout.num_seeds) + x.shape[1:]), joined
    )
    metrics, state = (shaped.metrics, shaped.state) if keep_state else (shaped, None)
    return SweepResult(hparams, seed_list, metrics, state)


def member_hparams(hparams: HParams, index: int) -> HParams:
    """Member ``index`` of batched hparams, as an unbatched ``HParams``."""
    return jax.tree.map(lambda x: x[index], hparams)


def columns(hparams: HParams) -> dict[str, np.ndarray]:
    """The scalar hparams of a batch as NumPy columns ``{name: [M]}``."""
    return {
        f.name: np.asarray(getattr(hparams, f.name))
        for f in dataclasses.fields(hparams)
        if f.name != "env_params"
    }
