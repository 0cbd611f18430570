"""What is bit for bit and what is only statistical: reruns, resumed runs, device counts, sweeps.

Trains a small grid (members × seeds) of a preset in worker processes, each started with a
given number of JAX host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=D``),
and compares, on every metric of every update and on the final parameters:

  (a) the same program run twice: in one process (caches cleared, so recompiled) and in two
      processes;
  (b) a run trained in two segments with an orbax checkpoint save/load between them vs one
      uninterrupted run, both as single runs (``make_trainer``) and as sweeps
      (``sweep.run(..., updates=k)`` then ``state=``), as ``jaxpo train --checkpoint-every``;
  (c) a single run (``jax.jit(make_train(config))``) in a process with 1 host device vs 4;
  (d) sweep member ``m`` with seed ``s`` vs the single run ``train(key(s), member_m)``;
  (e) a sweep on 1 host device vs the same sweep sharded over 4 (and chunked vs whole).

For each pair it prints whether the arrays are bit-identical and, where they are not, the
first update (1-based) at which any metric differs, the tolerance (rtol = atol) the metrics
need at update 1 and how it grows, how the largest return difference grows, and the largest
final-return difference. A markdown report goes to
``experiments/results/reproducibility.md`` (``--out``). About 12 minutes on 2 busy CPU
cores (three worker processes, one after the other); ``--keep DIR`` keeps the workers'
arrays and ``--keep DIR --reuse`` only compares them again.

    python experiments/reproducibility.py [--algo ppo] [--env gymnax:CartPole-v1]
        [--total-timesteps 20000] [--seeds 2] [--grid learning_rate=2.5e-4,1e-3
        --grid clip_eps=0.1,0.2] [--resume-at K] [--chunk-size 4]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "reproducibility.md"
DEFAULT_GRID = ["learning_rate=2.5e-4,1e-3", "clip_eps=0.1,0.2"]
#: updates (1-based) at which the growth of the return difference is shown.
GROWTH_AT = (1, 2, 3, 5, 10, 20, 30)
#: the tolerance (rtol = atol) the README used to promise for a sweep member.
CLOSE = 1e-5


def parse_grid(specs: list[str]) -> dict[str, list[float]]:
    grid = {}
    for spec in specs:
        name, values = spec.split("=", 1)
        grid[name] = [float(v) for v in values.split(",")]
    return grid


# --------------------------------------------------------------------------- worker


def flat_params(params) -> dict[str, np.ndarray]:
    """``{path: array}`` of a parameter tree."""
    import jax

    return {
        jax.tree_util.keystr(p): np.asarray(v)
        for p, v in jax.tree_util.tree_flatten_with_path(params)[0]
    }


def host(tree):
    """``tree`` as NumPy, PRNG keys as their key data."""
    import jax

    def raw(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return np.asarray(jax.random.key_data(x))
        return np.asarray(x)

    return jax.tree.map(raw, tree)


def jaxpo_version() -> str:
    """The git commit of the imported jaxpo, where it is a checkout."""
    import jaxpo

    root = str(Path(jaxpo.__file__).resolve().parent.parent)
    try:
        git = ["git", "-C", root]
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"jaxpo {jaxpo.__version__}"
    return f"jaxpo at commit {commit}" + (" with uncommitted changes" if dirty else "")


def worker(args: argparse.Namespace) -> None:
    """Trains everything once in this process and saves the arrays to ``args.worker``."""
    import jax

    from jaxpo import checkpoint, make_train, presets, sweep
    from jaxpo.train import make_trainer

    config, hparams = presets.get(args.algo, args.env)
    config = config.replace(total_timesteps=args.total_timesteps)
    grid = sweep.grid(hparams, **parse_grid(args.grid))
    members, seeds, updates = sweep.num_members(grid), args.seeds, config.num_updates
    split = updates // 3 if args.resume_at is None else args.resume_at
    arrays: dict[str, np.ndarray] = {}

    def keep(tag: str, metrics: dict, params) -> None:
        """Stores metrics ``[M, S, U]`` and parameters ``[M, S, ...]`` under ``tag``."""
        for name, value in metrics.items():
            arrays[f"{tag}/metric/{name}"] = np.asarray(value)
        for path, value in flat_params(params).items():
            arrays[f"{tag}/param/{path}"] = value

    def stacked(results: dict):
        """Per-(m, s) host trees -> one tree with leaves ``[M, S, ...]``."""
        trees = [results[m, s] for m in range(members) for s in range(seeds)]
        return jax.tree.map(
            lambda *xs: np.stack(xs).reshape((members, seeds) + np.shape(xs[0])), *trees
        )

    def single_runs():
        train = jax.jit(make_train(config))
        return stacked(
            {
                (m, s): host(train(jax.random.key(s), sweep.member_hparams(grid, m)))
                for m in range(members)
                for s in range(seeds)
            }
        )

    started = time.time()
    # (a), (c), (d): single runs, then the same again after clearing every cache.
    single = single_runs()
    keep("single", single.metrics, single.state.params)
    jax.clear_caches()
    again = single_runs()
    keep("single_again", again.metrics, again.state.params)

    if args.light:  # the second process of (a) needs only the plain runs
        whole = sweep.run(config, grid, seeds)
        keep("sweep", whole.metrics, whole.state.params)
        np.savez(args.worker, **arrays)
        return

    # (b) single runs in two segments with a checkpoint of all their states in between.
    trainer = make_trainer(config)
    init, run = jax.jit(trainer.init), jax.jit(trainer.run, static_argnums=2)

    def segment(m: int, s: int):
        hp = sweep.member_hparams(grid, m)
        return host(run(init(jax.random.key(s), hp), hp, split))

    first = stacked({(m, s): segment(m, s) for m in range(members) for s in range(seeds)})
    with tempfile.TemporaryDirectory() as directory:
        checkpoint.save(directory, config, grid, np.arange(seeds), first.state, first.metrics)
        restored = checkpoint.load(directory)

    def resume(m: int, s: int):
        state = jax.tree.map(lambda x: x[m, s], restored.state)
        state = state.replace(key=jax.random.wrap_key_data(state.key))
        return host(run(state, sweep.member_hparams(restored.hparams, m), updates - split))

    rest = stacked({(m, s): resume(m, s) for m in range(members) for s in range(seeds)})
    joined = {k: np.concatenate([v, rest.metrics[k]], -1) for k, v in restored.metrics.items()}
    keep("single_resumed", joined, rest.state.params)

    # (d), (e): the sweep, again after clearing every cache, in segments, in chunks.
    whole = sweep.run(config, grid, seeds)
    keep("sweep", whole.metrics, whole.state.params)
    sweep.make_sweep_fn.cache_clear()
    jax.clear_caches()
    again = sweep.run(config, grid, seeds)
    keep("sweep_again", again.metrics, again.state.params)
    first = sweep.run(config, grid, seeds, updates=split)
    with tempfile.TemporaryDirectory() as directory:
        checkpoint.save(directory, config, first.hparams, first.seeds, first.state, first.metrics)
        restored = checkpoint.load(directory)
    rest = sweep.run(restored.config, restored.hparams, restored.seeds, state=restored.state)
    joined = {k: np.concatenate([v, rest.metrics[k]], -1) for k, v in restored.metrics.items()}
    keep("sweep_resumed", joined, rest.state.params)
    chunked = sweep.run(config, grid, seeds, chunk_size=args.chunk_size)
    keep("sweep_chunked", chunked.metrics, chunked.state.params)
    # A sweep of a single agent (what ``jaxpo train --seeds 1`` runs): member 0, seed 0.
    alone = sweep.run(config, sweep.member_hparams(grid, 0), [0])
    keep("sweep_one_agent", alone.metrics, alone.state.params)

    arrays["info/devices"] = np.asarray(jax.device_count())
    arrays["info/batch"] = np.asarray(config.batch_size)
    arrays["info/jaxpo"] = np.asarray(jaxpo_version())
    arrays["info/updates"] = np.asarray(updates)
    arrays["info/split"] = np.asarray(split)
    arrays["info/seconds"] = np.asarray(time.time() - started)
    np.savez(args.worker, **arrays)
    print(f"worker with {jax.device_count()} device(s): {time.time() - started:.0f} s")


# --------------------------------------------------------------------------- comparison


def group(arrays: dict[str, np.ndarray], tag: str) -> dict[str, np.ndarray]:
    prefix = f"{tag}/"
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def tolerance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per update (last axis), the smallest t with |x - y| <= t (1 + |y|) for every agent:
    ``assert_allclose``'s rtol = atol. NaN against NaN counts as equal, NaN against a number
    as infinitely far."""
    t = np.abs(x - y) / (1 + np.abs(y))
    t = np.where(np.isnan(x) & np.isnan(y), 0.0, np.where(np.isnan(t), np.inf, t))
    return t.reshape(-1, t.shape[-1]).max(0)


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict:
    """Compares two groups (``metric/*`` ``[M, S, U]`` and ``param/*``)."""
    assert set(a) == set(b), sorted(set(a) ^ set(b))
    metrics = sorted(k for k in a if k.startswith("metric/"))
    params = sorted(k for k in a if k.startswith("param/"))
    tol = {k[len("metric/") :]: tolerance(a[k], b[k]) for k in metrics}  # name -> [U]
    worst = np.max(np.stack(list(tol.values())), 0)  # [U]
    differs = [name for name, t in tol.items() if (t > 0).any()]
    first = int(np.argmax(worst > 0)) + 1 if differs else None
    loose = np.flatnonzero(worst > CLOSE)
    gap = np.abs(a["metric/episode_return"] - b["metric/episode_return"])
    gap = gap.reshape(-1, gap.shape[-1]).max(0)  # [U]
    return {
        "bitwise": all(same(a[k], b[k]) for k in metrics + params),
        "first": first,
        "differs": differs,
        "first_return": (int(np.argmax(gap > 0)) + 1) if (gap > 0).any() else None,
        "tol": worst,
        "tol_at_1": float(worst[0]),
        "worst_at_1": max(tol, key=lambda k: tol[k][0]),
        "close_through": int(loose[0]) if len(loose) else len(worst),
        "param_max": max(float(np.nanmax(np.abs(a[k] - b[k]), initial=0.0)) for k in params),
        "gap": gap,
        "final_gap": float(gap[-1]),
    }


def row(name: str, c: dict) -> str:
    if c["bitwise"]:
        return f"| {name} | **yes** | — | — | — | — | 0 | 0 |"
    first = c["first"] if c["first"] is not None else "—"
    first_return = c["first_return"] if c["first_return"] is not None else "—"
    return (
        f"| {name} | no | {first} | {c['tol_at_1']:.1e} ({c['worst_at_1']}) |"
        f" {c['close_through']} | {first_return} | {c['final_gap']:.1f} | {c['param_max']:.2g} |"
    )


def tol_row(name: str, c: dict, updates: int) -> str:
    cells = [f"{c['tol'][u - 1]:.1e}" for u in GROWTH_AT if u <= updates]
    return f"| {name} | " + " | ".join(cells + [f"{c['tol'][-1]:.1e}"]) + " |"


def growth_row(name: str, c: dict, updates: int) -> str:
    cells = [f"{c['gap'][u - 1]:.3g}" for u in GROWTH_AT if u <= updates]
    return f"| {name} | " + " | ".join(cells + [f"{c['gap'][-1]:.3g}"]) + " |"


def launch(
    args: argparse.Namespace, devices: int, path: Path, light: bool = False
) -> dict[str, np.ndarray]:
    flags = [
        f
        for f in os.environ.get("XLA_FLAGS", "").split()
        if "xla_force_host_platform_device_count" not in f
    ]
    env = {
        **os.environ,
        "XLA_FLAGS": " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"]),
    }
    cmd = [sys.executable, __file__, "--worker", str(path), *forwarded(args)]
    cmd += ["--light"] if light else []
    subprocess.run(cmd, env=env, check=True)
    with np.load(path) as data:
        return dict(data)


def forwarded(args: argparse.Namespace) -> list[str]:
    out = ["--algo", args.algo, "--env", args.env, "--total-timesteps", str(args.total_timesteps)]
    out += ["--seeds", str(args.seeds), "--chunk-size", str(args.chunk_size)]
    if args.resume_at is not None:
        out += ["--resume-at", str(args.resume_at)]
    for spec in args.grid:
        out += ["--grid", spec]
    return out


def result_args(argv: list[str]) -> list[str]:
    """``argv`` without the options that do not change the results (``--out``, ``--keep``,
    ``--reuse``)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--out", "--keep"):
            skip = True
        elif arg != "--reuse" and not arg.startswith(("--out=", "--keep=")):
            out.append(arg)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="gymnax:CartPole-v1")
    parser.add_argument("--total-timesteps", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--grid", action="append", help="NAME=V1,V2 (repeatable)")
    parser.add_argument("--resume-at", type=int, default=None, help="default: a third")
    parser.add_argument("--chunk-size", type=int, default=4)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--keep", type=Path, help="keep the workers' arrays in this folder")
    parser.add_argument(
        "--reuse", action="store_true", help="compare the arrays in --keep, train nothing"
    )
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--light", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.grid = args.grid or DEFAULT_GRID
    if args.reuse and args.keep is None:
        parser.error("--reuse needs --keep DIR")
    if args.worker is not None:
        worker(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        keep = Path(args.keep or tmp)
        keep.mkdir(parents=True, exist_ok=True)
        if args.reuse:  # the arrays of an earlier --keep run
            one, one_again, four = (
                dict(np.load(keep / f"{n}.npz")) for n in ("one", "one_again", "four")
            )
        else:
            one = launch(args, 1, keep / "one.npz")
            one_again = launch(args, 1, keep / "one_again.npz", light=True)
            four = launch(args, 4, keep / "four.npz")

    import jax  # only for the versions in the report

    updates, split = int(one["info/updates"]), int(one["info/split"])
    g = group
    cases = [
        (
            "(a) single run, twice in one process (recompiled)",
            g(one, "single"),
            g(one, "single_again"),
        ),
        ("(a) single run, two processes", g(one, "single"), g(one_again, "single")),
        ("(a) sweep, twice in one process (recompiled)", g(one, "sweep"), g(one, "sweep_again")),
        ("(a) sweep, two processes", g(one, "sweep"), g(one_again, "sweep")),
        (
            f"(b) single run resumed at update {split} vs uninterrupted",
            g(one, "single_resumed"),
            g(one, "single"),
        ),
        (
            f"(b) sweep resumed at update {split} vs uninterrupted",
            g(one, "sweep_resumed"),
            g(one, "sweep"),
        ),
        (
            "(b) sweep resumed vs uninterrupted, 4 devices",
            g(four, "sweep_resumed"),
            g(four, "sweep"),
        ),
        ("(c) single run, 1 vs 4 host devices", g(one, "single"), g(four, "single")),
        ("(d) sweep member vs its single run, 1 device", g(one, "sweep"), g(one, "single")),
        ("(d) sweep member vs its single run, 4 devices", g(four, "sweep"), g(four, "single")),
        (
            "(d) one-agent sweep (member 0, seed 0) vs its single run",
            g(one, "sweep_one_agent"),
            {k: v[:1, :1] for k, v in g(one, "single").items()},
        ),
        ("(e) sweep, 1 vs 4 host devices", g(one, "sweep"), g(four, "sweep")),
        (
            f"(e) sweep in chunks of {args.chunk_size} vs whole, 1 device",
            g(one, "sweep_chunked"),
            g(one, "sweep"),
        ),
        (
            f"(e) sweep in chunks of {args.chunk_size} vs whole, 4 devices",
            g(four, "sweep_chunked"),
            g(four, "sweep"),
        ),
    ]
    results = [(name, compare(a, b)) for name, a, b in cases]

    returns = one["single/metric/episode_return"][..., -1]  # [M, S]
    grid = parse_grid(args.grid)
    command = " ".join(["python experiments/reproducibility.py", *result_args(sys.argv[1:])])
    shown = [u for u in GROWTH_AT if u <= updates]
    heading = "| comparison | " + " | ".join(f"u={u}" for u in shown) + f" | u={updates} |"
    rule = "|---|" + "---|" * (len(shown) + 1)
    lines = [
        f"# Reproducibility: {args.algo} on {args.env}",
        "",
        f"Command: `{command}`",
        "",
        f"{' × '.join(str(len(v)) for v in grid.values())} grid"
        f" ({', '.join(f'{k} ∈ {v}' for k, v in grid.items())}) × {args.seeds} seeds,"
        f" {updates} updates of {int(one['info/batch'])} env steps (preset config,"
        f" total_timesteps={args.total_timesteps}); {one['info/jaxpo']}, jax {jax.__version__},"
        f" {platform.machine()} CPU ({os.cpu_count()} cores), host devices set by"
        " `XLA_FLAGS=--xla_force_host_platform_device_count=D` in separate processes.",
        "",
        "Compared: every metric of every update and the final parameters. *first differing"
        " update*: the first update (1-based) at which any metric of any agent differs;"
        " *tolerance at update 1*: the smallest t with |x − y| ≤ t·(1 + |y|) for every metric"
        " at update 1 (`assert_allclose` with rtol = atol = t), and the metric that needs it;"
        f" *within {CLOSE:g} through update*: the last update up to which that tolerance stays"
        f" ≤ {CLOSE:g};"
        " *Δ return*: the largest |difference| of `episode_return` over agents;"
        " *max Δ param*: the largest |difference| of a final parameter.",
        "",
        "| comparison | bit-identical | first differing update | tolerance at update 1"
        f" | within {CLOSE:g} through update | first update with Δ return > 0"
        " | final Δ return (max) | max Δ param |",
        "|---|---|---|---|---|---|---|---|",
        *[row(name, c) for name, c in results],
        "",
        "Metrics that differ at all:",
        "",
        *[f"- {name}: {', '.join(c['differs'])}" for name, c in results if not c["bitwise"]],
        "",
        "Growth of the tolerance (rtol = atol) every metric needs, by update:",
        "",
        heading,
        rule,
        *[tol_row(name, c, updates) for name, c in results if not c["bitwise"]],
        "",
        "Growth of the largest |Δ episode_return| over agents, by update:",
        "",
        heading,
        rule,
        *[growth_row(name, c, updates) for name, c in results if not c["bitwise"]],
        "",
        "For scale, the final returns of the single runs (1 device), per member, over seeds:",
        "",
        "| member | final returns | mean ± std |",
        "|---|---|---|",
        *[
            f"| {m} | {', '.join(f'{r:.1f}' for r in returns[m])} |"
            f" {returns[m].mean():.1f} ± {returns[m].std():.1f} |"
            for m in range(returns.shape[0])
        ],
        "",
    ]
    report = "\n".join(lines)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
