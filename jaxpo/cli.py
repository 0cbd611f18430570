"""Command line: ``jaxpo train|sweep|eval|render|plot`` (also ``python -m jaxpo ...``).

``jaxpo train`` with no arguments trains PPO on gymnax CartPole-v1 with 4 seeds in one
compiled, vmapped program, shows progress, prints the final return per seed and writes
``metrics.csv`` and ``metrics.jsonl`` (one row per update per seed) and ``summary.json`` to
``--out``; ``--tensorboard`` adds event files under ``OUT/tensorboard``, ``--wandb`` a
Weights & Biases run (if ``wandb`` is installed).

``jaxpo sweep --grid learning_rate=1e-4,3e-4 --seeds 8`` trains every member (from
``--grid``, ``--random N --dist``, ``--point``) × seed as one compiled program, shows one
progress display, prints the top members and writes ``table.csv`` (+ ``table.parquet`` with
pyarrow), ``curves.png``, ``metrics.npz`` (``[M, S, U]`` arrays), ``metrics.csv`` and
``metrics.jsonl`` (one row per member per seed per update) and ``summary.json``, plus the
same optional logs.

``jaxpo eval DIR``, ``jaxpo render DIR --out FILE`` and ``jaxpo plot DIR ... --out FILE.png``
read finished training runs (:mod:`jaxpo.evaluate`, :mod:`jaxpo.render`,
:mod:`jaxpo.plotting`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from . import checkpoint, evaluate, plotting, render, run_log, sweep, sweep_table
from .algos import ALGORITHMS
from .config import Config, field_names, validate_config
from .hparams import HParams, scalar_names
from .progress import default_interval
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
    # None marks "not given" (the defaults are filled in by ``setup``) so that ``--resume``
    # can refuse what it would otherwise ignore.
    parser.add_argument(
        "--algo", default=None, help=f"algorithm: {', '.join(ALGORITHMS)} (default: ppo)"
    )
    parser.add_argument(
        "--env", default=None, help="env id, backend:name (default: gymnax:CartPole-v1)"
    )
    parser.add_argument(
        "--seeds", type=int, default=None, help="number of seeds, vmapped (default 4)"
    )
    parser.add_argument("--seed-offset", type=int, default=None, help="first seed (default 0)")
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
        "--tensorboard", action="store_true", help="also write TensorBoard logs to OUT/tensorboard"
    )
    parser.add_argument(
        "--wandb", action="store_true", help="also log to Weights & Biases (if installed)"
    )
    parser.add_argument(
        "--wandb-project", default=None, help="W&B project (default jaxpo; implies --wandb)"
    )
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


#: the subcommands that read finished runs (they start no host devices).
TOOLS = ("eval", "render", "plot")


def add_tool_parsers(sub: Any) -> None:
    """Adds the :data:`TOOLS` subcommands to the subparsers ``sub``."""
    run_dir = "run directory with a checkpoint (jaxpo train --out)"
    evaluation = sub.add_parser("eval", help="evaluate a saved policy, deterministic and sampled")
    evaluation.add_argument("dir", help=run_dir)
    evaluation.add_argument(
        "--episodes", type=int, default=32, help="parallel episodes per agent and mode (default 32)"
    )
    evaluation.add_argument("--seed", type=int, default=0, help="evaluation key (default 0)")
    evaluation.add_argument(
        "--agent",
        type=int,
        default=None,
        metavar="I",
        help="only agent I (member * seeds + seed position; default: every seed of member 0)",
    )
    drawing = sub.add_parser("render", help="draw one deterministic episode of a saved policy")
    drawing.add_argument("dir", help=run_dir)
    drawing.add_argument("--out", required=True, help="FILE.html (brax:) or FILE.gif (gymnax:)")
    drawing.add_argument("--max-steps", type=int, default=500, help="episode cap (default 500)")
    drawing.add_argument("--agent", type=int, default=0, metavar="I", help="agent (default 0)")
    drawing.add_argument("--seed", type=int, default=0, help="episode key (default 0)")
    curves = sub.add_parser("plot", help="learning curves of training runs on one figure")
    curves.add_argument("dirs", nargs="+", metavar="DIR", help="run directories (metrics.csv)")
    curves.add_argument("--out", required=True, help="the PNG to write")
    curves.add_argument("--metric", default="episode_return", help="a metrics.csv column")


def run_tool(args: argparse.Namespace) -> int:
    """``jaxpo eval``, ``render`` or ``plot`` (see :data:`TOOLS`)."""
    if args.command == "eval":
        evaluate.evaluate_run(args.dir, args.episodes, args.seed, args.agent)
    elif args.command == "render":
        render.render(args.dir, args.out, args.max_steps, args.agent, args.seed)
    else:
        print(f"wrote {plotting.plot_runs(args.dirs, args.out, args.metric)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxpo`` argument parser."""
    parser = argparse.ArgumentParser(prog="jaxpo", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train an agent (several seeds in one compiled program)")
    add_run_arguments(train, "runs/ALGO_ENV")
    train.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="K",
        help="save the complete train state every K updates (always saved at the end)",
    )
    train.add_argument(
        "--resume",
        default=None,
        metavar="DIR",
        help="continue the run checkpointed in DIR (its config, hparams and seeds; "
        "--total-timesteps may extend it, which also stretches anneal_lr's schedule)",
    )
    members = sub.add_parser("sweep", help="train many hparam members x seeds in one program")
    add_run_arguments(members, "runs/sweep_ALGO_ENV")
    add_sweep_arguments(members)
    add_tool_parsers(sub)
    return parser


def setup(args: argparse.Namespace) -> tuple[Config, HParams, np.ndarray]:
    """The preset of ``--algo``/``--env`` with the budget, ``--set`` and progress applied.

    Returns:
        ``(config, base hparams, seeds [S])``.
    """
    from . import presets

    seeds = 4 if args.seeds is None else args.seeds
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    config, hparams = presets.get(args.algo or "ppo", args.env or "gymnax:CartPole-v1")
    if args.total_timesteps is not None:
        config = config.replace(total_timesteps=args.total_timesteps)
    config, hparams = apply_sets(config, hparams, args.set)
    config = with_progress(args, config)
    offset = args.seed_offset or 0
    return config, hparams, np.arange(offset, offset + seeds)


def with_progress(args: argparse.Namespace, config: Config) -> Config:
    """``config`` with the progress interval of ``--progress-interval``/``--no-progress``."""
    interval = args.progress_interval or default_interval(config.num_updates)
    config = config.replace(progress_interval=0 if args.no_progress else interval)
    validate_config(config)
    return config


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
    chunk_size: int | None = None,
) -> tuple[sweep.SweepResult, float]:
    """Runs :func:`jaxpo.sweep.run` with its progress display (none with ``--no-progress``).

    Returns:
        The result (metrics only, no final states) and the seconds it took, compile included.
    """
    start = time.perf_counter()
    result = sweep.run(
        config,
        hparams,
        seeds=seeds,
        progress=not args.no_progress,
        chunk_size=chunk_size,
        keep_state=False,
    )
    return result, time.perf_counter() - start


def write_logs(
    args: argparse.Namespace,
    out: Path,
    metrics: dict[str, np.ndarray],
    seeds: np.ndarray,
    config: Config,
    summary: dict[str, Any],
) -> list[Path]:
    """The :mod:`jaxpo.run_log` logs the flags ask for; returns the paths written.

    Args:
        args: the parsed flags (``--tensorboard``, ``--wandb``, ``--wandb-project``).
        out: the output directory.
        metrics: ``{name: [S, U]}`` of a training run or ``{name: [M, S, U]}`` of a sweep.
        seeds: the integer seeds, ``[S]``.
        config: the run's configuration.
        summary: what ``summary.json`` holds, the W&B run's config.
    """
    wandb = args.wandb or args.wandb_project is not None
    return run_log.write_logs(
        out,
        metrics,
        seeds,
        config.batch_size,
        tensorboard=args.tensorboard,
        wandb_project=(args.wandb_project or "jaxpo") if wandb else None,
        run_config=summary,
    )


def start_or_resume(
    args: argparse.Namespace,
) -> tuple[Config, HParams, np.ndarray, Path, checkpoint.Checkpoint | None]:
    """``(config, hparams, seeds, out, checkpoint)`` of a new run, or of ``--resume DIR``."""
    if args.resume is None:
        config, hparams, seeds = setup(args)
        return config, sweep.stack(hparams, {}, 1), seeds, output_dir(args, config, ""), None
    given = [
        flag
        for flag, value in (
            ("--set", args.set),
            ("--algo", args.algo),
            ("--env", args.env),
            ("--seeds", args.seeds),
            ("--seed-offset", args.seed_offset),
        )
        if value not in (None, [])
    ]
    if given:
        raise ValueError(
            f"--resume continues a run with the config, hparams and seeds it saved; "
            f"drop {', '.join(given)}"
        )
    saved = checkpoint.load(args.resume)
    config = saved.config
    if args.total_timesteps is not None:
        config = config.replace(total_timesteps=args.total_timesteps)
    config = with_progress(args, config)
    if saved.update > config.num_updates:
        raise ValueError(
            f"--resume: the run already did {saved.update} updates, more than the "
            f"{config.num_updates} of --total-timesteps={config.total_timesteps}"
        )
    out = Path(args.out or args.resume)
    out.mkdir(parents=True, exist_ok=True)
    return config, saved.hparams, saved.seeds, out, saved


def train_in_segments(
    args: argparse.Namespace,
    config: Config,
    hparams: HParams,
    seeds: np.ndarray,
    out: Path,
    saved: checkpoint.Checkpoint | None,
) -> tuple[dict[str, np.ndarray], float]:
    """Trains to ``config.num_updates`` in segments of ``--checkpoint-every`` updates.

    After each segment the complete state is saved to ``out`` (:mod:`jaxpo.checkpoint`); the
    next segment continues from the state in memory, which is the same computation as one
    run. One progress display covers all segments.

    Returns:
        ``({metric: [S, U]}, seconds)``, the metrics including a resumed run's earlier ones.
    """
    from .progress import ProgressDisplay

    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise ValueError(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
    every = args.checkpoint_every or config.num_updates
    state, metrics = (saved.state, saved.metrics) if saved else (None, {})
    done = saved.update if saved else 0
    start = time.perf_counter()
    with ProgressDisplay(config.num_updates, config.batch_size, label=config.algo) as display:
        while done < config.num_updates:
            updates = min(every, config.num_updates - done)
            result = sweep.run(
                config,
                hparams,
                seeds=seeds,
                progress=None if args.no_progress else display,
                state=state,
                updates=updates,
            )
            state, done = result.state, done + updates
            metrics = {
                k: np.concatenate([metrics[k], v], -1) if k in metrics else v
                for k, v in result.metrics.items()
            }
            checkpoint.save(out, config, hparams, seeds, state, metrics)
    return {k: v[0] for k, v in metrics.items()}, time.perf_counter() - start


#: how many update numbers, and how many agents, a NaN-safety report lists before "...".
REPORT_LIMIT = 5


def first_updates(flags: np.ndarray) -> str:
    """The 1-based numbers of the updates where ``flags [U]`` is nonzero, the first few."""
    numbers = [str(u + 1) for u in np.flatnonzero(flags)]
    return ", ".join(numbers[:REPORT_LIMIT] + (["..."] if len(numbers) > REPORT_LIMIT else []))


def nan_report(metrics: dict[str, np.ndarray], seeds: np.ndarray, config: Config) -> list[str]:
    """End-of-run lines on non-finite environment output, skipped updates and failed agents.

    Update numbers are 1-based, as in ``metrics.csv``; nothing is reported for a clean run.

    Args:
        metrics: ``{name: [S, U]}`` of a training run or ``{name: [M, S, U]}`` of a sweep,
            with :func:`jaxpo.train.make_trainer`'s ``env_nonfinite``, ``update_skipped``,
            ``skipped_total`` and ``failed``.
        seeds: the integer seeds, ``[S]``.
        config: the run's configuration (env id, ``max_consecutive_skips``).
    """
    arrays, members = run_log.by_member(metrics)
    lines, agents = [], 0
    for m, s in np.ndindex(arrays["failed"].shape[:2]):
        agent = f"member {m}, seed {seeds[s]}" if members else f"seed {seeds[s]}"
        env_updates, skips, failed = (
            arrays[name][m, s] for name in ("env_nonfinite", "update_skipped", "failed")
        )
        if not (env_updates.any() or skips.any()):
            continue
        agents += 1
        if agents > REPORT_LIMIT:
            continue
        if env_updates.any():
            lines.append(
                f"environment {config.env_id} emitted non-finite observations or rewards at "
                f"update(s) {first_updates(env_updates)} ({agent})"
            )
        if skips.any():
            lines.append(
                f"{agent}: {int(arrays['skipped_total'][m, s, -1])} of {skips.size} updates "
                f"skipped for non-finite losses, gradients or parameters, at update(s) "
                f"{first_updates(skips)}"
            )
        if failed.any():
            lines.append(
                f"{agent} failed after {config.max_consecutive_skips} consecutive skipped "
                f"updates at update {np.flatnonzero(failed)[0] + 1}; its parameters "
                f"stayed frozen from then on"
            )
    if agents > REPORT_LIMIT:
        lines.append(f"... and {agents - REPORT_LIMIT} more agent(s) (see metrics.csv)")
    return lines


def run_train(args: argparse.Namespace) -> int:
    """``jaxpo train``: validate, compile once, train all seeds, report and write files."""
    config, hparams, seeds, out, saved = start_or_resume(args)
    resumed = f", resuming at update {saved.update}" if saved else ""
    print(
        f"jaxpo train: {config.algo} on {config.env_id}, {len(seeds)} seed(s), "
        f"{config.num_updates} updates x {config.batch_size} env steps{resumed}"
    )
    metrics, wall = train_in_segments(args, config, hparams, seeds, out, saved)

    final = metrics["episode_return"][:, -1]
    print(f"\n{'seed':>6}  {'final return':>12}")
    for seed, value in zip(seeds, final, strict=True):
        print(f"{int(seed):>6}  {value:>12.1f}")
    print(f"{'mean':>6}  {final.mean():>12.1f} ± {final.std():.1f}   ({wall:.0f}s incl. compile)")
    for line in nan_report(metrics, seeds, config):
        print(line)

    summary = {
        "algo": config.algo,
        "env_id": config.env_id,
        "config": dataclasses.asdict(config),
        "hparams": {k: float(v[0]) for k, v in sweep.columns(hparams).items()},
        "seeds": [int(s) for s in seeds],
        "final_return": [float(v) for v in final],
        "final_return_mean": float(final.mean()),
        "final_return_std": float(final.std()),
        "env_steps_per_seed": config.num_updates * config.batch_size,
        "wall_seconds": wall,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    logs = write_logs(args, out, metrics, seeds, config, summary)
    wrote = ", ".join(str(path) for path in [*logs, out / "summary.json"])
    print(f"wrote {wrote} and the checkpoint in {out}")
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
    result, wall = timed_run(args, config, members, seeds, args.chunk_size)
    if jax.process_index() != 0:  # every process holds the gathered results; one writes them
        return 0

    table = sweep_table.table(result, config)
    written = [out / "table.csv", out / "curves.png", out / "metrics.npz", out / "summary.json"]
    sweep_table.write_csv(table, written[0])
    sweep_table.plot_curves(result, config, written[1])
    np.savez(written[2], **result.metrics)
    summary = sweep_summary(config, table, layout, wall)
    written[3].write_text(json.dumps(summary, indent=2))
    written += write_logs(args, out, result.metrics, result.seeds, config, summary)
    if sweep_table.write_parquet(table, out / "table.parquet"):
        written.append(out / "table.parquet")
    print(f"\n{sweep_table.format_top_k(table, args.top)}\n({wall:.0f}s incl. compile)")
    for line in nan_report(result.metrics, result.seeds, config):
        print(line)
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
        if args.command in TOOLS:
            return run_tool(args)
        start_devices(args)
        if args.command == "train":
            return run_train(args)
        if args.command == "sweep":
            return run_sweep(args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"jaxpo: error: {err}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
