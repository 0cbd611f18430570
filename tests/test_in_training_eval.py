"""In-training evaluation (``config.eval_interval``): greedy, on its own key stream, with
frozen normaliser statistics, scheduled from the run's start across segments, and what
sweeps rank by."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpo
from jaxpo import cli, sweep, sweep_table
from jaxpo.networks import make_networks
from jaxpo.train import make_env

TINY = dict(num_envs=4, num_steps=16, update_epochs=1, num_minibatches=2, hidden_sizes=(16,))


def tiny(algo="ppo", env_id="gymnax:CartPole-v1", updates=6, **fields):
    config, hparams = jaxpo.presets.get(algo, env_id)
    config = config.replace(**{**TINY, **fields})
    return config.replace(total_timesteps=updates * config.batch_size), hparams


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize(
    "algo,fields",
    [
        ("ppo", dict(normalize_obs=True)),
        ("grpo", dict(num_envs=8, num_steps=32, num_minibatches=1)),
    ],
)
def test_evaluating_leaves_training_bit_for_bit_unchanged(algo, fields):
    """Evaluation draws from a key folded off the training stream and reads the normaliser's
    statistics without updating them: every training metric, the parameters, the optimiser
    and the environment state (statistics included) equal a run without evaluation."""
    config, hparams = tiny(algo, **fields)
    off = jax.jit(jaxpo.make_train(config))(jax.random.key(3), hparams)
    on = jax.jit(jaxpo.make_train(config.replace(eval_interval=2, eval_episodes=3)))(
        jax.random.key(3), hparams
    )
    assert set(on.metrics) - set(off.metrics) == {"eval_return", "eval_length"}
    for name, value in off.metrics.items():
        np.testing.assert_array_equal(value, on.metrics[name], err_msg=name)
    assert_trees_equal(
        (off.state.params, off.state.rule_state, off.state.env_state),
        (on.state.params, on.state.rule_state, on.state.env_state),
    )
    np.testing.assert_array_equal(
        jax.random.key_data(off.state.key), jax.random.key_data(on.state.key)
    )
    # and it did evaluate: finite from the second update on, NaN before
    assert np.isnan(on.metrics["eval_return"][0])
    assert np.all(np.isfinite(on.metrics["eval_return"][1:]))
    assert np.all(on.metrics["eval_length"][1:] >= 1)


def test_evaluation_is_greedy_and_reports_the_policy_mode():
    """On ``probe:action`` (one step, reward 1 iff action 1) a greedy policy returns exactly
    1 in every episode if its most likely action is 1, else exactly 0; sampling would mix
    them. The reference reads the actor's logits directly (no jaxpo acting code)."""
    config, hparams = tiny("ppo", "probe:action", updates=2, num_steps=4)
    config = config.replace(eval_interval=2, eval_episodes=16)
    result = sweep.run(config, hparams, seeds=8)
    env = make_env(config)
    actor, _ = make_networks(config, env)
    obs = jnp.zeros((1, *env.observation_shape))
    for s in range(8):
        params = jax.tree.map(lambda x, s=s: x[0, s], result.state.params["actor"])
        logits = np.asarray(actor.apply(params, obs)[0])[0]
        greedy = float(np.argmax(logits) == 1)
        np.testing.assert_array_equal(result.metrics["eval_return"][0, s], [np.nan, greedy])
        np.testing.assert_array_equal(result.metrics["eval_length"][0, s, -1], 1.0)
    # the policies are near uniform after 2 updates: a sampling evaluation of 16 episodes
    # would not give exactly 0 or 1 for all 8 seeds
    probs = jax.nn.softmax(logits)
    assert 0.2 < float(probs[1]) < 0.8


def test_schedule_counts_from_the_run_start_across_segments():
    """A run continued from a state evaluates at the same updates as one uninterrupted run
    (multiples of ``eval_interval`` since update 0), and holds the latest value between."""
    config, hparams = tiny(updates=7, eval_interval=3, eval_episodes=2)
    members = sweep.grid(hparams, learning_rate=[1e-3, 3e-4])
    whole = sweep.run(config, members, seeds=2)
    first = sweep.run(config, members, seeds=2, updates=4)
    rest = sweep.run(config, members, seeds=2, state=first.state)
    joined = np.concatenate([first.metrics["eval_return"], rest.metrics["eval_return"]], -1)
    np.testing.assert_array_equal(joined, whole.metrics["eval_return"])
    values = whole.metrics["eval_return"]
    assert np.isnan(values[..., :2]).all() and np.isfinite(values[..., 2:]).all()
    np.testing.assert_array_equal(values[..., 2], values[..., 3])  # carried to update 4, 5
    np.testing.assert_array_equal(values[..., 2], values[..., 4])


def test_iqm_ranking_against_hand_computed_values():
    """IQM drops the lowest and highest quarter: for 8 seeds, the 2 lowest and 2 highest."""
    rows = []
    member_values = {0: [0, 0, 10, 10, 10, 10, 500, 500], 1: [0, 20, 20, 20, 20, 20, 20, 21]}
    for m, values in member_values.items():
        for s, v in enumerate(values):
            rows.append({"member": m, "seed": s, "lr": 0.1 * (m + 1), "eval_return": float(v)})
    table = sweep_table.Table(rows, ("lr",))
    by_mean = sweep_table.top_k(table, 2, "eval_return")
    by_iqm = sweep_table.top_k(table, 2, "eval_return", centre="iqm")
    assert [r.member for r in by_mean] == [0, 1]  # the mean is carried by two outliers
    assert [r.member for r in by_iqm] == [1, 0]
    assert by_iqm[0].iqm == 20.0 and by_iqm[1].iqm == 10.0
    text = sweep_table.format_top_k(table, 2, "eval_return", centre="iqm")
    assert "IQM; mean ± std over 8 seed(s)" in text


def test_sweep_cli_ranks_by_the_evaluation(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "--seeds", "2", "--total-timesteps", "128", "--no-progress"]
    argv += ["--set", "num_envs=2", "--set", "num_steps=16", "--set", "update_epochs=1"]
    argv += ["--set", "num_minibatches=1", "--set", "eval_interval=2"]
    argv += ["--set", "eval_episodes=2", "--grid", "learning_rate=1e-2,1e-4"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    assert "members by eval_return (max; IQM; mean ± std over 2 seed(s))" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"]["metric"] == "eval_return" and summary["best"]["centre"] == "iqm"
    metrics = np.load(out / "metrics.npz")
    iqms = metrics["eval_return"][..., -1].mean(axis=1)  # 2 seeds: the IQM is the mean
    assert summary["best"]["member"] == int(np.argmax(iqms))


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("eval_interval", -1, "eval_interval must be an integer >= 0"),
        ("eval_episodes", 0, "eval_episodes must be a positive integer"),
    ],
)
def test_bad_evaluation_settings_are_refused(field, value, message):
    config = jaxpo.Config().replace(**{field: value})
    with pytest.raises(ValueError, match=message):
        jaxpo.make_train(config)
