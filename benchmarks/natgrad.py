"""Cost of jaxpo's Fisher-vector products, and TRPO's training throughput beside PPO's.

Usage::

    python benchmarks/natgrad.py [--quick] [--out benchmarks/results] [--parts fvp,train]
                                 [--sb3-python /path/to/python]

Part ``fvp``: for an :class:`~jaxpo.networks.Actor` MLP of 64x64 and 256x256 (tanh), with a
categorical head (obs dim 4, 2 actions, CartPole-like) and a diagonal-Gaussian head (obs dim
17, action dim 6, MuJoCo-like), on a batch of ``--batch`` random observations, it compares
each Fisher-vector product (FVP) with one gradient of the surrogate
``mean(−exp(logp − old_logp)·Â)`` (:func:`jaxpo.losses.importance_surrogate`) on the same
batch and network:

* ``gauss_newton``: :func:`jaxpo.natgrad.make_fisher_vector_product`, per product after the
  one-off ``jax.linearize`` (how conjugate gradient uses it), and fresh
  (:func:`~jaxpo.natgrad.fisher_vector_product`: linearisation + one product);
* ``kl_hessian``: :func:`jaxpo.natgrad.fisher.make_kl_hessian_vector_product`
  (forward-over-reverse), per product and fresh;
* per iteration of :func:`jaxpo.natgrad.conjugate_gradient` with each form (product + the
  vector updates);

Per-operation costs come from loops compiled in one program (no dispatch overhead): a
``lax.fori_loop`` of ``K`` sequentially dependent operations and one of 1, each timed, and
``(t(K) − t(1)) / (K − 1)``. Each op's output (normalised to unit norm) feeds the next op, as in
CG; for the gradient and the fresh forms, the parameters move by ``1e-3`` times it too, so
nothing can be hoisted out of the loop. Single jitted calls (dispatch included) are timed as
a cross-check. Every timing is the median of ``--timings`` samples, each sample the mean over
enough calls to last ``--min-sample-s``; compile and two warm-up calls excluded; the timed
functions are interleaved, so drift in machine speed hits them alike.

Part ``train``: training throughput (env steps/s, compile excluded) of
``jaxpo.presets.get("trpo", env)`` beside ``("ppo", env)``, on gymnax CartPole-v1 and brax
inverted_pendulum (``spring``), for 1 seed and 8 vmapped seeds, runs interleaved (as in
``benchmarks/throughput.py``, whose helpers are reused), and the ratio TRPO/PPO.

With ``--sb3-python PYTHON`` (an interpreter with ``sb3-contrib``, ``torch`` and
``gymnasium``), ``benchmarks/sb3_trpo_baseline.py`` is run with it: sb3-contrib's TRPO on
gymnasium CartPole-v1 with the batch (``n_envs`` x ``n_steps``), CG iterations, line-search
steps and critic epochs/minibatch of the jaxpo TRPO CartPole config, as the conventional
baseline; it is skipped otherwise.

Results go to ``<out>/natgrad.json`` and ``<out>/natgrad.md``; the tables are also printed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if "--quick" in sys.argv[1:] and "XLA_FLAGS" not in os.environ:
    # A smoke run only checks that every path works: halve XLA's compile time (runtime numbers
    # of a quick run are not meaningful anyway). Must be set before jax is imported.
    os.environ["XLA_FLAGS"] = "--xla_backend_optimization_level=0"

import jax  # noqa: E402
import optax  # noqa: E402

import jaxpo  # noqa: E402
from jaxpo.losses import importance_surrogate  # noqa: E402
from jaxpo.natgrad import (  # noqa: E402
    conjugate_gradient,
    fisher_vector_product,
    make_fisher_vector_product,
)
from jaxpo.natgrad.fisher import (  # noqa: E402
    kl_hessian_vector_product,
    make_kl_hessian_vector_product,
)
from jaxpo.networks import Actor, distribution  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import EnvCase, Timed, compile_fn, jaxpo_train_fn, log, machine_info  # noqa: E402

HERE = Path(__file__).resolve().parent
DAMPING = 0.1
GOAL = 2.0

# --------------------------------------------------------------------------------------------
# part 1: Fisher-vector products against one surrogate gradient


@dataclass(frozen=True)
class Head:
    """A policy head: observation size, action size, discrete or Gaussian."""

    label: str
    obs_dim: int
    action_dim: int
    discrete: bool


HEADS = {
    "categorical": Head("categorical (obs 4, 2 actions)", 4, 2, True),
    "gaussian": Head("gaussian (obs 17, act 6)", 17, 6, False),
}
WIDTHS = {"64x64": (64, 64), "256x256": (256, 256)}


@dataclass
class Problem:
    """An actor, its parameters, a batch, and a tangent shaped like the parameters."""

    actor: Actor
    params: Any
    v: Any
    obs: jax.Array
    action: jax.Array
    old_log_prob: jax.Array
    advantages: jax.Array

    @property
    def num_params(self) -> int:
        return sum(x.size for x in jax.tree.leaves(self.params))


def make_problem(head: Head, hidden: tuple[int, ...], batch: int, seed: int = 0) -> Problem:
    actor = Actor(
        hidden_sizes=hidden,
        action_dim=head.action_dim,
        discrete=head.discrete,
        activation="tanh",
        obs_ndim=1,
    )
    k_obs, k_init, k_act, k_adv, k_v, k_noise = jax.random.split(jax.random.key(seed), 6)
    obs = jax.random.normal(k_obs, (batch, head.obs_dim))
    params = actor.init(k_init, obs[:1])
    dist = distribution(actor.apply(params, obs))
    action = dist.sample(seed=k_act)
    # The behaviour policy a little off θ, as after a line-search step of the last update.
    old_log_prob = dist.log_prob(action) + 0.05 * jax.random.normal(k_noise, (batch,))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(k_v, len(leaves))
    v = jax.tree.unflatten(
        tree, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    )
    v = unit(v)
    adv = jax.random.normal(k_adv, (batch,))
    return Problem(actor, params, v, obs, action, old_log_prob, adv)


def unit(tree: Any) -> Any:
    """``tree / ‖tree‖`` (keeps chained products finite and away from denormals)."""
    return optax.tree.scale(1.0 / (optax.tree.norm(tree) + 1e-30), tree)


def step(params: Any, direction: Any) -> Any:
    return optax.tree.add_scale(params, -1e-3, direction)


def surrogate_grad(actor: Actor) -> Callable:
    """``(params, obs, action, old_log_prob, adv) -> ∇ mean importance_surrogate``."""

    def loss(params: Any, obs: Any, action: Any, old_log_prob: Any, adv: Any) -> jax.Array:
        log_prob = distribution(actor.apply(params, obs)).log_prob(action)
        return importance_surrogate(log_prob, old_log_prob, adv).mean()

    return jax.grad(loss)


#: The per-op loops timed: name -> (kind, product builder). ``kind`` says what the loop
#: carries: ``grad`` (params), ``fresh`` (params and v), ``linear`` (v, product built once
#: outside the loop), ``cg`` (jaxpo's conjugate_gradient with ``iters`` iterations).
LOOPS: dict[str, tuple[str, Any]] = {
    "grad": ("grad", None),
    "gn": ("linear", make_fisher_vector_product),
    "gn_fresh": ("fresh", fisher_vector_product),
    "gn_cg": ("cg", make_fisher_vector_product),
    "kl": ("linear", make_kl_hessian_vector_product),
    "kl_fresh": ("fresh", kl_hessian_vector_product),
    "kl_cg": ("cg", make_kl_hessian_vector_product),
}


def loop_fn(problem: Problem, name: str, iters: int) -> Callable:
    """``(params, v, obs, action, old_log_prob, adv) -> result`` doing ``iters`` ops."""
    kind, product = LOOPS[name]
    actor = problem.actor
    grad = surrogate_grad(actor)

    def f(params: Any, v: Any, obs: Any, action: Any, old_log_prob: Any, adv: Any) -> Any:
        def apply_fn(p: Any) -> Any:
            return actor.apply(p, obs)

        if kind == "grad":

            def body_grad(_: int, p: Any) -> Any:
                return step(p, unit(grad(p, obs, action, old_log_prob, adv)))

            return jax.lax.fori_loop(0, iters, body_grad, params)
        if kind == "fresh":

            def body_fresh(_: int, carry: tuple) -> tuple:
                p, u = carry
                u = unit(product(apply_fn, p, u, DAMPING))
                return step(p, u), u

            return jax.lax.fori_loop(0, iters, body_fresh, (params, v))
        matvec = product(apply_fn, params, DAMPING)
        if kind == "linear":
            return jax.lax.fori_loop(0, iters, lambda _, u: unit(matvec(u)), v)
        return conjugate_gradient(matvec, v, iters).x

    return f


def call_fns(problem: Problem) -> dict[str, Callable]:
    """Single operations, each its own jitted call (dispatch overhead included)."""
    actor = problem.actor
    grad = surrogate_grad(actor)

    def grad_call(params: Any, v: Any, obs: Any, action: Any, lp: Any, adv: Any) -> Any:
        return grad(params, obs, action, lp, adv)

    def gn_call(params: Any, v: Any, obs: Any, action: Any, lp: Any, adv: Any) -> Any:
        return fisher_vector_product(lambda p: actor.apply(p, obs), params, v, DAMPING)

    def kl_call(params: Any, v: Any, obs: Any, action: Any, lp: Any, adv: Any) -> Any:
        return kl_hessian_vector_product(lambda p: actor.apply(p, obs), params, v, DAMPING)

    return {"grad": grad_call, "gn_fresh": gn_call, "kl_fresh": kl_call}


@dataclass
class Sampled:
    """A compiled function and its timing samples (seconds per call)."""

    name: str
    compiled: Any
    compile_s: float
    calls: int = 1
    samples: list[float] = field(default_factory=list)

    def sample(self, args: tuple) -> float:
        start = time.perf_counter()
        for _ in range(self.calls):
            jax.block_until_ready(self.compiled(*args))
        elapsed = (time.perf_counter() - start) / self.calls
        self.samples.append(elapsed)
        return elapsed

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def time_all(fns: dict[str, Callable], args: tuple, timings: int, min_sample_s: float) -> dict:
    """Compiles ``fns``, warms each up, then takes ``timings`` interleaved samples of each."""
    timed: dict[str, Sampled] = {}
    for name, fn in fns.items():
        start = time.perf_counter()
        compiled = jax.jit(fn).lower(*args).compile()
        timed[name] = Sampled(name, compiled, time.perf_counter() - start)
    for t in timed.values():
        jax.block_until_ready(t.compiled(*args))
        once = t.sample(args)
        t.samples.clear()
        t.calls = max(1, min(1000, round(min_sample_s / max(once, 1e-7))))
    for r in range(timings):
        order = list(timed) if r % 2 == 0 else list(reversed(timed))
        for name in order:
            timed[name].sample(args)
    return timed


def bench_fvp(
    head: Head, hidden: tuple[int, ...], batch: int, iters: int, timings: int, min_s: float
) -> dict:
    problem = make_problem(head, hidden, batch)
    args = (
        problem.params,
        problem.v,
        problem.obs,
        problem.action,
        problem.old_log_prob,
        problem.advantages,
    )
    fns: dict[str, Callable] = {}
    for name in LOOPS:
        fns[f"{name}@1"] = loop_fn(problem, name, 1)
        fns[f"{name}@{iters}"] = loop_fn(problem, name, iters)
    for name, fn in call_fns(problem).items():
        fns[f"{name}:call"] = fn
    load_before = os.getloadavg()
    timed = time_all(fns, args, timings, min_s)
    load_after = os.getloadavg()

    per_op = {
        name: (timed[f"{name}@{iters}"].median - timed[f"{name}@1"].median) / (iters - 1)
        for name in LOOPS
    }
    call = {name: timed[f"{name}:call"].median for name in call_fns(problem)}
    grad = per_op["grad"]
    ratios = {name: per_op[name] / grad for name in LOOPS if name != "grad"}
    ratios.update({f"{name}:call": call[name] / call["grad"] for name in call if name != "grad"})
    label = f"{head.label}, {'x'.join(map(str, hidden))}"
    log(
        f"  {label}: grad {grad * 1e3:.3f} ms; "
        + ", ".join(f"{k}/grad {v:.2f}" for k, v in ratios.items())
    )
    return {
        "head": head.label,
        "hidden": list(hidden),
        "batch": batch,
        "num_params": problem.num_params,
        "iters": iters,
        "per_op_s": per_op,
        "call_s": call,
        "ratio_to_grad": ratios,
        "loop_medians_s": {name: t.median for name, t in timed.items()},
        "samples_s": {name: t.samples for name, t in timed.items()},
        "calls_per_sample": {name: t.calls for name, t in timed.items()},
        "compile_s": {name: t.compile_s for name, t in timed.items()},
        "loadavg_1m_before_after": [load_before[0], load_after[0]],
    }


# --------------------------------------------------------------------------------------------
# part 2: TRPO training throughput beside PPO's


ENVS = {
    "cartpole": ("CartPole-v1", "gymnax:CartPole-v1"),
    "pendulum": ("inverted_pendulum (brax spring)", "brax:inverted_pendulum"),
}


def train_case(algo: str, env_key: str, total: int) -> EnvCase:
    """``presets.get(algo, env)`` with ``total`` steps per seed (brax on ``spring``)."""
    label, env_id = ENVS[env_key]
    config, hp = jaxpo.presets.get(algo, env_id)
    changes: dict[str, Any] = {"total_timesteps": max(total, config.batch_size)}
    if env_id.startswith("brax:"):
        changes["brax_backend"] = "spring"
    return EnvCase(label, config.replace(**changes), hp)


def is_generic(algo: str, env_key: str) -> bool:
    """Whether ``presets.get`` falls back to the generic config for this pair."""
    return (algo, ENVS[env_key][1]) not in jaxpo.presets.PRESETS


def bench_train(env_key: str, total: int, seeds: int, repeats: int) -> list[dict]:
    cases = {algo: train_case(algo, env_key, total) for algo in ("trpo", "ppo")}
    timed: dict[str, Timed] = {}
    errors: dict[str, str] = {}
    for algo, case in cases.items():
        try:
            fn, args_of = jaxpo_train_fn(case, seeds)
            timed[algo] = compile_fn(
                f"{case.label} {algo} x{seeds}", fn, args_of, case.steps * seeds
            )
        except Exception as exc:  # noqa: BLE001 - reported in the results, not fatal
            errors[algo] = f"{type(exc).__name__}: {exc}"
            log(f"  {algo} x{seeds} failed: {errors[algo]}")
    load_before = os.getloadavg()
    for r in range(repeats):
        order = list(timed) if r % 2 == 0 else list(reversed(timed))
        for algo in order:
            elapsed = timed[algo].run(r + 1)
            log(
                f"  {cases[algo].label} {algo} x{seeds} run {r + 1}: {elapsed:.2f}s "
                f"({timed[algo].steps / elapsed:,.0f} steps/s)"
            )
    load_after = os.getloadavg()
    rows = []
    for algo, case in cases.items():
        c = case.config
        t = timed.get(algo)
        row: dict[str, Any] = {
            "env": case.label,
            "env_id": c.env_id,
            "algo": algo,
            "seeds": seeds,
            "preset": "generic (no preset yet)" if is_generic(algo, env_key) else "preset",
            "num_envs": c.num_envs,
            "num_steps": c.num_steps,
            "batch": c.batch_size,
            "num_updates": c.num_updates,
            "steps_per_run": case.steps * seeds,
            "compile_s": t.compile_s if t else None,
            "train_steps_per_s": t.steps_per_s if t else None,
            "train_steps_per_s_best": t.best_steps_per_s if t else None,
            "ms_per_update": (
                1e3 * statistics.median(t.times) / c.num_updates if t and t.times else None
            ),
            "train_times_s": t.times if t else [],
            "loadavg_1m_before_after": [load_before[0], load_after[0]],
        }
        if algo == "trpo":
            other = timed.get("ppo")
            row["trpo_over_ppo"] = t.steps_per_s / other.steps_per_s if t and other else None
            row["trpo_over_ppo_best"] = (
                t.best_steps_per_s / other.best_steps_per_s if t and other else None
            )
        if algo in errors:
            row["error"] = errors[algo]
        rows.append(row)
    return rows


def run_sb3(python: str, case: EnvCase, repeats: int, jaxpo_row: dict | None) -> dict:
    """sb3-contrib's TRPO with ``case``'s batch and CG/line-search/critic settings."""
    c, hp = case.config, case.hparams
    cmd = [
        python,
        os.path.relpath(HERE / "sb3_trpo_baseline.py"),
        "--n-envs",
        str(c.num_envs),
        "--n-steps",
        str(c.num_steps),
        "--total-steps",
        str(case.steps),
        "--cg-iters",
        str(c.cg_iters),
        "--line-search-steps",
        str(c.line_search_steps),
        "--critic-epochs",
        str(c.update_epochs),
        "--critic-minibatch",
        str(c.minibatch_size),
        "--gae-lambda",
        f"{float(hp.gae_lambda):.6g}",
        "--max-kl",
        f"{float(hp.max_kl):.6g}",
        "--cg-damping",
        f"{float(hp.cg_damping):.6g}",
        "--learning-rate",
        f"{float(hp.learning_rate):.6g}",
        "--repeats",
        str(repeats),
    ]
    log(f"sb3-contrib TRPO: {' '.join(cmd)}")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.stderr:
        log(proc.stderr.rstrip())
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}"}
    result = json.loads(lines[-1])
    result["command"] = " ".join(cmd[1:])
    if jaxpo_row and jaxpo_row.get("train_steps_per_s"):
        result["jaxpo_trpo_steps_per_s"] = jaxpo_row["train_steps_per_s"]
        result["jaxpo_over_sb3"] = jaxpo_row["train_steps_per_s"] / result["steps_per_s"]
    return result


# --------------------------------------------------------------------------------------------
# reporting


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _ratio(value: float | None) -> str:
    if value is None:
        return "—"
    return f"**{value:.2f}**" if value > GOAL else f"{value:.2f}"


def fvp_table(rows: list[dict]) -> str:
    lines = [
        "| head | hidden | params | grad ms | GN ms | GN/grad | GN fresh/grad "
        "| GN CG iter/grad | KL ms | KL/grad | KL fresh/grad | KL CG iter/grad "
        "| GN fresh/grad (call) | KL fresh/grad (call) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        op, q = r["per_op_s"], r["ratio_to_grad"]
        lines.append(
            f"| {r['head']} | {'x'.join(map(str, r['hidden']))} | {r['num_params']:,} "
            f"| {op['grad'] * 1e3:.3f} | {op['gn'] * 1e3:.3f} | {_ratio(q['gn'])} "
            f"| {_ratio(q['gn_fresh'])} | {_ratio(q['gn_cg'])} | {op['kl'] * 1e3:.3f} "
            f"| {_ratio(q['kl'])} | {_ratio(q['kl_fresh'])} | {_ratio(q['kl_cg'])} "
            f"| {_ratio(q['gn_fresh:call'])} "
            f"| {_ratio(q['kl_fresh:call'])} |"
        )
    return "\n".join(lines)


def train_table(rows: list[dict]) -> str:
    lines = [
        "| env | algo | config | seeds | batch | updates | compile_s | train_steps_per_s "
        "| ms/update | TRPO/PPO | TRPO/PPO (best run) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['env']} | {r['algo']} | {r['preset']} | {r['seeds']} "
            f"| {r['num_envs']}x{r['num_steps']} | {r['num_updates']} "
            f"| {_fmt(r['compile_s'], '.1f')} | {_fmt(r['train_steps_per_s'], ',.0f')} "
            f"| {_fmt(r['ms_per_update'], '.2f')} | {_fmt(r.get('trpo_over_ppo'), '.2f')} "
            f"| {_fmt(r.get('trpo_over_ppo_best'), '.2f')} |"
        )
    return "\n".join(lines)


FVP_NOTES = """\
Method. Columns are the cost of one operation divided by the cost of one gradient of the
surrogate `mean(−exp(logp − old_logp)·Â)` (`jaxpo.losses.importance_surrogate`, through the
actor and its distrax log-prob) on the same batch, network and parameters; values above the
goal of {goal} are in bold.

- Per-operation costs (all columns but the `(call)` ones) are measured inside one compiled
  program: a `lax.fori_loop` of K sequentially dependent operations and one of 1 operation
  are timed, and the cost of one is `(t(K) − t(1)) / (K − 1)` (K = {iters}); dispatch,
  argument transfer and any one-off setup outside the loop cancel. Each operation's result,
  scaled to unit norm, is the next one's input (as in conjugate gradient), and for `grad` and
  the `fresh` forms the parameters also move by 1e-3 times it, so XLA can hoist nothing out
  of the loop. The loop bodies of every column do the same (cheap) normalisation.
- `GN`: jaxpo's Gauss–Newton product `make_fisher_vector_product` (jvp, output Fisher, vjp),
  per product after the one-off `jax.linearize` outside the loop — the cost of a CG
  iteration's product. `GN fresh`: `fisher_vector_product` (linearisation + one product)
  at new parameters each iteration.
- `KL`: `make_kl_hessian_vector_product` (forward-over-reverse Hessian of the mean KL);
  `KL fresh` re-evaluates π_old at new parameters each iteration too.
- `CG iter`: one iteration of `jaxpo.natgrad.conjugate_gradient` (product + vector
  updates), `(t(CG K iterations) − t(CG 1)) / (K − 1)` with the product built once.
- `(call)`: one jitted call of `fisher_vector_product` / `kl_hessian_vector_product` over
  one jitted call of the gradient (dispatch overhead included in both).
- Timings: median of the interleaved samples, each sample the mean over enough back-to-back
  calls (each waited for with `block_until_ready`) to last ≥ {min_s} s; compile and two
  warm-up calls excluded. Batch of {batch} random observations, a sampled action per row,
  `old_logp` = the current log-prob plus N(0, 0.05²) noise, standard-normal advantages,
  tanh MLPs (`jaxpo.networks.Actor`), damping {damping}.
"""

TRAIN_NOTES = """\
- `jaxpo.presets.get(algo, env)` with `total_timesteps` replaced (whole updates are run, so
  steps = updates × batch) and brax on `spring`; "generic (no preset yet)" marks a pair
  without a preset, run with the algorithm's defaults and the generic `Config`.
- `train_steps_per_s`: env steps/s of a whole training run (all seeds counted), compile
  (`jax.jit(f).lower(...).compile()`) excluded, median of the timed runs, TRPO and PPO runs
  interleaved (order alternating per repeat). `ms/update`: median run time / updates (all
  seeds of a vmapped run together; the two algorithms' batches may differ).
- What to expect: TRPO's policy step on the whole batch is one surrogate gradient, `cg_iters`
  Fisher-vector products in CG plus one for the step length (plus the one-off
  linearisation), and `line_search_steps` + 1 forward evaluations of candidates (all computed,
  then masked) — with an FVP ≈ 1.2 gradients and a forward ≈ ⅓ gradient (table above), about
  18 actor-gradient equivalents — plus the critic's `update_epochs` passes of Adam; PPO's
  update is `update_epochs` passes of actor and critic gradients. At equal batch and epochs a
  TRPO update is therefore expected to cost roughly 2.5–3x a PPO update; per env step the
  ratio then depends on the two presets' batch sizes.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smoke run in seconds")
    parser.add_argument("--out", default="benchmarks/results", help="output folder")
    parser.add_argument("--parts", default="fvp,train", help="comma list of fvp,train")
    parser.add_argument("--batch", type=int, default=None, help="FVP batch (4096; quick 256)")
    parser.add_argument("--iters", type=int, default=10, help="K of the per-op loops (10)")
    parser.add_argument(
        "--timings", type=int, default=None, help="samples per FVP timing (5; quick 2)"
    )
    parser.add_argument(
        "--min-sample-s", type=float, default=None, help="length of a sample (0.1; quick 0.01)"
    )
    parser.add_argument(
        "--heads", default=None, help="comma list of categorical,gaussian (default both)"
    )
    parser.add_argument(
        "--widths", default=None, help="comma list of 64x64,256x256 (default both; quick 64x64)"
    )
    parser.add_argument(
        "--envs", default=None, help="comma list of cartpole,pendulum (default both; quick: cp)"
    )
    parser.add_argument(
        "--seeds", default=None, help="comma list of seed counts (default 1,8; quick 1)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed training runs per cell (default: 3 for 1 seed, 2 for more; --quick: 1)",
    )
    parser.add_argument("--cartpole-steps", type=int, default=None, help="steps per seed (200000)")
    parser.add_argument("--pendulum-steps", type=int, default=None, help="steps per seed (100000)")
    parser.add_argument(
        "--sb3-python", default=None, help="python with sb3-contrib: run the sb3 TRPO baseline"
    )
    parser.add_argument(
        "--sb3-updates", type=int, default=None, help="sb3 updates (batches) per run (16; quick 2)"
    )
    parser.add_argument("--sb3-repeats", type=int, default=None, help="sb3 runs (2; quick 1)")
    args = parser.parse_args(argv)

    q = args.quick
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    batch = args.batch or (256 if q else 4096)
    timings = args.timings or (2 if q else 5)
    min_s = args.min_sample_s if args.min_sample_s is not None else (0.01 if q else 0.1)
    heads = [HEADS[h.strip()] for h in (args.heads or "categorical,gaussian").split(",")]
    widths = [
        WIDTHS[w.strip()] for w in (args.widths or ("64x64" if q else "64x64,256x256")).split(",")
    ]
    env_keys = [
        e.strip() for e in (args.envs or ("cartpole" if q else "cartpole,pendulum")).split(",")
    ]
    seed_counts = [int(s) for s in (args.seeds or ("1" if q else "1,8")).split(",")]

    def repeats_for(seeds: int) -> int:
        if args.repeats:
            return args.repeats
        return 1 if q else (3 if seeds == 1 else 2)

    # Quick: two updates of the larger batch.
    totals = {
        "cartpole": args.cartpole_steps or (1024 if q else 200_000),
        "pendulum": args.pendulum_steps or (4096 if q else 100_000),
    }
    if q and not args.cartpole_steps:
        batches = [train_case(a, "cartpole", 1).config.batch_size for a in ("trpo", "ppo")]
        totals["cartpole"] = 2 * max(batches)
    sb3_updates = args.sb3_updates or (2 if q else 16)
    sb3_repeats = args.sb3_repeats or (1 if q else 2)

    info = machine_info()
    log(f"jax {info['jax']} on {info['backend']}, {info['cpu_count']} CPUs")
    started = time.perf_counter()
    fvp_rows: list[dict] = []
    if "fvp" in parts:
        log(f"Fisher-vector products, batch {batch}, K = {args.iters}")
        for hidden in widths:
            for head in heads:
                fvp_rows.append(bench_fvp(head, hidden, batch, args.iters, timings, min_s))
    train_rows: list[dict] = []
    if "train" in parts:
        for env_key in env_keys:
            for seeds in seed_counts:
                log(f"{ENVS[env_key][0]}, {seeds} seed(s), {totals[env_key]:,} steps per seed")
                train_rows.extend(bench_train(env_key, totals[env_key], seeds, repeats_for(seeds)))
    sb3: dict | None = None
    if args.sb3_python:
        jaxpo_row = next(
            (
                r
                for r in train_rows
                if r["algo"] == "trpo" and r["env_id"] == "gymnax:CartPole-v1" and r["seeds"] == 1
            ),
            None,
        )
        case = train_case("trpo", "cartpole", 1)
        case = train_case("trpo", "cartpole", sb3_updates * case.config.batch_size)
        sb3 = run_sb3(args.sb3_python, case, sb3_repeats, jaxpo_row)
    wall = time.perf_counter() - started

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": q,
        "wall_s": wall,
        "machine": info,
        "fvp": {
            "batch": batch,
            "iters": args.iters,
            "timings": timings,
            "min_sample_s": min_s,
            "damping": DAMPING,
            "goal_ratio": GOAL,
            "rows": fvp_rows,
        },
        "train": {
            "steps_per_seed": {k: totals[k] for k in env_keys},
            "repeats": {str(n): repeats_for(n) for n in seed_counts},
            "rows": train_rows,
        },
        "sb3_baseline": sb3,
    }
    (out / "natgrad.json").write_text(json.dumps(result, indent=2) + "\n")

    machine = (
        f"jax {info['jax']}, backend {info['backend']}, {info['cpu_count']} CPUs "
        f"({info['cpu_model']}), XLA_FLAGS={info['XLA_FLAGS'] or '(none)'}"
    )
    loads = [r["loadavg_1m_before_after"] for r in fvp_rows + train_rows]
    load_range = (
        f"{min(min(x) for x in loads):.1f}–{max(max(x) for x in loads):.1f}" if loads else "?"
    )
    sections = [
        f"# Natural-gradient cost and TRPO throughput"
        f"{' (quick smoke run, not a measurement)' if q else ''}\n\n"
        f"`{result['command']}` — {result['date_utc']}; {machine}; 1-minute load average "
        f"during the measurements {load_range} (other processes slow runs unevenly; the "
        f"interleaving and the medians keep the ratios fair). Wall time {wall:.0f} s."
    ]
    if fvp_rows:
        sections.append(
            f"## Fisher-vector product / surrogate gradient\n\n"
            f"Goal: ≤ {GOAL:g} for the product CG uses (`GN/grad`).\n\n{fvp_table(fvp_rows)}\n\n"
            + FVP_NOTES.format(
                goal=GOAL, iters=args.iters, min_s=min_s, batch=batch, damping=DAMPING
            )
        )
    repeats_text = ", ".join(f"{n} seed(s): {repeats_for(n)}" for n in seed_counts)
    if train_rows:
        sections.append(
            f"## TRPO training throughput beside PPO\n\n"
            f"Steps per seed: {', '.join(f'{ENVS[k][0]} {totals[k]:,}' for k in env_keys)}; "
            f"timed runs per cell: {repeats_text}.\n\n{train_table(train_rows)}\n\n{TRAIN_NOTES}"
        )
    sections.append(sb3_section(sb3, args.sb3_python))
    md = "\n\n".join(s.rstrip() for s in sections) + "\n"
    (out / "natgrad.md").write_text(md)
    print()
    if fvp_rows:
        print(fvp_table(fvp_rows))
        print()
    if train_rows:
        print(train_table(train_rows))
    if sb3:
        print(f"\nsb3: {_sb3_line(sb3)}")
    print(f"\nwrote {out / 'natgrad.json'} and {out / 'natgrad.md'} ({wall:.0f}s)")
    return 0


def _sb3_line(sb3: dict) -> str:
    if "error" in sb3:
        return f"failed: {sb3['error']}"
    ratio = sb3.get("jaxpo_over_sb3")
    return (
        f"{sb3['steps_per_s']:,.0f} env steps/s over {sb3['steps_per_run']:,} steps "
        f"(best {sb3['steps_per_s_best']:,.0f}); jaxpo TRPO (1 seed) / sb3 = {_fmt(ratio, '.1f')}"
    )


def sb3_section(sb3: dict | None, python: str | None) -> str:
    head = "## Conventional baseline: sb3-contrib TRPO (PyTorch, CPU)\n\n"
    how = (
        "How it is run: `benchmarks/sb3_trpo_baseline.py` in a separate environment, e.g. "
        "`python3 -m venv /tmp/sb3venv && /tmp/sb3venv/bin/pip install TORCH_CPU_WHEEL "
        "sb3-contrib gymnasium` with a CPU-only torch wheel (measured here: torch 2.13.0+cpu, "
        "sb3-contrib 2.9.2, gymnasium 1.4.0; a ~1 GB venv installed in about a minute; a plain "
        "`pip install sb3-contrib` pulls CUDA torch wheels of several GB), then `python "
        "benchmarks/natgrad.py --sb3-python /tmp/sb3venv/bin/python`. It trains "
        "sb3-contrib's `TRPO('MlpPolicy')` "
        "(64x64 tanh actor and critic) on gymnasium CartPole-v1 with a `DummyVecEnv` of the "
        "jaxpo TRPO CartPole config's `num_envs`, `n_steps = num_steps`, `cg_max_steps = "
        "cg_iters`, `line_search_max_iter = line_search_steps`, `n_critic_updates = "
        "update_epochs`, `batch_size = minibatch_size`, and the same λ, δ, damping and critic "
        "learning rate; env steps/s of `model.learn` (model construction excluded), torch "
        "threads = the CPUs available. Not matched: sb3 stops the line search at the first "
        "acceptable step (jaxpo evaluates all candidates), sb3 steps Python envs one by one."
    )
    if sb3 is None:
        return head + "Not run (no `--sb3-python`).\n\n" + how
    if "error" in sb3:
        return head + f"Run with `{python}`, failed: {sb3['error']}\n\n" + how
    s = sb3["settings"]
    return (
        head
        + f"`{python} {sb3['command']}`: {s['n_envs']} envs x {s['n_steps']} steps, "
        + f"{sb3['steps_per_run']:,} steps per run, {len(sb3['times_s'])} run(s), torch "
        + f"{sb3['packages'].get('torch')}, sb3-contrib {sb3['packages'].get('sb3-contrib')}, "
        + f"{sb3['torch_threads']} torch thread(s).\n\n"
        + "| impl | env steps/s | best run |\n|---|---:|---:|\n"
        + f"| sb3-contrib TRPO | {sb3['steps_per_s']:,.0f} | {sb3['steps_per_s_best']:,.0f} |\n"
        + f"| jaxpo TRPO, 1 seed (table above) | {_fmt(sb3.get('jaxpo_trpo_steps_per_s'), ',.0f')} "
        + "| — |\n\n"
        + f"jaxpo / sb3: {_fmt(sb3.get('jaxpo_over_sb3'), '.1f')}x (different env step counts "
        + "per run; steps/s is per step).\n\n"
        + how
    )


if __name__ == "__main__":
    sys.exit(main())
