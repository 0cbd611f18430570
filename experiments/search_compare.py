"""Random search, successive halving and PBT over the same members, and what each one buys.

PPO on gymnax CartPole-v1 (the preset, 972 updates of 512 steps = 497,664 env steps per
agent), ``M`` members drawn from ``learning_rate ~ loguniform(1e-5, 1e-2)`` and
``ent_coef ~ uniform(0, 0.02)`` with 4 seeds each, ranked by the in-training evaluation
(8 greedy episodes every 36 updates, IQM over seeds):

- **random**: every member trained to the full budget (``jaxpo.sweep.run``);
- **halving**: the same members, eta = 3 (rungs end at 36, 108, 324 and 972 updates);
- **pbt**: the same members × seeds as 4M agents, one generation per 36 updates,
  exploring both hparams within their distributions (the same compute as random).

Each method's chosen hparams are then trained again with 8 fresh seeds (100..107) to the
full budget, and the IQM of their final evaluations is reported (for PBT: its best agent's
final hparams as fixed values, which is not the schedule PBT trained it with). Writes
``experiments/results/search_compare.{json,md}``.

    python experiments/search_compare.py [M]          # default M = 27
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

import jaxpo
from jaxpo import search, sweep

DISTS = {"learning_rate": ("loguniform", 1e-5, 1e-2), "ent_coef": ("uniform", 0.0, 0.02)}
INTERVAL = 36
SEEDS = 4
CONFIRM_SEEDS = list(range(100, 108))
RESULTS = Path(__file__).resolve().parent / "results"


def confirm(config: jaxpo.Config, hparams: jaxpo.HParams) -> float:
    """IQM over 8 fresh seeds of the final evaluation of ``hparams`` at the full budget."""
    result = sweep.run(config, hparams, CONFIRM_SEEDS, keep_state=False)
    return float(search.iqm(result.metrics["eval_return"][0, :, -1]))


def chosen(hparams: jaxpo.HParams) -> dict[str, float]:
    """The searched hparams' values of an unbatched ``hparams``."""
    return {name: float(getattr(hparams, name)) for name in DISTS}


def main(num_members: int = 27) -> None:
    """Runs the three searches and the confirmations; prints and writes the results."""
    config, base = jaxpo.presets.get("ppo", "gymnax:CartPole-v1")
    config = config.replace(total_timesteps=972 * 512, eval_interval=INTERVAL, eval_episodes=8)
    members = sweep.random(base, jax.random.key(0), num_members, **DISTS)
    steps = config.num_updates * config.batch_size
    rows = {}

    start = time.perf_counter()
    full = sweep.run(config, members, SEEDS, keep_state=False)
    scores = search.scores(full.metrics)
    best = int(search.order(scores)[0])
    rows["random"] = dict(
        wall=time.perf_counter() - start,
        env_steps=num_members * SEEDS * steps,
        score=float(scores[best]),
        hparams=chosen(sweep.member_hparams(members, best)),
    )

    start = time.perf_counter()
    halved = search.halving(config, members, SEEDS, eta=3, min_updates=INTERVAL)
    done = np.where(np.isfinite(halved.metrics["episode_return"][:, 0]), 1, 0).sum()
    rows["halving"] = dict(
        wall=time.perf_counter() - start,
        env_steps=int(done) * SEEDS * config.batch_size,
        score=float(halved.rung_scores[-1, halved.best]),
        hparams=chosen(sweep.member_hparams(members, halved.best)),
        rung_updates=halved.rung_updates.tolist(),
    )

    start = time.perf_counter()
    population = search.pbt(config, members, SEEDS, interval=INTERVAL, explore=DISTS, seed=0)
    rows["pbt"] = dict(
        wall=time.perf_counter() - start,
        env_steps=num_members * SEEDS * steps,
        score=float(population.lineage.scores[-1, population.best]),
        hparams=chosen(sweep.member_hparams(population.hparams, population.best)),
        copies=sum(len(p) for p in population.lineage.copies),
    )

    for name, row in rows.items():
        hparams = base.set(**row["hparams"])
        row["confirmed"] = confirm(config, hparams)
        print(name, json.dumps(row))
    report = {
        "config": {"env_steps_per_agent": steps, "members": num_members, "seeds": SEEDS},
        "jax": jax.__version__,
        "device": str(jax.devices()[0].platform),
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search_compare.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# Random search, successive halving and PBT: PPO on CartPole, {num_members} "
        f"members x {SEEDS} seeds",
        "",
        "Written by `python experiments/search_compare.py`. `score`: the search's own IQM of "
        "the final evaluation (8 greedy episodes) over the member's seeds; `confirmed`: the "
        "chosen hparams trained again with 8 fresh seeds to the full budget (IQM).",
        "",
        "| method | env steps (all agents) | wall s | score | confirmed | chosen hparams |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, row in rows.items():
        values = ", ".join(f"{k}={v:.3g}" for k, v in row["hparams"].items())
        lines.append(
            f"| {name} | {row['env_steps']:,} | {row['wall']:.0f} | {row['score']:.1f} | "
            f"{row['confirmed']:.1f} | {values} |"
        )
    (RESULTS / "search_compare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
