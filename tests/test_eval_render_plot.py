"""``jaxpo eval``, ``jaxpo render`` and ``jaxpo plot`` on tiny training runs.

One CartPole run (with observation normalisation, so that its statistics must be used) is
trained once for the module; its copy with the normaliser folded into the weights covers
runs without one.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import zlib
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from jaxpo import checkpoint, cli, evaluate, plotting, render

#: two updates of 2 envs x 64 steps, one epoch of one minibatch: quick to compile.
TINY = ["--seeds", "2", "--total-timesteps", "256", "--no-progress", "--set", "num_envs=2"]
TINY += ["--set", "num_steps=64", "--set", "update_epochs=1", "--set", "num_minibatches=1"]
TINY += ["--set", "hidden_sizes=16", "--set", "learning_rate=1e-3"]
EPISODES = 8


def train(out: Path, *extra: str) -> str:
    assert cli.main(["train", *TINY, *extra, "--out", str(out)]) == 0
    return str(out)


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory):
    return train(tmp_path_factory.mktemp("runs") / "cartpole", "--set", "normalize_obs=true")


def test_eval_writes_json_and_prints_mean_std(cartpole, capsys):
    assert cli.main(["eval", cartpole, "--episodes", str(EPISODES)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((Path(cartpole) / "eval.json").read_text())
    assert report["normalize_obs"] and report["episodes"] == EPISODES
    assert [a["seed"] for a in report["agents"]] == [0, 1]  # every seed of member 0
    for mode in evaluate.MODES:
        assert mode in printed
        for agent in report["agents"]:
            returns = np.asarray(agent[mode]["returns"])
            assert returns.shape == (EPISODES,) and np.isfinite(returns).all()
            assert (returns >= 1).all() and (returns <= 500).all()  # CartPole: +1 per step
            assert agent[mode]["mean"] == pytest.approx(returns.mean())
            assert f"{agent[mode]['mean']:.1f} ± {agent[mode]['std']:.1f}" in printed
    assert "all" in printed and "eval.json" in printed


def test_deterministic_eval_is_reproducible_per_agent(cartpole):
    saved = checkpoint.load(cartpole)
    key = jax.random.key(3)
    both = evaluate.evaluate(saved, EPISODES, key, deterministic=True)
    assert both.shape == (2, EPISODES)
    np.testing.assert_array_equal(both, evaluate.evaluate(saved, EPISODES, key, True))
    # agents are picked by index and see the same start states whatever the others
    np.testing.assert_array_equal(both[::-1], evaluate.evaluate(saved, EPISODES, key, True, [1, 0]))
    assert not np.array_equal(both, evaluate.evaluate(saved, EPISODES, jax.random.key(4), True))


def fold_normalizer(saved: checkpoint.Checkpoint) -> checkpoint.Checkpoint:
    """The same policies in a run without normalisation: (x - mean) / std folded into the
    first layer (exact up to rounding while no observation reaches the ±10 clip)."""
    stats = saved.state.env_state.stats
    scale = 1.0 / np.sqrt(np.asarray(stats.var, np.float64) + 1e-8)  # [M, S, obs]
    params = jax.tree.map(np.asarray, saved.state.params)
    dense = params["actor"]["params"]["MLP_0"]["Dense_0"]
    kernel = dense["kernel"].astype(np.float64)  # [M, S, obs, hidden]
    shift = np.einsum("msi,msih->msh", np.asarray(stats.mean) * scale, kernel)
    dense["bias"] = (dense["bias"] - shift).astype(np.float32)
    dense["kernel"] = (kernel * scale[..., None]).astype(np.float32)
    config = saved.config.replace(normalize_obs=False)
    return saved._replace(config=config, state=saved.state.replace(params=params))


def test_eval_uses_the_saved_observation_statistics(cartpole):
    saved = checkpoint.load(cartpole)
    key = jax.random.key(0)
    returns = evaluate.evaluate(saved, EPISODES, key, deterministic=True)
    # frozen saved statistics == a plain policy with them folded into its weights
    folded = evaluate.evaluate(fold_normalizer(saved), EPISODES, key, deterministic=True)
    np.testing.assert_array_equal(returns, folded)
    # ... and other statistics act differently
    stats = saved.state.env_state.stats
    identity = stats.replace(mean=np.zeros_like(stats.mean), var=np.ones_like(stats.var))
    env_state = saved.state.env_state.replace(stats=identity)
    unnormalized = saved._replace(state=saved.state.replace(env_state=env_state))
    assert not np.array_equal(returns, evaluate.evaluate(unnormalized, EPISODES, key, True))


def test_eval_bad_agent_and_missing_checkpoint_exit_2(cartpole, tmp_path, capsys):
    assert cli.main(["eval", cartpole, "--agent", "2"]) == 2
    assert "agent index [2] out of range" in capsys.readouterr().err
    assert cli.main(["eval", str(tmp_path / "nope")]) == 2
    assert "no jaxpo checkpoint" in capsys.readouterr().err


def test_render_cartpole_gif(cartpole, tmp_path):
    out = tmp_path / "episode.gif"
    assert cli.main(["render", cartpole, "--out", str(out), "--max-steps", "12"]) == 0
    assert out.read_bytes()[:4] == b"GIF8"
    with Image.open(out) as gif:
        assert 1 < gif.n_frames <= 12


def test_render_needs_a_visualiser_and_the_right_suffix(cartpole, tmp_path, capsys, monkeypatch):
    for env_id in ("probe:constant", "gymnax:DeepSea-bsuite"):
        with pytest.raises(ValueError, match=f"{env_id} has no visualiser"):
            render.check_renderable(env_id, "x.gif")
    assert cli.main(["render", cartpole, "--out", str(tmp_path / "x.html")]) == 2
    assert "renders to a .gif file" in capsys.readouterr().err
    monkeypatch.setattr(render, "GYMNAX_VISUALISED", ("Acrobot-v1",))
    assert cli.main(["render", cartpole, "--out", str(tmp_path / "x.gif")]) == 2
    assert "gymnax:CartPole-v1 has no visualiser" in capsys.readouterr().err
    assert not (tmp_path / "x.gif").exists()


@pytest.mark.slow
def test_render_brax_html(tmp_path):
    run = train(
        tmp_path / "brax",
        *["--env", "brax:inverted_pendulum", "--set", "num_steps=16", "--set", "hidden_sizes=8"],
        *["--total-timesteps", "64", "--seeds", "1"],
    )
    assert checkpoint.load(run).config.normalize_obs  # the preset's; render uses the stats
    out = tmp_path / "episode.html"
    assert cli.main(["render", run, "--out", str(out), "--max-steps", "20"]) == 0
    html = out.read_text()
    assert "brax-viewer" in html
    encoded = re.search(r'var system = "([A-Za-z0-9+/=]+)"', html).group(1)
    system = json.loads(zlib.decompress(base64.b64decode(encoded)))
    assert system["geoms"] and 1 <= len(system["states"]["x"]) <= 20


def test_plot_two_runs(cartpole, tmp_path, capsys):
    other = shutil.copytree(cartpole, tmp_path / "other")
    out = tmp_path / "curves.png"
    assert cli.main(["plot", cartpole, str(other), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as png:
        assert png.width > 0 and png.height > 0
    curves = plotting.read_curves(cartpole)
    assert curves.label == "cartpole (ppo, gymnax:CartPole-v1)"
    assert curves.values.shape[0] == 2 and curves.steps[-1] == 256


def test_plot_missing_dir_or_metric_exits_2(cartpole, tmp_path, capsys):
    out = str(tmp_path / "x.png")
    assert cli.main(["plot", cartpole, str(tmp_path / "nope"), "--out", out]) == 2
    assert "no metrics.csv" in capsys.readouterr().err
    assert cli.main(["plot", cartpole, "--out", out, "--metric", "nope"]) == 2
    assert "no metric 'nope'" in capsys.readouterr().err
