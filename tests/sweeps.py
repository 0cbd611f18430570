"""Shared helpers of the contract tests: whether a program has a host callback compiled in,
count how often a sweep traces ``train``, and run a sweep, a second sweep with other values,
and the single runs of every member."""

import jax
import numpy as np
import pytest

from jaxpo import make_train, sweep


def compiles_callback(fn, *args) -> bool:
    """Whether tracing ``fn(*args)`` puts a host callback (a progress hook) into the program."""
    return "callback" in str(jax.make_jaxpr(fn)(*args))


def count_traces(mp: pytest.MonkeyPatch) -> dict[str, int]:
    """Wraps ``make_trainer`` where the sweep runner calls it (``jaxpo.sweep.runner``, on
    ``mp``) so each trace of its ``run`` adds one to ``["n"]``."""
    traces = {"n": 0}
    real_make_trainer = sweep.runner.make_trainer

    def counting_make_trainer(config, progress=None):
        trainer = real_make_trainer(config, progress)

        def counted(state, hparams, updates, report_every=1, start=None):
            traces["n"] += 1
            return trainer.run(state, hparams, updates, report_every, start)

        return trainer._replace(run=counted)

    mp.setattr(sweep.runner, "make_trainer", counting_make_trainer)
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
