"""Values of the command line's flags: ``NAME=VALUE`` overrides and sweep members.

``apply_sets`` applies ``--set NAME=VALUE`` to a config and hparams (each value parsed into the
field's type); ``sweep_members`` builds the batched hparams that ``--grid``, ``--random`` with
``--dist`` and ``--point`` describe. Errors name the flag at fault.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import jax

from . import sweep
from .config import Config, field_default, field_names, owners, split_fields
from .envs import with_time_limit
from .hparams import HParams, scalar_names
from .train import bare_env
from .validation import validate_config


def parse_bool(text: str) -> bool:
    """``true/false/1/0/yes/no`` (any case) to a bool."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected a boolean (true/false), got {text!r}")


def parse_field(algo: str, name: str, text: str) -> Any:
    """Parses ``text`` into the type of config field ``name`` (common, or ``algo``'s section)."""
    default = field_default(algo, name)
    if isinstance(default, bool):
        return parse_bool(text)
    if isinstance(default, int):
        return int(float(text)) if float(text).is_integer() else int(text)
    if isinstance(default, float):
        return float(text)
    if isinstance(default, tuple):
        kind = type(default[0])
        return tuple(kind(v) for v in text.split(",") if v.strip())
    return text


def parse_assignment(flag: str, item: str) -> tuple[str, str]:
    """Splits ``NAME=VALUE`` (dashes in NAME read as underscores) into ``(name, value)``."""
    name, sep, value = item.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name:
        raise ValueError(f"{flag} expects NAME=VALUE, got {item!r}")
    return name, value


#: names ``--set`` refuses, with what to use instead: the algorithm and the env pick the
#: preset (so they are flags), and the others are options of the command, not of the run.
CHOSEN_BY_FLAG = {
    "algo": "choose the algorithm with --algo (its preset for the env applies)",
    "env_id": "choose the env with --env (the algorithm's preset for it applies)",
    "env": "choose the env with --env",
    "seeds": "use --seeds",
    "seed_offset": "use --seed-offset",
    "progress_interval": "use --progress-interval",
    "checkpoint_every": "use --checkpoint-every",
    "chunk_size": "use --chunk-size",
}
#: config fields that define the environment's default (traced) params.
ENV_FIELDS = {"env_id", "brax_backend"}
#: the name ``--set`` gives the env param ``max_steps_in_episode`` (the time limit).
TIME_LIMIT = "episode_length"


def apply_sets(
    config: Config, hparams: HParams, assignments: Sequence[str]
) -> tuple[Config, HParams]:
    """Applies ``NAME=VALUE`` assignments to config fields, hparams or the time limit.

    Config fields are routed to the algorithm's section; ``episode_length`` sets the env
    param ``max_steps_in_episode`` (the time limit lives only there).

    Raises:
        ValueError: malformed assignment, unknown name, a field of another algorithm, or an
            unparsable value.
    """
    config_changes: dict[str, Any] = {}
    hparam_changes: dict[str, float] = {}
    time_limit = None
    known_hparams = set(scalar_names(type(hparams)))
    for item in assignments:
        name, value = parse_assignment("--set", item)
        if name in CHOSEN_BY_FLAG:
            raise ValueError(f"--set {name}: {CHOSEN_BY_FLAG[name]}")
        if name not in known_hparams | {TIME_LIMIT} | set(field_names(config.algo)):
            if owners(name):  # a field of another algorithm's section: say whose
                with flag_errors("--set"):
                    split_fields(config.algo, {name: value})
            raise ValueError(
                f"--set: unknown name {name!r}; hparams: {sorted(known_hparams)}; "
                f"config fields: {field_names(config.algo)}; env: ['{TIME_LIMIT}']"
            )
        try:
            if name in known_hparams:
                hparam_changes[name] = float(value)
            elif name == TIME_LIMIT:
                time_limit = int(value)
            else:
                config_changes[name] = parse_field(config.algo, name, value)
        except ValueError as err:
            raise ValueError(f"--set {name}: cannot parse {value!r} ({err})") from None
    if config_changes:
        config = config.replace(**config_changes)
        validate_config(config)
    if ENV_FIELDS & set(config_changes):
        # Another env: rebuild the traced env params (the time limit among them).
        hparams = hparams.replace(env_params=bare_env(config).default_params())
    if time_limit is not None:
        with flag_errors(f"--set {TIME_LIMIT}"):
            hparams = hparams.replace(env_params=with_time_limit(hparams.env_params, time_limit))
    if hparam_changes:
        hparams = hparams.set(**hparam_changes)
    return config, hparams


@contextlib.contextmanager
def flag_errors(flag: str) -> Iterator[None]:
    """Prefixes the message of a ``ValueError`` raised inside with ``flag``."""
    try:
        yield
    except ValueError as err:
        raise ValueError(f"{flag}: {err}") from None


def parse_number(flag: str, name: str, text: str) -> float:
    """``text`` as a float; the error names the flag and the hparam."""
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{flag} {name}: cannot parse {text!r} as a number") from None


def named(flag: str, items: Sequence[str]) -> dict[str, str]:
    """``NAME=VALUE`` items as ``{name: value}``; a name given twice raises."""
    values: dict[str, str] = {}
    for item in items:
        name, value = parse_assignment(flag, item)
        if name in values:
            raise ValueError(f"{flag} names {name!r} twice")
        values[name] = value
    return values


def sweep_members(args: argparse.Namespace, hparams: HParams) -> HParams:
    """The members ``--grid``, ``--random``/``--dist`` and ``--point`` choose, in that order.

    Returns:
        Batched hparams ``[M]``; unswept hparams keep the values of ``hparams``.
    """
    grid = {
        name: [parse_number("--grid", name, v) for v in text.split(",") if v.strip()]
        for name, text in named("--grid", args.grid).items()
    }
    dists = named("--dist", args.dist)
    points = [
        {
            name: parse_number("--point", name, v)
            for name, v in named("--point", p.split(",")).items()
        }
        for p in args.point
    ]
    if args.random < 0:
        raise ValueError(f"--random must be >= 0, got {args.random}")
    if args.random and not dists:
        raise ValueError("--random needs at least one --dist NAME=DISTRIBUTION")
    if dists and not args.random:
        raise ValueError("--dist needs --random N, the number of members to draw")
    batches = []
    if grid:
        with flag_errors("--grid"):
            batches.append(sweep.grid(hparams, **grid))
    if dists:
        with flag_errors("--dist"):
            sweep.check_distributions(dists)  # before the key: a refusal compiles nothing
            key = jax.random.key(args.sweep_seed)
            batches.append(sweep.random(hparams, key, args.random, **dists))
    if points:
        with flag_errors("--point"):
            batches.append(sweep.points(hparams, points))
    if not batches:
        raise ValueError(
            "nothing to sweep: give --grid NAME=V1,V2, --random N with --dist NAME=DIST, "
            "or --point NAME=V,NAME=V"
        )
    return sweep.concat(*batches)
