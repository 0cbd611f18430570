"""PPO's MinAtar preset with its CNN against the same loop with the MLP it replaced.

Both at the same budget, 8 seeds in one vmapped call each (``presets.MINATAR`` and
``presets.MINATAR_MLP``, the preset's hparams). Prints each seed's return at a quarter,
half, three quarters and the end of the budget, and saves ``[8, updates]`` returns to
``/tmp/minatar_{cnn,mlp}_{GAME}.npy``.

    python experiments/minatar_cnn_vs_mlp.py TOTAL [ENV_ID]
    python experiments/minatar_cnn_vs_mlp.py 163840 gymnax:Breakout-MinAtar
"""

from __future__ import annotations

import sys
import time

import numpy as np

import jaxpo
from jaxpo import presets


def main(total: int, env_id: str) -> None:
    """Runs both networks and prints their returns."""
    _, hparams = presets.get("ppo", env_id)
    for name, loop in [("cnn", presets.MINATAR), ("mlp", presets.MINATAR_MLP)]:
        config = jaxpo.Config(algo="ppo", env_id=env_id, **loop).replace(total_timesteps=total)
        start = time.time()
        result = jaxpo.sweep.run(config, hparams, seeds=8)
        returns = np.asarray(result.metrics["episode_return"])[0]
        seconds = time.time() - start
        np.save(f"/tmp/minatar_{name}_{env_id.split(':')[1]}.npy", returns)
        print(name, env_id, f"{seconds:.0f}s", f"{8 * total / seconds:.0f} steps/s", flush=True)
        for share in (0.25, 0.5, 0.75, 1.0):
            i = int(share * returns.shape[1]) - 1
            at = returns[:, i]
            print(f"  at {(i + 1) * config.batch_size:,}: {at.round(2)} mean {at.mean():.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "gymnax:Breakout-MinAtar")
