"""TRPO (Schulman et al. 2015): a natural step scaled to the KL bound, then a masked line search.

maximise E[r·Â] subject to E_s[KL(π_old ‖ π_θ)] ≤ δ. The full step is
``s = x·sqrt(2δ / xᵀFx)``; the fractions ``b^k`` (k = 0..``line_search_steps``−1) of it are
tried at once and the first with KL ≤ δ and a positive surrogate improvement is taken, else
the policy keeps θ_old (bit-identical).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from ..config import Config
from ..hparams import hparam
from ..natgrad import backtracking_line_search
from ..validation import positive_int
from .base import register
from .natural import NaturalConfig, NaturalHParams, PolicyProblem, kl_step_scale, natural_algorithm


@dataclasses.dataclass(frozen=True)
class TRPOConfig(NaturalConfig):
    """TRPO's static options (beyond :class:`~jaxpo.algos.natural.NaturalConfig`).

    Attributes:
        line_search_steps: candidate step fractions of the backtracking line search.
    """

    line_search_steps: int = 10

    def validate(self, config: Config) -> None:
        """Checks the family's fields and the line search's."""
        super().validate(config)
        positive_int("line_search_steps", self.line_search_steps)


@struct.dataclass
class TRPOHParams(NaturalHParams):
    """TRPO's traced hyperparameters (beyond :class:`~jaxpo.algos.natural.NaturalHParams`)."""

    max_kl: jax.Array = hparam(0.01, "δ, the bound on the mean KL(π_old ‖ π_new)", gt=0.0)
    backtrack_ratio: jax.Array = hparam(0.8, "b, the line search's shrink factor", gt=0.0, lt=1.0)


def trpo_step(
    config: Config, problem: PolicyProblem, hparams: TRPOHParams
) -> tuple[Any, dict[str, jax.Array]]:
    """Scales the CG direction to the KL bound and line-searches along it."""
    scale = kl_step_scale(hparams.max_kl, problem.curvature)
    full_step = jax.tree.map(lambda x: scale * x, problem.direction)
    search = backtracking_line_search(
        problem.evaluate,
        problem.params,
        full_step,
        hparams.max_kl,
        hparams.backtrack_ratio,
        config.line_search_steps,
    )
    return search.params, {
        "kl": search.kl,
        "improvement": search.improvement,
        "accepted": search.accepted.astype(jnp.float32),
        "backtracks": search.backtracks.astype(jnp.float32),
        "step_fraction": search.fraction,
    }


TRPO = register(natural_algorithm("trpo", TRPOConfig, TRPOHParams, trpo_step))

__all__ = ["TRPO", "TRPOConfig", "TRPOHParams", "trpo_step"]
