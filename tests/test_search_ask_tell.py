"""Batched ask/tell with Optuna: one compiled program for every generation, each generation
the same computation as a plain sweep of its trials, and Optuna told the ranking's scores."""

import sys

import jax
import numpy as np
import pytest
from sweeps import count_traces

from jaxpo import presets, sweep
from jaxpo.search import ask_tell, ranking
from jaxpo.search.ask_tell import metric_names

optuna = pytest.importorskip("optuna")

N, SEEDS = 4, 2  # trials per generation, seeds: 8 agents, whole on 1 or 2 devices
DISTS = {"learning_rate": ("loguniform", 1e-4, 1e-2), "clip_eps": "choice:0.1,0.2,0.3"}


@pytest.fixture(scope="module")
def setup():
    config, hparams = presets.get("ppo", "gymnax:CartPole-v1")
    config = config.replace(
        num_envs=4, num_steps=16, update_epochs=1, num_minibatches=1, total_timesteps=256
    )
    return config, hparams


def search(setup, generations, **kwargs):
    config, hparams = setup
    return ask_tell(
        config,
        hparams,
        SEEDS,
        dists=DISTS,
        trials_per_generation=N,
        generations=generations,
        **kwargs,
    )


@pytest.fixture(scope="module")
def searched(setup):
    """A 2- and a 3-generation search, each compiled afresh, with the traces of train."""
    traces = {}
    with pytest.MonkeyPatch.context() as mp:
        for generations in (2, 3):
            sweep.make_sweep_fn.cache_clear()
            counted = count_traces(mp)
            result = search(setup, generations)
            traces[generations] = counted["n"]
    return result, traces


def test_generations_reuse_one_compiled_program(searched):
    result, traces = searched
    assert traces[2] >= 1  # the counter sees the trace
    assert traces[3] == traces[2]  # a third generation traces nothing new
    assert result.metrics["episode_return"].shape == (3 * N, SEEDS, 4)
    np.testing.assert_array_equal(result.generation, np.repeat([0, 1, 2], N))
    assert sweep.num_members(result.hparams) == 3 * N


def test_a_generation_equals_a_plain_sweep_of_its_trials(setup, searched):
    config, _ = setup
    result, _ = searched
    last = slice(2 * N, 3 * N)
    trials = jax.tree.map(lambda x: x[last], result.hparams)
    plain = sweep.run(config, trials, SEEDS, keep_state=False)
    assert set(plain.metrics) == set(result.metrics)
    for name, values in plain.metrics.items():
        np.testing.assert_allclose(result.metrics[name][last], values, rtol=1e-5, atol=1e-5)


def test_optuna_is_told_the_ranking_scores(searched):
    result, _ = searched
    expected = ranking.scores(result.metrics)
    np.testing.assert_array_equal(result.scores, expected)
    trials = result.study.trials
    assert [t.number for t in trials] == list(range(3 * N))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    np.testing.assert_array_equal([t.value for t in trials], expected)
    assert result.best == int(ranking.order(expected)[0])
    assert result.best_score == expected.max()
    best = result.best_hparams()
    assert float(best.learning_rate) == float(result.hparams.learning_rate[result.best])


def test_sampled_values_lie_in_their_distributions(searched):
    result, _ = searched
    columns = sweep.columns(result.hparams)
    for i, trial in enumerate(result.study.trials):
        assert set(trial.params) == set(DISTS)
        assert 1e-4 <= trial.params["learning_rate"] <= 1e-2
        assert trial.params["clip_eps"] in (0.1, 0.2, 0.3)
        for name, value in trial.params.items():
            assert columns[name][i] == np.float32(value)  # the member trains the trial's value
    assert len(set(columns["learning_rate"].tolist())) == 3 * N  # sampled, not repeated


def test_a_nan_score_is_told_as_failed(setup, monkeypatch):
    real = ranking.scores

    def nan_for_trial_1(metrics, metric=None):
        values = real(metrics, metric)
        values[1] = np.nan
        return values

    monkeypatch.setattr(ranking, "scores", nan_for_trial_1)
    result = search(setup, 1)  # the program of the module's searches: no compile
    states = [t.state for t in result.study.trials]
    assert states[1] == optuna.trial.TrialState.FAIL and result.study.trials[1].value is None
    assert states.count(optuna.trial.TrialState.COMPLETE) == N - 1
    assert np.isnan(result.scores[1]) and result.best != 1


def test_the_metric_check_knows_every_metric_a_run_reports(setup, searched):
    config, hparams = setup
    result, _ = searched
    assert set(metric_names(config, hparams)) == set(result.metrics)  # traced, not trained
    evaluating = config.replace(eval_interval=2)
    assert {"eval_return", "eval_length"} <= set(metric_names(evaluating, hparams))


def test_missing_optuna_gives_the_install_hint(setup, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"pip install 'jaxpo\[search\]'"):
        search(setup, 1)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(dists={"num_envs": "choice:4,8"}), "static config field"),
        (dict(dists={"clip_eps": ("uniform", -1.0, 0.5)}), "clip_eps"),
        (dict(dists={"gamma": "normal:0:1"}), "unknown distribution"),
        (dict(dists={}), "at least one"),
        (dict(generations=0), "generations"),
        (dict(trials_per_generation=0), "trials_per_generation"),
        (dict(metric="nope"), "unknown metric 'nope'"),
        (dict(metric="eval_return"), r"eval_return needs .* set config\.eval_interval"),
    ],
)
def test_bad_arguments_are_refused_before_training(setup, change, message, monkeypatch):
    config, hparams = setup
    assert config.eval_interval == 0

    def no_training(*args, **kwargs):
        raise AssertionError("trained before refusing")

    monkeypatch.setattr(sweep, "run", no_training)
    kwargs = {**dict(dists=DISTS, trials_per_generation=N, generations=1), **change}
    with pytest.raises(ValueError, match=message):
        ask_tell(config, hparams, SEEDS, **kwargs)


def test_progress_is_one_count_over_every_generation(setup, monkeypatch):
    """A callable sees ``1 .. total`` once, in order (2 generations x 2 chunks of 4 agents x
    4 updates), and ``progress=True`` opens one display of that total."""
    config, _ = setup
    seen, displays = [], []
    search(setup, 2, chunk_size=4, progress=lambda u, steps, r: seen.append((u, steps, r.size)))
    assert seen == [(u, u * config.batch_size, 4) for u in range(1, 17)]

    class Display:  # records what a ProgressDisplay would show
        def __init__(self, total, steps_per_update, label):
            self.total, self.updates = total, []
            displays.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def __call__(self, update, env_steps, returns):
            self.updates.append(update)

    monkeypatch.setattr(sweep.hooks, "ProgressDisplay", Display)
    search(setup, 2, chunk_size=4, progress=True)  # the same program: no compile
    assert [(d.total, d.updates) for d in displays] == [(16, list(range(1, 17)))]
