"""Array-level pure losses (no networks inside) and health statistics."""

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
    "importance_surrogate",
    "kl_divergence",
    "mcpo",
    "mdpo",
    "mdpo_inverse_step",
    "policy_gradient",
    "ppo_clip",
    "ppo_kl",
    "value_loss",
]
