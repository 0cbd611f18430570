"""Command line: ``jaxpo train`` (also ``python -m jaxpo train``).

``jaxpo train`` with no arguments trains PPO on gymnax CartPole-v1 with 4 seeds in one
compiled, vmapped program, shows progress, prints the final return per seed and writes
``metrics.csv`` (one row per update per seed) and ``summary.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise ValueError(f"--set expects NAME=VALUE, got {item!r}")
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


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxpo`` argument parser."""
    parser = argparse.ArgumentParser(prog="jaxpo", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train an agent (several seeds in one compiled program)")
    train.add_argument(
        "--algo", default="ppo", help=f"algorithm: {', '.join(ALGORITHMS)} (default: ppo)"
    )
    train.add_argument("--env", default="gymnax:CartPole-v1", help="env id, backend:name")
    train.add_argument("--seeds", type=int, default=4, help="number of seeds, vmapped (default 4)")
    train.add_argument("--seed-offset", type=int, default=0, help="first seed (default 0)")
    train.add_argument("--total-timesteps", type=int, default=None, help="env steps per seed")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override any hparam or config field (repeatable), e.g. --set learning_rate=1e-3",
    )
    train.add_argument("--out", default=None, help="output directory (default runs/ALGO_ENV)")
    train.add_argument(
        "--progress-interval", type=int, default=None, help="updates between progress reports"
    )
    train.add_argument("--no-progress", action="store_true", help="compile no progress hook")
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


def run_train(args: argparse.Namespace) -> int:
    """``jaxpo train``: validate, compile once, train all seeds, report and write files."""
    from . import presets, sweep
    from .progress import ProgressDisplay

    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    config, hparams = presets.get(args.algo, args.env)
    if args.total_timesteps is not None:
        config = config.replace(total_timesteps=args.total_timesteps)
    config, hparams = apply_sets(config, hparams, args.set)
    interval = args.progress_interval or max(1, config.num_updates // 20)
    config = config.replace(progress_interval=0 if args.no_progress else interval)
    validate_config(config)
    seeds = np.arange(args.seed_offset, args.seed_offset + args.seeds)
    out = Path(args.out or f"runs/{config.algo}_{config.env_id.replace(':', '_')}")
    out.mkdir(parents=True, exist_ok=True)

    print(
        f"jaxpo train: {config.algo} on {config.env_id}, {len(seeds)} seed(s), "
        f"{config.num_updates} updates x {config.batch_size} env steps"
    )
    start = time.perf_counter()
    display = ProgressDisplay(config.num_updates, config.batch_size, label=config.algo)
    with display:
        result = sweep.run(
            config, hparams, seeds=seeds, progress=None if args.no_progress else display
        )
        metrics = {k: np.asarray(v)[0] for k, v in result.metrics.items()}
    wall = time.perf_counter() - start

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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxpo`` console command."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return run_train(args)
    except (ValueError, TypeError) as err:
        print(f"jaxpo: error: {err}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
