"""Checkpoint and resume: training in segments with a save and a restore between them equals
one uninterrupted run bit for bit, and the check is sensitive to what the checkpoint holds."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from helpers import tiny_config

from jaxpo import Config, checkpoint, cli, default_hparams, sweep

#: PPO-KL carries β as algorithm state; observation normalisation keeps its running
#: statistics in the env state; the learning rate is annealed from the optimiser's count.
CONFIG = tiny_config("ppo_kl", updates=6, normalize_obs=True)
SEEDS = 2


def leaves_equal(a, b) -> bool:
    return all(
        np.array_equal(x, y, equal_nan=True)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    hparams = default_hparams(CONFIG)
    full = sweep.run(CONFIG, hparams, SEEDS)
    first = sweep.run(CONFIG, hparams, SEEDS, updates=2)
    directory = checkpoint.save(
        tmp_path_factory.mktemp("run"),
        CONFIG,
        first.hparams,
        first.seeds,
        first.state,
        first.metrics,
    )
    restored = checkpoint.load(directory)
    fresh = sweep.run(CONFIG, hparams, SEEDS, updates=0)

    def rest(state):
        return sweep.run(restored.config, restored.hparams, restored.seeds, state=state, updates=4)

    return {
        "full": full,
        "first": first,
        "restored": restored,
        "resumed": rest(restored.state),
        "no_opt": rest(
            restored.state.replace(
                rule_state={**restored.state.rule_state, "opt": fresh.state.rule_state["opt"]}
            )
        ),
        "other_key": rest(restored.state.replace(key=fresh.state.key)),
    }


def test_checkpoint_round_trip(runs):
    restored, first = runs["restored"], runs["first"]
    assert restored.config == CONFIG
    assert restored.update == 2
    np.testing.assert_array_equal(restored.seeds, np.arange(SEEDS))
    assert jax.tree.structure(restored.state) == jax.tree.structure(first.state)
    assert leaves_equal(restored.state, first.state)
    assert leaves_equal(restored.hparams, first.hparams)
    assert leaves_equal(restored.metrics, first.metrics)


def test_segments_equal_one_run_bit_for_bit(runs):
    full, first, resumed = runs["full"], runs["first"], runs["resumed"]
    assert leaves_equal(resumed.state, full.state)
    joined = {k: np.concatenate([first.metrics[k], resumed.metrics[k]], -1) for k in full.metrics}
    assert leaves_equal(joined, full.metrics)
    assert int(np.asarray(resumed.state.update).ravel()[0]) == CONFIG.num_updates


@pytest.mark.parametrize("broken", ["no_opt", "other_key"])
def test_the_equality_needs_the_optimiser_state_and_the_key(runs, broken):
    """Leaving the optimiser state or the key out of the checkpoint breaks the equality."""
    assert not leaves_equal(runs[broken].state.params, runs["full"].state.params)


@pytest.mark.parametrize(
    "config",
    [
        # critic-free: no "critic" in the params; the reference policy is algorithm state
        Config(algo="grpo", num_envs=4, group_size=2, num_steps=8, total_timesteps=64),
        # the bandit's range starts at ±inf
        Config(algo="adaptive_ppo", num_envs=2, num_steps=16, total_timesteps=64),
    ],
    ids=["grpo", "adaptive_ppo"],
)
def test_round_trip_of_other_algorithm_states(tmp_path, config):
    config = config.replace(hidden_sizes=(8,), num_minibatches=2, update_epochs=1)
    first = sweep.run(config, default_hparams(config), SEEDS, updates=1)
    directory = checkpoint.save(
        tmp_path, config, first.hparams, first.seeds, first.state, first.metrics
    )
    restored = checkpoint.load(directory)
    assert jax.tree.structure(restored.state) == jax.tree.structure(first.state)
    assert leaves_equal(restored.state, first.state)


def test_cli_resume_equals_one_run(tmp_path):
    """``jaxpo train --checkpoint-every`` then ``--resume`` with a longer budget writes the
    metrics of one uninterrupted run (without learning-rate annealing, whose schedule follows
    the budget), progress hook compiled in; a resumed run refuses flags that would change it.
    """
    common = ["train", "--seeds", "2", "--set", "num_envs=2", "--set", "anneal_lr=false"]
    common += ["--set", "num_steps=16", "--set", "hidden_sizes=16", "--progress-interval", "2"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert cli.main([*common, "--total-timesteps", "160", "--out", str(whole)]) == 0
    first = [*common, "--total-timesteps", "96", "--checkpoint-every", "3", "--out", str(parts)]
    assert cli.main(first) == 0
    assert checkpoint.load(parts).update == 3
    more = ["train", "--resume", str(parts), "--total-timesteps", "160"]
    assert cli.main([*more, "--progress-interval", "2"]) == 0
    assert (whole / "metrics.csv").read_text() == (parts / "metrics.csv").read_text()
    for flag in (["--set", "learning_rate=1"], ["--seeds", "3"], ["--algo", "a2c"]):
        assert cli.main([*more, *flag]) == 2
