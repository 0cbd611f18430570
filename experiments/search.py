"""Random search, successive halving and PBT over the same members: what each one buys.

PPO on gymnax CartPole-v1 and Acrobot-v1 (each env's PPO preset, 486 updates of 512 steps =
248,832 env steps per agent), 27 members drawn from ``learning_rate ~ loguniform(1e-5,
1e-1)``, ``clip_eps ~ uniform(0.05, 0.4)`` and ``ent_coef ~ uniform(0, 0.05)``, 4 seeds
each, ranked by the in-training evaluation (8 greedy episodes every 18 updates; a member's
score is the IQM over its seeds of the last evaluation):

- **random**: every member × seed trained to the full budget (``jaxpo.sweep.run``);
- **halving**: the same members and seeds, eta = 3 (rungs end at 18, 54, 162, 486 updates);
- **pbt**: the same 108 agents for the same updates (the compute of random), one generation
  per 18 updates, exploring all three hparams within their distributions.

Checks of the issue: (a) halving's chosen member, trained again with 8 fresh seeds
(100..107), reaches a final evaluation (IQM) within or above the 95% bootstrap interval of
random search's chosen member trained the same way, at no more than a third of random's env
steps; (b) PBT's population ends with an IQM eval return (over all agents) at least random
search's (over all member × seed agents), and its best agent's score at least random's best
member's. Writes ``experiments/results/search.{json,md}``; figures whatever they are.

    python experiments/search.py [ENV ...]      # default: both envs
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

import jaxpo
from jaxpo import estimates, search, sweep

ENVS = ("gymnax:CartPole-v1", "gymnax:Acrobot-v1")
SPACE = {
    "learning_rate": ("loguniform", 1e-5, 1e-1),
    "clip_eps": ("uniform", 0.05, 0.4),
    "ent_coef": ("uniform", 0.0, 0.05),
}
MEMBERS, SEEDS, INTERVAL, UPDATES = 27, 4, 18, 486
CONFIRM_SEEDS = list(range(100, 108))
RESULTS = Path(__file__).resolve().parent / "results"


def confirm(config: jaxpo.Config, hparams: jaxpo.HParams) -> tuple[float, float, float]:
    """IQM [95% interval] over 8 fresh seeds of the final evaluation of ``hparams``."""
    result = sweep.run(config, hparams, CONFIRM_SEEDS, keep_state=False)
    values = result.metrics["eval_return"][0, :, -1]
    return (float(estimates.iqm(values)), *estimates.iqm_interval(values))


def chosen(hparams: jaxpo.HParams) -> dict[str, float]:
    """The searched hparams' values of an unbatched ``hparams``."""
    return {name: float(getattr(hparams, name)) for name in SPACE}


def one_env(env_id: str) -> dict:
    """Runs the three searches on ``env_id`` and the confirmations; returns the rows."""
    config, base = jaxpo.presets.get("ppo", env_id)
    config = config.replace(
        total_timesteps=UPDATES * config.batch_size, eval_interval=INTERVAL, eval_episodes=8
    )
    members = sweep.random(base, jax.random.key(0), MEMBERS, **SPACE)
    per_agent = config.num_updates * config.batch_size
    rows = {}

    start = time.perf_counter()
    full = sweep.run(config, members, SEEDS, keep_state=False)
    scores = search.scores(full.metrics)
    best = int(search.order(scores)[0])
    rows["random"] = dict(
        wall=time.perf_counter() - start,
        env_steps=MEMBERS * SEEDS * per_agent,
        best_score=float(scores[best]),
        population_iqm=float(search.iqm(full.metrics["eval_return"][..., -1].ravel())),
        hparams=chosen(sweep.member_hparams(members, best)),
    )

    start = time.perf_counter()
    halved = search.halving(config, members, SEEDS, eta=3, min_updates=INTERVAL)
    member_updates = int(np.isfinite(halved.metrics["episode_return"][:, 0]).sum())
    rows["halving"] = dict(
        wall=time.perf_counter() - start,
        env_steps=member_updates * SEEDS * config.batch_size,
        best_score=float(halved.rung_scores[-1, halved.best]),
        hparams=chosen(sweep.member_hparams(members, halved.best)),
        rung_updates=halved.rung_updates.tolist(),
    )

    start = time.perf_counter()
    population = search.pbt(config, members, SEEDS, interval=INTERVAL, explore=SPACE, seed=0)
    final = population.metrics["eval_return"][:, 0, -1]
    rows["pbt"] = dict(
        wall=time.perf_counter() - start,
        env_steps=MEMBERS * SEEDS * per_agent,
        best_score=float(population.lineage.scores[-1, population.best]),
        population_iqm=float(search.iqm(final)),
        hparams=chosen(sweep.member_hparams(population.hparams, population.best)),
        copies=sum(len(p) for p in population.lineage.copies),
    )

    for name, row in rows.items():
        row["confirmed"] = confirm(config, base.set(**row["hparams"]))
        print(env_id, name, json.dumps(row), flush=True)
    random, halving, pbt = rows["random"], rows["halving"], rows["pbt"]
    checks = {
        "a_halving_within_interval": halving["confirmed"][0] >= random["confirmed"][1],
        "a_compute_ratio": halving["env_steps"] / random["env_steps"],
        "b_population_iqm": pbt["population_iqm"] >= random["population_iqm"],
        "b_best": pbt["best_score"] >= random["best_score"],
    }
    return {"rows": rows, "checks": checks}


def table(env_id: str, found: dict) -> list[str]:
    """The markdown lines of one env's results."""
    lines = [
        f"## {env_id}",
        "",
        "| method | env steps (all agents) | wall s | best score | population IQM "
        "| confirmed IQM [95%] | chosen hparams |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for name, row in found["rows"].items():
        values = ", ".join(f"{k}={v:.3g}" for k, v in row["hparams"].items())
        iqm, low, high = row["confirmed"]
        population = row.get("population_iqm")
        lines.append(
            f"| {name} | {row['env_steps']:,} | {row['wall']:.0f} | {row['best_score']:.1f} | "
            f"{'-' if population is None else f'{population:.1f}'} | "
            f"{iqm:.1f} [{low:.1f}, {high:.1f}] | {values} |"
        )
    checks = found["checks"]
    lines += [
        "",
        f"- (a) halving's confirmed IQM within or above random's interval: "
        f"{checks['a_halving_within_interval']}; compute {checks['a_compute_ratio']:.3f} of "
        "random's",
        f"- (b) PBT population IQM >= random's: {checks['b_population_iqm']}; PBT best >= "
        f"random's best: {checks['b_best']}",
        "",
    ]
    return lines


def main(env_ids: list[str]) -> None:
    """Runs every env; prints and writes the results."""
    found = {env_id: one_env(env_id) for env_id in env_ids}
    RESULTS.mkdir(exist_ok=True)
    report = {"jax": jax.__version__, "device": jax.devices()[0].platform, "envs": found}
    (RESULTS / "search.json").write_text(json.dumps(report, indent=2, default=bool))
    lines = [
        f"# Random search, successive halving and PBT: PPO, {MEMBERS} members x {SEEDS} "
        f"seeds, {UPDATES} updates",
        "",
        "Written by `python experiments/search.py` (CPU, 2 cores). Score: IQM over a "
        "member's seeds of its last in-training evaluation (8 greedy episodes); population "
        "IQM: over every agent's last evaluation; confirmed: the chosen hparams trained "
        "again with 8 fresh seeds to the full budget, IQM and 95% percentile-bootstrap "
        "interval. PBT's confirmed row uses its best agent's final hparams as fixed values, "
        "not the schedule PBT trained it with.",
        "",
    ]
    for env_id, result in found.items():
        lines += table(env_id, result)
    (RESULTS / "search.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:] or list(ENVS))
