"""The ``jaxpo`` command line's arguments: the parser and checks of the count flags.

:func:`build_parser` builds every subcommand's arguments (``train``, ``sweep`` and the
:data:`TOOLS`); :func:`check_counts` refuses a count flag below its minimum before anything
is built. What the commands do is in :mod:`jaxpo.cli`.
"""

from __future__ import annotations

import argparse
from typing import Any

from . import presets
from .algos import ALGORITHMS


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
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="the complete settings in FILE (a best.json of jaxpo tune, or a run's "
        "summary.json) instead of the --algo/--env preset; --set and --total-timesteps "
        "still apply on top",
    )
    parser.add_argument(
        "--total-timesteps",
        type=int,
        default=None,
        help="env steps per seed (default: the preset's budget, listed below)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override any hparam or config field (repeatable), e.g. --set learning_rate=1e-3",
    )
    parser.add_argument(
        "--out",
        default=None,
        help=f"output folder (default {out_default}); one that holds another run is refused",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out: every file jaxpo wrote there is removed first",
    )
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


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``jaxpo tune`` beyond a sweep's: the method and its settings."""
    parser.add_argument(
        "--method",
        required=True,
        choices=("halving", "pbt", "optuna"),
        help="successive halving of the members, population-based training of them, or "
        "Optuna's sampler asking --trials members per generation from the --dist space",
    )
    parser.add_argument(
        "--metric",
        default=None,
        help="metric ranked on (default: eval_return with --set eval_interval=K, else "
        "episode_return); a member's score is its IQM over seeds at the last update",
    )
    parser.add_argument("--eta", type=int, default=None, help="halving: keep 1/eta per rung (3)")
    parser.add_argument(
        "--min-updates", type=int, default=None, help="halving: updates of the first rung"
    )
    parser.add_argument(
        "--interval", type=int, default=None, help="pbt: updates per generation (required)"
    )
    parser.add_argument(
        "--quantile", type=float, default=None, help="pbt: share replaced per generation (0.25)"
    )
    parser.add_argument(
        "--resample-probability",
        type=float,
        default=None,
        help="pbt: chance an explored hparam is redrawn from its --dist, not perturbed (0.25)",
    )
    parser.add_argument(
        "--continue",
        dest="continue_run",
        action="store_true",
        help="pbt: continue the run checkpointed in --out (give the same flags)",
    )
    parser.add_argument(
        "--trials", type=int, default=None, help="optuna: trials (members) per generation"
    )
    parser.add_argument("--generations", type=int, default=None, help="optuna: generations")


#: the subcommands that start no host devices: they read finished runs or list settings.
TOOLS = ("eval", "render", "plot", "settings")


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
    listing = sub.add_parser(
        "settings", help="every name --set accepts, with a preset's values, ranges and budget"
    )
    listing.add_argument("--algo", default="ppo", help="algorithm (default ppo)")
    listing.add_argument(
        "--env", default="gymnax:CartPole-v1", help="env id (default gymnax:CartPole-v1)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxpo`` argument parser."""
    parser = argparse.ArgumentParser(prog="jaxpo", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    epilog = (
        "--set accepts every config field and hparam of the algorithm;\n"
        "`jaxpo settings --algo ALGO --env ENV` lists them with the preset's values, ranges\n"
        "and budget.\n\n"
        "Budgets of the tuned presets (env steps per seed):\n" + presets.budgets()
    )
    formatter = argparse.RawDescriptionHelpFormatter
    train = sub.add_parser(
        "train",
        help="train an agent (several seeds in one compiled program)",
        epilog=epilog,
        formatter_class=formatter,
    )
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
    members = sub.add_parser(
        "sweep",
        help="train many hparam members x seeds in one program",
        epilog=epilog,
        formatter_class=formatter,
    )
    add_run_arguments(members, "runs/sweep_ALGO_ENV")
    add_sweep_arguments(members)
    search = sub.add_parser(
        "tune",
        help="search hparams: successive halving, PBT or Optuna, in one compiled program",
        epilog=epilog,
        formatter_class=formatter,
    )
    add_run_arguments(search, "runs/tune_METHOD_ALGO_ENV")
    add_sweep_arguments(search)
    add_tune_arguments(search)
    add_tool_parsers(sub)
    return parser


#: count flags and their smallest valid value.
COUNTS = {
    "seeds": 1,
    "progress_interval": 0,
    "checkpoint_every": 1,
    "chunk_size": 1,
    "top": 1,
    "host_devices": 1,
    "min_updates": 1,
    "interval": 1,
    "trials": 1,
    "generations": 1,
}


def check_counts(args: argparse.Namespace) -> None:
    """Refuses a count flag below its minimum (:data:`COUNTS`) before anything is built."""
    for name, minimum in COUNTS.items():
        value = getattr(args, name, None)
        if value is not None and value < minimum:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} must be >= {minimum}, got {value}")
