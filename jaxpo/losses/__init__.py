"""Array-level pure losses (no networks inside) and health statistics."""

from .group import (
    group_advantages,
    grpo_surrogate,
    k3_kl,
    masked_trajectory_mean,
    tic_grpo_surrogate,
    trajectory_log_ratio,
)
from .health import approx_kl, clip_fraction, ess_fraction, explained_variance
from .kl import categorical_kl, gaussian_kl, kl_divergence
from .penalty import adapt_kl_coef, mcpo, mdpo, mdpo_inverse_step, ppo_kl
from .policy_gradient import policy_gradient
from .ppo import ppo_clip
from .surrogate import importance_surrogate
from .value import value_loss

__all__ = [
    "adapt_kl_coef",
    "approx_kl",
    "categorical_kl",
    "clip_fraction",
    "ess_fraction",
    "explained_variance",
    "gaussian_kl",
    "group_advantages",
    "grpo_surrogate",
    "importance_surrogate",
    "k3_kl",
    "kl_divergence",
    "masked_trajectory_mean",
    "mcpo",
    "mdpo",
    "mdpo_inverse_step",
    "policy_gradient",
    "ppo_clip",
    "ppo_kl",
    "tic_grpo_surrogate",
    "trajectory_log_ratio",
    "value_loss",
]
