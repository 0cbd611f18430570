"""Population-based training (``jaxpo.search.pbt``): exploit copies exactly, explore stays in
bounds, generations reuse one compiled program and match plain sweeps, an interrupted run
resumes bit for bit, and failed agents are replaced first.

One tiny PPO config on CartPole (6 updates, 3 generations of 2) and 4 agents (2 members × 2
seeds) throughout, so the two compiled programs (initial states and one generation) are
built once for the module.
"""

import shutil

import jax
import numpy as np
import pytest
from sweeps import count_traces

from jaxpo import Config, envs, sweep
from jaxpo.hparams import specs
from jaxpo.search import pbt
from jaxpo.search.exploit import (
    bounds,
    check_explore,
    choose_pairs,
    copy_agents,
    explore,
    rank,
)
from jaxpo.train import default_hparams

INTERVAL = 2
CONFIG = Config(
    algo="ppo",
    env_id="gymnax:CartPole-v1",
    num_envs=4,
    num_steps=16,
    update_epochs=1,
    num_minibatches=1,
    hidden_sizes=(16,),
    total_timesteps=4 * 16 * 3 * INTERVAL,
)
LR = ("loguniform", 1e-4, 1e-2)
EXPLORE = {"learning_rate": LR, "clip_eps": ("choice", [0.1, 0.2, 0.3])}
HPARAMS = sweep.points(
    default_hparams(CONFIG),
    [{"learning_rate": 3e-3, "clip_eps": 0.2}, {"learning_rate": 3e-4, "clip_eps": 0.1}],
)
SEEDS = 2
AGENTS = 4


def run_pbt(**changes):
    """``pbt`` of the module's population, with ``changes`` to its arguments."""
    kwargs = dict(interval=INTERVAL, explore=EXPLORE, quantile=0.25, seed=3)
    return pbt(CONFIG, HPARAMS, SEEDS, **{**kwargs, **changes})


def leaves_equal(a, b) -> bool:
    """Whether two pytrees have bit-identical leaves (NaN equal to NaN)."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y, equal_nan=True)
        for x, y in zip(la, lb, strict=True)
    )


def row(tree, a: int):
    """Agent ``a``'s leaves of a ``[A, ...]`` tree."""
    return jax.tree.map(lambda x: np.asarray(x)[a], tree)


@pytest.fixture(scope="module")
def traced():
    """The whole run and its first generation alone, counting traces of ``train``."""
    sweep.make_sweep_fn.cache_clear()
    with pytest.MonkeyPatch.context() as mp:
        traces = count_traces(mp)
        first = run_pbt(stop_after=1)
        after_one = traces["n"]
        full = run_pbt()
        after_all = traces["n"]
    return {"first": first, "full": full, "traces": (after_one, after_all)}


# --------------------------------------------------------------------------- exploit


def test_copy_takes_the_learning_state_and_keeps_the_agents_own(traced):
    state = traced["full"].state  # [A, 1, ...], trained: every agent differs
    mean, var = np.random.default_rng(0).normal(size=(2, AGENTS, 1, 4)).astype(np.float32)
    stats = envs.wrappers.RunningStats(
        mean, var, np.arange(AGENTS, dtype=np.float32).reshape(AGENTS, 1)
    )
    state = state.replace(env_state=envs.wrappers.NormalizeState(state.env_state, stats))
    pairs = [(3, 0), (1, 2)]
    for c, s in pairs:  # the test could fail: the agents differ before
        assert not leaves_equal(row(state.params, c), row(state.params, s))
        assert not leaves_equal(row(state.key, c), row(state.key, s))
    new = copy_agents(state, pairs)
    learned = ("params", "rule_state", "evaluation", "episode_return", "episode_length")
    nan_safety = ("skipped", "consecutive_skips", "failed")
    own = ("obs", "carry", "key", "update")
    for c, s in pairs:
        for name in learned + nan_safety:
            assert leaves_equal(row(getattr(new, name), c), row(getattr(state, name), s)), name
        assert leaves_equal(row(new.env_state.stats, c), row(state.env_state.stats, s))
        for name in own:
            assert leaves_equal(row(getattr(new, name), c), row(getattr(state, name), c)), name
        inner = new.env_state.env_state
        assert leaves_equal(row(inner, c), row(state.env_state.env_state, c))
    assert leaves_equal(row(new, 0), row(state, 0)) and leaves_equal(row(new, 2), row(state, 2))


def test_failed_agents_are_replaced_first(traced):
    rng = np.random.default_rng(0)
    scores = np.array([100.0, 1.0, 2.0, 3.0])  # agent 0 would rank top
    failed = np.array([True, False, False, False])
    assert choose_pairs(scores, failed, 0.25, rng) == [(0, 3)]  # not agent 1, the worst healthy one
    both = choose_pairs(scores, np.array([True, False, False, True]), 0.25, rng)
    assert both == [(0, 2), (3, 2)]  # every failed agent copies, whatever the quantile
    assert choose_pairs(scores, np.ones(4, bool), 0.25, rng) == []  # nobody to copy from
    state = traced["full"].state
    state = state.replace(failed=failed.reshape(AGENTS, 1))
    new = copy_agents(state, [(0, 3)])
    assert not new.failed[0, 0] and leaves_equal(row(new.params, 0), row(state.params, 3))


def test_a_copy_inside_pbt_starts_the_next_generation_as_its_source(monkeypatch):
    """Only the learning rate explored (``clip_eps`` is copied as it is), half the agents
    replaced: each copier of generation 1 starts generation 2 with its source's params,
    update rule state and hparams, its own key, and an explored learning rate within bounds."""
    ends, real_run = [], sweep.run

    def recorded(*args, **kwargs):
        ends.append(real_run(*args, **kwargs))
        return ends[-1]

    monkeypatch.setattr(sweep, "run", recorded)
    lr_only = {"learning_rate": LR}
    result = run_pbt(stop_after=1, explore=lr_only, quantile=0.5, seed=1)
    end, trained = ends[-1].state, sweep.columns(ends[-1].hparams)  # generation 1, as trained
    start, hparams = result.state, sweep.columns(result.hparams)  # generation 2 starts here
    low, high = bounds(
        specs(type(HPARAMS))["learning_rate"], sweep.check_distributions(lr_only)["learning_rate"]
    )
    pairs = result.lineage.copies[0]
    assert pairs
    for c, s in pairs:
        assert not leaves_equal(row(end.params, c), row(end.params, s))  # the test could fail
        for name in ("params", "rule_state"):
            assert leaves_equal(row(getattr(start, name), c), row(getattr(end, name), s)), name
        assert not leaves_equal(row(start.key, c), row(start.key, s))
        assert leaves_equal(row(start.key, c), row(end.key, c))
        for name, column in hparams.items():
            if name in lr_only:
                assert low <= column[c] <= high
            else:
                assert column[c] == trained[name][s], name
    # a copier of the other member had a clip_eps of its own to lose (seed 1: both do)
    assert any(trained["clip_eps"][c] != trained["clip_eps"][s] for c, s in pairs)


def test_failed_agent_is_replaced_inside_pbt(traced, monkeypatch):
    full = traced["full"].lineage
    top = int(rank(full.scores[0], full.failed[0])[0])  # the best of generation 1
    real_run = sweep.run

    def failing(*args, **kwargs):  # ... fails at the end of generation 1
        out = real_run(*args, **kwargs)
        if kwargs["updates"] == INTERVAL and int(out.state.update[0, 0]) == INTERVAL:
            failed = np.array(out.state.failed)
            failed[top] = True
            out = out._replace(state=out.state.replace(failed=failed))
        return out

    monkeypatch.setattr(sweep, "run", failing)
    result = run_pbt(stop_after=2)
    assert result.lineage.failed[0, top] and not result.lineage.failed[1, top]
    best_healthy = int(rank(full.scores[0], result.lineage.failed[0])[0])
    assert best_healthy != top
    assert result.lineage.copies[0] == [(top, best_healthy)]  # it took the bottom's place
    np.testing.assert_array_equal(result.lineage.scores[0], full.scores[0])


# --------------------------------------------------------------------------- explore


def test_explore_stays_within_the_bounds():
    hp = default_hparams(CONFIG)
    dists = {
        "learning_rate": ("loguniform", 1e-4, 1e-2),
        "gamma": ("uniform", 0.9, 1.0),  # (0, 1]
        "max_grad_norm": ("uniform", 0.0, 1.0),  # (0, inf): 0 itself is out
        "gae_lambda": ("uniform", -1.0, 2.0),  # wider than [0, 1]
        "clip_eps": ("choice", (0.3, 0.1, 0.2)),
    }
    dists = sweep.check_distributions(dists)
    all_specs = specs(type(hp))
    ranges = {name: bounds(all_specs[name], dist) for name, dist in dists.items()}
    assert ranges["max_grad_norm"][0] > 0 and ranges["gae_lambda"] == (0, 1)
    edges = {name: [low, high] * 4 for name, (low, high) in ranges.items()}  # start at bounds
    population = sweep.stack(hp, edges, 8)
    rng = np.random.default_rng(0)
    seen = {name: set() for name in dists}
    for _ in range(300):
        population = explore(population, range(8), dists, rng, 0.3, (0.5, 0.9, 1.1, 2.0))
        for name, (low, high) in ranges.items():
            values = getattr(population, name)
            assert values.dtype == np.float32
            assert np.all((values >= low) & (values <= high)), name
            assert all_specs[name].contains(values).all(), name
            seen[name].update(values.tolist())
    assert seen["clip_eps"] == {np.float32(v).item() for v in (0.1, 0.2, 0.3)}
    for name, (low, high) in ranges.items():
        if name != "clip_eps":  # clipped onto both edges, and explored in between
            assert {low.item(), high.item()} <= seen[name] and len(seen[name]) > 10, name


@pytest.mark.parametrize(
    "dists",
    [{"gamma": ("uniform", 1.5, 2.0)}, {"clip_eps": ("choice", (0.0, 0.2))}, {"nope": LR}],
)
def test_explore_refuses_what_it_could_not_reach(dists):
    with pytest.raises(ValueError):
        check_explore(type(HPARAMS), sweep.check_distributions(dists))


# --------------------------------------------------------------------------- generations


def test_generations_reuse_one_program_and_match_plain_sweeps(traced):
    after_one, after_all = traced["traces"]
    assert after_all == after_one <= 2  # initial states, one generation: never again
    full, first = traced["full"], traced["first"]
    assert full.finished and full.generations == 3 and not first.finished
    assert {k: v.shape for k, v in full.metrics.items()}["episode_return"] == (AGENTS, 1, 6)
    # generation 1: the members × seeds sweep, flattened member-major
    start = sweep.run(CONFIG, HPARAMS, SEEDS, updates=0)
    plain = sweep.run(CONFIG, HPARAMS, SEEDS, state=start.state, updates=INTERVAL)
    for name, values in plain.metrics.items():
        np.testing.assert_allclose(
            full.metrics[name][..., :INTERVAL], values.reshape(AGENTS, 1, -1), atol=1e-5
        )
    # generation 2: from the exploited states and explored hparams of the first
    again = sweep.run(CONFIG, first.hparams, [0], state=first.state, updates=INTERVAL)
    for name, values in again.metrics.items():
        second = full.metrics[name][..., INTERVAL : 2 * INTERVAL]
        np.testing.assert_allclose(second, values, atol=1e-5)
    for name, column in sweep.columns(first.hparams).items():
        np.testing.assert_array_equal(full.lineage.hparams[name][1], column)
    copied = [c for g in full.lineage.copies for c, _ in g]
    assert copied and full.lineage.copies[-1] == []  # something was copied; not at the end
    lr = full.lineage.hparams["learning_rate"]
    assert not np.array_equal(lr[0], lr[-1])  # and explored
    assert full.best == int(np.nanargmax(full.lineage.scores[-1]))


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "metric, message",
    [
        ("nope", "unknown metric 'nope'"),
        ("eval_return", r"eval_return needs in-training evaluation: set config\.eval_interval"),
    ],
)
def test_an_unknown_metric_is_refused_before_any_update(metric, message, monkeypatch):
    calls, real_run = [], sweep.run

    def counted(*args, **kwargs):
        calls.append(kwargs["updates"])
        return real_run(*args, **kwargs)

    monkeypatch.setattr(sweep, "run", counted)
    assert CONFIG.eval_interval == 0
    with pytest.raises(ValueError, match=message):
        run_pbt(metric=metric)
    assert calls == [0]  # the initial states only


@pytest.mark.parametrize("stop_after", [0, -1])
def test_stop_after_below_one_is_refused(stop_after):
    with pytest.raises(ValueError, match="stop_after"):
        run_pbt(stop_after=stop_after)


# --------------------------------------------------------------------------- checkpoints


def test_interrupted_and_resumed_equals_uninterrupted(traced, tmp_path, monkeypatch):
    full = traced["full"]
    stopped = run_pbt(directory=tmp_path / "a", stop_after=1)
    assert stopped.generations == 1 and not stopped.finished
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    # as if stopped after the checkpoint was saved but before pbt.json was renamed
    (tmp_path / "b" / "pbt.json").rename(tmp_path / "b" / "pbt.json.new")
    with pytest.raises(ValueError, match="quantile"):
        run_pbt(directory=tmp_path / "a", quantile=0.5)
    calls, real_run = [], sweep.run

    def counted(*args, **kwargs):
        calls.append(kwargs["updates"])
        return real_run(*args, **kwargs)

    monkeypatch.setattr(sweep, "run", counted)
    for folder in ("a", "b"):
        calls.clear()
        resumed = run_pbt(directory=tmp_path / folder)
        assert calls == [INTERVAL, INTERVAL]  # generations 2 and 3 only
        assert resumed.finished and resumed.generations == 3 and resumed.best == full.best
        assert leaves_equal(resumed.metrics, full.metrics)
        assert leaves_equal(resumed.state, full.state)
        assert leaves_equal(resumed.hparams, full.hparams)
        assert resumed.lineage.copies == full.lineage.copies
        assert leaves_equal(resumed.lineage.hparams, full.lineage.hparams)
        assert leaves_equal(resumed.lineage.scores, full.lineage.scores)
        assert leaves_equal(resumed.lineage.failed, full.lineage.failed)
    calls.clear()
    done = run_pbt(directory=tmp_path / "a")  # a finished run is read back, not trained
    assert calls == [] and leaves_equal(done.state, full.state)


# --------------------------------------------------------------------------- progress


def test_progress_counts_every_chunk_of_every_generation_once(tmp_path):
    """One count ``1 .. total`` over all generations (chunks of 2 agents: 2 per generation);
    a resumed run counts only the generations it still runs."""
    seen = {"full": [], "first": [], "resumed": []}

    def hook(name):
        return lambda update, steps, returns: seen[name].append((update, steps, returns.size))

    run_pbt(chunk_size=2, progress=hook("full"))
    run_pbt(chunk_size=2, progress=hook("first"), directory=tmp_path, stop_after=1)
    run_pbt(chunk_size=2, progress=hook("resumed"), directory=tmp_path)
    per_generation = 2 * INTERVAL  # 2 chunks x INTERVAL updates
    for name, generations in (("full", 3), ("first", 1), ("resumed", 2)):
        counts = range(1, generations * per_generation + 1)
        assert seen[name] == [(u, u * CONFIG.batch_size, 2) for u in counts], name
