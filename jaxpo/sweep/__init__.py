"""Sweeps: many agents (hparam members × seeds) in one compiled program.

``grid``, ``random`` and ``points`` turn one ``HParams`` into a batched one whose scalar leaves
have a leading member axis ``[M]``. ``run`` flattens members × seeds into ``M * S`` agents and
trains them with ``vmap(train)`` in one compiled program, sharded over every device (of every
process after ``jax.distributed.initialize``) and, optionally, in chunks of a fixed size run
one after another through the same program. Only traced hparams can be swept: a static config
field (a shape or a loop count) is refused with a clear error rather than compiled per value.

Modules: :mod:`~jaxpo.sweep.members` (building and reading batched hparams),
:mod:`~jaxpo.sweep.devices` (seeds, devices, chunks and host ↔ device arrays),
:mod:`~jaxpo.sweep.hooks` (progress of a sharded sweep) and :mod:`~jaxpo.sweep.runner`
(the compiled sweep and ``run``). Everything public is re-exported here.
"""

from .devices import (
    AXIS,
    SweepPlan,
    agent_inputs,
    devices_for,
    make_mesh,
    place,
    plan,
    seed_array,
    to_host,
    use_host_devices,
)
from .hooks import DISPLAY_HOOK, DisplayHook, MergedHook
from .members import (
    DISTRIBUTIONS,
    check_distributions,
    columns,
    concat,
    grid,
    is_batched,
    member_hparams,
    num_members,
    parse_distribution,
    points,
    random,
    stack,
)
from .runner import SweepResult, make_sweep_fn, run

__all__ = [
    "AXIS",
    "DISPLAY_HOOK",
    "DISTRIBUTIONS",
    "DisplayHook",
    "MergedHook",
    "SweepPlan",
    "SweepResult",
    "agent_inputs",
    "columns",
    "concat",
    "devices_for",
    "grid",
    "is_batched",
    "make_mesh",
    "make_sweep_fn",
    "member_hparams",
    "num_members",
    "check_distributions",
    "parse_distribution",
    "place",
    "plan",
    "points",
    "random",
    "run",
    "seed_array",
    "stack",
    "to_host",
    "use_host_devices",
]
