"""Natural policy gradient (Kakade 2001): θ ← θ + α·x with x ≈ F⁻¹g, no line search.

With ``natural_step == "normalized"`` the step length is α = sqrt(2·step_size / xᵀFx)
(``step_size`` is the KL radius of the quadratic model); with ``"fixed"`` it is α = step_size.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from ..config import Config
from ..hparams import hparam
from ..validation import one_of
from .base import register
from .natural import NaturalConfig, NaturalHParams, PolicyProblem, kl_step_scale, natural_algorithm

NATURAL_STEPS = ("normalized", "fixed")


@dataclasses.dataclass(frozen=True)
class NPGConfig(NaturalConfig):
    """NPG's static options (beyond :class:`~jaxpo.algos.natural.NaturalConfig`).

    Attributes:
        natural_step: the step length: ``"normalized"`` (α = sqrt(2·step_size / xᵀFx)) or
            ``"fixed"`` (α = step_size).
    """

    natural_step: str = "normalized"

    def validate(self, config: Config) -> None:
        """Checks the family's fields and the step kind."""
        super().validate(config)
        one_of("natural_step", self.natural_step, NATURAL_STEPS)


@struct.dataclass
class NPGHParams(NaturalHParams):
    """NPG's traced hyperparameters (beyond :class:`~jaxpo.algos.natural.NaturalHParams`)."""

    step_size: jax.Array = hparam(
        0.01, "the KL radius δ of a normalised step, or α itself for a fixed one", gt=0.0
    )


def npg_step(
    config: Config, problem: PolicyProblem, hparams: NPGHParams
) -> tuple[Any, dict[str, jax.Array]]:
    """Moves θ_old by α·x and reports the resulting KL and surrogate improvement."""
    if config.natural_step == "normalized":
        alpha = kl_step_scale(hparams.step_size, problem.curvature)
    else:
        alpha = hparams.step_size
    params = optax.tree.add_scale(problem.params, alpha, problem.direction)
    kl, improvement = problem.evaluate(params)
    return params, {
        "kl": kl,
        "improvement": improvement,
        "accepted": jnp.ones_like(kl),
        "backtracks": jnp.zeros_like(kl),
        "step_fraction": jnp.ones_like(kl),
    }


NPG = register(natural_algorithm("npg", NPGConfig, NPGHParams, npg_step))

__all__ = ["NPG", "NPGConfig", "NPGHParams", "npg_step"]
