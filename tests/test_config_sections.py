"""Each algorithm owns its static config section: defaults, routing of names, validation,
and the method-defining loop sizes with or without a preset."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from rule_helpers import cheap_jit

from jaxpo import Config, default_hparams, make_train, presets
from jaxpo.algos import ALGORITHMS, A2CConfig, GRPOConfig, MCPOConfig, TRPOConfig
from jaxpo.checkpoint import config_from_dict


def adam_steps_per_update(config):
    """Adam steps the first update of ``config`` took, read from the optimiser's count."""
    config = config.replace(total_timesteps=config.batch_size, hidden_sizes=(8,))
    result = cheap_jit(make_train(config))(jax.random.key(0), default_hparams(config))
    counts = [
        int(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(result.state.rule_state)
        if "count" in jax.tree_util.keystr(path)
    ]
    assert counts, "no optimiser step counter found"
    return max(counts)


@pytest.mark.parametrize(("algo", "steps"), [("a2c", 1), ("mdpo", 10), ("ppo", 16)])
def test_config_without_a_preset_runs_the_methods_defining_steps(algo, steps):
    config = Config(algo=algo, num_envs=2, num_steps=8)
    preset, _ = presets.get(algo, "gymnax:Acrobot-v1")  # no preset for this pair
    assert (config.update_epochs, config.num_minibatches) == (
        preset.update_epochs,
        preset.num_minibatches,
    )
    assert config.update_epochs * config.num_minibatches == steps
    assert adam_steps_per_update(config) == steps


def test_explicit_loop_sizes_win_over_the_sections():
    config = Config(algo="a2c", update_epochs=3, num_minibatches=2)
    assert (config.update_epochs, config.num_minibatches) == (3, 2)
    grpo = Config(algo="grpo")
    assert (grpo.num_envs, grpo.num_steps, grpo.update_epochs) == (32, 500, 2)


def test_sections_are_the_algorithms_and_read_as_attributes():
    assert type(Config(algo="a2c").algo_config) is A2CConfig
    assert ALGORITHMS["trpo"].config_cls is TRPOConfig
    config = Config(algo="trpo", cg_iters=15)
    assert config.cg_iters == config.algo_config.cg_iters == 15
    assert config.replace(line_search_steps=3).algo_config == TRPOConfig(
        cg_iters=15, line_search_steps=3
    )
    with pytest.raises(AttributeError, match="no field 'group_size'"):
        _ = config.group_size
    with pytest.raises(ValueError, match="must be a TRPOConfig"):
        Config(algo="trpo", algo_config=MCPOConfig())


def test_configs_stay_hashable_and_equal_by_value():
    a = Config(algo="mcpo", memory_size=3)
    b = Config(algo="mcpo").replace(memory_size=3)
    assert a == b and hash(a) == hash(b)
    assert a != Config(algo="mcpo", memory_size=4)
    assert len({a, b, Config(algo="mcpo")}) == 2


def test_changing_algo_keeps_shared_section_fields_and_resets_the_others():
    vtrace = Config(advantage="vtrace")
    assert vtrace.replace(algo="mdpo").advantage == "vtrace"
    assert vtrace.replace(algo="mdpo").update_epochs == 10  # still at PPO's default: MDPO's
    assert Config(update_epochs=2).replace(algo="a2c").update_epochs == 2  # explicit: kept
    grpo = Config(algo="grpo", group_size=4, num_envs=8)
    assert grpo.replace(algo="tic_grpo").algo_config == GRPOConfig(group_size=4)
    assert grpo.replace(algo="ppo").algo_config.advantage == "gae"


def test_flat_dict_round_trip():
    config = Config(algo="adaptive_ppo", clip_candidates=(0.1, 0.4), num_envs=2)
    flat = config.to_dict()
    assert flat["clip_candidates"] == (0.1, 0.4) and "algo_config" not in flat
    as_json = {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()}
    assert config_from_dict(as_json) == config


def test_unknown_algorithm_is_refused_at_construction():
    with pytest.raises(ValueError, match=r"unknown algorithm algo='nope'.*'ppo'"):
        Config(algo="nope")


def test_hparam_defaults_come_from_the_declarations():
    a2c = default_hparams(Config(algo="a2c"))
    ppo = default_hparams(Config(algo="ppo"))
    tic = default_hparams(Config(algo="tic_grpo"))
    assert np.float32(a2c.learning_rate) == np.float32(7e-4)
    assert np.float32(ppo.learning_rate) == np.float32(2.5e-4)
    assert np.float32(tic.clip_eps_high) == np.float32(0.28)
    assert np.float32(default_hparams(Config(algo="grpo")).clip_eps_high) == np.float32(0.2)


ACTOR_CRITIC = ["ppo", "ppo_kl", "a2c", "mcpo", "adaptive_ppo"]


@pytest.mark.parametrize("algo", ACTOR_CRITIC)
def test_entropy_bonus_default_depends_on_the_action_space(algo):
    """0.01 for categorical policies, 0 for Gaussian ones (on gymnax and brax alike); a given
    value always wins."""
    assert np.float32(default_hparams(Config(algo=algo)).ent_coef) == np.float32(0.01)
    for env_id in ("gymnax:Pendulum-v1", "brax:inverted_pendulum"):
        config = Config(algo=algo, env_id=env_id)
        assert float(default_hparams(config).ent_coef) == 0.0
        assert np.float32(default_hparams(config, ent_coef=0.01).ent_coef) == np.float32(0.01)
