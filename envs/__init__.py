"""Uniform functional environments (installed as ``jaxpo.envs``).

Env ids are ``backend:name``: ``gymnax:CartPole-v1``, ``gymnax:Breakout-MinAtar``,
``brax:hopper`` (brax backend chosen separately, ``spring`` by default), ``probe:delayed``,
``probe:tabular`` (a random tabular MDP with exact oracles, :mod:`.tabular`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from .brax_adapter import BACKENDS, DEFAULT_BACKEND, BraxEnv, brax_env_names
from .brax_adapter import UNSUPPORTED as BRAX_UNSUPPORTED
from .core import Box, Discrete, Environment, TimeStep, Wrapper
from .gymnax_adapter import GymnaxEnv
from .probes import PROBES, ProbeEnv
from .tabular import TABULAR, TabularEnv
from .wrappers import ClipAction, EpisodeStatistics, NormalizeObservation, RunningStats, VecEnv

BACKEND_NAMES = ("gymnax", "brax", "probe", "custom")

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
    if backend not in BACKEND_NAMES:
        raise ValueError(
            f"unknown env backend {backend!r} in env_id={env_id!r}; use one of {BACKEND_NAMES}"
        )
    return backend, name


def list_env_ids() -> list[str]:
    """Every env id this package can make."""
    import gymnax

    return (
        [f"gymnax:{n}" for n in gymnax.registered_envs]
        + [f"brax:{n}" for n in brax_env_names()]
        + [f"probe:{n}" for n in PROBES + TABULAR]
        + [f"custom:{n}" for n in CUSTOM]
    )


def check_env_id(env_id: str) -> None:
    """Raises ``ValueError`` unless ``env_id`` names an environment this package can make.

    Only the named backend is imported (brax is slow to import).
    """
    backend, name = parse_env_id(env_id)
    if backend == "gymnax":
        import gymnax

        known = list(gymnax.registered_envs)
    elif backend == "brax":
        if name in BRAX_UNSUPPORTED:
            raise ValueError(f"env_id={env_id!r} is not supported: {BRAX_UNSUPPORTED[name]}")
        known = brax_env_names()
    elif backend == "probe":
        known = list(PROBES + TABULAR)
    else:
        known = list(CUSTOM)
    if name not in known:
        raise ValueError(f"unknown environment env_id={env_id!r}; {backend} has {known}")


def make(env_id: str, brax_backend: str = DEFAULT_BACKEND) -> Environment:
    """Makes the bare (auto-resetting, unwrapped) environment for ``env_id``.

    The episode time limit is an env param (``max_steps_in_episode``, traced; brax envs
    default to 1000 steps): see :func:`with_time_limit`.

    Args:
        env_id: ``backend:name``.
        brax_backend: physics pipeline for ``brax:`` ids.
    """
    backend, name = parse_env_id(env_id)
    if backend == "gymnax":
        return GymnaxEnv(name)
    if backend == "brax":
        return BraxEnv(name, backend=brax_backend)
    if backend == "custom":
        check_env_id(env_id)
        return CUSTOM[name]()
    if name in TABULAR:
        return TabularEnv()
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
    "BACKENDS",
    "CUSTOM",
    "BACKEND_NAMES",
    "BRAX_UNSUPPORTED",
    "DEFAULT_BACKEND",
    "PROBES",
    "TABULAR",
    "Box",
    "BraxEnv",
    "ClipAction",
    "Discrete",
    "Environment",
    "EpisodeStatistics",
    "GymnaxEnv",
    "NormalizeObservation",
    "ProbeEnv",
    "RunningStats",
    "TabularEnv",
    "TimeStep",
    "VecEnv",
    "Wrapper",
    "check_env_id",
    "list_env_ids",
    "make",
    "parse_env_id",
    "register",
    "with_time_limit",
]
