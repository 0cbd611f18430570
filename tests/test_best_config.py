"""``best.json``: ``write_best`` then ``presets.load`` gives the same config and hparams (env
params included), ``jaxpo train --config FILE`` trains with them, and malformed files are
refused with the problem named."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpo import checkpoint, cli, envs, presets, sweep
from jaxpo.hparams import scalar_names
from jaxpo.search import write_best

TIME_LIMIT = 123


@pytest.fixture(scope="module")
def base():
    """A tiny PPO CartPole config and hparams with a time limit other than the default."""
    config, hparams = presets.get("ppo", "gymnax:CartPole-v1")
    config = config.replace(
        num_envs=4,
        num_steps=16,
        update_epochs=1,
        num_minibatches=1,
        total_timesteps=256,
        hidden_sizes=(16,),
    )
    hparams = hparams.replace(env_params=envs.with_time_limit(hparams.env_params, TIME_LIMIT))
    return config, hparams


@pytest.fixture(scope="module")
def member(base):
    """Member 1 of a sweep: unbatched, its leaves (env params included) float32/int32 arrays."""
    config, hparams = base
    batch = sweep.points(
        hparams, [{"learning_rate": 1e-3}, {"learning_rate": 3.3e-4, "clip_eps": 0.15}]
    )
    return sweep.member_hparams(batch, 1)


def as_jax(tree):
    """Every leaf as a JAX-default-dtype NumPy array (Python 9.8 and float32 9.8 compare equal)."""
    return [np.asarray(jnp.asarray(leaf)) for leaf in jax.tree.leaves(tree)]


def assert_same_hparams(a, b):
    assert type(a) is type(b)
    for name in scalar_names(type(a)):
        assert np.float32(getattr(a, name)) == np.float32(getattr(b, name)), name
    assert jax.tree.structure(a.env_params) == jax.tree.structure(b.env_params)
    for x, y in zip(as_jax(a.env_params), as_jax(b.env_params), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("which", ["sweep member", "preset"])
def test_write_best_then_load_gives_the_same_settings(base, member, which, tmp_path):
    config, hparams = base
    hparams = member if which == "sweep member" else hparams
    extra = {"method": "ask_tell", "score": np.float64(17.5), "member": np.int64(1)}
    path = write_best(tmp_path / "nested" / "best.json", config, hparams, extra)
    record = json.loads(path.read_text())
    assert record["algo"] == "ppo" and record["env_id"] == "gymnax:CartPole-v1"
    assert record["provenance"] == {"method": "ask_tell", "score": 17.5, "member": 1}
    assert record["hparams"]["clip_eps"] == (0.15 if which == "sweep member" else 0.2)
    assert record["env_params"]["max_steps_in_episode"] == TIME_LIMIT
    assert record["env_params"]["gravity"] == 9.8  # float32 written in its shortest form
    loaded_config, loaded = presets.load(path)
    assert loaded_config == config
    assert_same_hparams(loaded, hparams)
    assert loaded.env_params.max_steps_in_episode == TIME_LIMIT


def test_write_best_refuses_batched_hparams(base, tmp_path):
    config, hparams = base
    with pytest.raises(ValueError, match="member_hparams"):
        write_best(tmp_path / "best.json", config, sweep.stack(hparams, {}, 2))


def test_train_with_config_uses_the_files_settings(base, member, tmp_path, capsys):
    config, _ = base
    path = write_best(tmp_path / "best.json", config, member)
    out = tmp_path / "run"
    argv = ["train", "--config", str(path), "--seeds", "1", "--total-timesteps", "64"]
    assert cli.main([*argv, "--no-progress", "--out", str(out)]) == 0
    record = json.loads(path.read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"] == {**record["config"], "total_timesteps": 64}
    assert summary["hparams"].keys() == record["hparams"].keys()
    for name, value in record["hparams"].items():
        assert np.float32(summary["hparams"][name]) == np.float32(value), name
    saved = checkpoint.load(out)  # the env params it trained with: the file's time limit
    assert int(saved.hparams.env_params.max_steps_in_episode[0]) == TIME_LIMIT
    # a run's summary.json loads too (with the env's default params)
    loaded_config, loaded = presets.load(out / "summary.json")
    assert loaded_config == config.replace(total_timesteps=64)
    assert np.float32(loaded.clip_eps) == np.float32(0.15)


def test_train_config_with_set_applies_on_top(base, member, tmp_path):
    config, _ = base
    path = write_best(tmp_path / "best.json", config, member)
    args = cli.build_parser().parse_args(
        ["train", "--config", str(path), "--set", "gamma=0.9", "--set", "num_envs=2"]
    )
    got_config, got, _ = cli.setup(args)
    assert got_config == config.replace(num_envs=2)
    assert np.float32(got.gamma) == np.float32(0.9)
    assert np.float32(got.clip_eps) == np.float32(0.15)
    assert got.env_params.max_steps_in_episode == TIME_LIMIT


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--algo", "ppo"], "drop --algo"),
        (["--env", "gymnax:Acrobot-v1"], "drop --env"),
        (["--resume", "somewhere"], "drop --config"),
    ],
)
def test_train_config_refuses_algo_env_and_resume(base, member, tmp_path, capsys, extra, message):
    path = write_best(tmp_path / "best.json", base[0], member)
    assert cli.main(["train", "--config", str(path), *extra]) == 2
    assert message in capsys.readouterr().err


def drop(part, name):
    return lambda r: r[part].pop(name) if part else r.pop(name)


def put(part, name, value):
    return lambda r: (r[part] if part else r).__setitem__(name, value)


@pytest.mark.parametrize(
    "damage, message",
    [
        (drop(None, "hparams"), "missing key(s) ['hparams']"),
        (drop("config", "num_envs"), "missing field(s) ['num_envs']"),
        (drop("hparams", "gamma"), "missing hparam(s) ['gamma']"),
        (drop("env_params", "gravity"), "missing ['gravity']"),
        (put(None, "nope", 1), "unknown key(s) ['nope']"),
        (put("config", "nope", 1), "unknown config field 'nope'"),
        (put("hparams", "nope", 1.0), "unknown hparam(s) ['nope']"),
        (put("env_params", "nope", 1.0), "unknown ['nope']"),
        (put("config", "num_envs", "four"), "num_envs"),
        (put("config", "torso", "module:mypkg.Net"), "user module mypkg.Net"),
        (put("hparams", "gamma", 2.0), "gamma=2.0 is out of range"),
        (put("hparams", "learning_rate", "fast"), "hparam learning_rate"),
        (put("env_params", "max_steps_in_episode", 1.5), "max_steps_in_episode"),
        (put(None, "algo", "trpo"), "disagrees with config.algo"),
        (put(None, "format", "other/9"), "format"),
        (put(None, "env_params", None), "env_params must be an object"),
    ],
    ids=lambda value: value if isinstance(value, str) else "damage",
)
def test_malformed_files_are_refused_naming_the_problem(
    base, member, tmp_path, capsys, damage, message
):
    path = write_best(tmp_path / "best.json", base[0], member)
    record = json.loads(path.read_text())
    damage(record)
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="settings file") as err:
        presets.load(path)
    assert message in str(err.value)
    assert cli.main(["train", "--config", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_a_file_that_is_not_json_is_refused(tmp_path, capsys):
    path = tmp_path / "best.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="settings file .*best.json"):
        presets.load(path)
    assert cli.main(["train", "--config", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
