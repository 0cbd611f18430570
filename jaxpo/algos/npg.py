"""Natural policy gradient (Kakade 2001): θ ← θ + α·x with x ≈ F⁻¹g, no line search.

With ``config.natural_step == "normalized"`` the step length is α = sqrt(2·step_size / xᵀFx)
(``step_size`` is the KL radius of the quadratic model); with ``"fixed"`` it is α = step_size.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax
from flax import struct

from ..config import Config
from ..networks import Actor, Critic
from .base import Algorithm, UpdateRule
from .natural import (
    NATURAL_DEFAULTS,
    NaturalHParams,
    PolicyProblem,
    kl_step_scale,
    make_natural_rule,
)


@struct.dataclass
class NPGHParams(NaturalHParams):
    """NPG's traced hyperparameters (beyond :class:`~jaxpo.algos.natural.NaturalHParams`).

    Attributes:
        step_size: the KL radius δ of a normalised step, or α itself for a fixed step, > 0.
    """

    step_size: jax.Array

    BOUNDS: ClassVar = {"step_size": (0.0, None, False, False)}


DEFAULTS = {**NATURAL_DEFAULTS, "step_size": 0.01}


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


def make_npg_rule(config: Config, hparams: NPGHParams, actor: Actor, critic: Critic) -> UpdateRule:
    """NPG's update rule: the natural-gradient rule with :func:`npg_step`."""
    return make_natural_rule(
        config, hparams, actor, critic, lambda problem, hp: npg_step(config, problem, hp)
    )


NPG = Algorithm(
    name="npg", hparams_cls=NPGHParams, defaults=DEFAULTS, make_update_rule=make_npg_rule
)

__all__ = ["NPG", "NPGHParams", "make_npg_rule", "npg_step"]
