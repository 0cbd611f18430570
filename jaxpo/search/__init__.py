"""Adaptive search over a sweep's members, inside the one compiled sweep program.

Hparams are traced and :func:`jaxpo.sweep.run` continues agents exactly from their states,
so a search that stops, copies or replaces members between segments of training recompiles
nothing. Modules: :mod:`~jaxpo.search.ranking` (the score every method ranks by).
"""

from .ranking import EVAL_METRIC, TRAIN_METRIC, default_metric, iqm, order, scores

__all__ = ["EVAL_METRIC", "TRAIN_METRIC", "default_metric", "iqm", "order", "scores"]
