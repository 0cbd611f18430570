"""Array-level pure losses (no networks inside) and health statistics."""

from .health import approx_kl, clip_fraction, ess_fraction, explained_variance
from .ppo import ppo_clip
from .value import value_loss

__all__ = [
    "approx_kl",
    "clip_fraction",
    "ess_fraction",
    "explained_variance",
    "ppo_clip",
    "value_loss",
]
