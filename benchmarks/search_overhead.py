"""What a search's bookkeeping costs: PBT and halving beside a plain sweep of the same work.

Usage::

    python benchmarks/search_overhead.py [--repeats 5] [--out benchmarks/results]

PPO on gymnax CartPole-v1 (the classic preset: 4 envs × 128 steps), 96 updates:

* ``sweep``: 8 members × 2 seeds = 16 agents, ``jaxpo.sweep.run`` for all 96 updates in one
  call — the baseline of PBT;
* ``pbt``: the same 16 agents and 96 updates as 4 generations of 24 updates, with an exploit
  and explore between generations (host round trips, copying states, new hparams);
* ``sweep (chunks of 2)``: 9 members × 2 seeds trained 96 updates in chunks of 2 agents —
  the baseline of halving, whose default chunk is the last rung's 2 agents;
* ``halving``: the same 9 members, eta = 3, rungs ending at 12, 36 and 96 updates (9, 3 and 1
  members), in chunks of 2 agents.

Every program is compiled before timing (a first untimed run of each), and the runs alternate
between the variants so that drift in machine speed hits them alike. Reported: agent-updates
per second (median of ``--repeats``) and each search's ratio to its baseline measured in the
same run; an overhead of at most 10% is a ratio of at least 0.9. Results go to
``<out>/search_overhead.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
from throughput import log, machine_info

from jaxpo import presets, search, sweep

UPDATES = 96
SPACE = {"learning_rate": ("loguniform", 1e-4, 1e-2)}


def variants() -> dict[str, tuple[Callable[[], object], int]]:
    """``{name: (run, agent-updates it trains)}``."""
    config, base = presets.get("ppo", "gymnax:CartPole-v1")
    config = config.replace(total_timesteps=UPDATES * config.batch_size)
    eight = sweep.random(base, jax.random.key(0), 8, **SPACE)
    nine = sweep.random(base, jax.random.key(1), 9, **SPACE)
    halving_updates = 2 * (9 * 12 + 3 * 24 + 1 * 60)  # seeds x sum of members x rung updates
    return {
        "sweep": (lambda: sweep.run(config, eight, 2, keep_state=True), 16 * UPDATES),
        "pbt": (
            lambda: search.pbt(config, eight, 2, interval=24, explore=SPACE, seed=0),
            16 * UPDATES,
        ),
        "sweep (chunks of 2)": (
            lambda: sweep.run(config, nine, 2, chunk_size=2, keep_state=True),
            18 * UPDATES,
        ),
        "halving": (
            lambda: search.halving(config, nine, 2, eta=3, min_updates=12, chunk_size=2),
            halving_updates,
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    sweep.use_host_devices()
    runs = variants()
    for name, (run, _) in runs.items():
        log(f"compiling {name}")
        run()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(args.repeats):
        for name, (run, _) in runs.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
        log(f"repeat {r + 1}: " + ", ".join(f"{n} {s[-1]:.2f}s" for n, s in seconds.items()))
    rate = {n: runs[n][1] / statistics.median(s) for n, s in seconds.items()}
    ratios = {
        "pbt": rate["pbt"] / rate["sweep"],
        "halving": rate["halving"] / rate["sweep (chunks of 2)"],
    }
    report = {
        "machine": machine_info(),
        "devices": jax.device_count(),
        "updates": UPDATES,
        "repeats": args.repeats,
        "seconds": seconds,
        "agent_updates_per_s": rate,
        "ratio_to_baseline": ratios,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "search_overhead.json").write_text(json.dumps(report, indent=2))
    lines = [
        "# Search overhead: PBT and halving beside a plain sweep of the same work",
        "",
        f"`python benchmarks/search_overhead.py --repeats {args.repeats}`: PPO CartPole, "
        f"{UPDATES} updates, {jax.device_count()} host device(s), median of {args.repeats} "
        "interleaved runs after compiling.",
        "",
        "| variant | agent-updates/s | ratio to its baseline |",
        "|---|---:|---:|",
    ]
    baseline = {"pbt": "sweep", "halving": "sweep (chunks of 2)"}
    for name in runs:
        ratio = f"{ratios[name]:.3f} (vs {baseline[name]})" if name in ratios else "-"
        lines.append(f"| {name} | {rate[name]:.1f} | {ratio} |")
    (out / "search_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
