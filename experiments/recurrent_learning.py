"""A recurrent (GRU) policy against the same loop without a cell, on one environment.

Runs the config twice, ``cell="gru"`` and ``cell="none"`` (everything else equal), 8 seeds in
one ``sweep.run`` call each, and prints each seed's return at the last update and its mean
over the last 5 updates, the seconds of each run (compilation included) and a one-line
summary. Used to calibrate ``tests/test_learning_recurrent.py``.

    python experiments/recurrent_learning.py ALGO ENV_ID TOTAL [options]
    python experiments/recurrent_learning.py ppo probe:memory 16384 --num-envs 16 --num-steps 16
    python experiments/recurrent_learning.py grpo probe:memory 8192 --num-envs 32 --num-steps 4
    python experiments/recurrent_learning.py ppo pomdp:CartPole-v1 300000 --num-envs 8 \
        --num-steps 128 --lr 5e-4 --cell-size 64
    python experiments/recurrent_learning.py trpo probe:memory 16384 --hparam max_kl=0.02

``--cells gru`` (or ``none``) runs one of the two; ``--hparam NAME=VALUE`` (repeatable) sets
any other hparam of the algorithm.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import jaxpo

sweep = jaxpo.sweep
sweep.use_host_devices()  # one JAX device per core, as the tests and the CLI do


def parse() -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("algo")
    parser.add_argument("env_id")
    parser.add_argument("total", type=int, help="total_timesteps per agent")
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--num-steps", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4, help="update_epochs")
    parser.add_argument("--minibatches", type=int, default=2, help="num_minibatches")
    parser.add_argument("--hidden", default="64,64", help="hidden_sizes, comma-separated")
    parser.add_argument("--cell-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4, help="learning_rate")
    parser.add_argument("--group-size", type=int, default=None, help="grpo's group_size")
    parser.add_argument("--no-anneal", action="store_true", help="anneal_lr=False")
    parser.add_argument("--cells", default="gru,none", help="cells to run, comma-separated")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument(
        "--hparam", action="append", default=[], metavar="NAME=VALUE", help="other hparams"
    )
    return parser.parse_args()


def run(args: argparse.Namespace, cell: str) -> tuple[np.ndarray, float, int]:
    """Per-update returns ``[seeds, updates]``, seconds and the batch size of one cell."""
    extra = {}
    if args.group_size is not None:
        extra["algo_config"] = jaxpo.algos.grpo.GRPOConfig(group_size=args.group_size)
    config = jaxpo.Config(
        algo=args.algo,
        env_id=args.env_id,
        num_envs=args.num_envs,
        num_steps=args.num_steps,
        total_timesteps=args.total,
        update_epochs=args.epochs,
        num_minibatches=args.minibatches,
        hidden_sizes=tuple(int(h) for h in args.hidden.split(",")),
        cell=cell,
        cell_size=args.cell_size,
        anneal_lr=not args.no_anneal,
        **extra,
    )
    overrides = {k: float(v) for k, v in (h.split("=", 1) for h in args.hparam)}
    hparams = jaxpo.default_hparams(config, learning_rate=args.lr, **overrides)
    members = sweep.grid(hparams, learning_rate=[args.lr])
    start = time.time()
    result = sweep.run(config, members, seeds=args.seeds)
    returns = np.asarray(result.metrics["episode_return"])[0]
    return returns, time.time() - start, config.num_envs * config.num_steps


def main() -> None:
    """Runs each cell and prints its returns, then the summary."""
    args = parse()
    print(vars(args), flush=True)
    summary = []
    for cell in args.cells.split(","):
        returns, seconds, batch = run(args, cell)
        final = returns[:, -1]
        last5 = np.nanmean(returns[:, -5:], axis=1)
        print(f"{cell}: {seconds:.0f}s, {returns.shape[1]} updates of {batch} steps", flush=True)
        print(f"  final  {np.array2string(final, precision=2)}", flush=True)
        print(f"  last-5 {np.array2string(last5, precision=2)}", flush=True)
        summary.append(
            f"{cell} final {final.min():.2f}-{final.max():.2f} (mean {final.mean():.2f}), "
            f"last-5 {last5.min():.2f}-{last5.max():.2f}, {seconds:.0f}s"
        )
    print(f"SUMMARY {args.algo} {args.env_id} {args.total}: " + "; ".join(summary), flush=True)


if __name__ == "__main__":
    main()
