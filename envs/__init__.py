"""Uniform functional environments (installed as ``jaxpo.envs``).

Env ids are ``backend:name``: ``gymnax:CartPole-v1``, ``gymnax:Breakout-MinAtar``,
``brax:hopper`` (brax backend chosen separately, ``spring`` by default), ``probe:delayed``,
``probe:tabular`` (a random tabular MDP with exact oracles, :mod:`.tabular`), ``probe:masked``
and ``probe:multidiscrete`` (action masks and multi-discrete actions, :mod:`.action_probes`),
``probe:memory`` (a cue to remember for recurrent policies, :mod:`.memory_probe`) and
``pomdp:CartPole-v1`` (gymnax's CartPole without its velocities, :mod:`.partial`).

Optional suites, each installed by the jaxpo extra of its name (``jaxpo[suites]`` for all;
:mod:`.suites`): ``xminigrid:MiniGrid-Empty-5x5`` and the other XLand-MiniGrid envs
(:mod:`.xminigrid_adapter`), ``jumanji:Snake-v1``, ``jumanji:Minesweeper-v0``,
``jumanji:Knapsack-v1`` and most other Jumanji envs (:mod:`.jumanji_adapter`), and
``craftax:Craftax-Classic-Symbolic-v1``, ``craftax:Craftax-Symbolic-v1``
(:mod:`.craftax_adapter`). Not adapted: navix (its package pulls in wandb, black, pylint and
other tooling; xminigrid covers the same gridworlds) and ``popgym_arcade:`` ids, which are
refused (its stable-gymnax dependency overwrites the pinned gymnax).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from .action_probes import ACTION_PROBES, MaskedProbe, MultiDiscreteProbe, make_action_probe
from .brax_adapter import BACKENDS, DEFAULT_BACKEND, BraxEnv, brax_env_names
from .brax_adapter import UNSUPPORTED as BRAX_UNSUPPORTED
from .core import (
    Box,
    Discrete,
    Environment,
    MaskedObs,
    MultiDiscrete,
    TimeStep,
    Wrapper,
    features,
    map_features,
)
from .gymnax_adapter import GymnaxEnv
from .memory_probe import MEMORY_PROBES, MemoryProbe
from .partial import POMDPS, SelectObservation, make_pomdp
from .probes import PROBES, ProbeEnv
from .suites import REFUSED_BACKENDS, SUITES, check_suite_env_id, make_suite_env, suite_env_ids
from .tabular import TABULAR, TabularEnv
from .wrappers import ClipAction, EpisodeStatistics, NormalizeObservation, RunningStats, VecEnv

BACKEND_NAMES = ("gymnax", "brax", "probe", "pomdp", *SUITES, "custom")

#: ``name -> factory`` of the environments added with :func:`register` (ids ``custom:NAME``).
CUSTOM: dict[str, Callable[[], Environment]] = {}


def register(name: str, factory: Callable[[], Environment], replace: bool = False) -> str:
    """Makes ``factory()`` (a bare :class:`Environment`) the env id ``custom:NAME``.

    The id then works wherever one does: ``Config(env_id=...)``, presets' fallbacks, sweeps
    and the command line (in a process that registered it).

    Returns:
        The env id.

    Raises:
        ValueError: the name is taken (unless ``replace``) or not a plain name.
    """
    if not name or ":" in name:
        raise ValueError(f"custom env name {name!r} must be non-empty and contain no ':'")
    if name in CUSTOM and not replace:
        raise ValueError(f"custom env {name!r} is already registered (pass replace=True)")
    CUSTOM[name] = factory
    return f"custom:{name}"


def parse_env_id(env_id: str) -> tuple[str, str]:
    """Splits ``backend:name``; raises ``ValueError`` naming the problem."""
    backend, sep, name = env_id.partition(":")
    if not sep or not name:
        raise ValueError(
            f"env_id={env_id!r} must look like 'backend:name' with backend one of "
            f"{BACKEND_NAMES}, e.g. 'gymnax:CartPole-v1'"
        )
    if backend in REFUSED_BACKENDS:
        raise ValueError(f"env_id={env_id!r} is not supported: {REFUSED_BACKENDS[backend]}")
    if backend not in BACKEND_NAMES:
        raise ValueError(
            f"unknown env backend {backend!r} in env_id={env_id!r}; use one of {BACKEND_NAMES}"
        )
    return backend, name


def list_env_ids() -> list[str]:
    """Every env id this package can make (optional suites: only those installed)."""
    import gymnax

    return (
        [f"gymnax:{n}" for n in gymnax.registered_envs]
        + [f"brax:{n}" for n in brax_env_names()]
        + [f"probe:{n}" for n in PROBES + TABULAR + ACTION_PROBES + MEMORY_PROBES]
        + [f"pomdp:{n}" for n in POMDPS]
        + suite_env_ids()
        + [f"custom:{n}" for n in CUSTOM]
    )


def check_env_id(env_id: str) -> None:
    """Raises ``ValueError`` unless ``env_id`` names an environment this package can make.

    Only the named backend is imported (brax is slow to import). An optional suite that is
    not installed is refused with the extra to install.
    """
    backend, name = parse_env_id(env_id)
    if backend in SUITES:
        check_suite_env_id(env_id, backend, name)
        return
    if backend == "gymnax":
        import gymnax

        known = list(gymnax.registered_envs)
    elif backend == "brax":
        if name in BRAX_UNSUPPORTED:
            raise ValueError(f"env_id={env_id!r} is not supported: {BRAX_UNSUPPORTED[name]}")
        known = brax_env_names()
    elif backend == "probe":
        known = list(PROBES + TABULAR + ACTION_PROBES + MEMORY_PROBES)
    elif backend == "pomdp":
        known = list(POMDPS)
    else:
        known = list(CUSTOM)
    if name not in known:
        raise ValueError(f"unknown environment env_id={env_id!r}; {backend} has {known}")


def make(env_id: str, brax_backend: str = DEFAULT_BACKEND) -> Environment:
    """Makes the bare (auto-resetting, unwrapped) environment for ``env_id``.

    The episode time limit is an env param (``max_steps_in_episode``, traced; brax envs
    default to 1000 steps, the optional suites to their own limit): see :func:`with_time_limit`.

    Args:
        env_id: ``backend:name``.
        brax_backend: physics pipeline for ``brax:`` ids.
    """
    backend, name = parse_env_id(env_id)
    if backend == "gymnax":
        return GymnaxEnv(name)
    if backend == "brax":
        return BraxEnv(name, backend=brax_backend)
    if backend in SUITES:
        return make_suite_env(env_id, backend, name)
    if backend == "pomdp":
        return make_pomdp(name)
    if backend == "custom":
        check_env_id(env_id)
        return CUSTOM[name]()
    if name in TABULAR:
        return TabularEnv()
    if name in ACTION_PROBES:
        return make_action_probe(name)
    if name in MEMORY_PROBES:
        return MemoryProbe()
    return ProbeEnv(name)


def with_time_limit(params: Any, steps: int) -> Any:
    """``params`` with the episode time limit ``max_steps_in_episode`` set to ``steps``.

    Raises:
        ValueError: ``steps`` is not a positive integer, or the env has no time limit.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"the time limit must be a positive integer, got {steps!r}")
    if not hasattr(params, "max_steps_in_episode"):
        raise ValueError(f"{type(params).__name__} has no time limit (max_steps_in_episode)")
    old = params.max_steps_in_episode
    new = steps if isinstance(old, int) else jnp.asarray(steps, jnp.asarray(old).dtype)
    return params.replace(max_steps_in_episode=new)


__all__ = [
    "ACTION_PROBES",
    "BACKENDS",
    "CUSTOM",
    "BACKEND_NAMES",
    "BRAX_UNSUPPORTED",
    "DEFAULT_BACKEND",
    "MEMORY_PROBES",
    "POMDPS",
    "PROBES",
    "REFUSED_BACKENDS",
    "SUITES",
    "TABULAR",
    "Box",
    "BraxEnv",
    "ClipAction",
    "Discrete",
    "Environment",
    "EpisodeStatistics",
    "GymnaxEnv",
    "MaskedObs",
    "MaskedProbe",
    "MemoryProbe",
    "MultiDiscrete",
    "MultiDiscreteProbe",
    "NormalizeObservation",
    "ProbeEnv",
    "RunningStats",
    "SelectObservation",
    "TabularEnv",
    "TimeStep",
    "VecEnv",
    "Wrapper",
    "check_env_id",
    "features",
    "list_env_ids",
    "make",
    "make_pomdp",
    "map_features",
    "parse_env_id",
    "register",
    "with_time_limit",
]
