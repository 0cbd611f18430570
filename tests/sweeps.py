"""Shared helper of the contract tests: count how often a sweep traces ``train``."""

import pytest

from jaxpo import sweep


def count_traces(mp: pytest.MonkeyPatch) -> dict[str, int]:
    """Wraps ``sweep.make_train`` (on ``mp``) so each trace of ``train`` adds one to ``["n"]``."""
    traces = {"n": 0}
    real_make_train = sweep.make_train

    def counting_make_train(config, progress=None):
        train = real_make_train(config, progress)

        def counted(key, hparams):
            traces["n"] += 1
            return train(key, hparams)

        return counted

    mp.setattr(sweep, "make_train", counting_make_train)
    return traces
