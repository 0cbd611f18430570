"""jaxpo: policy-optimisation RL compiled end to end in JAX.

``make_train(config)`` returns a pure ``train(key, hparams)``; ``presets.get`` gives a
(config, hparams) pair; ``sweep`` vmaps ``train`` over seeds and hyperparameters (sharded
over devices, in chunks); ``sweep_table`` turns a sweep's result into a table, a ranking
and learning curves; ``run_log`` writes its metrics as CSV, JSON Lines, TensorBoard and W&B
logs; ``runs`` does what ``jaxpo train`` and ``jaxpo sweep`` do (training in checkpointed
segments, resuming, output files, the NaN report).
"""

from . import checkpoint, envs, presets, progress, run_log, runs, sweep, sweep_table
from .algos import ALGORITHMS
from .config import Config
from .hparams import HParams
from .train import RunnerState, TrainResult, default_hparams, make_env, make_train

__version__ = "0.1.0"

__all__ = [
    "ALGORITHMS",
    "Config",
    "HParams",
    "RunnerState",
    "TrainResult",
    "checkpoint",
    "default_hparams",
    "envs",
    "make_env",
    "make_train",
    "presets",
    "progress",
    "run_log",
    "runs",
    "sweep",
    "sweep_table",
]
