"""Torsos end to end: a CNN with LayerNorm through every algorithm, MCPO's memory of CNN
policies, and CNN and user-module runs through a checkpoint, ``jaxpo eval`` and ``jaxpo render``.

``tests/test_torsos.py`` checks the networks' numerics and the torso config fields; here
whole runs on ``gymnax:Breakout-MinAtar`` (10x10x4 images) must come out finite, with no
update skipped as non-finite, and with the torso's weights trained. Runs are tiny (4 envs x
16 steps, 3 updates, one 4-channel 3x3 convolution) and compiled cheaply; PPO, TRPO and MCPO
run on every commit, the other algorithms with the slow tests.
"""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import pytest
from helpers import finish
from PIL import Image
from rule_helpers import cheap_jit

import jaxpo
from jaxpo import Config, checkpoint, cli, envs, evaluate, sweep
from jaxpo.algos import BUILTIN
from jaxpo.registry import ALGORITHMS
from jaxpo.train import make_trainer

ENV = "gymnax:Breakout-MinAtar"
#: the actor's and critic's CNN: one 3x3 convolution, Breakout's 4 channels in, 4 out
CNN = dict(env_id=ENV, torso="cnn", cnn_channels=(4,), hidden_sizes=(16,), layer_norm=True)
KERNEL = (3, 3, 4, 4)
#: 16 steps: a GRPO trajectory's advantage is its return standardised in its group, and
#: Breakout's first episodes end after about 9 steps; with 8 steps no trajectory finished,
#: every advantage was 0 and GRPO's conv weights never moved
LOOP = dict(num_envs=4, num_steps=16, update_epochs=1, num_minibatches=1)
UPDATES = 3
#: run on every commit (first-order, natural, and the one with a memory of parameters)
QUICK = ("ppo", "trpo", "mcpo")
GROUPED = ("grpo", "tic_grpo")


@contextlib.contextmanager
def cheap_compiles() -> Iterator[None]:
    """XLA's cheap CPU code generation for every jit inside (``rule_helpers.cheap_jit`` for
    programs built by the library: sweeps, evaluation, rendering)."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", previous)


def to_numpy(tree):
    return jax.tree.map(np.asarray, tree)


def assert_trees_equal(got, want, what: str) -> None:
    assert jax.tree.structure(got) == jax.tree.structure(want), what
    for (path, a), b in zip(jax.tree.leaves_with_path(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=f"{what}{jax.tree_util.keystr(path)}")


# --------------------------------------------------------------------------- every algorithm


def cnn_config(algo: str) -> Config:
    fields = {**CNN, **LOOP}
    if algo in GROUPED:
        fields["group_size"] = 2  # 2 groups of 2 trajectories
    if algo == "mcpo":
        fields["memory_size"] = 4  # room for every write of the run: no slot is replaced
    config = Config(algo=algo, **fields)
    return config.replace(total_timesteps=UPDATES * config.batch_size)


def cnn_hparams(config: Config):
    # MCPO writes π_old when its KL to every remembered policy exceeds write_threshold;
    # after one small Adam step that KL is ~1e-6, far below the default 0.002
    changes = {"write_threshold": 0.0} if config.algo == "mcpo" else {}
    return jaxpo.default_hparams(config, **changes)


@functools.cache
def compiled(config: Config):
    """``(init(key, hparams), run(state, hparams, updates))`` of ``config``, cheaply jitted."""
    trainer = make_trainer(config)
    return cheap_jit(trainer.init), cheap_jit(trainer.run, static_argnums=2)


@functools.cache
def cnn_run(algo: str, seed: int = 0):
    """One update at a time (one compiled update): ``(states, metrics)``, ``states[u]`` the
    runner state before update ``u + 1`` (``states[0]`` the initial one, ``states[-1]`` the
    final one) and ``metrics`` ``{name: [UPDATES]}``."""
    config = cnn_config(algo)
    hparams = cnn_hparams(config)
    init, run = compiled(config)
    states, metrics = [init(jax.random.key(seed), hparams)], []
    for _ in range(UPDATES):
        result = run(states[-1], hparams, 1)
        states.append(result.state)
        metrics.append(result.metrics)
    joined = {k: np.concatenate([np.asarray(m[k]) for m in metrics]) for k in metrics[0]}
    return states, joined


def conv_kernel(params: dict) -> np.ndarray:
    return np.asarray(params["params"]["torso"]["Conv_0"]["kernel"])


def algo_params():
    return [pytest.param(a, marks=() if a in QUICK else pytest.mark.slow) for a in BUILTIN]


def test_every_registered_algorithm_is_covered():
    assert len(BUILTIN) >= 10 and set(BUILTIN) <= set(ALGORITHMS)
    assert set(QUICK) <= set(BUILTIN) and set(GROUPED) <= set(BUILTIN)


@pytest.mark.parametrize("algo", algo_params())
def test_every_algorithm_trains_a_cnn_with_layer_norm(algo):
    states, metrics = cnn_run(algo)
    first, last = states[0], states[-1]
    for name, value in metrics.items():
        assert value.shape == (UPDATES,), name
        assert np.isfinite(value).all(), name
    # NaN safety saw nothing: no update skipped, no agent failed, no bad observation/reward
    for name in ("update_skipped", "skipped_total", "failed", "env_nonfinite"):
        np.testing.assert_array_equal(metrics[name], 0.0, err_msg=name)
    assert int(last.skipped) == 0 and not bool(last.failed) and int(last.update) == UPDATES
    nets = ("actor", "critic") if ALGORITHMS[algo].collector.critic else ("actor",)
    assert set(last.params) == set(nets)
    for leaf in jax.tree.leaves(last.params):
        assert np.isfinite(leaf).all()
    for net in nets:
        params = last.params[net]["params"]
        assert set(params["MLP_0"]["LayerNorm_0"]) == {"scale", "bias"}, net
        kernel, kernel0 = conv_kernel(last.params[net]), conv_kernel(first.params[net])
        assert kernel.shape == KERNEL, net
        # the gradients reached the convolution: its kernel left its initial values
        change = np.abs(kernel - kernel0).max()
        assert change > 1e-6, f"{net} conv kernel moved by only {change}"


# --------------------------------------------------------------------------- MCPO's memory


def test_mcpo_memory_holds_the_cnn_policies_it_wrote():
    """The memory is the actor's parameter tree, CNN included, stacked over slots: slot 0
    the initial policy, then each written π_old (the parameters before the update that
    wrote it) in the order written, the empty slots still the initial policy."""
    config = cnn_config("mcpo")
    states, metrics = cnn_run("mcpo")
    n = config.memory_size
    actors = [s.params["actor"] for s in states]
    algo_state = states[-1].rule_state["algo"]
    memory = algo_state.memory
    assert jax.tree.structure(memory) == jax.tree.structure(actors[0])
    for slots, leaf in zip(jax.tree.leaves(memory), jax.tree.leaves(actors[0]), strict=True):
        assert slots.shape == (n, *leaf.shape)
    kernels = conv_kernel(memory)
    assert kernels.shape == (n, *KERNEL) == (n, *conv_kernel(actors[0]).shape)

    writes = metrics["memory_write"]
    assert 1 <= writes.sum() < n, writes  # it wrote, and never had to replace a slot
    want = [actors[0]] + [actors[u] for u in range(UPDATES) if writes[u]]
    want += [actors[0]] * (n - len(want))
    for slot, expected in enumerate(want):
        stored = jax.tree.map(lambda m, i=slot: m[i], memory)
        assert_trees_equal(stored, expected, f"slot {slot}")
    np.testing.assert_array_equal(algo_state.filled, np.arange(n) < 1 + writes.sum())
    np.testing.assert_array_equal(metrics["memory_filled"], 1 + np.cumsum(writes))
    # remembered conv kernels other than the initial one
    moved = [np.abs(kernels[s] - conv_kernel(actors[0])).max() for s in range(n)]
    assert max(moved) > 1e-6, moved
    # and the virtual policy the loss saw was built from them: its KL to π_old is finite
    assert np.isfinite(metrics["kl_virtual_old"]).all()


# ------------------------------------------------------------------- checkpoint, eval, render

#: a2c on Breakout has no preset, so the CNN comes from --set alone; 2 seeds x 2 updates
#: of 4 envs x 8 steps, episodes cut at 32 steps (evaluation rolls until every episode ends)
CLI_SETS = [
    "torso=cnn",
    "cnn_channels=4",
    "hidden_sizes=16",
    "layer_norm=true",
    "num_envs=4",
    "num_steps=8",
    "episode_length=32",
]
CLI_TRAIN = ["train", "--algo", "a2c", "--env", ENV, "--seeds", "2", "--total-timesteps", "64"]
CLI_TRAIN += ["--no-progress", *[arg for s in CLI_SETS for arg in ("--set", s)]]
EPISODES = 4
TIME_LIMIT = 32


@pytest.fixture(scope="module")
def cnn_run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "cnn"
    with cheap_compiles():
        assert cli.main([*CLI_TRAIN, "--out", str(out)]) == 0
    return out


def test_cnn_checkpoint_round_trip(cnn_run_dir):
    record = json.loads((cnn_run_dir / checkpoint.RUN_FILE).read_text())["config"]
    assert record["torso"] == "cnn" and record["cnn_channels"] == [4]
    saved = checkpoint.load(cnn_run_dir)
    config = saved.config
    assert (config.algo, config.env_id, config.torso) == ("a2c", ENV, "cnn")
    assert config.cnn_channels == (4,) and config.layer_norm and config.hidden_sizes == (16,)
    assert saved.update == 2 and list(saved.seeds) == [0, 1]
    kernels = conv_kernel(saved.state.params["actor"])
    assert kernels.shape == (1, 2, *KERNEL)
    assert np.abs(kernels[0, 0] - kernels[0, 1]).max() > 1e-6  # two seeds, two networks
    for name, value in saved.metrics.items():
        assert value.shape == (1, 2, 2) and np.isfinite(value).all(), name
    np.testing.assert_array_equal(saved.metrics["update_skipped"], 0.0)
    # the restored parameters are the run's: training the restored config, hparams and
    # seeds again (the same compiled program) gives them bit for bit
    with cheap_compiles():
        again = sweep.run(config, saved.hparams, seeds=saved.seeds)
    assert_trees_equal(saved.state.params, to_numpy(again.state.params), "params")
    np.testing.assert_array_equal(saved.metrics["episode_return"], again.metrics["episode_return"])


def test_cnn_eval_and_render(cnn_run_dir, tmp_path, capsys):
    with cheap_compiles():
        assert cli.main(["eval", str(cnn_run_dir), "--episodes", str(EPISODES)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((cnn_run_dir / "eval.json").read_text())
    assert (report["algo"], report["env_id"], report["update"]) == ("a2c", ENV, 2)
    assert [a["seed"] for a in report["agents"]] == [0, 1]
    for mode in evaluate.MODES:
        assert mode in printed and np.isfinite(report[mode]["mean"])
        for agent in report["agents"]:
            returns = np.asarray(agent[mode]["returns"])
            assert returns.shape == (EPISODES,) and np.isfinite(returns).all()
            # Breakout: +1 per brick, at most one a step, episodes cut at TIME_LIMIT steps
            assert (returns >= 0).all() and (returns <= TIME_LIMIT).all()
            assert returns == pytest.approx(np.round(returns))

    out = tmp_path / "breakout.gif"
    with cheap_compiles():
        assert cli.main(["render", str(cnn_run_dir), "--out", str(out), "--max-steps", "6"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert out.read_bytes()[:4] == b"GIF8"
    with Image.open(out) as gif:
        assert 1 <= gif.n_frames <= 6


@pytest.mark.slow
def test_cnn_run_through_the_command_line(tmp_path):
    """``python -m jaxpo train --set torso=cnn ...``, then ``eval`` and ``render``, each a
    process of its own."""
    run_dir, gif = tmp_path / "cnn", tmp_path / "episode.gif"

    def jaxpo_cli(*args: str) -> str:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jaxpo", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        return finish(proc, timeout=300)

    trained = jaxpo_cli(*CLI_TRAIN, "--out", str(run_dir))
    assert "a2c on gymnax:Breakout-MinAtar, 2 seed(s), 2 updates" in trained
    assert checkpoint.load(run_dir).config.torso == "cnn"
    evaluated = jaxpo_cli("eval", str(run_dir), "--episodes", str(EPISODES))
    report = json.loads((run_dir / "eval.json").read_text())
    for mode in evaluate.MODES:
        assert mode in evaluated and np.isfinite(report[mode]["mean"])
    jaxpo_cli("render", str(run_dir), "--out", str(gif), "--max-steps", "6")
    assert gif.read_bytes()[:4] == b"GIF8"


# --------------------------------------------------------------------------- a user torso


class DenseTanh(nn.Module):
    """A user's torso: the image flattened, one Dense layer, tanh."""

    features: int = 16

    @nn.compact
    def __call__(self, x):
        return nn.tanh(nn.Dense(self.features)(x.reshape(x.shape[0], -1)))


def test_user_torso_checkpoint_round_trip_and_eval(tmp_path):
    config = Config(algo="ppo", env_id=ENV, torso=DenseTanh(16), hidden_sizes=(16,))
    config = config.replace(num_envs=4, num_steps=8, update_epochs=1, num_minibatches=1)
    config = config.replace(total_timesteps=2 * config.batch_size)
    hparams = jaxpo.default_hparams(config)
    hparams = hparams.replace(env_params=envs.with_time_limit(hparams.env_params, TIME_LIMIT))
    with cheap_compiles():
        result = sweep.run(config, sweep.stack(hparams, {}, 1), seeds=[0, 1])
    for name, value in result.metrics.items():
        assert np.isfinite(np.asarray(value)).all(), name
    np.testing.assert_array_equal(result.metrics["update_skipped"], 0.0)
    checkpoint.save(tmp_path, config, result.hparams, result.seeds, result.state, result.metrics)

    record = json.loads((tmp_path / checkpoint.RUN_FILE).read_text())["config"]
    assert record["torso"] == f"module:{DenseTanh.__module__}.DenseTanh"
    # the file names the class only: loading needs an instance of it, of the saved shapes
    with pytest.raises(ValueError, match=r"torso=\.\.\."):
        checkpoint.load(tmp_path)
    with pytest.raises(ValueError, match="got a jaxpo.networks.CNN"):
        checkpoint.load(tmp_path, torso=jaxpo.networks.CNN())
    with pytest.raises(checkpoint.CheckpointError, match="has shape"):
        checkpoint.load(tmp_path, torso=DenseTanh(8))

    saved = checkpoint.load(tmp_path, torso=DenseTanh(16))
    assert saved.config == config and saved.config.torso == DenseTanh(16)
    assert saved.update == 2
    assert_trees_equal(saved.state.params, to_numpy(result.state.params), "params")
    dense = saved.state.params["actor"]["params"]["torso"]["Dense_0"]["kernel"]
    assert dense.shape == (1, 2, 10 * 10 * 4, 16)

    key = jax.random.key(0)
    with cheap_compiles():
        returns = {
            mode: evaluate.evaluate(saved, EPISODES, key, mode == "deterministic")
            for mode in evaluate.MODES
        }
        repeated = evaluate.evaluate(saved, EPISODES, key, deterministic=True)
    for mode, value in returns.items():
        assert value.shape == (2, EPISODES), mode
        assert np.isfinite(value).all() and (value >= 0).all() and (value <= TIME_LIMIT).all()
    np.testing.assert_array_equal(returns["deterministic"], repeated)
