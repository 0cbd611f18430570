"""Successive halving (``jaxpo.search.halving``): one compiled segment program for every
rung, survivors' curves equal to plain resumed sweeps, the top ``1/eta`` kept with the
deterministic tie rule, an exact progress count, and bad inputs refused with the fix."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from helpers import tiny_config
from sweeps import count_traces

from jaxpo import default_hparams, search, sweep

CONFIG = tiny_config(num_envs=4, num_steps=16, updates=6, update_epochs=1, num_minibatches=1)
LRS = [1e-4, 3e-2, 1e-3, 1e-2]
SEEDS = 2


def grid(lrs=LRS):
    return sweep.grid(default_hparams(CONFIG), learning_rate=lrs)


@pytest.fixture(scope="module")
def searched():
    """A 3-rung search (4 members, eta 2, rungs ending at 2, 4, 6 updates), a second one
    with other values, and a 4-rung chunked one, counting traces of ``train`` and reports."""
    sweep.make_sweep_fn.cache_clear()
    seen = {"three": [], "again": [], "four": []}

    def hook(name):
        return lambda update, steps, returns: seen[name].append((update, steps, returns.size))

    with pytest.MonkeyPatch.context() as mp:
        traces = count_traces(mp)
        kw = {"eta": 2, "min_updates": 2, "progress_interval": 1}
        three = search.halving(CONFIG, grid(), SEEDS, progress=hook("three"), **kw)
        n_three = traces["n"]
        search.halving(CONFIG, grid([3e-3, 2e-4, 5e-2, 7e-4]), SEEDS, progress=hook("again"), **kw)
        n_again = traces["n"] - n_three
        sweep.make_sweep_fn.cache_clear()
        lrs = np.geomspace(1e-4, 3e-2, 8).tolist()
        four = search.halving(
            CONFIG, grid(lrs), 1, eta=2, min_updates=1, chunk_size=4, progress=hook("four")
        )
        n_four = traces["n"] - n_three - n_again
    sweep.make_sweep_fn.cache_clear()
    return {"three": three, "four": four, "seen": seen, "traces": (n_three, n_again, n_four)}


def test_rungs_share_one_compiled_segment_program(searched):
    # the initial states (updates=0) and the segment: however many rungs, and none again
    # for a second search with other values and another hook
    assert searched["traces"] == (2, 0, 2)
    assert searched["three"].rung_updates.tolist() == [2, 4, 6]
    assert searched["four"].rung_updates.tolist() == [1, 2, 4, 6]


def test_progress_counts_every_chunk_update_once(searched):
    batch = CONFIG.batch_size
    # 4 members x 2 seeds, default chunk = the last rung's 2 agents: rungs of 4, 2, 1
    # members run 4, 2, 1 chunks of one 2-update segment each, no padding: 14 counts
    assert searched["seen"]["three"] == [(u, u * batch, 2) for u in range(1, 15)]
    # chunks of 4 agents: rung sizes 8, 4, 2, 1 run 2, 1, 1, 1 chunks for 1, 1, 2, 2 segments
    assert [u for u, _, _ in searched["seen"]["four"]] == list(range(1, 8))


def test_stopped_members_and_rung_scores(searched):
    for result, sizes in ((searched["three"], [4, 2, 1]), (searched["four"], [8, 4, 2, 1])):
        ends, stopped = result.rung_updates, result.stopped_at
        assert [(stopped >= r).sum() for r in range(len(sizes))] == sizes
        ret = result.metrics["episode_return"]
        assert ret.shape == (len(stopped), len(result.seeds), CONFIG.num_updates)
        for m, r in enumerate(stopped):
            last = ends[min(r, len(ends) - 1)]
            assert np.isfinite(ret[m, :, :last]).all() and np.isnan(ret[m, :, last:]).all()
            # IQM of 1 or 2 seeds is the mean; NaN for rungs the member was not in
            for rung in range(len(ends)):
                want = ret[m, :, ends[rung] - 1].mean() if rung <= r else np.nan
                np.testing.assert_allclose(result.rung_scores[rung, m], want, rtol=1e-6)
        assert result.survivors.tolist() == [result.best]
        assert np.flatnonzero(stopped == len(ends)).tolist() == [result.best]
        assert jax.tree.leaves(result.state)[0].shape[:2] == (1, len(result.seeds))


def top(values, k):
    """The ``k`` best positions by hand: highest first, NaN last, ties to the lower index."""
    return sorted(range(len(values)), key=lambda i: (np.isnan(values[i]), -values[i], i))[:k]


def test_keeps_the_top_fraction_of_each_rung(searched):
    for result in (searched["three"], searched["four"]):
        for rung in range(len(result.rung_updates) - 1):
            members = np.flatnonzero(result.stopped_at >= rung)
            values = result.rung_scores[rung, members]
            kept = members[top(values.tolist(), len(members) // 2)]
            assert np.flatnonzero(result.stopped_at > rung).tolist() == sorted(kept)
    # this search's first rung has a tie (members 0 and 2): the lower index goes on
    scores0 = searched["three"].rung_scores[0]
    assert scores0[0] == scores0[2] and scores0[1] > scores0[0] > scores0[3]
    assert searched["three"].stopped_at.tolist()[:3] == [1, 3, 0]


@pytest.mark.parametrize(
    ("values", "eta", "want"),
    [
        ([1.0, np.nan, 3.0, 3.0, 2.0, np.nan, 5.0], 2, [6, 2, 3]),
        ([1.0, np.nan, 3.0, 3.0, 2.0, np.nan, 5.0], 3, [6, 2]),
        ([2.0, 2.0, 2.0, 2.0], 2, [0, 1]),
        ([np.nan, -np.inf, np.nan], 2, [1]),
        ([np.nan, np.nan, np.nan], 2, [0]),
        ([0.5, 4.0], 3, [1]),
        ([7.0], 2, [0]),
    ],
)
def test_select_by_hand(values, eta, want):
    assert search.select(np.asarray(values), eta).tolist() == want


def test_rung_schedule():
    assert search.rung_sizes(27, 3) == [27, 9, 3, 1]
    assert search.rung_sizes(10, 3) == [10, 3, 1]
    assert search.rung_sizes(2, 3) == [2, 1]
    assert search.rung_sizes(1, 2) == [1]
    assert search.default_min_updates(270, 4, 3) == 10
    assert search.default_min_updates(100, 3, 3) == 10  # largest divisor <= 100 / 9
    assert search.rung_updates(270, 4, 3, 10).tolist() == [10, 30, 90, 270]
    assert search.rung_updates(100, 3, 3, 10).tolist() == [10, 30, 100]
    assert search.rung_updates(5, 1, 3, 5).tolist() == [5]


@pytest.mark.parametrize(
    ("members", "kwargs", "match"),
    [
        (4, {"eta": 1}, r"eta must be an integer >= 2"),
        (4, {"eta": 2.5}, r"eta must be an integer >= 2"),
        (4, {"eta": 2, "min_updates": 0}, r"min_updates must be a positive integer"),
        (4, {"eta": 2, "min_updates": 3}, r"min_updates=3 does not fit .* use one of \[1, 2\]"),
        (4, {"eta": 2, "min_updates": 4}, r"min_updates=4 does not fit .* use one of \[1, 2\]"),
        (16, {"eta": 2}, r"num_updates=6 is too few for 5 rungs .* must exceed 8"),
    ],
)
def test_bad_budgets_are_refused_with_the_fix(members, kwargs, match):
    lrs = np.geomspace(1e-4, 1e-2, members).tolist()
    with pytest.raises(ValueError, match=match):
        search.halving(CONFIG, grid(lrs), **kwargs)


def test_unknown_metric_names_the_recorded_ones():
    with pytest.raises(ValueError, match=r"unknown metric 'nope'.*'episode_return'"):
        search.halving(CONFIG, grid(), eta=2, metric="nope")
    with pytest.raises(ValueError, match=r"eval_return needs in-training evaluation: set"):
        search.halving(CONFIG, grid(), eta=2, metric="eval_return")  # eval_interval is 0


def test_survivors_continue_like_plain_resumed_sweeps(searched):
    result = searched["three"]
    ends, hparams = result.rung_updates, result.hparams
    members, state, start = np.arange(len(LRS)), None, 0
    for rung, end in enumerate(ends):
        pick = lambda tree, rows: jax.tree.map(lambda x: np.asarray(x)[rows], tree)  # noqa: E731
        # chunks of one member: every rung after the first resumes through one program
        plain = sweep.run(
            CONFIG, pick(hparams, members), SEEDS, state=state, updates=end - start, chunk_size=2
        )
        for name, values in plain.metrics.items():
            np.testing.assert_allclose(
                result.metrics[name][members, :, start:end], values, rtol=1e-5, atol=1e-5
            )
        alive = result.stopped_at[members] > rung
        members, state, start = members[alive], pick(plain.state, alive), end
    assert members.tolist() == result.survivors.tolist()
    for got, want in zip(jax.tree.leaves(result.state), jax.tree.leaves(state), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("devices", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("members,seeds,eta,chunk", [(9, 2, 3, None), (27, 4, 3, 8), (8, 1, 2, 4)])
def test_every_rung_call_keeps_the_layout_of_one_program(devices, members, seeds, eta, chunk):
    """With any device count, each rung's padded call lays out as the first: the same number
    of devices and the same chunk (so ``make_sweep_fn`` hits one cache entry). Checked with
    ``sweep.plan`` on a list of ``devices`` entries (only its length matters)."""
    fake = [jax.devices()[0]] * devices
    hp = grid(np.geomspace(1e-4, 1e-2, members).tolist())
    device_list = sweep.devices_for(members * seeds, fake)
    sizes = search.rung_sizes(members, eta)
    width = sweep.plan(CONFIG, hp, seeds, chunk or sizes[-1] * seeds, device_list).chunk_size
    first = sweep.plan(CONFIG, hp, seeds, width, device_list)
    for p in search.call_members(sizes, seeds, width, len(device_list)):
        layout = sweep.plan(
            CONFIG, jax.tree.map(lambda x, p=p: x[:p], hp), seeds, width, device_list
        )
        assert (layout.num_devices, layout.chunk_size) == (first.num_devices, first.chunk_size)
