"""Command line: ``jaxpo train|sweep|eval|render|plot`` (also ``python -m jaxpo ...``).

``jaxpo train`` with no arguments trains PPO on gymnax CartPole-v1 with 4 seeds in one
compiled, vmapped program, shows progress, prints the final return per seed and writes
``metrics.csv`` and ``metrics.jsonl`` (one row per update per seed) and ``summary.json`` to
``--out``; ``--tensorboard`` adds event files under ``OUT/tensorboard``, ``--wandb`` a
Weights & Biases run (if ``wandb`` is installed). ``jaxpo train --config best.json`` trains
with the complete settings a file holds (:func:`jaxpo.presets.load`).

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
in :mod:`jaxpo.runs` (callable from Python with plain values), the arguments in
:mod:`jaxpo.parser`, the parsing of ``--set``, ``--grid``, ``--dist`` and ``--point`` values
in :mod:`jaxpo.flags`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from . import (
    checkpoint,
    evaluate,
    flags,
    plotting,
    presets,
    render,
    run_log,
    runs,
    sweep,
    sweep_table,
    tuning,
)
from .config import Config
from .hparams import HParams
from .parser import TOOLS, build_parser, check_counts
from .validation import validate_config


def run_tool(args: argparse.Namespace) -> int:
    """``jaxpo eval``, ``render`` or ``plot`` (see :data:`TOOLS`)."""
    if args.command == "eval":
        evaluate.evaluate_run(args.dir, args.episodes, args.seed, args.agent)
    elif args.command == "render":
        render.render(args.dir, args.out, args.max_steps, args.agent, args.seed)
    elif args.command == "settings":
        print(presets.describe(args.algo, args.env))
    else:
        print(f"wrote {plotting.plot_runs(args.dirs, args.out, args.metric)}")
    return 0


def setup(args: argparse.Namespace) -> tuple[Config, HParams, np.ndarray]:
    """The preset of ``--algo``/``--env`` or ``--config FILE``, then the budget and ``--set``.

    Returns:
        ``(config, base hparams, seeds [S])``.

    Raises:
        ValueError: ``--config`` with ``--algo`` or ``--env``, or a malformed file.
    """
    seeds = 4 if args.seeds is None else args.seeds
    settings = getattr(args, "config", None)
    if settings is None:
        config, hparams = presets.get(args.algo or "ppo", args.env or "gymnax:CartPole-v1")
    else:
        given = [flag for flag, value in (("--algo", args.algo), ("--env", args.env)) if value]
        if given:
            raise ValueError(
                f"--config {settings} sets the algorithm and the env itself; drop "
                f"{' and '.join(given)}"
            )
        config, hparams = presets.load(settings)
    if args.total_timesteps is not None:
        config = config.replace(total_timesteps=args.total_timesteps)
    config, hparams = flags.apply_sets(config, hparams, args.set)
    validate_config(config)
    offset = args.seed_offset or 0
    return config, hparams, np.arange(offset, offset + seeds)


def output_dir(args: argparse.Namespace, config: Config, prefix: str) -> Path:
    """``--out``, or ``runs/PREFIXALGO_ENV``: created, emptied of an old run with ``--overwrite``.

    Raises:
        ValueError: it is a file, cannot be created, or holds a run and no ``--overwrite``.
    """
    out = Path(args.out or f"runs/{prefix}{config.algo}_{config.env_id.replace(':', '_')}")
    with flags.flag_errors("--out"):
        return runs.prepare_output(out, overwrite=args.overwrite)


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
            ("--config", args.config),
            ("--set", args.set),
            ("--algo", args.algo),
            ("--env", args.env),
            ("--seeds", args.seeds),
            ("--seed-offset", args.seed_offset),
            ("--overwrite", args.overwrite or None),
        )
        if value not in (None, [])
    ]
    if given:
        raise ValueError(
            f"--resume continues a run with the config, hparams and seeds it saved; "
            f"drop {', '.join(given)}"
        )
    if args.out is not None and Path(args.out).absolute() != Path(args.resume).absolute():
        raise ValueError(
            f"--resume writes into the run it resumes ({args.resume}); drop --out {args.out} "
            "(to branch a run, copy its folder first)"
        )
    config, hparams, seeds, saved = runs.resume(args.resume, args.total_timesteps)
    return config, hparams, seeds, Path(args.resume), saved


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
    check_counts(args)
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
    for line in run_log.nan_report(metrics, seeds, config):
        print(line)

    summary = runs.train_summary(config, hparams, seeds, metrics, wall)
    logs = runs.write_summary(out, summary, metrics, seeds, config, **log_options(args))
    wrote = ", ".join(str(path) for path in [*logs, out / "summary.json"])
    print(f"wrote {wrote} and the checkpoint in {out}")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    """``jaxpo sweep``: build the members, train them × seeds, report and write files."""
    check_counts(args)
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
    metric, centre = sweep_table.ranking_of(config)
    top = sweep_table.format_top_k(table, args.top, metric, centre=centre)
    print(f"\n{top}\n({wall:.0f}s incl. compile)")
    for line in run_log.nan_report(result.metrics, result.seeds, config):
        print(line)
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


def tune_options(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The keyword arguments of ``args.method``'s search from the ``jaxpo tune`` flags.

    Raises:
        ValueError: a flag of another method, or one the method needs missing.
    """
    own = {
        "halving": {"eta": 3 if args.eta is None else args.eta, "min_updates": args.min_updates},
        "pbt": {
            "interval": args.interval,
            "quantile": 0.25 if args.quantile is None else args.quantile,
            "resample_probability": (
                0.25 if args.resample_probability is None else args.resample_probability
            ),
            "explore": flags.named("--dist", args.dist),
            "seed": args.sweep_seed,
            "directory": out / "pbt",
        },
        "optuna": {
            "dists": flags.named("--dist", args.dist),
            "trials_per_generation": args.trials,
            "generations": args.generations,
            "seed": args.sweep_seed,
        },
    }[args.method]
    needed = {
        "pbt": {"--interval": args.interval, "--dist": args.dist},
        "optuna": {"--trials": args.trials, "--generations": args.generations, "--dist": args.dist},
    }.get(args.method, {})
    missing = [flag for flag, value in needed.items() if not value]
    if missing:
        raise ValueError(f"--method {args.method} needs {', '.join(missing)}")
    foreign = [
        flag
        for flag, value, owner in (
            ("--eta", args.eta, "halving"),
            ("--min-updates", args.min_updates, "halving"),
            ("--quantile", args.quantile, "pbt"),
            ("--resample-probability", args.resample_probability, "pbt"),
            ("--interval", args.interval, "pbt"),
            ("--continue", args.continue_run or None, "pbt"),
            ("--trials", args.trials, "optuna"),
            ("--generations", args.generations, "optuna"),
        )
        if value is not None and owner != args.method
    ]
    if foreign:
        raise ValueError(f"{', '.join(foreign)} do(es) not apply to --method {args.method}")
    chunk = {"chunk_size": args.chunk_size} if args.chunk_size else {}
    return {**own, **chunk, "metric": args.metric, "progress": not args.no_progress}


def tune_members(args: argparse.Namespace, hparams: HParams) -> HParams:
    """The members ``jaxpo tune`` starts from: the base hparams for Optuna, else the sweep's.

    PBT's ``--dist`` is its exploration space; without ``--random N`` the starting members
    come from ``--grid`` and ``--point`` alone.
    """
    if args.method == "optuna":
        if args.grid or args.point or args.random:
            raise ValueError(
                "--method optuna draws its members from --dist; drop --grid, --point, --random"
            )
        return hparams
    if args.method == "pbt" and not args.random:
        return flags.sweep_members(argparse.Namespace(**{**vars(args), "dist": []}), hparams)
    return flags.sweep_members(args, hparams)


def run_tune(args: argparse.Namespace) -> int:
    """``jaxpo tune``: search, report the ranking and write the search's files."""
    check_counts(args)
    logs = [f for f, v in (("--tensorboard", args.tensorboard), ("--wandb", args.wandb)) if v]
    if logs or args.wandb_project:
        raise ValueError(
            f"jaxpo tune writes no {' or '.join(logs) or '--wandb-project'} logs (its curves "
            "are in metrics.npz and curves.png); drop the flag"
        )
    if args.continue_run and (args.out is None or not (Path(args.out) / "pbt").is_dir()):
        raise ValueError("--continue needs --out naming a PBT run's folder (with pbt/)")
    config, hparams, seeds = setup(args)
    members = tune_members(args, hparams)
    if args.continue_run:
        out = Path(args.out)
    else:
        out = output_dir(args, config, f"tune_{args.method}_")
    options = tune_options(args, out)
    count = args.trials if args.method == "optuna" else sweep.num_members(members)
    print(
        f"jaxpo tune: {args.method} on {config.algo} / {config.env_id}, "
        f"{count} member(s) x {len(seeds)} seed(s), "
        f"{config.num_updates} updates x {config.batch_size} env steps; hparams are traced, "
        "so every rung or generation reuses the compiled program"
    )
    start = time.perf_counter()
    outcome = tuning.run(args.method, config, members, seeds, **options)
    wall = time.perf_counter() - start
    if jax.process_index() != 0:
        return 0
    written = tuning.write_outputs(out, config, outcome, wall)
    print(f"\n{tuning.format_table(outcome, args.top)}\n({wall:.0f}s incl. compile)")
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


def start_devices(args: argparse.Namespace) -> None:
    """Host devices (``--host-devices``) and, for a multi-host sweep, ``jax.distributed``.

    Both must happen before JAX runs anything; called in-process after that (as tests do),
    the host split is left as it is.
    """
    check_counts(args)
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
        if args.command == "tune":
            return run_tune(args)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        print(f"jaxpo: error: {err}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
