"""TRPO (Schulman et al. 2015): a natural step scaled to the KL bound, then a masked line search.

maximise E[r·Â] subject to E_s[KL(π_old ‖ π_θ)] ≤ δ. The full step is
``s = x·sqrt(2δ / xᵀFx)``; the fractions ``b^k`` (k = 0..``line_search_steps``−1) of it are
tried at once and the first with KL ≤ δ and a positive surrogate improvement is taken, else
the policy keeps θ_old (bit-identical).
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from ..config import Config
from ..natgrad import backtracking_line_search
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
class TRPOHParams(NaturalHParams):
    """TRPO's traced hyperparameters (beyond :class:`~jaxpo.algos.natural.NaturalHParams`).

    Attributes:
        max_kl: δ, the bound on the mean KL(π_old ‖ π_new), > 0.
        backtrack_ratio: b, the line search's shrink factor, in (0, 1).
    """

    max_kl: jax.Array
    backtrack_ratio: jax.Array

    BOUNDS: ClassVar = {
        "max_kl": (0.0, None, False, False),
        "backtrack_ratio": (0.0, 1.0, False, False),
    }


DEFAULTS = {**NATURAL_DEFAULTS, "max_kl": 0.01, "backtrack_ratio": 0.8}


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


def make_trpo_rule(
    config: Config, hparams: TRPOHParams, actor: Actor, critic: Critic
) -> UpdateRule:
    """TRPO's update rule: the natural-gradient rule with :func:`trpo_step`."""
    return make_natural_rule(
        config, hparams, actor, critic, lambda problem, hp: trpo_step(config, problem, hp)
    )


TRPO = Algorithm(
    name="trpo", hparams_cls=TRPOHParams, defaults=DEFAULTS, make_update_rule=make_trpo_rule
)

__all__ = ["TRPO", "TRPOHParams", "make_trpo_rule", "trpo_step"]
