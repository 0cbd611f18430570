"""The constrained policy-optimisation family side by side at a fixed env-step budget per env.

Every algorithm runs its preset for ``(algo, env)`` (the algorithm's defaults where no preset
exists) with ``total_timesteps`` set to the env's budget, 8 seeds in one vmapped call. The
final return of a seed is the mean over its last ``LAST`` updates of the mean return of the
episodes finished in each update. The table gives the interquartile mean (IQM: mean of the
middle 50% of seeds) with a 95% percentile-bootstrap interval over seeds; the plots give the
mean over seeds with a shaded 95% bootstrap interval of that mean, from the first update by
which every seed has finished an episode.

Writes ``experiments/results/constrained_family.{md,png,json}``. Finished cells are kept in
the JSON with the config and hparams they ran, so an interrupted run resumes where it stopped
and a cell whose preset changed runs again (``--fresh`` starts over).

    python experiments/constrained_family.py [--algos ppo,mcpo] [--envs gymnax:CartPole-v1]
        [--seeds 8] [--scale 1.0] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jaxpo  # noqa: E402
from jaxpo.sweep_table import bootstrap_interval, draw_mean_band  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
ALGOS = ("ppo", "ppo_kl", "a2c", "mdpo", "mcpo", "trpo", "npg", "adaptive_ppo", "grpo", "tic_grpo")
#: env id -> env-step budget shared by every algorithm.
BUDGETS = {
    "gymnax:CartPole-v1": 500_000,
    "gymnax:Acrobot-v1": 500_000,
    "gymnax:Pendulum-v1": 1_000_000,
    "brax:inverted_pendulum": 500_000,
}
LAST = 10


def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean of the middle 50% along ``axis`` (a quarter of the values cut from each end)."""
    x = np.sort(x, axis=axis)
    n = x.shape[axis]
    cut = n // 4
    return np.take(x, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def cell_setup(algo: str, env_id: str, total: int) -> tuple[jaxpo.Config, jaxpo.HParams, str]:
    """The preset shortened to ``total`` steps, and a text that identifies it."""
    config, hparams = jaxpo.presets.get(algo, env_id)
    config = config.replace(total_timesteps=total)
    scalars = {k: round(float(v), 8) for k, v in jaxpo.sweep.columns(hparams).items()}
    return config, hparams, repr((config, sorted(scalars.items())))


def run_cell(config: jaxpo.Config, hparams: jaxpo.HParams, seeds: int) -> dict:
    """Trains ``config`` on ``seeds`` seeds; returns env steps, returns ``[S, U]`` and time."""
    start = time.perf_counter()
    result = jaxpo.sweep.run(config, hparams, seeds=seeds)
    returns = np.round(np.asarray(result.metrics["episode_return"])[0], 1)
    seconds = time.perf_counter() - start
    steps = (np.arange(config.num_updates) + 1) * config.batch_size
    return {"steps": steps.tolist(), "returns": returns.tolist(), "seconds": seconds}


def summarise(cells: dict, algos: list[str], envs: list[str]) -> list[str]:
    """The markdown table, one row per algorithm and one column per env."""
    rng = np.random.default_rng(0)

    def budget(env: str) -> str:
        """The budgets the env's cells ran with (each cell's config is in its setup)."""
        totals = {
            int(re.search(r"total_timesteps=(\d+)", cells[key]["setup"]).group(1))
            for key in (f"{a}|{env}" for a in algos)
            if key in cells
        }
        return " / ".join(f"{t:,}" for t in sorted(totals))

    head = "| algorithm | " + " | ".join(f"{e} ({budget(e)} steps)" for e in envs) + " |"
    lines = [head, "|---" * (len(envs) + 1) + "|"]
    for algo in algos:
        row = [algo]
        for env in envs:
            cell = cells.get(f"{algo}|{env}")
            if cell is None:
                row.append("—")
                continue
            final = np.asarray(cell["returns"])[:, -LAST:].mean(axis=1)
            low, high = bootstrap_interval(final, iqm, rng)
            row.append(f"{iqm(final):.1f} [{low:.1f}, {high:.1f}]")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def plot(cells: dict, algos: list[str], envs: list[str], path: Path) -> None:
    """One panel per env: each algorithm's mean return over seeds with a 95% bootstrap band."""
    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(1, len(envs), figsize=(4.5 * len(envs), 3.6), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for algo in algos:
            cell = cells.get(f"{algo}|{env}")
            if cell is None:
                continue
            steps, returns = np.asarray(cell["steps"]), np.asarray(cell["returns"])
            # before a seed's first finished episode its return is the initial 0: skip those
            start = int(np.argmax(np.all(np.maximum.accumulate(returns != 0.0, axis=1), axis=0)))
            draw_mean_band(ax, steps[start:], returns[:, start:], algo, rng)
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("episode return")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algos", default=",".join(ALGOS))
    parser.add_argument("--envs", default=",".join(BUDGETS))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every budget")
    parser.add_argument("--fresh", action="store_true", help="ignore finished cells")
    args = parser.parse_args()
    algos, envs = args.algos.split(","), args.envs.split(",")
    for name in algos:
        if name not in ALGOS:
            parser.error(f"unknown algorithm {name!r}; choose from {ALGOS}")
    for name in envs:
        if name not in BUDGETS:
            parser.error(f"unknown env {name!r}; choose from {tuple(BUDGETS)}")
    for env in envs:
        BUDGETS[env] = int(BUDGETS[env] * args.scale)
    OUT.mkdir(exist_ok=True)
    store = OUT / "constrained_family.json"
    cells = {} if args.fresh or not store.exists() else json.loads(store.read_text())
    for env in envs:
        for algo in algos:
            key = f"{algo}|{env}"
            config, hparams, setup = cell_setup(algo, env, BUDGETS[env])
            cached = cells.get(key)
            if cached and cached.get("setup") == setup and cached["seeds"] == args.seeds:
                continue
            cell = run_cell(config, hparams, args.seeds)
            cells[key] = dict(cell, setup=setup, seeds=args.seeds)
            store.write_text(json.dumps(cells, separators=(",", ":")))
            final = np.asarray(cell["returns"])[:, -LAST:].mean(axis=1)
            print(
                f"{algo:7s} {env:24s} IQM {iqm(final):8.1f}  ({cell['seconds']:.0f} s)",
                flush=True,
            )
    # the table and plots cover every finished cell, so runs split by --algos/--envs add up
    # to the full command's output
    command = "python experiments/constrained_family.py"
    for flag, value, default in (("--seeds", args.seeds, 8), ("--scale", args.scale, 1.0)):
        if value != default:
            command += f" {flag} {value}"
    algos = [a for a in ALGOS if any(f"{a}|{e}" in cells for e in BUDGETS)]
    envs = [e for e in BUDGETS if any(f"{a}|{e}" in cells for a in ALGOS)]
    seeds = sorted({cell["seeds"] for cell in cells.values()})
    table = [
        f"Final return (IQM over {'/'.join(map(str, seeds))} seeds, [95% bootstrap interval]); "
        "a seed's final "
        f"return is the mean over its last {LAST} updates. Each algorithm runs its "
        "`jaxpo.presets` entry for the env (its defaults where there is none).",
        "",
        *summarise(cells, algos, envs),
        "",
        f"Command: `{command}`; curves in `constrained_family.png`.",
    ]
    (OUT / "constrained_family.md").write_text("\n".join(table) + "\n")
    plot(cells, algos, envs, OUT / "constrained_family.png")
    print("\n".join(table))


if __name__ == "__main__":
    main()
