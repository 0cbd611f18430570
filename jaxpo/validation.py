"""Checks of a static config: ``validate_config`` and the helpers sections use for their own.

``Config`` itself lives in :mod:`jaxpo.config`; this module imports it, never the reverse.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn

from . import envs
from .config import ACTIVATIONS, Config, field_default
from .recurrence import CELLS


def positive_int(name: str, value: Any, minimum: int = 1) -> None:
    """Raises ``ValueError`` unless ``value`` is an int (not a bool) ≥ ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        what = {1: "a positive integer", 0: "an integer >= 0"}.get(minimum, f">= {minimum}")
        raise ValueError(f"{name} must be {what}, got {value!r}")


def one_of(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raises ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} must be one of {choices}")


#: how errors name the types of config fields.
TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def check_type(name: str, value: Any, default: Any) -> None:
    """Raises ``ValueError`` unless ``value`` has the type of the field's ``default``.

    A list or array where one value belongs gets the fix: static fields take one value per
    compiled program, so several values mean several sweeps.
    """
    if default is None:
        return
    kind = type(default)
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok:
        return
    if kind is tuple and isinstance(value, list):
        raise ValueError(f"{name} must be a tuple, got the list {value!r}; write {tuple(value)}")
    hint = ""
    if kind is not tuple and (isinstance(value, list | tuple) or hasattr(value, "shape")):
        hint = (
            "; a static config field takes one value per compiled program: to compare "
            "values, run one sweep per value"
        )
    what = TYPE_NAMES.get(kind, kind.__name__)
    if kind is int:  # the loop sizes' own checks use these words too
        what = "a positive integer" if default >= 1 else "an integer >= 0"
    raise ValueError(f"{name} must be {what}, got {value!r}{hint}")


def check_torso(config: Config) -> None:
    """Raises ``ValueError`` for an unknown torso or malformed CNN sizes.

    The torso must be ``"mlp"``, ``"cnn"`` or a flax module; the CNN's channels, kernels
    and strides positive integers, one of each per convolution.
    """
    torso = config.torso
    if not isinstance(torso, nn.Module):
        one_of("torso", torso, ("mlp", "cnn"))
    sizes = {n: getattr(config, n) for n in ("cnn_channels", "cnn_kernels", "cnn_strides")}
    for name, value in sizes.items():
        if not value or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
            raise ValueError(f"{name} must be a non-empty tuple of positive integers, got {value}")
    if len({len(v) for v in sizes.values()}) > 1:
        raise ValueError(
            "cnn_channels, cnn_kernels and cnn_strides need one entry per convolution, got "
            + ", ".join(f"{n}={v}" for n, v in sizes.items())
        )


def validate_config(config: Config) -> None:
    """Raises ``ValueError`` naming the field if ``config`` cannot make a valid run."""
    for name, value in config.to_dict().items():
        if name != "torso":
            check_type(name, value, field_default(config.algo, name))
    check_torso(config)
    envs.check_env_id(config.env_id)
    one_of("brax_backend", config.brax_backend, envs.BACKENDS)
    for name in (
        "num_envs",
        "num_steps",
        "total_timesteps",
        "update_epochs",
        "num_minibatches",
        "max_consecutive_skips",
        "cell_size",
        "eval_episodes",
    ):
        positive_int(name, getattr(config, name))
    positive_int("eval_interval", config.eval_interval, minimum=0)
    if not math.isfinite(config.adam_eps) or config.adam_eps <= 0:
        raise ValueError(f"adam_eps must be finite and > 0, got {config.adam_eps!r}")
    if not math.isfinite(config.log_std_init):
        raise ValueError(f"log_std_init must be finite, got {config.log_std_init!r}")
    if not config.hidden_sizes or any(int(h) <= 0 for h in config.hidden_sizes):
        raise ValueError(
            f"hidden_sizes must be non-empty positive widths, got {config.hidden_sizes}"
        )
    one_of("activation", config.activation, ACTIVATIONS)
    one_of("cell", config.cell, CELLS)
    if config.cell != "none" and config.num_envs % config.num_minibatches:
        raise ValueError(
            f"num_minibatches={config.num_minibatches} does not divide num_envs="
            f"{config.num_envs}: a recurrent run (cell={config.cell!r}) splits whole "
            "environment sequences into minibatches"
        )
    one_of("action_mode", config.action_mode, ("clip", "rescale"))
    config.algo_config.validate(config)
    if config.num_updates < 1:
        raise ValueError(
            f"total_timesteps={config.total_timesteps} is smaller than one batch "
            f"(num_envs*num_steps={config.batch_size})"
        )
