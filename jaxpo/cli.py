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
)
from .config import Config, validate_config
from .hparams import HParams
from .parser import TOOLS, build_parser, check_counts


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
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"jaxpo: error: {err}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
