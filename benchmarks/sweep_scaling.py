"""How a sweep's cost scales with its number of agents, beside a one-at-a-time Python loop.

Usage::

    python benchmarks/sweep_scaling.py [--sizes 1,8,64,256,1024] [--host-devices N]
        [--updates 20] [--quick] [--out benchmarks/results]

PPO on gymnax CartPole-v1 with PureJaxRL's classic settings (jaxpo's preset: 4 envs × 128
steps, 4 epochs × 4 minibatches, 64-64 tanh networks), shortened to ``--updates`` updates per
agent. For each size ``n`` (``n`` agents = hparam members × seeds, learning rate and clip drawn
at random), in the same process:

* ``sweep``: :func:`jaxpo.sweep.run`'s compiled program over all ``n`` agents, sharded over the
  host devices (one per core unless ``--host-devices`` says otherwise): ``compile_s`` (lowering
  and XLA compile), ``wall_s`` (placing inputs, running, fetching results; compile excluded;
  below 64 agents the median of ``--repeats`` runs after a warm-up, from 64 up one run),
  aggregate env-steps/s, ``per_agent_ms`` = wall / n, and XLA's memory analysis of the
  program (arguments + outputs + temporaries, per device) and per agent;
* ``loop``: the same ``n`` agents one after another through one jitted single-agent ``train``
  (compiled once): wall time and ``per_agent_ms``, and ``loop/sweep`` = the ratio of the
  per-agent costs.

A last table compiles the 64-agent program for 1×, 4× and 16× the updates, to show that memory
grows only by the metric rows (``[num_updates]`` per metric and agent), not with the steps.
Results go to ``<out>/sweep_scaling.json`` and ``.md`` (``--tag`` names them apart) and are
printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from jaxpo import sweep


def host_devices_flag(argv: list[str]) -> int | None:
    """``--host-devices N`` (or ``=N``) from ``argv``, read before argparse runs."""
    for i, arg in enumerate(argv):
        if arg.startswith("--host-devices="):
            return int(arg.split("=", 1)[1])
        if arg == "--host-devices" and i + 1 < len(argv):
            return int(argv[i + 1])
    return None


if __name__ == "__main__":  # the host split must precede anything that starts JAX
    sweep.use_host_devices(host_devices_flag(sys.argv[1:]))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from throughput import log, machine_info  # noqa: E402

from jaxpo import make_train, presets  # noqa: E402


def setup(updates: int) -> tuple[Any, Any]:
    """The classic CartPole PPO preset, ``updates`` updates long."""
    config, hparams = presets.get("ppo", "gymnax:CartPole-v1")
    return config.replace(total_timesteps=updates * config.batch_size), hparams


def agents_of(hparams: Any, n: int) -> tuple[Any, np.ndarray]:
    """``n`` agents: ``min(n, 4)`` seeds × ``n / seeds`` random members."""
    seeds = min(n, 4)
    if n % seeds:
        raise ValueError(f"sizes above 4 must be multiples of 4, got {n}")
    members = sweep.random(
        hparams,
        jax.random.key(n),
        n // seeds,
        learning_rate="loguniform:1e-4:1e-3",
        clip_eps="uniform:0.1:0.3",
    )
    return members, np.arange(seeds)


def memory(compiled: Any) -> dict[str, int]:
    """XLA's static memory analysis of a compiled program (bytes, per device)."""
    stats = compiled.memory_analysis()
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")
    out = {f.removesuffix("_size_in_bytes"): int(getattr(stats, f)) for f in fields}
    out["total"] = sum(out.values())
    return out


def compile_sweep(config: Any, members: Any, seeds: np.ndarray) -> tuple[Any, Any, float]:
    """The sweep program of ``members × seeds`` on every device, its inputs and compile time."""
    mesh = sweep.make_mesh()
    fn, _ = sweep.make_sweep_fn(config, None, mesh)
    layout = sweep.plan(config, members, seeds)
    key_data, per_agent = sweep.agent_inputs(members, seeds)
    pad = np.r_[np.arange(layout.num_agents), np.zeros(layout.chunk_size - layout.num_agents, int)]
    inputs = jax.tree.map(lambda x: x[pad], (key_data, per_agent))
    start = time.perf_counter()
    compiled = fn.lower(*sweep.place(inputs, mesh), np.int32(0)).compile()
    return compiled, (inputs, mesh), time.perf_counter() - start


def time_sweep(compiled: Any, inputs: Any, repeats: int) -> float:
    """Median wall time of placing the inputs, running and fetching the results."""
    host, mesh = inputs
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sweep.to_host(compiled(*sweep.place(host, mesh), np.int32(0)).metrics)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_loop(train: Any, members: Any, seeds: np.ndarray) -> float:
    """Wall time of every agent, one after another, through one compiled ``train``."""
    start = time.perf_counter()
    for m in range(sweep.num_members(members)):
        hp = sweep.member_hparams(members, m)
        for s in seeds:
            jax.block_until_ready(train(jax.random.key(int(s)), hp).metrics)
    return time.perf_counter() - start


def bench_size(config: Any, hparams: Any, n: int, loop_train: Any, repeats: int) -> dict:
    """One row of the scaling table."""
    members, seeds = agents_of(hparams, n)
    compiled, inputs, compile_s = compile_sweep(config, members, seeds)
    if n < 64:  # small programs: warm up (first-run allocations) and take a median
        time_sweep(compiled, inputs, 1)
    sweep_s = time_sweep(compiled, inputs, repeats if n < 64 else 1)
    loop_s = time_loop(loop_train, members, seeds)
    steps = n * config.num_updates * config.batch_size
    mem = memory(compiled)
    row = {
        "agents": n,
        "members": sweep.num_members(members),
        "seeds": len(seeds),
        "devices": jax.device_count(),
        "compile_s": compile_s,
        "sweep_wall_s": sweep_s,
        "sweep_steps_per_s": steps / sweep_s,
        "sweep_per_agent_ms": 1e3 * sweep_s / n,
        "loop_wall_s": loop_s,
        "loop_steps_per_s": steps / loop_s,
        "loop_per_agent_ms": 1e3 * loop_s / n,
        "loop_over_sweep": loop_s / sweep_s,
        "memory_per_device": mem,
        "memory_per_agent": mem["total"] * jax.device_count() / n,
    }
    log(
        f"  n={n:5d}: sweep {row['sweep_per_agent_ms']:7.1f} ms/agent "
        f"({row['sweep_steps_per_s']:,.0f} steps/s), loop {row['loop_per_agent_ms']:7.1f} "
        f"ms/agent, loop/sweep {row['loop_over_sweep']:.2f}, compile {compile_s:.1f}s, "
        f"{row['memory_per_agent'] / 1e6:.2f} MB/agent"
    )
    return row


def metric_memory(hparams: Any, updates: int, n: int) -> list[dict]:
    """The ``n``-agent program's memory at 1×, 4× and 16× ``updates`` updates."""
    rows = []
    for num_updates in (updates, 4 * updates, 16 * updates):
        config, _ = setup(num_updates)
        members, seeds = agents_of(hparams, n)
        compiled, _, _ = compile_sweep(config, members, seeds)
        shapes = jax.eval_shape(make_train(config), jax.random.key(0), hparams).metrics
        metric_bytes = sum(int(np.prod(s.shape)) * s.dtype.itemsize for s in shapes.values())
        rows.append(
            {
                "agents": n,
                "num_updates": num_updates,
                "env_steps_per_agent": num_updates * config.batch_size,
                "memory_per_device": memory(compiled),
                "metric_bytes_per_agent": metric_bytes,
            }
        )
        log(f"  {num_updates} updates: {rows[-1]['memory_per_device']}")
    return rows


def markdown(result: dict) -> str:
    lines = [
        f"PPO CartPole-v1 (classic settings), {result['updates']} updates × "
        f"{result['batch_size']} env steps per agent, {result['devices']} device(s), "
        f"{result['machine']['cpu_model']}",
        "",
        "| agents | sweep ms/agent | sweep env-steps/s | loop ms/agent | loop/sweep | "
        "compile s | MB/agent |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['agents']} | {r['sweep_per_agent_ms']:.1f} | {r['sweep_steps_per_s']:,.0f} | "
            f"{r['loop_per_agent_ms']:.1f} | {r['loop_over_sweep']:.2f} | {r['compile_s']:.1f} | "
            f"{r['memory_per_agent'] / 1e6:.2f} |"
        )
    lines += [
        "",
        "| agents | updates | env steps/agent | args MB | outputs MB | temp MB | "
        "metrics KB/agent |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["metric_memory"]:
        m = r["memory_per_device"]
        lines.append(
            f"| {r['agents']} | {r['num_updates']} | {r['env_steps_per_agent']:,} | "
            f"{m['argument'] / 1e6:.2f} | {m['output'] / 1e6:.2f} | {m['temp'] / 1e6:.2f} | "
            f"{r['metric_bytes_per_agent'] / 1e3:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,8,64,256,1024", help="agents per sweep")
    parser.add_argument("--updates", type=int, default=20, help="updates per agent")
    parser.add_argument("--repeats", type=int, default=3, help="timed sweep runs (median)")
    parser.add_argument(
        "--host-devices", type=int, default=None, help="CPU devices (default: one per core)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: sizes 1,8, 2 updates")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--tag", default="", help="suffix of the result file names")
    args = parser.parse_args(argv)
    sizes = [1, 8] if args.quick else [int(s) for s in args.sizes.split(",")]
    updates = 2 if args.quick else args.updates
    config, hparams = setup(updates)
    log(f"sweep scaling on {jax.device_count()} device(s): {jax.devices()}")
    loop_train = jax.jit(make_train(config))
    first = sweep.member_hparams(agents_of(hparams, 1)[0], 0)
    jax.block_until_ready(loop_train(jax.random.key(0), first).metrics)  # compile the loop's
    rows = [bench_size(config, hparams, n, loop_train, args.repeats) for n in sizes]
    log("metric memory against total steps:")
    result = {
        "machine": machine_info(),
        "updates": updates,
        "batch_size": config.batch_size,
        "devices": jax.device_count(),
        "rows": rows,
        "metric_memory": metric_memory(hparams, updates, min(64, max(sizes))),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"sweep_scaling{args.tag}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (out / f"{stem}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
