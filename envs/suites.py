"""The optional environment suites: which are installed, their env ids, and making them.

Each suite is a backend of its own (``xminigrid:``, ``jumanji:``, ``craftax:``) installed by the
jaxpo extra of the same name (``pip install 'jaxpo[xminigrid]'``, or ``jaxpo[suites]`` for all
three). Its adapter module imports the suite only when an environment is made, so
``import jaxpo.envs`` works without any of them; asking for an id of a missing suite raises a
``ValueError`` that names the extra to install.
"""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp

from .core import Environment

#: The optional suites (backend name = the Python package = the jaxpo extra).
SUITES = ("xminigrid", "jumanji", "craftax")
#: Backends refused outright, and why.
REFUSED_BACKENDS = {
    "popgym_arcade": "popgym-arcade 0.0.7 depends on stable-gymnax 0.0.1, which installs into "
    "the same gymnax/ folder and overwrites the pinned gymnax 1.0.1 with an old-API fork (pip "
    "still reports gymnax 1.0.1); on the real gymnax 1.0.1 popgym-arcade fails at its first "
    "step (NotImplementedError: is_terminated). Do not install it next to jaxpo",
}


def raw_key(key: jax.Array) -> jax.Array:
    """``key`` as the ``uint32`` key data that suites keep in their states."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def suite_installed(backend: str) -> bool:
    """Whether the package of the suite ``backend`` is importable here."""
    return importlib.util.find_spec(backend) is not None


def installed_suites() -> list[str]:
    """The suites of :data:`SUITES` that are installed."""
    return [backend for backend in SUITES if suite_installed(backend)]


def suite_unsupported(backend: str) -> dict[str, str]:
    """``name -> reason`` of the suite's environments that jaxpo refuses."""
    if backend == "jumanji":
        from .jumanji_adapter import UNSUPPORTED

        return UNSUPPORTED
    return {}


def suite_env_names(backend: str) -> list[str]:
    """The environment names jaxpo can make from the (installed) suite ``backend``."""
    if backend == "xminigrid":
        from .xminigrid_adapter import xminigrid_env_names

        return xminigrid_env_names()
    if backend == "jumanji":
        from .jumanji_adapter import jumanji_env_names

        return jumanji_env_names()
    from .craftax_adapter import CRAFTAX_NAMES

    return list(CRAFTAX_NAMES)


def check_suite_env_id(env_id: str, backend: str, name: str) -> None:
    """Raises ``ValueError`` unless the suite is installed and supports ``name``."""
    if not suite_installed(backend):
        raise ValueError(
            f"env_id={env_id!r} needs the optional {backend} suite, which is not installed: "
            f"pip install 'jaxpo[{backend}]'"
        )
    unsupported = suite_unsupported(backend)
    if name in unsupported:
        raise ValueError(f"env_id={env_id!r} is not supported: {unsupported[name]}")
    known = suite_env_names(backend)
    if name not in known:
        raise ValueError(f"unknown environment env_id={env_id!r}; {backend} has {known}")


def make_suite_env(env_id: str, backend: str, name: str) -> Environment:
    """The bare adapter of ``backend:name`` (see :func:`check_suite_env_id` for the errors)."""
    check_suite_env_id(env_id, backend, name)
    if backend == "xminigrid":
        from .xminigrid_adapter import XMiniGridEnv

        return XMiniGridEnv(name)
    if backend == "jumanji":
        from .jumanji_adapter import JumanjiEnv

        return JumanjiEnv(name)
    from .craftax_adapter import CraftaxEnv

    return CraftaxEnv(name)


def suite_env_ids() -> list[str]:
    """The env ids of every installed suite."""
    return [f"{b}:{n}" for b in installed_suites() for n in suite_env_names(b)]
