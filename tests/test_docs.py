"""README tables derived from the code are current, and README examples run as written.

An example is the fenced block right after a ``<!-- example:NAME -->`` marker in README.md:
Python blocks are executed; command lines (``jaxpo ...``) are parsed into the config they
build, and those commented "refused" must exit with status 2.
"""

import json
import re
import shlex
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpo import cli, envs, parser, sweep
from jaxpo.algos import BUILTIN
from jaxpo.algos.docs import hparam_table
from jaxpo.networks import make_networks
from jaxpo.train import make_trainer

README = Path(__file__).resolve().parents[1] / "README.md"


def example(name: str, lang: str = "python") -> str:
    """The fenced ``lang`` block after the marker ``<!-- example:NAME -->``."""
    marker = f"<!-- example:{name} -->\n```{lang}\n"
    text = README.read_text()
    assert text.count(marker) == 1, f"README needs exactly one {marker!r}"
    return text.split(marker, 1)[1].split("```", 1)[0]


def run_example(name: str) -> dict:
    """Executes a Python example; returns its namespace."""
    namespace = {"__name__": f"readme_{name.replace('-', '_')}"}
    exec(compile(example(name), f"README.md:{name}", "exec"), namespace)
    return namespace


def command_lines(name: str) -> list[tuple[list[str], str]]:
    """``(argv after 'jaxpo', comment)`` of each ``jaxpo`` line of a bash example."""
    lines = []
    for line in example(name, "bash").replace("\\\n", " ").splitlines():
        command, _, comment = line.partition("#")
        argv = shlex.split(command)
        if argv and argv[0] == "jaxpo":
            lines.append((argv[1:], comment.strip()))
    return lines


def setup_command(argv: list[str]):
    """``(config, hparams)`` that ``jaxpo train ARGV`` would train, built without training."""
    args = parser.build_parser().parse_args(argv)
    assert args.command == "train"
    config, hparams, _ = cli.setup(args)
    return config, hparams


def apply_networks(config, batch: int = 2):
    """Shapes of the config's actor parameters, logits and values on ``batch`` observations
    (abstract evaluation: the networks are built and traced, not run)."""
    env = envs.make(config.env_id)
    networks = make_networks(config, env)
    obs = jax.ShapeDtypeStruct((batch, *env.observation_shape), jnp.float32)
    key = jax.random.key(0)
    actor_params = jax.eval_shape(networks.actor.init, key, obs)
    critic_params = jax.eval_shape(networks.critic.init, key, obs)
    logits, _ = jax.eval_shape(networks.actor.apply, actor_params, obs)
    values = jax.eval_shape(networks.critic.apply, critic_params, obs)
    return env, actor_params, logits, values


@pytest.fixture
def cheap_compile():
    """XLA's cheap CPU code generation while an example compiles: the same programs, built
    several times faster (what ``rule_helpers.cheap_jit`` does, for every jit inside)."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


def expect_refusal(argv: list[str], message: str, capsys) -> None:
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


# --------------------------------------------------------------------------- tables


def test_readme_hparam_table_is_the_generated_one():
    text = README.read_text()
    match = re.search(r"<!-- hparam-table:start -->\n(.*?)<!-- hparam-table:end -->", text, re.S)
    assert match, "README has no hparam table markers"
    assert match.group(1) == hparam_table(BUILTIN), "regenerate with jaxpo.algos.docs"


def test_table_has_a_row_per_meaning():
    rows = [line for line in hparam_table(BUILTIN).splitlines() if line.startswith("| `")]
    names = [row.split("`")[1] for row in rows]
    # kl_coef means GRPO's k3 weight and MCPO's KL scale: two declarations, two rows
    assert names.count("kl_coef") == 2 and names.count("clip_eps") == 2
    assert names.count("learning_rate") == 1
    learning_rate = rows[names.index("learning_rate")]
    assert "a2c: 0.0007" in learning_rate and "| all |" in learning_rate


# --------------------------------------------------------------------------- examples


def test_readme_add_algorithm_example_runs(cheap_compile):
    from jaxpo.algos import ALGORITHMS

    try:
        namespace = run_example("add-algorithm")
        assert namespace["sweep"].metrics["value_loss"].shape == (2, 2, 5)
        assert namespace["result"].metrics["value_loss"].shape == (5,)
    finally:
        ALGORITHMS.pop("reinforce", None)


def test_readme_networks_example_runs(tmp_path, monkeypatch, cheap_compile):
    monkeypatch.chdir(tmp_path)  # the example writes runs/mine
    ns = run_example("networks")
    mine, out, saved = ns["mine"], ns["out"], ns["saved"]
    # the user torso trained: 2 seeds x 2 updates, finite, its conv weights in the actor
    assert out.metrics["episode_return"].shape == (1, 2, 2)
    for name, value in out.metrics.items():
        assert np.isfinite(value).all(), name
    actor = out.state.params["actor"]["params"]
    assert actor["torso"]["Conv_0"]["kernel"].shape == (1, 2, 3, 3, 4, 8)
    assert "LayerNorm_0" in actor["MLP_0"]
    # the checkpoint names the module; loading needs an instance back
    run = json.loads((tmp_path / "runs/mine/run.json").read_text())
    assert run["config"]["torso"] == "module:readme_networks.Torso"
    assert saved.config == mine and saved.update == 2
    np.testing.assert_array_equal(saved.metrics["episode_return"], out.metrics["episode_return"])
    with pytest.raises(ValueError, match=r"torso=\.\.\."):
        ns["jaxpo"].checkpoint.load("runs/mine")
    # the CNN one-liner: two 3x3 convolutions, 10x10 -> 8x8 -> 6x6 pixels
    env, params, logits, values = apply_networks(ns["cnn"])
    torso = params["params"]["torso"]
    assert torso["Conv_0"]["kernel"].shape == (3, 3, 4, 16)
    assert torso["Conv_1"]["kernel"].shape == (3, 3, 16, 16)
    assert logits.shape == (2, env.action_space.n) and values.shape == (2,)


def test_readme_networks_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (cnn_argv, _), (refused_argv, comment) = command_lines("networks-cli")
    config, _ = setup_command(cnn_argv)
    assert (config.algo, config.env_id, config.torso) == ("ppo", "gymnax:Breakout-MinAtar", "cnn")
    assert config.cnn_channels == (16, 16) and config.cnn_kernels == (3, 3)
    assert config.cnn_strides == (1, 1) and config.layer_norm
    _, params, logits, _ = apply_networks(config)
    assert "Conv_1" in params["params"]["torso"] and logits.shape == (2, 3)
    assert "refused" in comment
    expect_refusal(refused_argv, "torso='cnn' needs image-like observations", capsys)


def test_readme_action_spaces_example_runs(cheap_compile):
    ns = run_example("action-spaces")
    obs = ns["ts"].obs
    assert isinstance(obs, envs.MaskedObs)
    assert obs.obs.shape == (8,) and obs.action_mask.shape == (4,)
    assert obs.action_mask.dtype == jnp.bool_ and bool(obs.action_mask[ns["state"].target])
    assert ns["jaxpo"].envs.make("probe:multidiscrete").action_space == envs.MultiDiscrete((3, 4))
    metrics = {k: np.asarray(v) for k, v in ns["result"].metrics.items()}
    np.testing.assert_array_equal(metrics["illegal_actions"], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(metrics["episode_length"], 8.0)  # no episode cut short
    # normalize_obs normalised the features, and left the mask a bool mask
    last = ns["result"].state.obs
    assert last.action_mask.dtype == jnp.bool_ and last.action_mask.shape == (4, 4)
    assert np.asarray(last.action_mask).any(-1).all()
    assert not np.isin(np.asarray(last.obs), [0.0, 1.0]).all()  # raw features are 0 or 1


def need_suites():
    for suite in envs.SUITES:
        pytest.importorskip(suite, reason=f"the optional suite {suite} is not installed")


def test_readme_suites_example_runs(cheap_compile):
    need_suites()
    ns = run_example("suites")
    env, ts = ns["env"], ns["ts"]
    assert env.action_space == envs.Discrete(100)
    assert int(ns["params"].max_steps_in_episode) == 50
    mask, board = np.asarray(ts.final_obs.action_mask), np.asarray(ts.final_obs.obs[:100])
    assert mask.shape == (100,) and not mask[37] and mask.sum() < 100
    assert board[37] != -1  # row 3, column 7 is revealed
    cleaner = envs.make("jumanji:Cleaner-v0")
    assert cleaner.action_space == envs.MultiDiscrete((4, 4, 4))
    _, first = jax.eval_shape(cleaner.reset, jax.random.key(0), cleaner.default_params())
    assert first.obs.action_mask.shape == (3, 4)
    assert envs.make("xminigrid:MiniGrid-Empty-6x6").observation_shape == (7, 7, 2)
    assert envs.make("craftax:Craftax-Classic-Symbolic-v1").observation_shape == (1345,)


def test_readme_suites_commands(tmp_path, monkeypatch, capsys):
    need_suites()
    monkeypatch.chdir(tmp_path)
    (grid_argv, _), (mines_argv, _), (popgym_argv, comment) = command_lines("suites-cli")
    config, _ = setup_command(grid_argv)
    assert config.env_id == "xminigrid:MiniGrid-Empty-6x6" and config.torso == "cnn"
    assert config.total_timesteps == 200_000
    _, _, logits, _ = apply_networks(config)  # the default CNN takes the 7x7x2 view
    assert logits.shape == (2, 6)
    config, hparams = setup_command(mines_argv)
    assert (config.algo, config.env_id) == ("trpo", "jumanji:Minesweeper-v0")
    assert int(hparams.env_params.max_steps_in_episode) == 50
    assert "refused" in comment
    expect_refusal(popgym_argv, "stable-gymnax", capsys)


def test_readme_recurrent_example_runs(cheap_compile):
    ns = run_example("recurrent")
    carry = ns["out"].state.carry
    assert set(carry) == {"actor", "critic"}
    for h in jax.tree.leaves(carry):
        assert h.shape == (1, 2, 8, 64) and np.abs(np.asarray(h)).max() > 0
    assert np.isfinite(np.asarray(ns["out"].metrics["loss"])).all()


def test_readme_recurrent_commands():
    (gru_argv, _), (lstm_argv, _) = command_lines("recurrent-cli")
    config, _ = setup_command(gru_argv)
    assert (config.env_id, config.cell, config.cell_size) == ("probe:memory", "gru", 32)
    assert config.total_timesteps == 20_000
    config, _ = setup_command(lstm_argv)
    assert (config.algo, config.env_id, config.cell) == ("trpo", "pomdp:CartPole-v1", "lstm")
    assert config.num_envs % config.num_minibatches == 0
    make_trainer(config)  # the static checks pass


def test_readme_search_example_runs(tmp_path, monkeypatch, cheap_compile):
    monkeypatch.chdir(tmp_path)  # the example writes best.json
    ns = run_example("search")
    halved, population, trials = ns["halved"], ns["population"], ns["trials"]
    assert halved.rung_updates.tolist() == [4, 12, 36]
    assert np.bincount(halved.stopped_at).tolist() == [6, 2, 0, 1]  # 9 -> 3 -> 1
    assert population.lineage.scores.shape == (3, 18) and population.finished
    assert [len(p) for p in population.lineage.copies] == [4, 4, 0]  # a quarter of 18
    assert trials.scores.shape == (8,)
    config, hparams = ns["config"], ns["hparams"]
    assert config.eval_interval == 4
    assert float(hparams.learning_rate) == float(trials.best_hparams().learning_rate)


def test_readme_search_commands(tmp_path):
    lines = command_lines("search-cli")
    assert [argv[0] for argv, _ in lines] == ["tune", "tune", "tune", "train"]
    for argv, _ in lines[:3]:
        args = parser.build_parser().parse_args(argv)
        config, hparams, seeds = cli.setup(args)
        members = cli.tune_members(args, hparams)
        options = cli.tune_options(args, tmp_path)
        if args.method == "halving":
            assert config.eval_interval == 36 and sweep.num_members(members) == 27
            assert options["eta"] == 3
        elif args.method == "pbt":
            assert sweep.num_members(members) == 8 and set(options["explore"]) == {
                "learning_rate",
                "ent_coef",
            }
        else:
            assert options["trials_per_generation"] == 16 and options["generations"] == 4
    args = parser.build_parser().parse_args(lines[3][0])
    assert args.config == "runs/halving/best.json" and args.seeds == 8
