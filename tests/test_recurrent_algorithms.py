"""Recurrent policies end to end: a GRU through every algorithm (and an LSTM through PPO), a
sweep of a recurrent agent that compiles once, checkpoint and resume bit for bit with the
per-env hidden states, ``jaxpo eval`` and ``jaxpo render`` of recurrent runs, and an
evaluation loop that carries (and resets) the actor's state.

``tests/test_torsos.py`` and the recurrence unit tests check the cells' numerics; here whole
runs on ``gymnax:CartPole-v1`` cut at 10 steps (so episodes end, and states are reset, inside
every 16-step rollout) must come out finite, with no update skipped as non-finite, with
per-env states of the right shape in the runner state, and with the cells' recurrent kernels
trained (the gradient reached back through time). Runs are tiny (4 envs x 16 steps, 3
updates, 16 hidden units, 8 cell units) and compiled cheaply; PPO, TRPO and GRPO run on every
commit, the other algorithms with the slow tests.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from sweeps import count_traces
from test_torso_algorithms import assert_trees_equal, cheap_compiles, compiled, to_numpy

import jaxpo
from jaxpo import (
    Config,
    checkpoint,
    cli,
    envs,
    episodes,
    evaluate,
    networks,
    recurrence,
    sweep,
    train,
)
from jaxpo.algos import BUILTIN
from jaxpo.distributions import distribution
from jaxpo.registry import ALGORITHMS

ENV = "gymnax:CartPole-v1"
#: CartPole's episodes cut at 10 steps: each 16-step rollout crosses an episode end
TIME_LIMIT = 10
CELL_SIZE = 8
NUM_ENVS = 4
RECURRENT = dict(env_id=ENV, cell="gru", cell_size=CELL_SIZE, hidden_sizes=(16,))
#: recurrent minibatches split whole environments: num_minibatches divides num_envs
LOOP = dict(num_envs=NUM_ENVS, num_steps=16, update_epochs=1, num_minibatches=2)
UPDATES = 3
#: the budget of every run here (anneal_lr's schedule): the resume test runs all 4 updates
BUDGET = 4
#: run on every commit (first-order, natural, and critic-free grouped)
QUICK = ("ppo", "trpo", "grpo")
GROUPED = ("grpo", "tic_grpo")
#: where each cell's parameters live in a network, and its recurrent (hidden-to-hidden) kernels
CELL_MODULE = {"gru": "GRUCell_0", "lstm": "OptimizedLSTMCell_0"}
RECURRENT_KERNELS = {"gru": ("hr", "hz", "hn"), "lstm": ("hi", "hf", "hg", "ho")}


# --------------------------------------------------------------------------- every algorithm


def recurrent_config(algo: str, cell: str = "gru") -> Config:
    fields = {**RECURRENT, **LOOP, "cell": cell}
    if algo in GROUPED:
        fields["group_size"] = 2  # 2 groups of 2 trajectories
    if algo == "mcpo":
        fields["memory_size"] = 4  # room for every write of the run: no slot is replaced
    config = Config(algo=algo, **fields)
    return config.replace(total_timesteps=BUDGET * config.batch_size)


def recurrent_hparams(config: Config):
    """Default hparams with the time limit (not for grouped algorithms), as a one-member
    sweep (and so a checkpoint) holds them: arrays, no Python scalars, so a checkpoint's
    hparams reuse the compiled program."""
    # MCPO writes π_old when its KL to every remembered policy exceeds write_threshold;
    # after one small Adam step that KL is far below the default 0.002
    changes = {"write_threshold": 0.0} if config.algo == "mcpo" else {}
    hparams = jaxpo.default_hparams(config, **changes)
    # a grouped trajectory ends at its first episode end: cut at 10 steps, every one would
    # last 10 steps, every group-standardised advantage be 0 and nothing train; uncut,
    # random CartPole episodes end at different steps inside the 16-step horizon
    if config.algo not in GROUPED:
        limited = envs.with_time_limit(hparams.env_params, TIME_LIMIT)
        hparams = hparams.replace(env_params=limited)
    return sweep.member_hparams(sweep.stack(hparams, {}, 1), 0)


@functools.cache
def recurrent_run(algo: str, cell: str = "gru"):
    """One update at a time (one compiled update): ``(states, metrics)``, ``states[u]`` the
    runner state before update ``u + 1`` and ``metrics`` ``{name: [UPDATES]}``."""
    config = recurrent_config(algo, cell)
    hparams = recurrent_hparams(config)
    init, run = compiled(config)
    states, metrics = [init(jax.random.key(0), hparams)], []
    for _ in range(UPDATES):
        result = run(states[-1], hparams, 1)
        states.append(result.state)
        metrics.append(result.metrics)
    joined = {k: np.concatenate([np.asarray(m[k]) for m in metrics]) for k in metrics[0]}
    return states, joined


def cell_params(params: dict, cell: str) -> dict:
    """A network's cell parameters ``{"hr": {"kernel": ...}, ...}``."""
    recurrence = params["params"]["MLP_0"]["Recurrence_0"]
    return recurrence["ScanResetCell_0"][CELL_MODULE[cell]]


def check_recurrent_run(algo: str, cell: str) -> None:
    states, metrics = recurrent_run(algo, cell)
    first, last = states[0], states[-1]
    for name, value in metrics.items():
        assert value.shape == (UPDATES,), name
        assert np.isfinite(value).all(), name
    # NaN safety saw nothing: no update skipped, no agent failed, no bad observation/reward
    for name in ("update_skipped", "skipped_total", "failed", "env_nonfinite"):
        np.testing.assert_array_equal(metrics[name], 0.0, err_msg=name)
    assert int(last.skipped) == 0 and not bool(last.failed) and int(last.update) == UPDATES
    assert (metrics["episodes"] > 0).all()  # episodes ended (and states were reset) in each
    nets = ("actor", "critic") if ALGORITHMS[algo].collector.critic else ("actor",)
    assert set(last.params) == set(nets)
    for leaf in jax.tree.leaves(last.params):
        assert np.isfinite(leaf).all()

    # one state per env and network, [num_envs, cell_size] (an LSTM's is (c, h))
    assert set(last.carry) == set(nets) == set(first.carry)
    for net in nets:
        leaves = jax.tree.leaves(last.carry[net])
        assert len(leaves) == (2 if cell == "lstm" else 1), net
        for leaf in leaves:
            assert leaf.shape == (NUM_ENVS, CELL_SIZE), net
            assert np.isfinite(leaf).all(), net
        for leaf in jax.tree.leaves(first.carry[net]):
            np.testing.assert_array_equal(leaf, 0.0, err_msg=f"{net}: states start at zeros")
        if algo in GROUPED:
            # fresh groups every update, each trajectory from the zero state: none is kept
            for leaf in leaves:
                np.testing.assert_array_equal(leaf, 0.0, err_msg=net)
        else:
            # the states the last rollout stopped in (only envs that just ended are zero)
            assert max(np.abs(leaf).max() for leaf in leaves) > 1e-6, net

    for net in nets:
        params, params0 = cell_params(last.params[net], cell), cell_params(first.params[net], cell)
        assert set(params) >= set(RECURRENT_KERNELS[cell]), net
        for gate in RECURRENT_KERNELS[cell]:
            kernel = np.asarray(params[gate]["kernel"])
            kernel0 = np.asarray(params0[gate]["kernel"])
            assert kernel.shape == (CELL_SIZE, CELL_SIZE), (net, gate)
            # the gradient reached through the recurrence: the kernel left its initial values
            change = np.abs(kernel - kernel0).max()
            assert change > 1e-6, f"{net} {gate} kernel moved by only {change}"


def algo_params():
    return [pytest.param(a, marks=() if a in QUICK else pytest.mark.slow) for a in BUILTIN]


def test_every_registered_algorithm_is_covered():
    assert len(BUILTIN) >= 10 and set(BUILTIN) <= set(ALGORITHMS)
    assert set(QUICK) <= set(BUILTIN) and set(GROUPED) <= set(BUILTIN)


@pytest.mark.parametrize("algo", algo_params())
def test_every_algorithm_trains_a_gru_policy(algo):
    check_recurrent_run(algo, "gru")


@pytest.mark.slow
def test_ppo_trains_an_lstm_policy():
    check_recurrent_run("ppo", "lstm")


# --------------------------------------------------------------------------- sweep


def test_learning_rate_sweep_of_a_recurrent_agent_compiles_once():
    config = recurrent_config("ppo").replace(total_timesteps=2 * LOOP["num_envs"] * 16)
    hparams = recurrent_hparams(config)
    sweep.make_sweep_fn.cache_clear()
    try:
        with pytest.MonkeyPatch.context() as mp, cheap_compiles():
            traces = count_traces(mp)
            swept = sweep.run(config, sweep.grid(hparams, learning_rate=[1e-4, 1e-3]), seeds=2)
            again = sweep.run(config, sweep.grid(hparams, learning_rate=[3e-4, 3e-3]), seeds=2)
    finally:
        sweep.make_sweep_fn.cache_clear()
    assert traces["n"] == 1  # the second sweep reused the compiled program
    for result in (swept, again):
        for name, value in result.metrics.items():
            assert value.shape == (2, 2, 2) and np.isfinite(value).all(), name
        np.testing.assert_array_equal(result.metrics["update_skipped"], 0.0)
        for leaf in jax.tree.leaves(result.state.carry):
            assert leaf.shape == (2, 2, NUM_ENVS, CELL_SIZE)
    # the learning rates reached the recurrent kernels: the members' (and seeds') differ
    kernel = np.asarray(cell_params(swept.state.params["actor"], "gru")["hr"]["kernel"])
    assert np.abs(kernel[0] - kernel[1]).max() > 1e-7
    assert np.abs(kernel[:, 0] - kernel[:, 1]).max() > 1e-7
    other = cell_params(again.state.params["actor"], "gru")["hr"]["kernel"]
    assert not np.array_equal(kernel, other)


# --------------------------------------------------------------------------- checkpoint


def as_run(state):
    """One agent's runner state as a sweep holds it: host leaves ``[1, 1, ...]``, key data."""
    state = state.replace(key=jax.random.key_data(state.key))
    return jax.tree.map(lambda x: np.asarray(x)[None, None], state)


def as_agent(state):
    """The inverse of :func:`as_run`."""
    state = jax.tree.map(lambda x: x[0, 0], state)
    return state.replace(key=jax.random.wrap_key_data(state.key))


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """PPO-GRU: 4 updates in one call, and 2 updates (one at a time), saved, loaded, and 2
    more from the loaded state."""
    config = recurrent_config("ppo")
    hparams = recurrent_hparams(config)
    _, run = compiled(config)
    states, metrics = recurrent_run("ppo")
    whole = run(states[0], hparams, BUDGET)

    directory = tmp_path_factory.mktemp("runs") / "gru"
    first = {k: v[None, None, :2] for k, v in metrics.items()}
    batched = jax.tree.map(lambda x: np.asarray(x)[None], hparams)
    checkpoint.save(directory, config, batched, np.array([0]), as_run(states[2]), first)
    restored = checkpoint.load(directory)

    member = sweep.member_hparams(restored.hparams, 0)

    def rest(state):
        metrics = []
        for _ in range(BUDGET - 2):
            result = run(state, member, 1)
            state = result.state
            metrics.append(result.metrics)
        return state, {k: np.concatenate([np.asarray(m[k]) for m in metrics]) for k in metrics[0]}

    state, metrics = rest(as_agent(restored.state))
    # the same, from states reset to zeros instead of the saved ones
    zeros = jax.tree.map(np.zeros_like, restored.state.carry)
    no_carry, _ = rest(as_agent(restored.state.replace(carry=zeros)))
    return {
        "directory": directory,
        "first": states[2],
        "restored": restored,
        "whole": whole,
        "resumed": state,
        "metrics": {k: np.concatenate([restored.metrics[k][0, 0], metrics[k]]) for k in metrics},
        "no_carry": no_carry,
    }


def test_checkpoint_records_the_cell(resumed):
    directory, restored = resumed["directory"], resumed["restored"]
    record = json.loads((directory / checkpoint.RUN_FILE).read_text())["config"]
    assert (record["cell"], record["cell_size"]) == ("gru", CELL_SIZE)
    assert (restored.config.cell, restored.config.cell_size) == ("gru", CELL_SIZE)
    assert restored.config == recurrent_config("ppo") and restored.update == 2
    for net in ("actor", "critic"):
        assert restored.state.carry[net].shape == (1, 1, NUM_ENVS, CELL_SIZE)
    # the states the rollout stopped in are saved, not zeros
    assert np.abs(restored.state.carry["actor"]).max() > 1e-6
    assert_trees_equal(restored.state, to_numpy(as_run(resumed["first"])), "state")


def test_resume_from_a_checkpoint_equals_one_run_bit_for_bit(resumed):
    whole, state = resumed["whole"], resumed["resumed"]
    assert int(state.update) == BUDGET
    assert_trees_equal(to_numpy(state.params), to_numpy(whole.state.params), "params")
    assert_trees_equal(to_numpy(state.carry), to_numpy(whole.state.carry), "carry")
    want = {k: np.asarray(v) for k, v in whole.metrics.items()}
    assert_trees_equal(resumed["metrics"], want, "metrics")
    assert_trees_equal(as_run(state), to_numpy(as_run(whole.state)), "state")
    # the equality needs the saved states: resumed from zeros, the parameters differ
    params, other = jax.tree.leaves(whole.state.params), jax.tree.leaves(resumed["no_carry"].params)
    assert not all(np.array_equal(a, b) for a, b in zip(params, other, strict=True))


def rewrite_config(directory: Path, **fields) -> None:
    """Changes fields of the config in run.json, with a fresh digest."""
    run = json.loads((directory / checkpoint.RUN_FILE).read_text())
    run["config"].update(fields)
    (directory / checkpoint.RUN_FILE).write_text(json.dumps(checkpoint.seal(run)))


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        # the first mismatch: the actor's output layer reads the cell's 8 units, not 16
        (dict(cell_size=16), r"has shape \(1, 1, 8, 2\), it needs \(1, 1, 16, 2\)"),
        (dict(cell="lstm"), "state arrays saved"),
        (dict(cell="none"), "state arrays saved"),
    ],
    ids=["cell_size", "lstm", "none"],
)
def test_checkpoint_refuses_a_config_with_another_cell(resumed, tmp_path, fields, match):
    """The arrays of a GRU-8 run do not load under a run.json that records another cell."""
    directory = tmp_path / "run"
    shutil.copytree(resumed["directory"], directory)
    rewrite_config(directory, **fields)
    with pytest.raises(checkpoint.CheckpointError, match=match):
        checkpoint.load(directory)


# ------------------------------------------------------------------- eval and render

#: the sets of a tiny PPO-GRU run (2 seeds x 2 updates of 4 envs x 16 steps)
CLI_SETS = [
    "cell=gru",
    f"cell_size={CELL_SIZE}",
    "hidden_sizes=16",
    f"num_envs={NUM_ENVS}",
    "num_steps=16",
    "num_minibatches=2",
    "update_epochs=1",
    "episode_length=32",
]
CLI_TRAIN = ["train", "--algo", "ppo", "--seeds", "2", "--total-timesteps", "128"]
CLI_TRAIN += ["--no-progress", *[arg for s in CLI_SETS for arg in ("--set", s)]]
CLI_TIME_LIMIT = 32
EPISODES = 4


def cli_train(out: Path, env_id: str) -> Path:
    with cheap_compiles():
        assert cli.main([*CLI_TRAIN, "--env", env_id, "--out", str(out)]) == 0
    saved = checkpoint.load(out)
    assert (saved.config.env_id, saved.config.cell, saved.config.cell_size) == (
        env_id,
        "gru",
        CELL_SIZE,
    )
    assert saved.update == 2 and list(saved.seeds) == [0, 1]
    assert saved.state.carry["actor"].shape == (1, 2, NUM_ENVS, CELL_SIZE)
    np.testing.assert_array_equal(saved.metrics["update_skipped"], 0.0)
    return out


def test_eval_of_a_recurrent_run(tmp_path_factory, capsys):
    """``jaxpo eval`` of a GRU trained by ``jaxpo train`` on ``pomdp:CartPole-v1``."""
    run_dir = cli_train(tmp_path_factory.mktemp("runs") / "pomdp", "pomdp:CartPole-v1")
    capsys.readouterr()
    with cheap_compiles():
        assert cli.main(["eval", str(run_dir), "--episodes", str(EPISODES)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((run_dir / "eval.json").read_text())
    assert (report["algo"], report["env_id"], report["update"]) == (
        "ppo",
        "pomdp:CartPole-v1",
        2,
    )
    assert [a["seed"] for a in report["agents"]] == [0, 1]
    for mode in evaluate.MODES:
        assert mode in printed and np.isfinite(report[mode]["mean"])
        for agent in report["agents"]:
            returns = np.asarray(agent[mode]["returns"])
            assert returns.shape == (EPISODES,) and np.isfinite(returns).all()
            # CartPole: +1 a step, at least one step, episodes cut at the time limit
            assert (returns >= 1).all() and (returns <= CLI_TIME_LIMIT).all()
            assert returns == pytest.approx(np.round(returns))


def render_gif(run_dir: Path, out: Path, time_limit: int, capsys) -> None:
    capsys.readouterr()
    with cheap_compiles():
        assert cli.main(["render", str(run_dir), "--out", str(out), "--max-steps", "40"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert out.read_bytes()[:4] == b"GIF8"
    with Image.open(out) as gif:
        # one frame a step, until the episode ended (at the latest at its time limit)
        assert 1 <= gif.n_frames <= time_limit


def test_render_of_a_recurrent_checkpoint(resumed, tmp_path, capsys):
    """``jaxpo render`` of the PPO-GRU checkpoint above (``gymnax:CartPole-v1``, episodes
    cut at 10 steps): ``pomdp:`` envs have no visualiser."""
    render_gif(resumed["directory"], tmp_path / "cartpole.gif", TIME_LIMIT, capsys)


@pytest.mark.extended  # the quick render test above covers a recurrent checkpoint in CI
def test_render_of_a_recurrent_run(tmp_path_factory, tmp_path, capsys):
    """``jaxpo render`` of a GRU trained by ``jaxpo train`` on ``gymnax:CartPole-v1``."""
    run_dir = cli_train(tmp_path_factory.mktemp("runs") / "cartpole", ENV)
    render_gif(run_dir, tmp_path / "cartpole.gif", CLI_TIME_LIMIT, capsys)


# --------------------------------------------------------------------------- the eval loop

MEMORY = Config(algo="ppo", env_id="probe:memory", **LOOP, cell="gru", cell_size=CELL_SIZE)
MEMORY = MEMORY.replace(hidden_sizes=(16,), total_timesteps=MEMORY.batch_size)
MEMORY_EPISODES = 16


@pytest.fixture(scope="module")
def memory_agent():
    """A fresh PPO-GRU agent on ``probe:memory`` as a one-agent checkpoint."""
    hparams = jaxpo.default_hparams(MEMORY)  # env params {"length": 4}: episodes of 4 steps
    state = compiled(MEMORY)[0](jax.random.key(0), hparams)
    batched = jax.tree.map(lambda x: np.asarray(x)[None], hparams)
    return checkpoint.Checkpoint(MEMORY, batched, np.array([0]), as_run(state), {}, 0)


def reference_returns(saved, key, reset):
    """``evaluate.evaluate``'s deterministic returns of agent 0 by a Python loop over steps
    (``recurrence.step``, and zeroed states at episode ends when ``reset``), with the actor's
    states before any reset, ``[T, N, H]``."""
    env = train.make_eval_env(saved.config, MEMORY_EPISODES)
    actor, _ = networks.make_networks(saved.config, env)
    params = jax.tree.map(lambda x: x[0, 0], saved.state.params["actor"])
    env_params = jax.tree.map(lambda x: x[0], saved.hparams.env_params)
    k_reset, key = jax.random.split(key)
    state, ts = env.reset(k_reset, env_params)
    carry = jnp.zeros((MEMORY_EPISODES, CELL_SIZE))
    done = np.zeros(MEMORY_EPISODES, bool)
    first = np.zeros(MEMORY_EPISODES, np.float32)
    states = []
    while not done.all():
        key, _, k_step = jax.random.split(key, 3)
        carry, outputs = recurrence.step(actor, params, carry, ts.obs)
        states.append(np.asarray(carry))
        state, ts = env.step(k_step, state, distribution(outputs).mode(), env_params)
        ended = np.asarray(ts.info["episode_done"])
        first = np.where(ended & ~done, np.asarray(ts.info["episode_return"]), first)
        done |= ended
        if reset:
            carry = jnp.where(ended[:, None], 0.0, carry)
    return first, np.stack(states)


def test_select_action_advances_the_state(memory_agent):
    env = train.make_eval_env(MEMORY, 2)
    actor, _ = networks.make_networks(MEMORY, env)
    policy = jax.tree.map(lambda x: x[0], evaluate.agent_policies(memory_agent, [0]))
    obs = jnp.asarray([[1.0, 0.0], [-1.0, 0.0]])  # the two cues
    zeros = episodes.initial_actor_carry(actor, 2)
    np.testing.assert_array_equal(zeros, np.zeros((2, CELL_SIZE)))
    key = jax.random.key(0)
    carry, action = episodes.select_action(actor, policy, zeros, obs, key, True)
    assert carry.shape == (2, CELL_SIZE) and action.shape == (2,)
    assert not np.allclose(carry, zeros)
    assert not np.allclose(carry[0], carry[1])  # the state holds the cue
    # the state is read: the same observation from the two cues' states leads elsewhere
    query = jnp.asarray([[0.0, 1.0], [0.0, 1.0]])
    after, _ = episodes.select_action(actor, policy, carry, query, key, True)
    fresh, _ = episodes.select_action(actor, policy, zeros, query, key, True)
    assert not np.allclose(after[0], after[1]) and not np.allclose(after, fresh)


def test_evaluation_carries_and_resets_the_actor_state(memory_agent, monkeypatch):
    """``evaluate.evaluate`` equals a Python loop over ``recurrence.step``; its loop passes
    the states through ``reset_carry`` after every step, zeroing them where episodes ended.

    Only each env's first episode counts and every ``probe:memory`` episode ends at step
    4, so the resets cannot change the returns; a spy on ``reset_carry`` sees them."""
    seen = []
    real = episodes.reset_carry

    def spy(carry, done):
        out = real(carry, done)
        jax.debug.callback(lambda *a: seen.append(jax.tree.map(np.asarray, a)), carry, done, out)
        return out

    monkeypatch.setattr(episodes, "reset_carry", spy)
    evaluate.batched_returns.cache_clear()  # a program traced with the spy
    key = jax.random.key(1)
    try:
        with cheap_compiles():
            returns = evaluate.evaluate(memory_agent, MEMORY_EPISODES, key, deterministic=True)
    finally:
        evaluate.batched_returns.cache_clear()
    want, states = reference_returns(memory_agent, key, reset=True)
    np.testing.assert_array_equal(returns, want[None])
    assert set(np.unique(returns)) <= {0.0, 1.0}

    assert len(seen) == len(states) == 4  # the episode's 4 steps, then every env is done
    for t, (before, done, after) in enumerate(seen):
        np.testing.assert_allclose(before, states[t], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(done, t == 3)
        assert np.abs(before).max(axis=1).min() > 0, t  # every env's state moved
        np.testing.assert_array_equal(after, np.where(done[:, None], 0.0, before))
