"""MCPO ablated: what its memory, attention and switch buy over PPO-KL and PPO.

Variants, each the ``jaxpo.presets`` entry of its algorithm on the env, 8 seeds in one
vmapped call per (variant, env) cell:

- ``mcpo``: the full method (learned attention over the memory, β switching);
- ``mcpo_uniform``: ``attention_lr = 0``, the virtual policy is the uniform average of the
  memory's parameters;
- ``mcpo_beta_high``: ``beta_low = beta_high``, β never switches, so the virtual policy never
  enters the loss (PPO with a fixed KL coefficient ``kl_coef``);
- ``ppo_kl`` (adaptive coefficient) and ``ppo`` (clip).

The budgets are those of ``constrained_family.py`` except brax inverted_pendulum, 2e6 steps
there (the length of the PPO-KL and MCPO presets); the final-return statistic is its IQM over
seeds of each seed's mean over its last updates, 95% percentile bootstrap over seeds. The
MCPO cells also record the mechanism: the share of updates on ``beta_low``, the attention
entropy at the end against ln(slots filled), and the mean KL(π_ψ ‖ π_old). ``ppo``/``ppo_kl``
cells whose setup is identical to a finished cell of ``constrained_family.json`` are taken
from it rather than run again.

Writes ``experiments/results/mcpo_ablation.{md,png,json}``; resumes like
``constrained_family.py`` (``--fresh`` starts over).

    python experiments/mcpo_ablation.py [--variants mcpo,ppo] [--envs gymnax:CartPole-v1]
        [--seeds 8] [--scale 1.0] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from constrained_family import BUDGETS, LAST, OUT, iqm, plot, summarise

import jaxpo

#: variant -> (algorithm, hparam overrides on its preset)
VARIANTS = {
    "mcpo": ("mcpo", {}),
    "mcpo_uniform": ("mcpo", {"attention_lr": 0.0}),
    "mcpo_beta_high": ("mcpo", {"beta_low": None}),  # None: set to the preset's beta_high
    "ppo_kl": ("ppo_kl", {}),
    "ppo": ("ppo", {}),
}
#: env -> env steps per seed.
ABLATION_BUDGETS = {**BUDGETS, "brax:inverted_pendulum": 2_000_000}
MECHANISM = ("beta_low_chosen", "attention_entropy", "kl_virtual_old", "memory_filled")


def setup(variant: str, env_id: str, total: int) -> tuple[jaxpo.Config, jaxpo.HParams, str]:
    """The variant's preset shortened to ``total`` steps, and a text that identifies it."""
    algo, overrides = VARIANTS[variant]
    config, hparams = jaxpo.presets.get(algo, env_id)
    config = config.replace(total_timesteps=total)
    if "beta_low" in overrides:
        overrides = dict(overrides, beta_low=float(hparams.beta_high))
    hparams = hparams.replace(**overrides)
    scalars = {k: round(float(v), 8) for k, v in jaxpo.sweep.columns(hparams).items()}
    return config, hparams, repr((config, sorted(scalars.items())))


def run(config: jaxpo.Config, hparams: jaxpo.HParams, seeds: int) -> dict:
    """Trains on ``seeds`` seeds: env steps, returns ``[S, U]``, MCPO's mechanism, time."""
    start = time.perf_counter()
    result = jaxpo.sweep.run(config, hparams, seeds=seeds)
    metrics = {k: np.asarray(v)[0] for k, v in result.metrics.items()}
    cell = {
        "steps": ((np.arange(config.num_updates) + 1) * config.batch_size).tolist(),
        "returns": np.round(metrics["episode_return"], 1).tolist(),
        "seconds": time.perf_counter() - start,
    }
    if config.algo == "mcpo":
        cell["mechanism"] = {
            "beta_low_share": float(metrics["beta_low_chosen"].mean()),
            "attention_entropy_end": float(metrics["attention_entropy"][:, -1].mean()),
            "uniform_entropy_end": float(np.log(metrics["memory_filled"][:, -1]).mean()),
            "kl_virtual_old": float(metrics["kl_virtual_old"].mean()),
        }
    return cell


def mechanism_table(cells: dict, variants: list[str], envs: list[str]) -> list[str]:
    """Per MCPO cell: β_low share, end attention entropy vs uniform, mean KL(π_ψ ‖ π_old)."""
    lines = [
        "| variant | env | updates where π_ψ looked better (β → beta_low) "
        "| attention entropy at the end (uniform) | mean KL(π_ψ ‖ π_old) |",
        "|---|---|---|---|---|",
    ]
    for variant in variants:
        for env in envs:
            m = cells.get(f"{variant}|{env}", {}).get("mechanism")
            if m:
                lines.append(
                    f"| {variant} | {env} | {m['beta_low_share']:.1%} | "
                    f"{m['attention_entropy_end']:.3f} ({m['uniform_entropy_end']:.3f}) | "
                    f"{m['kl_virtual_old']:.4f} |"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--envs", default=",".join(ABLATION_BUDGETS))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every budget")
    parser.add_argument("--fresh", action="store_true", help="ignore finished cells")
    args = parser.parse_args()
    variants, envs = args.variants.split(","), args.envs.split(",")
    for name in variants:
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}; choose from {tuple(VARIANTS)}")
    for name in envs:
        if name not in ABLATION_BUDGETS:
            parser.error(f"unknown env {name!r}; choose from {tuple(ABLATION_BUDGETS)}")
    store = OUT / "mcpo_ablation.json"
    cells = {} if args.fresh or not store.exists() else json.loads(store.read_text())
    family_store = OUT / "constrained_family.json"
    family = json.loads(family_store.read_text()) if family_store.exists() else {}
    for env in envs:
        for variant in variants:
            key = f"{variant}|{env}"
            config, hparams, text = setup(variant, env, int(ABLATION_BUDGETS[env] * args.scale))
            cached = cells.get(key)
            if cached and cached.get("setup") == text and cached["seeds"] == args.seeds:
                continue
            shared = family.get(key)
            if shared and shared.get("setup") == text and shared["seeds"] == args.seeds:
                cells[key] = dict(shared, reused="constrained_family.json")
            else:
                cells[key] = dict(run(config, hparams, args.seeds), setup=text, seeds=args.seeds)
            store.write_text(json.dumps(cells, separators=(",", ":")))
            final = np.asarray(cells[key]["returns"])[:, -LAST:].mean(axis=1)
            print(f"{variant:15s} {env:24s} IQM {iqm(final):8.1f}", flush=True)
    command = "python experiments/mcpo_ablation.py"
    for flag, value, default in (("--seeds", args.seeds, 8), ("--scale", args.scale, 1.0)):
        if value != default:
            command += f" {flag} {value}"
    variants = [v for v in VARIANTS if any(f"{v}|{e}" in cells for e in ABLATION_BUDGETS)]
    envs = [e for e in ABLATION_BUDGETS if any(f"{v}|{e}" in cells for v in VARIANTS)]
    reused = sorted(key for key, cell in cells.items() if "reused" in cell)
    table = [
        f"Final return (IQM over {args.seeds} seeds, [95% percentile-bootstrap interval]); a "
        f"seed's final return is the mean over its last {LAST} updates. Budgets are "
        "`constrained_family.py`'s but 2e6 on brax inverted_pendulum; each variant runs its "
        "algorithm's `jaxpo.presets` entry.",
        "",
        *summarise(cells, variants, envs),
        "",
        "MCPO's mechanism (means over seeds and updates; entropy at the last update):",
        "",
        *mechanism_table(cells, variants, envs),
        "",
        f"Command: `{command}`; curves in `mcpo_ablation.png`."
        + (f" Reused from constrained_family.json: {', '.join(reused)}." if reused else ""),
    ]
    (OUT / "mcpo_ablation.md").write_text("\n".join(table) + "\n")
    plot(cells, variants, envs, OUT / "mcpo_ablation.png")
    print("\n".join(table))


if __name__ == "__main__":
    main()
