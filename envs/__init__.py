"""Uniform functional environments (installed as ``jaxpo.envs``).

Env ids are ``backend:name``: ``gymnax:CartPole-v1``, ``gymnax:Breakout-MinAtar``,
``brax:hopper`` (brax backend chosen separately, ``spring`` by default), ``probe:delayed``.
"""

from __future__ import annotations

from .brax_adapter import BACKENDS, DEFAULT_BACKEND, BraxEnv, brax_env_names
from .brax_adapter import UNSUPPORTED as BRAX_UNSUPPORTED
from .core import Box, Discrete, Environment, TimeStep, Wrapper
from .gymnax_adapter import GymnaxEnv
from .probes import PROBES, ProbeEnv
from .wrappers import ClipAction, EpisodeStatistics, NormalizeObservation, RunningStats, VecEnv

BACKEND_NAMES = ("gymnax", "brax", "probe")


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
        + [f"probe:{n}" for n in PROBES]
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
    else:
        known = list(PROBES)
    if name not in known:
        raise ValueError(f"unknown environment env_id={env_id!r}; {backend} has {known}")


def make(
    env_id: str, brax_backend: str = DEFAULT_BACKEND, episode_length: int = 1000
) -> Environment:
    """Makes the bare (auto-resetting, unwrapped) environment for ``env_id``.

    Args:
        env_id: ``backend:name``.
        brax_backend: physics pipeline for ``brax:`` ids.
        episode_length: time limit for ``brax:`` ids (gymnax envs carry their own).
    """
    backend, name = parse_env_id(env_id)
    if backend == "gymnax":
        return GymnaxEnv(name)
    if backend == "brax":
        return BraxEnv(name, backend=brax_backend, episode_length=episode_length)
    return ProbeEnv(name)


__all__ = [
    "BACKENDS",
    "BACKEND_NAMES",
    "BRAX_UNSUPPORTED",
    "DEFAULT_BACKEND",
    "PROBES",
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
    "TimeStep",
    "VecEnv",
    "Wrapper",
    "check_env_id",
    "list_env_ids",
    "make",
    "parse_env_id",
]
