"""Shared helpers of the contract tests: count how often a sweep traces ``train``, and run a
sweep, a second sweep with other values, and the single runs of every member."""

import jax
import numpy as np
import pytest

from jaxpo import make_train, sweep


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


def sweep_twice_and_alone(config, grid, other_grid, seeds):
    """Runs ``grid`` and then ``other_grid`` (same shapes) through ``sweep.run``, and each
    member of ``grid`` alone through one jitted ``train``.

    Returns:
        ``{"swept", "again": metrics [M, S, U]; "alone": {(m, s): metrics [U]};
        "traces": times the sweep traced train}``, all NumPy.
    """
    sweep.make_sweep_fn.cache_clear()
    with pytest.MonkeyPatch.context() as mp:
        traces = count_traces(mp)
        swept = sweep.run(config, grid, seeds=seeds)
        again = sweep.run(config, other_grid, seeds=seeds)
        jax.block_until_ready((swept.metrics, again.metrics))
    sweep.make_sweep_fn.cache_clear()
    single = jax.jit(make_train(config))
    alone = {
        (m, s): single(jax.random.key(s), sweep.member_hparams(grid, m)).metrics
        for m in range(sweep.num_members(grid))
        for s in range(seeds)
    }
    to_np = lambda tree: jax.tree.map(np.asarray, tree)  # noqa: E731
    return {
        "swept": to_np(swept.metrics),
        "again": to_np(again.metrics),
        "alone": to_np(alone),
        "traces": traces["n"],
    }
