"""PPO against its untrained policy on one env, 8 seeds of each in one compiled call.

The untrained policy is PPO at a learning rate of 1e-12 (a sweep member beside the trained
one): its logits start within 0.01 of 0, so it is the uniform policy over the legal actions
and stays so. The network is the default (or the preset's, if ``--preset``). Prints each
seed's return at a quarter, half and the end of the budget, and the illegal actions sampled
on masked envs.

    python experiments/beside_untrained.py ENV TOTAL NUM_ENVS NUM_STEPS LR [NAME=VALUE ...]
    python experiments/beside_untrained.py jumanji:Knapsack-v1 300000 64 32 3e-4
    python experiments/beside_untrained.py jumanji:Game2048-v1 1048576 64 32 1e-3 reward_scale=0.01

``NAME=VALUE`` sets further traced hparams of both members.
"""

from __future__ import annotations

import sys
import time

import numpy as np

import jaxpo


def main(
    env_id: str,
    total: int,
    num_envs: int,
    num_steps: int,
    learning_rate: float,
    **overrides: float,
) -> None:
    """Runs both policies and prints their returns."""
    loop = dict(num_envs=num_envs, num_steps=num_steps, update_epochs=4, num_minibatches=4)
    config = jaxpo.Config(algo="ppo", env_id=env_id, total_timesteps=total, **loop)
    hparams = jaxpo.default_hparams(config, learning_rate=learning_rate, **overrides)
    members = jaxpo.sweep.grid(hparams, learning_rate=[1e-12, learning_rate])
    start = time.time()
    result = jaxpo.sweep.run(config, members, seeds=8)
    returns = np.asarray(result.metrics["episode_return"])  # [2, 8, updates]
    print(env_id, loop, learning_rate, overrides, f"{time.time() - start:.0f}s")
    for member, name in enumerate(["untrained", "ppo"]):
        for share in (0.25, 0.5, 1.0):
            i = int(share * returns.shape[2]) - 1
            at = returns[member, :, i]
            print(f" {name} at {(i + 1) * config.batch_size:,}: {at.round(2)} mean {at.mean():.3f}")
    if "illegal_actions" in result.metrics:
        print(
            " illegal actions per member:",
            np.asarray(result.metrics["illegal_actions"]).sum((1, 2)),
        )


if __name__ == "__main__":
    env_id, total, envs, steps, lr = sys.argv[1:6]
    extra = {name: float(value) for name, value in (a.split("=", 1) for a in sys.argv[6:])}
    main(env_id, int(total), int(envs), int(steps), float(lr), **extra)
