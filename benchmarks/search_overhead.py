"""What a search's bookkeeping costs: PBT and halving beside a plain sweep of the same work.

Usage::

    python benchmarks/search_overhead.py [--updates 288] [--repeats 3] [--out benchmarks/results]

PPO on gymnax CartPole-v1 (the classic preset: 4 envs × 128 steps), ``U = --updates``
updates (a multiple of 36):

* ``sweep``: 8 members × 2 seeds = 16 agents, ``jaxpo.sweep.run`` for all ``U`` updates in
  one call — the baseline of PBT;
* ``pbt``: the same 16 agents and ``U`` updates as 4 generations of ``U / 4`` updates, with an
  exploit and explore between generations (host round trips, copying states, new hparams);
* ``sweep (chunks of 2)``: 9 members × 2 seeds trained ``U`` updates in chunks of 2 agents —
  the baseline of halving, whose default chunk is the last rung's 2 agents;
* ``halving``: the same 9 members, eta = 3, rungs ending at ``U / 9``, ``U / 3`` and ``U``
  updates (9, 3 and 1 members), in chunks of 2 agents.

Each ``sweep.run`` call moves the agents' states to the devices and back (about 7 ms here for
2 agents), so the overhead is a cost per call: it shrinks as segments grow.

Every program is compiled before timing (a first untimed run of each), and the runs alternate
between the variants so that drift in machine speed hits them alike. Reported: agent-updates
per second (median of ``--repeats``) and each search's ratio to its baseline measured in the
same run; an overhead of at most 10% is a ratio of at least 0.9. Results go to
``<out>/search_overhead_U.{json,md}``.
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

SPACE = {"learning_rate": ("loguniform", 1e-4, 1e-2)}


def variants(updates: int) -> dict[str, tuple[Callable[[], object], int]]:
    """``{name: (run, agent-updates it trains)}`` for runs of ``updates`` updates."""
    config, base = presets.get("ppo", "gymnax:CartPole-v1")
    config = config.replace(total_timesteps=updates * config.batch_size)
    eight = sweep.random(base, jax.random.key(0), 8, **SPACE)
    nine = sweep.random(base, jax.random.key(1), 9, **SPACE)
    rung = updates // 9
    halving_updates = 2 * (9 * rung + 3 * 2 * rung + 1 * (updates - 3 * rung))
    return {
        "sweep": (lambda: sweep.run(config, eight, 2, keep_state=True), 16 * updates),
        "pbt": (
            lambda: search.pbt(config, eight, 2, interval=updates // 4, explore=SPACE, seed=0),
            16 * updates,
        ),
        "sweep (chunks of 2)": (
            lambda: sweep.run(config, nine, 2, chunk_size=2, keep_state=True),
            18 * updates,
        ),
        "halving": (
            lambda: search.halving(config, nine, 2, eta=3, min_updates=rung, chunk_size=2),
            halving_updates,
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=288)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    sweep.use_host_devices()
    if args.updates % 36:
        parser.error("--updates must be a multiple of 36")
    runs = variants(args.updates)
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
        "updates": args.updates,
        "repeats": args.repeats,
        "seconds": seconds,
        "agent_updates_per_s": rate,
        "ratio_to_baseline": ratios,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"search_overhead_{args.updates}"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    lines = [
        "# Search overhead: PBT and halving beside a plain sweep of the same work",
        "",
        f"`python benchmarks/search_overhead.py --updates {args.updates} --repeats "
        f"{args.repeats}`: PPO CartPole, {args.updates} updates, {jax.device_count()} host "
        f"device(s), median of {args.repeats} interleaved runs after compiling.",
        "",
        "| variant | agent-updates/s | ratio to its baseline |",
        "|---|---:|---:|",
    ]
    baseline = {"pbt": "sweep", "halving": "sweep (chunks of 2)"}
    for name in runs:
        ratio = f"{ratios[name]:.3f} (vs {baseline[name]})" if name in ratios else "-"
        lines.append(f"| {name} | {rate[name]:.1f} | {ratio} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
