"""sb3-contrib's TRPO on gymnasium CartPole-v1: the conventional (PyTorch, CPU) baseline.

Usage (in an environment with ``sb3-contrib``, ``torch`` and ``gymnasium``; jaxpo is *not*
needed, and jax is not imported)::

    python benchmarks/sb3_trpo_baseline.py [--n-envs 32] [--n-steps 128] [--total-steps 200000]

``benchmarks/natgrad.py --sb3-python PYTHON`` runs this file with that interpreter and reads
the JSON object it prints on its last line of stdout. The settings mirror a jaxpo TRPO config:
``n_envs`` x ``n_steps`` env steps per update (``DummyVecEnv``, the default of
``make_vec_env``), ``cg_iters`` conjugate-gradient steps, ``line_search_steps`` backtracks,
``critic_epochs`` passes of Adam over ``critic_minibatch``-sized minibatches for the critic,
and 64x64 tanh MLPs (sb3's ``MlpPolicy`` default) for the actor and the critic.

Timed: ``model.learn(total_steps)`` wall time (model construction excluded; sb3 rounds the
steps up to whole rollouts, and the steps actually taken are what is divided by), median of
``--repeats`` runs, each with a fresh model and seed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--n-envs", type=int, default=32)
    parser.add_argument("--n-steps", type=int, default=128)
    parser.add_argument("--total-steps", type=int, default=200_000)
    parser.add_argument("--cg-iters", type=int, default=10)
    parser.add_argument("--line-search-steps", type=int, default=10)
    parser.add_argument("--critic-epochs", type=int, default=4)
    parser.add_argument("--critic-minibatch", type=int, default=1024)
    parser.add_argument("--gae-lambda", type=float, default=0.97)
    parser.add_argument("--max-kl", type=float, default=0.01)
    parser.add_argument("--cg-damping", type=float, default=0.1)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (all CPUs)")
    args = parser.parse_args(argv)

    import torch
    from sb3_contrib import TRPO
    from stable_baselines3.common.env_util import make_vec_env

    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)

    times: list[float] = []
    steps_done: list[int] = []
    returns: list[float | None] = []
    for r in range(args.repeats):
        env = make_vec_env(args.env, n_envs=args.n_envs, seed=r)
        model = TRPO(
            "MlpPolicy",
            env,
            learning_rate=args.learning_rate,
            n_steps=args.n_steps,
            batch_size=args.critic_minibatch,
            gamma=0.99,
            cg_max_steps=args.cg_iters,
            cg_damping=args.cg_damping,
            line_search_shrinking_factor=0.8,
            line_search_max_iter=args.line_search_steps,
            n_critic_updates=args.critic_epochs,
            gae_lambda=args.gae_lambda,
            target_kl=args.max_kl,
            seed=r,
            device="cpu",
        )
        start = time.perf_counter()
        model.learn(total_timesteps=args.total_steps)
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        steps_done.append(int(model.num_timesteps))
        episodes = list(model.ep_info_buffer)
        returns.append(statistics.fmean(e["r"] for e in episodes) if episodes else None)
        print(
            f"  sb3 TRPO run {r + 1}: {elapsed:.1f}s "
            f"({model.num_timesteps / elapsed:,.0f} steps/s)",
            file=sys.stderr,
            flush=True,
        )
        env.close()

    def version(pkg: str) -> str | None:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    median = statistics.median(times)
    steps = steps_done[0]
    result = {
        "impl": "sb3-contrib TRPO",
        "env": args.env,
        "settings": vars(args),
        "torch_threads": threads,
        "steps_per_run": steps,
        "times_s": times,
        "steps_per_s": steps / median,
        "steps_per_s_best": steps / min(times),
        "final_mean_return_last_100": returns,
        "packages": {
            p: version(p) for p in ("sb3-contrib", "stable_baselines3", "torch", "gymnasium")
        },
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
