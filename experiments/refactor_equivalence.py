"""Dumps (or compares) 20 updates of several algorithms from a fixed key.

Run once on a reference checkout with ``--save DIR``, then on a changed one with
``--compare DIR``: every metric and parameter array is compared bit for bit (and the
largest absolute difference is printed where they differ).

    python experiments/refactor_equivalence.py --save /tmp/before
    python experiments/refactor_equivalence.py --compare /tmp/before
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import numpy as np

from jaxpo import make_train, presets

CASES = [
    ("ppo", "gymnax:CartPole-v1"),
    ("ppo_kl", "gymnax:CartPole-v1"),
    ("trpo", "gymnax:CartPole-v1"),
    ("mcpo", "gymnax:CartPole-v1"),
    ("grpo", "gymnax:CartPole-v1"),
    ("adaptive_ppo", "gymnax:CartPole-v1"),
    ("ppo", "gymnax:Pendulum-v1"),
    ("trpo", "gymnax:Pendulum-v1"),
]
UPDATES = 20
#: Metrics renamed by the change being checked (reference name -> new name).
RENAMED = {"metric/beta": "metric/kl_coef"}


def run(algo: str, env_id: str) -> dict[str, np.ndarray]:
    config, hparams = presets.get(algo, env_id)
    config = config.replace(total_timesteps=UPDATES * config.batch_size)
    result = jax.jit(make_train(config))(jax.random.key(0), hparams)
    out = {f"metric/{k}": np.asarray(v) for k, v in result.metrics.items()}
    leaves = jax.tree_util.tree_leaves_with_path(result.state.params)
    out.update({f"param/{jax.tree_util.keystr(p)}": np.asarray(v) for p, v in leaves})
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", type=pathlib.Path)
    group.add_argument("--compare", type=pathlib.Path)
    args = parser.parse_args()
    for algo, env_id in CASES:
        name = f"{algo}_{env_id.split(':')[1]}"
        arrays = run(algo, env_id)
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            np.savez(args.save / f"{name}.npz", **arrays)
            print(f"{name}: saved {len(arrays)} arrays")
            continue
        ref = {
            RENAMED.get(k, k) if RENAMED.get(k) in arrays else k: v
            for k, v in np.load(args.compare / f"{name}.npz").items()
        }
        missing = sorted(set(ref) ^ set(arrays))
        differ = {
            k: float(np.max(np.abs(ref[k].astype(np.float64) - arrays[k].astype(np.float64))))
            for k in sorted(set(ref) & set(arrays))
            if not np.array_equal(ref[k], arrays[k])
        }
        verdict = "bitwise identical" if not missing and not differ else "DIFFERENT"
        print(f"{name}: {len(ref)} arrays, {verdict}")
        for k in missing:
            print(f"  only in one run: {k}")
        for k, d in differ.items():
            print(f"  {k}: max |diff| {d:.3g}")


if __name__ == "__main__":
    main()
