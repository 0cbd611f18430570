"""Adaptive search over a sweep's members, inside the one compiled sweep program.

Hparams are traced and :func:`jaxpo.sweep.run` continues agents exactly from their states,
so a search that stops, copies or replaces members between segments of training recompiles
nothing. Modules:

* :mod:`~jaxpo.search.ranking`: the score every method ranks by (the IQM over seeds of
  ``eval_return`` when the run evaluates, else ``episode_return``) and its tie rule.
* :mod:`~jaxpo.search.halving`: successive halving; every rung trains its members further
  and keeps the best ``1/eta``, survivors continuing from their exact states.
* :mod:`~jaxpo.search.pbt`: population-based training of every member × seed, with its
  exploit and explore steps in :mod:`~jaxpo.search.exploit` and the record of scores, copies
  and hparams (checkpointed for an exact resume) in :mod:`~jaxpo.search.lineage`.
* :mod:`~jaxpo.search.ask_tell`: batched ask/tell with an Optuna sampler, each generation's
  trials trained as one sweep.
* :mod:`~jaxpo.search.best`: writes a search's best hparams to a ``best.json`` that
  ``jaxpo train --config`` and :func:`jaxpo.presets.load` read.
* :mod:`~jaxpo.search.progress`: one progress display (or one hook count ``1 .. total``)
  across all of a search's sweep calls, through one hook so the compiled program is reused.
"""

from .ask_tell import AskTellResult, ask_tell
from .best import write_best
from .halving import (
    HalvingResult,
    call_members,
    default_min_updates,
    halving,
    rung_sizes,
    rung_updates,
    select,
)
from .lineage import Lineage
from .pbt import PBTResult, pbt
from .ranking import EVAL_METRIC, TRAIN_METRIC, default_metric, iqm, order, scores

__all__ = [
    "AskTellResult",
    "ask_tell",
    "write_best",
    "HalvingResult",
    "default_min_updates",
    "call_members",
    "halving",
    "rung_sizes",
    "rung_updates",
    "select",
    "Lineage",
    "PBTResult",
    "pbt",
    "EVAL_METRIC",
    "TRAIN_METRIC",
    "default_metric",
    "iqm",
    "order",
    "scores",
]
