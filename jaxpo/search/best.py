"""``best.json``: the complete settings of one member, for ``jaxpo train --config FILE``.

:func:`write_best` writes, and :func:`jaxpo.presets.load` reads back, a JSON object::

    {"format": "jaxpo.settings/1", "algo": ..., "env_id": ...,
     "config": Config.to_record(),             # every static field, the section's included
     "hparams": {name: float},                 # every scalar hparam of the algorithm
     "env_params": {"path/to/leaf": value},    # every leaf of the env's params (see below)
     "provenance": {...}}                      # optional: how it was found (method, score, ...)

What is stored: every config field and every scalar hparam (float32 values written in their
shortest decimal form, so they read back as the same float32), and the env params leaf by
leaf, named by their path (gymnax CartPole: ``max_steps_in_episode``, ``gravity``, ...;
brax, Jumanji, xminigrid: ``max_steps_in_episode``) in the type of the env's default (a
Python ``int``/``float``/``bool``, or a numeric array with its shape and dtype).

What is not: a user torso module (only its class, ``"module:pkg.Class"``; loading needs
the instance again, ``presets.load(path, torso=...)``); env params with a non-numeric leaf,
more than :data:`MAX_ENV_VALUES` numbers, or a structure other than the env's defaults (the
file then has no ``env_params``, loading gives the env's defaults, and a warning says so);
seeds, which ``jaxpo train --seeds`` chooses.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import flax.linen as nn
import numpy as np

from .. import presets, sweep
from ..config import Config
from ..hparams import HParams
from ..train import default_hparams

#: the most numbers of env params a file stores (beyond: the env's defaults are loaded).
MAX_ENV_VALUES = 10_000


def plain(value: Any) -> Any:
    """A number or array as JSON-able Python values; float32 in its shortest decimal form."""
    if isinstance(value, bool | int | float):
        return value
    array = np.asarray(value)
    if array.dtype == np.float32:
        shortest = np.vectorize(lambda x: float(str(np.float32(x))), otypes=[object])
        return shortest(array).tolist()
    return array.tolist()


def env_params_record(config: Config, env_params: Any) -> dict[str, Any] | None:
    """``{"path/to/leaf": value}`` of one member's env params, or ``None`` if not storable.

    Storable: numeric leaves only, at most :data:`MAX_ENV_VALUES` numbers, and the same
    leaves and shapes as the env's default params for ``config``.
    """
    leaves = presets.env_leaves(env_params)
    default = presets.env_leaves(default_hparams(config).env_params)
    shapes = {k: np.shape(v) for k, v in leaves.items()}
    arrays = [np.asarray(v) for v in leaves.values()]
    if (
        shapes != {k: np.shape(v) for k, v in default.items()}
        or any(a.dtype.kind not in "biuf" for a in arrays)
        or sum(a.size for a in arrays) > MAX_ENV_VALUES
    ):
        return None
    # a sweep member's leaves are arrays: where the default is a Python number, write one
    return {
        k: type(default[k])(plain(v)) if isinstance(default[k], bool | int | float) else plain(v)
        for k, v in leaves.items()
    }


def _builtin(value: Any) -> Any:
    """``json.dumps``'s fallback for NumPy values in the provenance."""
    if isinstance(value, np.generic | np.ndarray):
        return plain(value)
    raise TypeError(f"provenance value {value!r} ({type(value).__name__}) is not JSON-able")


def best_record(
    config: Config, hparams: HParams, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What :func:`write_best` writes (see the module's docstring).

    Raises:
        ValueError: ``hparams`` are batched or are not ``config.algo``'s, or the record
            would not load back (:func:`jaxpo.presets.from_record`).
    """
    if sweep.is_batched(hparams):
        raise ValueError(
            "write_best takes one member's hparams (sweep.member_hparams(batch, index)), "
            "got batched ones"
        )
    expected = type(default_hparams(config))
    if type(hparams) is not expected:
        raise ValueError(
            f"hparams are {type(hparams).__name__}, algo={config.algo!r} has {expected.__name__}"
        )
    record: dict[str, Any] = {
        "format": presets.SETTINGS_FORMAT,
        "algo": config.algo,
        "env_id": config.env_id,
        "config": config.to_record(),
        "hparams": {k: plain(v) for k, v in sweep.columns(hparams).items()},
    }
    env_params = env_params_record(config, hparams.env_params)
    if env_params is None:
        warnings.warn(
            f"the env params of {config.env_id} ({type(hparams.env_params).__name__}) cannot "
            "be stored as JSON: loading the file gives the env's defaults",
            stacklevel=3,
        )
    else:
        record["env_params"] = env_params
    if extra:
        record["provenance"] = json.loads(json.dumps(extra, default=_builtin))
    torso = config.torso if isinstance(config.torso, nn.Module) else None
    presets.from_record(json.loads(json.dumps(record)), torso)  # it must load back
    return record


def write_best(
    path: str | Path,
    config: Config,
    hparams_of_member: HParams,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Writes one member's complete settings to ``path`` as JSON (a ``best.json``).

    ``jaxpo train --config PATH`` and :func:`jaxpo.presets.load` read it back: the same
    config (``==``) and hparams (every scalar, and every env param where storable; see the
    module's docstring for what is and is not stored).

    Args:
        path: the file to write (its folder is created).
        config: the static config the member ran with.
        hparams_of_member: the member's unbatched hparams, e.g.
            ``sweep.member_hparams(result.hparams, index)`` (scalar leaves ``[]``).
        extra: provenance stored under ``"provenance"`` (e.g. ``{"method": "ask_tell",
            "score": 487.2, "member": 13}``); NumPy values are converted.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: see :func:`best_record`.
        TypeError: ``extra`` holds a value that is not JSON-able.
    """
    record = best_record(config, hparams_of_member, extra)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
