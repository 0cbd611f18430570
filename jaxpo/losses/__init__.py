"""Array-level pure losses (no networks inside) and health statistics."""

from .health import approx_kl, clip_fraction, ess_fraction, explained_variance
from .kl import categorical_kl, gaussian_kl, kl_divergence
from .ppo import ppo_clip
from .surrogate import importance_surrogate
from .value import value_loss

__all__ = [
    "approx_kl",
    "categorical_kl",
    "clip_fraction",
    "ess_fraction",
    "explained_variance",
    "gaussian_kl",
    "importance_surrogate",
    "kl_divergence",
    "ppo_clip",
    "value_loss",
]
