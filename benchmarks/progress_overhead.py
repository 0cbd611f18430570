"""What the progress hook costs: training throughput with progress off and on.

Usage::

    python benchmarks/progress_overhead.py [--seeds 8] [--updates 100] [--repeats 5]
        [--interval 5] [--out benchmarks/results]

PPO on gymnax CartPole-v1 with jaxpo's classic preset, ``--seeds`` agents vmapped in one jitted
program, three variants compiled in the same process:

* ``off``: ``make_train(config)`` with no hook — the baseline;
* ``disabled``: a hook given but a cadence of 0 (``report_every=0``): the callback is in the
  program, behind a ``cond`` that never calls it;
* ``on``: the hook called every ``--interval`` updates (it formats a line, as the CLI does, and
  writes it nowhere).

The cadence is a traced argument of ``train``, so ``disabled`` and ``on`` are the same
program; here each variant binds its cadence before compiling, so each is timed alone.

Runs alternate between the variants, so drift in machine speed hits them alike. Reports env
steps per second (median of ``--repeats``), the ratio to ``off``, and whether each program
contains a host callback. Results go to ``<out>/progress_overhead.{json,md}``.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
from pathlib import Path

import jax
from throughput import Timed, compile_fn, log, machine_info

from jaxpo import make_train, presets
from jaxpo.progress import ProgressDisplay

#: How a host callback shows up in the compiled program's text.
CALLBACK_MARKERS = ("callback", "CustomCall")


def has_host_callback(timed: Timed) -> bool:
    """Whether the compiled program calls back to the host."""
    text = timed.compiled.as_text()
    return any(marker in text for marker in CALLBACK_MARKERS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--interval", type=int, default=5, help="updates between reports (on)")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)

    config, hparams = presets.get("ppo", "gymnax:CartPole-v1")
    config = config.replace(total_timesteps=args.updates * config.batch_size)
    display = ProgressDisplay(config.num_updates, config.batch_size, stream=io.StringIO())
    hooked = make_train(config, display)
    variants = {
        "off": make_train(config),
        "disabled": lambda key, hp: hooked(key, hp, 0),
        "on": lambda key, hp: hooked(key, hp, args.interval),
    }
    steps = args.seeds * config.num_updates * config.batch_size

    def args_of(repeat: int) -> tuple:
        return jax.random.split(jax.random.key(repeat), args.seeds), hparams

    timed = {
        name: compile_fn(name, jax.vmap(train, in_axes=(0, None)), args_of, steps)
        for name, train in variants.items()
    }
    for t in timed.values():  # warm-up
        t.run(0)
        t.times.clear()
    for repeat in range(args.repeats):
        order = list(timed) if repeat % 2 == 0 else list(reversed(timed))
        for name in order:
            timed[name].run(repeat + 1)
    base = timed["off"].steps_per_s
    rows = [
        {
            "variant": name,
            "steps_per_s": t.steps_per_s,
            "ratio_to_off": t.steps_per_s / base,
            "median_s": statistics.median(t.times),
            "host_callback": has_host_callback(t),
        }
        for name, t in timed.items()
    ]
    table = [
        "| variant | env steps/s | ratio to off | host callback in program |",
        "|---|---:|---:|---|",
        *(
            f"| {r['variant']} | {r['steps_per_s']:,.0f} | {r['ratio_to_off']:.3f} | "
            f"{'yes' if r['host_callback'] else 'no'} |"
            for r in rows
        ),
    ]
    log("\n".join(table))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "machine": machine_info(),
        "command": "python benchmarks/progress_overhead.py " + " ".join(argv or sys.argv[1:]),
        "seeds": args.seeds,
        "updates": config.num_updates,
        "interval": args.interval,
        "repeats": args.repeats,
        "rows": rows,
    }
    (out / "progress_overhead.json").write_text(json.dumps(record, indent=2))
    (out / "progress_overhead.md").write_text("\n".join(table) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
