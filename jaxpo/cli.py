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

This module parses arguments, calls the library and prints: what ``train`` and ``sweep`` do is
in :mod:`jaxpo.runs` (callable from Python with plain values), the parsing of ``--set``,
``--grid``, ``--dist`` and ``--point`` values in :mod:`jaxpo.flags`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from . import checkpoint, evaluate, flags, plotting, render, runs, sweep, sweep_table
from .algos import ALGORITHMS
from .config import Config
from .hparams import HParams


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
        "--progress-interval",
        type=int,
        default=None,
        help="updates between progress reports (default: about 20 per run; 0: none)",
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
    config, hparams = flags.apply_sets(config, hparams, args.set)
    offset = args.seed_offset or 0
    return config, hparams, np.arange(offset, offset + seeds)


def output_dir(args: argparse.Namespace, config: Config, prefix: str) -> Path:
    """``--out``, or ``runs/PREFIXALGO_ENV``; created if missing."""
    out = Path(args.out or f"runs/{prefix}{config.algo}_{config.env_id.replace(':', '_')}")
    out.mkdir(parents=True, exist_ok=True)
    return out


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
    config, hparams, seeds, saved = runs.resume(args.resume, args.total_timesteps)
    out = Path(args.out or args.resume)
    out.mkdir(parents=True, exist_ok=True)
    return config, hparams, seeds, out, saved


def log_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of :func:`jaxpo.runs.write_summary` that the log flags ask for.

    ``--tensorboard``; ``--wandb`` or ``--wandb-project`` (which implies ``--wandb``).
    """
    wandb = args.wandb or args.wandb_project is not None
    return {
        "tensorboard": args.tensorboard,
        "wandb_project": (args.wandb_project or "jaxpo") if wandb else None,
    }


def run_train(args: argparse.Namespace) -> int:
    """``jaxpo train``: validate, compile once, train all seeds, report and write files."""
    config, hparams, seeds, out, saved = start_or_resume(args)
    resumed = f", resuming at update {saved.update}" if saved else ""
    print(
        f"jaxpo train: {config.algo} on {config.env_id}, {len(seeds)} seed(s), "
        f"{config.num_updates} updates x {config.batch_size} env steps{resumed}"
    )
    metrics, wall = runs.train_in_segments(
        config,
        hparams,
        seeds,
        out,
        saved,
        checkpoint_every=args.checkpoint_every,
        progress=not args.no_progress,
        progress_interval=args.progress_interval,
    )

    final = metrics["episode_return"][:, -1]
    print(f"\n{'seed':>6}  {'final return':>12}")
    for seed, value in zip(seeds, final, strict=True):
        print(f"{int(seed):>6}  {value:>12.1f}")
    print(f"{'mean':>6}  {final.mean():>12.1f} ± {final.std():.1f}   ({wall:.0f}s incl. compile)")
    for line in runs.nan_report(metrics, seeds, config):
        print(line)

    summary = runs.train_summary(config, hparams, seeds, metrics, wall)
    logs = runs.write_summary(out, summary, metrics, seeds, config, **log_options(args))
    wrote = ", ".join(str(path) for path in [*logs, out / "summary.json"])
    print(f"wrote {wrote} and the checkpoint in {out}")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    """``jaxpo sweep``: build the members, train them × seeds, report and write files."""
    if args.top < 1:
        raise ValueError(f"--top must be >= 1, got {args.top}")
    config, hparams, seeds = setup(args)
    members = flags.sweep_members(args, hparams)
    with flags.flag_errors("--chunk-size"):
        layout = sweep.plan(config, members, seeds, args.chunk_size)
    out = output_dir(args, config, "sweep_")

    print(
        f"jaxpo sweep: {config.algo} on {config.env_id}, {layout.num_members} member(s) x "
        f"{layout.num_seeds} seed(s) = {layout.num_agents} agents in {layout.num_chunks} "
        f"chunk(s) on {jax.device_count()} device(s), {config.num_updates} updates x "
        f"{config.batch_size} env steps"
    )
    result, wall = runs.timed_run(
        config,
        members,
        seeds,
        args.chunk_size,
        progress=not args.no_progress,
        progress_interval=args.progress_interval,
    )
    if jax.process_index() != 0:  # every process holds the gathered results; one writes them
        return 0

    table, written = runs.write_sweep_outputs(
        out, result, config, layout, wall, **log_options(args)
    )
    print(f"\n{sweep_table.format_top_k(table, args.top)}\n({wall:.0f}s incl. compile)")
    for line in runs.nan_report(result.metrics, result.seeds, config):
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
