"""How a sweep's agents are laid out: seeds, devices, chunks, and host ↔ device arrays.

``plan`` lays ``M * S`` agents over the devices (of every process, after
``jax.distributed.initialize``) and over chunks run one after another; ``agent_inputs``
flattens members × seeds into per-agent keys and hparams, ``place`` shards them over a mesh of
:data:`AXIS`, and ``to_host`` gathers results back to NumPy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..config import Config
from ..hparams import HParams
from .members import num_members

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
        seeds: a count or explicit seeds, as for :func:`~jaxpo.sweep.run`.
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
