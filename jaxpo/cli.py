"""Command line: ``jaxpo train`` and ``jaxpo sweep`` (also ``python -m jaxpo ...``).

``jaxpo train`` with no arguments trains PPO on gymnax CartPole-v1 with 4 seeds in one
compiled, vmapped program, shows progress, prints the final return per seed and writes
``metrics.csv`` (one row per update per seed) and ``summary.json`` to ``--out``.

``jaxpo sweep --grid learning_rate=1e-4,3e-4 --seeds 8`` trains every member (from
``--grid``, ``--random N --dist``, ``--point``) × seed as one compiled program, shows one
progress display, prints the top members and writes ``table.csv`` (+ ``table.parquet`` with
pyarrow), ``curves.png``, ``metrics.npz`` (``[M, S, U]`` arrays) and ``summary.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from . import sweep, sweep_table
from .algos import ALGORITHMS
from .config import Config, field_names, validate_config
from .hparams import HParams, scalar_names
from .train import bare_env


def parse_bool(text: str) -> bool:
    """``true/false/1/0/yes/no`` (any case) to a bool."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected a boolean (true/false), got {text!r}")


def parse_field(name: str, text: str) -> Any:
    """Parses ``text`` into the type of the :class:`Config` field ``name``."""
    default = Config.__dataclass_fields__[name].default
    if isinstance(default, bool):
        return parse_bool(text)
    if isinstance(default, int):
        return int(float(text)) if float(text).is_integer() else int(text)
    if isinstance(default, float):
        return float(text)
    if isinstance(default, tuple):
        return tuple(int(v) for v in text.split(",") if v.strip())
    return text


def parse_assignment(flag: str, item: str) -> tuple[str, str]:
    """Splits ``NAME=VALUE`` (dashes in NAME read as underscores) into ``(name, value)``."""
    name, sep, value = item.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name:
        raise ValueError(f"{flag} expects NAME=VALUE, got {item!r}")
    return name, value


#: config fields that define the environment's default (traced) params.
ENV_FIELDS = {"env_id", "brax_backend", "episode_length"}


def apply_sets(
    config: Config, hparams: HParams, assignments: Sequence[str]
) -> tuple[Config, HParams]:
    """Applies ``NAME=VALUE`` assignments to config fields or hparams.

    Raises:
        ValueError: malformed assignment, unknown name, or unparsable value.
    """
    config_changes: dict[str, Any] = {}
    hparam_changes: dict[str, float] = {}
    known_hparams = scalar_names(type(hparams))
    for item in assignments:
        name, value = parse_assignment("--set", item)
        try:
            if name in known_hparams:
                hparam_changes[name] = float(value)
            elif name in field_names(Config):
                config_changes[name] = parse_field(name, value)
            else:
                raise KeyError(name)
        except KeyError:
            raise ValueError(
                f"--set: unknown name {name!r}; hparams: {known_hparams}; "
                f"config fields: {field_names(Config)}"
            ) from None
        except ValueError as err:
            raise ValueError(f"--set {name}: cannot parse {value!r} ({err})") from None
    if config_changes:
        config = config.replace(**config_changes)
    if ENV_FIELDS & set(config_changes):
        # The time limit and other env settings live in the traced env params: rebuild them.
        validate_config(config)
        hparams = hparams.replace(env_params=bare_env(config).default_params())
    if hparam_changes:
        hparams = hparams.set(**hparam_changes)
    return config, hparams


def add_run_arguments(parser: argparse.ArgumentParser, out_default: str) -> None:
    """The arguments ``train`` and ``sweep`` share: algorithm, env, seeds, budget, overrides."""
    parser.add_argument(
        "--algo", default="ppo", help=f"algorithm: {', '.join(ALGORITHMS)} (default: ppo)"
    )
    parser.add_argument("--env", default="gymnax:CartPole-v1", help="env id, backend:name")
    parser.add_argument("--seeds", type=int, default=4, help="number of seeds, vmapped (default 4)")
    parser.add_argument("--seed-offset", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--total-timesteps", type=int, default=None, help="env steps per seed")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override any hparam or config field (repeatable), e.g. --set learning_rate=1e-3",
    )
    parser.add_argument("--out", default=None, help=f"output directory (default {out_default})")
    parser.add_argument(
        "--progress-interval", type=int, default=None, help="updates between progress reports"
    )
    parser.add_argument("--no-progress", action="store_true", help="compile no progress hook")
    parser.add_argument(
        "--host-devices",
        type=int,
        default=None,
        help="on CPU, split the host into this many JAX devices and shard the agents over "
        "them (default: one per core)",
    )


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments that choose a sweep's members and how it runs and reports."""
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME=V1,V2,...",
        help="grid values of an hparam (repeatable: the cartesian product of all --grid)",
    )
    parser.add_argument(
        "--random", type=int, default=0, metavar="N", help="N members drawn from the --dist"
    )
    parser.add_argument(
        "--dist",
        action="append",
        default=[],
        metavar="NAME=DIST",
        help="random-search distribution (repeatable): loguniform:LO:HI, uniform:LO:HI, "
        "choice:A,B,...",
    )
    parser.add_argument(
        "--point",
        action="append",
        default=[],
        metavar="NAME=V,NAME=V",
        help="one explicit member (repeatable); unnamed hparams keep the base values",
    )
    parser.add_argument("--sweep-seed", type=int, default=0, help="random-search key (default 0)")
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="agents (members x seeds) per compiled call"
    )
    parser.add_argument("--top", type=int, default=5, help="members in the printed table")
    parser.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="multi-host: jax.distributed coordinator; each process trains its share of the "
        "agents and process 0 writes the results",
    )
    parser.add_argument("--num-processes", type=int, default=None, help="multi-host: processes")
    parser.add_argument("--process-id", type=int, default=None, help="multi-host: this process")


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxpo`` argument parser."""
    parser = argparse.ArgumentParser(prog="jaxpo", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train an agent (several seeds in one compiled program)")
    add_run_arguments(train, "runs/ALGO_ENV")
    members = sub.add_parser("sweep", help="train many hparam members x seeds in one program")
    add_run_arguments(members, "runs/sweep_ALGO_ENV")
    add_sweep_arguments(members)
    return parser


def write_metrics_csv(
    path: Path, metrics: dict[str, np.ndarray], seeds: np.ndarray, steps_per_update: int
) -> None:
    """One row per (seed, update): ``seed, update, env_steps, <metric columns>``."""
    names = sorted(metrics)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seed", "update", "env_steps", *names])
        for s, seed in enumerate(seeds):
            for u in range(metrics[names[0]].shape[-1]):
                row = [float(metrics[n][s, u]) for n in names]
                writer.writerow([int(seed), u + 1, (u + 1) * steps_per_update, *row])


def setup(args: argparse.Namespace) -> tuple[Config, HParams, np.ndarray]:
    """The preset of ``--algo``/``--env`` with the budget, ``--set`` and progress applied.

    Returns:
        ``(config, base hparams, seeds [S])``.
    """
    from . import presets

    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    config, hparams = presets.get(args.algo, args.env)
    if args.total_timesteps is not None:
        config = config.replace(total_timesteps=args.total_timesteps)
    config, hparams = apply_sets(config, hparams, args.set)
    interval = args.progress_interval or max(1, config.num_updates // 20)
    config = config.replace(progress_interval=0 if args.no_progress else interval)
    validate_config(config)
    return config, hparams, np.arange(args.seed_offset, args.seed_offset + args.seeds)


def output_dir(args: argparse.Namespace, config: Config, prefix: str) -> Path:
    """``--out``, or ``runs/PREFIXALGO_ENV``; created if missing."""
    out = Path(args.out or f"runs/{prefix}{config.algo}_{config.env_id.replace(':', '_')}")
    out.mkdir(parents=True, exist_ok=True)
    return out


def timed_run(
    args: argparse.Namespace,
    config: Config,
    hparams: HParams,
    seeds: np.ndarray,
    total_updates: int,
    chunk_size: int | None = None,
) -> tuple[sweep.SweepResult, float]:
    """Runs :func:`jaxpo.sweep.run` under one progress display (none with ``--no-progress``).

    Returns:
        The result (metrics only, no final states) and the seconds it took, compile included.
    """
    from .progress import ProgressDisplay

    start = time.perf_counter()
    display = ProgressDisplay(total_updates, config.batch_size, label=config.algo)
    with display:
        result = sweep.run(
            config,
            hparams,
            seeds=seeds,
            progress=None if args.no_progress else display,
            chunk_size=chunk_size,
            keep_state=False,
        )
    return result, time.perf_counter() - start


def run_train(args: argparse.Namespace) -> int:
    """``jaxpo train``: validate, compile once, train all seeds, report and write files."""
    config, hparams, seeds = setup(args)
    out = output_dir(args, config, "")

    print(
        f"jaxpo train: {config.algo} on {config.env_id}, {len(seeds)} seed(s), "
        f"{config.num_updates} updates x {config.batch_size} env steps"
    )
    result, wall = timed_run(args, config, hparams, seeds, config.num_updates)
    metrics = {k: np.asarray(v)[0] for k, v in result.metrics.items()}

    final = metrics["episode_return"][:, -1]
    print(f"\n{'seed':>6}  {'final return':>12}")
    for seed, value in zip(seeds, final, strict=True):
        print(f"{int(seed):>6}  {value:>12.1f}")
    print(f"{'mean':>6}  {final.mean():>12.1f} ± {final.std():.1f}   ({wall:.0f}s incl. compile)")

    write_metrics_csv(out / "metrics.csv", metrics, seeds, config.batch_size)
    summary = {
        "algo": config.algo,
        "env_id": config.env_id,
        "config": dataclasses.asdict(config),
        "hparams": {k: float(v[0]) for k, v in sweep.columns(result.hparams).items()},
        "seeds": [int(s) for s in seeds],
        "final_return": [float(v) for v in final],
        "final_return_mean": float(final.mean()),
        "final_return_std": float(final.std()),
        "env_steps_per_seed": config.num_updates * config.batch_size,
        "wall_seconds": wall,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {out / 'metrics.csv'} and {out / 'summary.json'}")
    return 0


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


def sweep_summary(
    config: Config, table: sweep_table.Table, layout: sweep.SweepPlan, wall: float
) -> dict[str, Any]:
    """What ``summary.json`` holds: config, seeds, swept columns and the best member."""
    top = sweep_table.best(table)
    return {
        "algo": config.algo,
        "env_id": config.env_id,
        "config": dataclasses.asdict(config),
        "seeds": sorted({int(row["seed"]) for row in table.rows}),
        "num_members": layout.num_members,
        "num_chunks": layout.num_chunks,
        "env_steps_per_agent": config.num_updates * config.batch_size,
        "swept": {n: [table.hparams_of(m)[n] for m in table.members] for n in table.swept()},
        "best": {
            "metric": "final_return",
            "member": top.member,
            "mean": top.mean,
            "std": top.std,
            "hparams": top.hparams,
        },
        "wall_seconds": wall,
    }


def run_sweep(args: argparse.Namespace) -> int:
    """``jaxpo sweep``: build the members, train them × seeds, report and write files."""
    if args.top < 1:
        raise ValueError(f"--top must be >= 1, got {args.top}")
    config, hparams, seeds = setup(args)
    members = sweep_members(args, hparams)
    with flag_errors("--chunk-size"):
        layout = sweep.plan(config, members, seeds, args.chunk_size)
    out = output_dir(args, config, "sweep_")

    print(
        f"jaxpo sweep: {config.algo} on {config.env_id}, {layout.num_members} member(s) x "
        f"{layout.num_seeds} seed(s) = {layout.num_agents} agents in {layout.num_chunks} "
        f"chunk(s) on {jax.device_count()} device(s), {config.num_updates} updates x "
        f"{config.batch_size} env steps"
    )
    result, wall = timed_run(args, config, members, seeds, layout.total_updates, args.chunk_size)
    if jax.process_index() != 0:  # every process holds the gathered results; one writes them
        return 0

    table = sweep_table.table(result, config)
    written = [out / "table.csv", out / "curves.png", out / "metrics.npz", out / "summary.json"]
    sweep_table.write_csv(table, written[0])
    sweep_table.plot_curves(result, config, written[1])
    np.savez(written[2], **result.metrics)
    written[3].write_text(json.dumps(sweep_summary(config, table, layout, wall), indent=2))
    if sweep_table.write_parquet(table, out / "table.parquet"):
        written.append(out / "table.parquet")
    print(f"\n{sweep_table.format_top_k(table, args.top)}\n({wall:.0f}s incl. compile)")
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


def start_devices(args: argparse.Namespace) -> None:
    """Host devices (``--host-devices``) and, for a multi-host sweep, ``jax.distributed``.

    Both must happen before JAX runs anything; called in-process after that (as tests do),
    the host split is left as it is.
    """
    if args.host_devices is not None and args.host_devices < 1:
        raise ValueError(f"--host-devices must be >= 1, got {args.host_devices}")
    sweep.use_host_devices(args.host_devices)
    if getattr(args, "coordinator", None):
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxpo`` console command."""
    args = build_parser().parse_args(argv)
    try:
        start_devices(args)
        if args.command == "train":
            return run_train(args)
        if args.command == "sweep":
            return run_sweep(args)
    except (ValueError, TypeError) as err:
        print(f"jaxpo: error: {err}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
