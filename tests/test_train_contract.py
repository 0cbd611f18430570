"""The contract of ``make_train`` and ``sweep``: metrics, compile-once, sweep == single run,
bounded metric memory, the progress hook, and sweep specs.

Compiling a training program is the slow part (tens of seconds on 2 cores), so the file
compiles three programs, once each, in module-scoped fixtures: single runs without a hook,
a single run with a progress hook, and one sweep with a progress hook. The sweep is compared
with the hook-free single runs, which checks both that a sweep member is the single run and
that the hook does not change results.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from helpers import tiny_config, to_numpy
from sweeps import compiles_callback, count_traces

import jaxpo
from jaxpo import default_hparams, make_train, sweep

NUM_UPDATES = 5
CONFIG = tiny_config(updates=NUM_UPDATES, update_epochs=1, hidden_sizes=(16, 16))
EVERY = 2  # updates between progress reports
LRS = [1e-3, 3e-4]
SEEDS = 2
REQUIRED_METRICS = {
    "episode_return",
    "episode_length",
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clip_frac",
    "ess_frac",
    "explained_variance",
    "grad_norm",
}


class Recorder:
    """A host progress hook that records its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, update, env_steps, episode_return):
        self.calls.append((update, env_steps, np.array(episode_return, copy=True)))


@pytest.fixture(scope="module")
def hp():
    return default_hparams(CONFIG)


@pytest.fixture(scope="module")
def grid_hp(hp):
    return sweep.grid(hp, learning_rate=LRS)


@pytest.fixture(scope="module")
def single(grid_hp):
    """Single runs of every (member, seed) through one jitted function that counts traces."""
    assert CONFIG.num_updates == NUM_UPDATES
    train = make_train(CONFIG)
    traces = {"n": 0}

    def counted(key, hparams):
        traces["n"] += 1
        return train(key, hparams)

    fn = jax.jit(counted)
    runs = {}
    for m in range(len(LRS)):
        for s in range(SEEDS):
            out = fn(jax.random.key(s), sweep.member_hparams(grid_hp, m))
            runs[m, s] = to_numpy(out.metrics)
    return {"runs": runs, "traces": traces["n"]}


@pytest.fixture(scope="module")
def swept(grid_hp, hp):
    """``sweep.run`` over LRS × SEEDS with a progress hook, then the same compiled sweep
    with other values.

    ``make_sweep_fn`` is spied on to reuse the function ``run`` jitted, and ``make_train``
    is wrapped to count how many times ``train`` is traced.
    """
    hook = Recorder()
    real_make_sweep_fn = sweep.make_sweep_fn
    sweep_fns = []

    def spying_make_sweep_fn(config, progress=None, mesh=None, updates=None, resume=False):
        sweep_fns.append(real_make_sweep_fn(config, progress, mesh, updates, resume))
        return sweep_fns[-1]

    with pytest.MonkeyPatch.context() as mp:
        traces = count_traces(mp)
        mp.setattr(sweep.runner, "make_sweep_fn", spying_make_sweep_fn)
        result = sweep.run(CONFIG, grid_hp, seeds=SEEDS, progress=hook, progress_interval=EVERY)
        jax.block_until_ready(result.metrics)
        calls = list(hook.calls)
        traces_after_run = traces["n"]
        other = sweep.grid(hp, learning_rate=[3e-3, 1e-4])
        fn, _ = sweep_fns[0]
        inputs = sweep.place(sweep.agent_inputs(other, np.arange(SEEDS)), sweep.make_mesh())
        again = sweep.to_host(fn(*inputs, np.int32(EVERY)))
    return {
        "result": result,
        "metrics": to_numpy(result.metrics),
        "again": {k: v.reshape(len(LRS), SEEDS, -1) for k, v in again.metrics.items()},
        "calls": calls,
        "traces_after_run": traces_after_run,
        "traces": traces["n"],
        "num_sweep_fns": len(sweep_fns),
    }


@pytest.fixture(scope="module")
def progress_single(grid_hp):
    hook = Recorder()
    train = jax.jit(make_train(CONFIG, progress=hook))
    out = train(jax.random.key(0), sweep.member_hparams(grid_hp, 0), EVERY)
    metrics = to_numpy(out.metrics)
    return {"calls": list(hook.calls), "metrics": metrics}


# --------------------------------------------------------------------------- metrics


def test_metrics_are_flat_with_update_axis(single):
    metrics = single["runs"][0, 0]
    assert isinstance(metrics, dict)
    assert REQUIRED_METRICS <= set(metrics), REQUIRED_METRICS - set(metrics)
    for name, value in metrics.items():
        assert isinstance(name, str)
        assert value.shape == (NUM_UPDATES,), (name, value.shape)
        assert np.issubdtype(value.dtype, np.floating), (name, value.dtype)
        assert np.isfinite(value).all(), name


def test_metric_values_are_plausible(single):
    m = single["runs"][0, 0]
    # 160 CartPole steps under a near-random policy finish some episodes
    assert m["episode_return"][-1] > 0 and m["episode_length"][-1] > 0
    assert np.all((m["clip_frac"] >= 0) & (m["clip_frac"] <= 1))
    assert np.all((m["ess_frac"] > 0) & (m["ess_frac"] <= 1 + 1e-6))
    assert np.all(m["approx_kl"] >= -1e-6)
    assert np.all(m["grad_norm"] > 0)
    assert np.all((m["entropy"] > 0) & (m["entropy"] <= math.log(2) + 1e-5))
    assert np.all(m["value_loss"] >= 0)
    assert np.all(m["explained_variance"] <= 1 + 1e-6)


# --------------------------------------------------------------------------- compile once


def test_new_hparam_values_do_not_retrace(single):
    assert single["traces"] == 1


def test_hparam_values_are_not_baked_in(single):
    a, b = single["runs"][0, 0], single["runs"][1, 0]
    # same seed: same initial parameters and first rollout ...
    for name in ("explained_variance", "episode_return", "episode_length"):
        np.testing.assert_array_equal(a[name][0], b[name][0])
    # ... but the learning rates differ, which changes the losses after the first step
    assert not np.allclose(a["policy_loss"], b["policy_loss"])
    assert not np.allclose(a["explained_variance"][1:], b["explained_variance"][1:])


def test_sweep_fn_compiles_once(swept):
    assert swept["num_sweep_fns"] == 1
    assert swept["traces_after_run"] == 1
    assert swept["traces"] == 1  # new member values reuse the compiled sweep
    for name in REQUIRED_METRICS:
        assert swept["again"][name].shape == (len(LRS), SEEDS, NUM_UPDATES)
    assert not np.allclose(swept["again"]["policy_loss"], swept["metrics"]["policy_loss"])


# --------------------------------------------------------------------------- sweep == single


def test_sweep_result_layout(swept):
    result = swept["result"]
    np.testing.assert_array_equal(result.seeds, np.arange(SEEDS))
    np.testing.assert_allclose(np.asarray(result.hparams.learning_rate), LRS, rtol=1e-7)
    assert REQUIRED_METRICS <= set(swept["metrics"])
    for name, value in swept["metrics"].items():
        assert value.shape == (len(LRS), SEEDS, NUM_UPDATES), name


@pytest.mark.parametrize("member", range(len(LRS)))
@pytest.mark.parametrize("seed", range(SEEDS))
def test_sweep_member_equals_single_run(swept, single, member, seed):
    alone = single["runs"][member, seed]
    assert set(alone) == set(swept["metrics"])
    for name, value in alone.items():
        np.testing.assert_allclose(
            swept["metrics"][name][member, seed], value, rtol=1e-5, atol=1e-5, err_msg=name
        )


def test_seeds_differ(single):
    a, b = single["runs"][0, 0], single["runs"][0, 1]
    assert not np.allclose(a["policy_loss"], b["policy_loss"])


# --------------------------------------------------------------------------- memory


@pytest.mark.parametrize("num_updates", [5, 40])
def test_metric_memory_is_num_updates(hp, num_updates):
    config = CONFIG.replace(total_timesteps=CONFIG.batch_size * num_updates + 7)
    out = jax.eval_shape(make_train(config), jax.random.key(0), hp)
    for name, value in out.metrics.items():
        assert value.shape == (num_updates,), name


def test_final_state_does_not_grow_with_total_steps(hp):
    shapes = []
    for num_updates in (5, 400):
        config = CONFIG.replace(total_timesteps=CONFIG.batch_size * num_updates)
        out = jax.eval_shape(make_train(config), jax.random.key(0), hp)
        shapes.append(jax.tree.map(lambda x: (x.shape, x.dtype), out.state))
    assert shapes[0] == shapes[1]


# --------------------------------------------------------------------------- progress hook


def test_progress_hook_single_run(progress_single):
    calls = progress_single["calls"]
    assert [c[0] for c in calls] == [2, 4, 5]
    assert [c[1] for c in calls] == [
        2 * CONFIG.batch_size,
        4 * CONFIG.batch_size,
        5 * CONFIG.batch_size,
    ]
    returns = progress_single["metrics"]["episode_return"]
    for update, _, ret in calls:
        assert np.shape(ret) == ()
        np.testing.assert_allclose(ret, returns[update - 1], rtol=1e-6)


def test_progress_hook_does_not_change_results(progress_single, single):
    for name, value in single["runs"][0, 0].items():
        np.testing.assert_allclose(
            progress_single["metrics"][name], value, rtol=1e-5, atol=1e-5, err_msg=name
        )


def test_progress_hook_once_per_update_under_sweep(swept):
    calls = swept["calls"]
    assert [c[0] for c in calls] == [2, 4, 5]  # not once per member or seed
    assert [c[1] for c in calls] == [
        2 * CONFIG.batch_size,
        4 * CONFIG.batch_size,
        5 * CONFIG.batch_size,
    ]
    returns = swept["metrics"]["episode_return"]
    for update, _, ret in calls:
        assert np.shape(ret) == (len(LRS) * SEEDS,)  # every agent (device order unspecified)
        expected = np.sort(returns[:, :, update - 1].ravel())
        np.testing.assert_allclose(np.sort(ret), expected, rtol=1e-6)
    # each member's returns are reported, not one copy
    assert not np.allclose(calls[-1][2], np.ravel(calls[-1][2])[0])


@pytest.mark.parametrize("with_hook", [False, True])
def test_callback_only_compiled_in_with_hook(hp, with_hook):
    train = make_train(CONFIG, progress=Recorder() if with_hook else None)
    assert compiles_callback(train, jax.random.key(0), hp) == with_hook


def test_changing_the_progress_cadence_does_not_retrace(hp):
    """The cadence is a traced argument: one trace serves every interval, 0 means never."""
    hook = Recorder()
    trainer = jaxpo.train.make_trainer(CONFIG, progress=hook)
    traces = {"n": 0}

    def run(state, hparams, every):
        traces["n"] += 1
        return trainer.run(state, hparams, NUM_UPDATES, every)

    run = jax.jit(run)
    state = jax.jit(trainer.init)(jax.random.key(0), hp)
    reported = {}
    for every in (2, 3, 1, 0):
        hook.calls.clear()
        jax.block_until_ready(run(state, hp, every))
        reported[every] = [call[0] for call in hook.calls]
    assert traces["n"] == 1
    assert reported == {2: [2, 4, 5], 3: [3, 5], 1: [1, 2, 3, 4, 5], 0: []}


# --------------------------------------------------------------------------- sweep specs


def test_grid_cartesian_product(hp):
    lrs, eps = [1e-3, 3e-4, 1e-4], [0.1, 0.2]
    batched = sweep.grid(hp, learning_rate=lrs, clip_eps=eps)
    assert sweep.is_batched(batched) and not sweep.is_batched(hp)
    assert sweep.num_members(batched) == 6
    cols = sweep.columns(batched)
    np.testing.assert_allclose(cols["learning_rate"], np.repeat(lrs, 2), rtol=1e-6)
    np.testing.assert_allclose(cols["clip_eps"], np.tile(eps, 3), rtol=1e-6)
    np.testing.assert_allclose(cols["gamma"], np.full(6, 0.99), rtol=1e-6)
    for leaf in jax.tree.leaves(batched):
        assert np.shape(leaf)[0] == 6
    member = sweep.member_hparams(batched, 3)
    expected = hp.set(learning_rate=3e-4, clip_eps=0.2)
    for a, b in zip(jax.tree.leaves(member), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    both = sweep.concat(batched, sweep.grid(hp, gamma=[0.9]))
    assert sweep.num_members(both) == 7


def test_grid_single_name_sizes(hp):
    assert sweep.num_members(sweep.grid(hp, gae_lambda=[0.9])) == 1
    assert sweep.num_members(sweep.grid(hp, gae_lambda=[0.9, 0.95, 1.0], ent_coef=[0, 0.01])) == 6


def test_random_within_bounds(hp):
    num = 256
    batched = sweep.random(
        hp,
        jax.random.key(0),
        num,
        learning_rate=("loguniform", 1e-5, 1e-2),
        clip_eps="uniform:0.1:0.3",
        ent_coef="choice:0.0,0.01,0.1",
        gamma=("choice", [0.95, 0.99]),
    )
    cols = sweep.columns(batched)
    lr = cols["learning_rate"]
    assert lr.shape == (num,)
    assert np.all((lr >= 1e-5 * (1 - 1e-6)) & (lr <= 1e-2 * (1 + 1e-6)))
    # log-uniform: every decade is hit, about equally
    decades = np.floor(np.log10(lr * (1 + 1e-6))).astype(int)
    counts = np.bincount(decades + 5, minlength=3)[:3]
    assert np.all(counts > num / 3 * 0.5), counts
    clip = cols["clip_eps"]
    assert np.all((clip >= 0.1 - 1e-7) & (clip <= 0.3 + 1e-7)) and np.std(clip) > 0.03
    for name, choices in (("ent_coef", [0.0, 0.01, 0.1]), ("gamma", [0.95, 0.99])):
        match = np.isclose(cols[name][:, None], np.float32(choices)[None], rtol=1e-6)
        assert match.any(axis=1).all() and match.any(axis=0).all(), name
    np.testing.assert_allclose(cols["vf_coef"], 0.5)
    again = sweep.random(hp, jax.random.key(0), num, learning_rate=("loguniform", 1e-5, 1e-2))
    other = sweep.random(hp, jax.random.key(1), num, learning_rate=("loguniform", 1e-5, 1e-2))
    assert not np.allclose(
        sweep.columns(again)["learning_rate"], sweep.columns(other)["learning_rate"]
    )


@pytest.mark.parametrize("make", ["grid", "random"])
def test_unknown_hparam_in_spec(hp, make):
    with pytest.raises(ValueError, match="bogus"):
        if make == "grid":
            sweep.grid(hp, bogus=[1.0])
        else:
            sweep.random(hp, jax.random.key(0), 4, bogus=("uniform", 0, 1))


@pytest.mark.parametrize("make", ["grid", "random"])
@pytest.mark.parametrize("field", ["num_envs", "update_epochs", "hidden_sizes"])
def test_static_field_in_spec(hp, make, field):
    with pytest.raises(ValueError, match=rf"'{field}'.*static"):
        if make == "grid":
            sweep.grid(hp, **{field: [1, 2]})
        else:
            sweep.random(hp, jax.random.key(0), 4, **{field: ("choice", [1, 2])})


def test_empty_grid(hp):
    with pytest.raises(ValueError, match="learning_rate.*empty"):
        sweep.grid(hp, learning_rate=[])
    with pytest.raises(ValueError, match="at least one"):
        sweep.grid(hp)


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ("loguniform:1", "loguniform needs"),
        ("foo:1:2", "unknown distribution 'foo'"),
        (("uniform", 2.0, 1.0), "low < high"),
        (("uniform", 1.0, 1.0), "low < high"),
        (("loguniform", 1e-2, 1e-5), "low < high"),
        (("loguniform", 0.0, 1.0), "low > 0"),
        (("uniform", 0.0, math.inf), "finite"),
        (("uniform", 0.0, 1.0, 2.0), "uniform needs"),
        ("choice:", "choice needs"),
        (("choice", []), "choice needs"),
        (0.1, "malformed distribution"),
        ((), "malformed distribution"),
    ],
)
def test_malformed_distribution(hp, spec, pattern):
    with pytest.raises(ValueError, match=pattern):
        sweep.random(hp, jax.random.key(0), 4, learning_rate=spec)


def test_random_bad_sizes(hp):
    with pytest.raises(ValueError, match="num"):
        sweep.random(hp, jax.random.key(0), 0, learning_rate=("uniform", 0.1, 0.2))
    with pytest.raises(ValueError, match="at least one"):
        sweep.random(hp, jax.random.key(0), 4)


def test_random_draw_out_of_hparam_range(hp):
    with pytest.raises(ValueError, match="hparam gamma="):
        sweep.random(hp, jax.random.key(0), 16, gamma=("uniform", 0.9, 1.5))


def test_run_needs_a_seed(hp):
    with pytest.raises(ValueError, match="seed"):
        sweep.run(CONFIG, hp, seeds=[])


def test_exports():
    assert jaxpo.sweep is sweep and callable(jaxpo.make_train)
