"""Bad inputs give a clear ``ValueError`` naming the field, before anything is traced."""

from __future__ import annotations

import math

import jax
import pytest

import jaxpo
from jaxpo import Config, default_hparams, envs, make_train, sweep
from jaxpo.algos import ALGORITHMS
from jaxpo.hparams import defaults as hparams_defaults
from jaxpo.hparams import validate_hparams
from jaxpo.train import check_action_space
from jaxpo.validation import validate_config

TINY = Config(
    num_envs=2, num_steps=8, total_timesteps=2 * 8 * 2, update_epochs=1, num_minibatches=2
)


@pytest.fixture(scope="module")
def hp():
    return default_hparams(TINY)


@pytest.fixture
def no_tracing(monkeypatch):
    """Makes any attempt to build the update rule (the first step of tracing) fail loudly."""

    def forbidden(*args, **kwargs):
        raise AssertionError("train got past validation and started building the program")

    poisoned = ALGORITHMS["ppo"]._replace(make_update_rule=forbidden)
    monkeypatch.setitem(ALGORITHMS, "ppo", poisoned)


# --------------------------------------------------------------------------- static config


def test_unknown_algorithm():
    with pytest.raises(ValueError, match=r"algo.*'nope'"):
        make_train(Config(algo="nope"))


@pytest.mark.parametrize(
    ("env_id", "pattern"),
    [
        ("gymnax:Nope-v0", r"env_id='gymnax:Nope-v0'"),
        ("foo:bar", r"backend 'foo'.*env_id='foo:bar'"),
        ("CartPole-v1", r"env_id='CartPole-v1'.*backend:name"),
        ("gymnax:", r"env_id='gymnax:'"),
        ("brax:nope", r"env_id='brax:nope'"),
        ("probe:nope", r"env_id='probe:nope'"),
    ],
)
def test_unknown_env_id(env_id, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_train(TINY.replace(env_id=env_id))


def test_num_minibatches_must_divide_batch():
    with pytest.raises(ValueError, match=r"num_minibatches=3.*16"):
        make_train(TINY.replace(num_minibatches=3))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_envs", 0),
        ("num_envs", -2),
        ("num_steps", -1),
        ("num_steps", 0),
        ("total_timesteps", 0),
        ("update_epochs", 0),
        ("num_minibatches", 0),
        ("num_envs", 2.0),
        ("num_envs", True),
    ],
)
def test_non_positive_sizes(field, value):
    with pytest.raises(ValueError, match=rf"{field} must be a positive integer"):
        make_train(TINY.replace(**{field: value}))


def test_total_timesteps_smaller_than_one_batch():
    with pytest.raises(ValueError, match="total_timesteps"):
        make_train(TINY.replace(total_timesteps=15))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("activation", "sigmoid"),
        ("action_mode", "wrap"),
        ("hidden_sizes", ()),
        ("hidden_sizes", (64, 0)),
        ("brax_backend", "nope"),
    ],
)
def test_other_bad_config_fields(field, value):
    with pytest.raises(ValueError, match=field):
        make_train(TINY.replace(**{field: value}))


def test_config_replace_unknown_field():
    with pytest.raises(ValueError, match="unknown_field"):
        TINY.replace(unknown_field=1)


@pytest.mark.parametrize(
    ("field", "owners"),
    [
        ("cg_iters", r"\['npg', 'trpo'\]"),
        ("group_size", r"\['grpo', 'tic_grpo'\]"),
        ("memory_size", r"\['mcpo'\]"),
    ],
)
def test_section_field_of_another_algorithm_is_refused(field, owners):
    with pytest.raises(ValueError, match=rf"{field}.*belongs to the config of {owners}.*'ppo'"):
        TINY.replace(**{field: 3})
    with pytest.raises(ValueError, match=rf"{field}.*belongs"):
        Config(algo="a2c", **{field: 3})


@pytest.mark.parametrize(
    ("algo", "field", "value", "pattern"),
    [
        ("trpo", "cg_iters", 0, "cg_iters must be a positive integer"),
        ("trpo", "fisher_form", "exact", "fisher_form='exact' must be one of"),
        ("npg", "natural_step", "big", "natural_step='big' must be one of"),
        ("mcpo", "memory_replace", "random", "memory_replace='random' must be one of"),
        ("ppo", "advantage", "td", "advantage='td' must be one of"),
        ("adaptive_ppo", "clip_candidates", (), "clip_candidates must be a non-empty"),
    ],
)
def test_bad_section_fields_are_refused_by_their_section(algo, field, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_train(TINY.replace(algo=algo, **{field: value}))


def test_presets_validate_too():
    with pytest.raises(ValueError, match="algo"):
        jaxpo.presets.get("nope", "gymnax:CartPole-v1")
    with pytest.raises(ValueError, match="Nope-v0"):
        jaxpo.presets.get("ppo", "gymnax:Nope-v0")


def test_valid_config_passes():
    validate_config(TINY)
    validate_config(TINY.replace(env_id="gymnax:Pendulum-v1"))


# --------------------------------------------------------------------------- traced hparams


def test_hparams_set_unknown_name(hp):
    with pytest.raises(ValueError, match="unknown"):
        hp.set(unknown=1)
    with pytest.raises(ValueError, match="num_envs"):
        hp.set(num_envs=8)


BAD_HPARAMS = [
    ("learning_rate", -1.0),
    ("learning_rate", math.nan),
    ("learning_rate", math.inf),
    ("clip_eps", 0.0),
    ("clip_eps", -0.1),
    ("gamma", 0.0),
    ("gamma", 1.5),
    ("gamma", math.nan),
    ("gae_lambda", -0.1),
    ("gae_lambda", 1.01),
    ("max_grad_norm", 0.0),
    ("reward_scale", 0.0),
    ("ent_coef", -0.01),
    ("vf_coef", -1.0),
]


@pytest.mark.parametrize(("field", "value"), BAD_HPARAMS)
def test_bad_hparam_in_eager_train(field, value, hp, no_tracing):
    train = make_train(TINY)
    with pytest.raises(ValueError, match=rf"hparam {field}="):
        train(jax.random.key(0), hp.set(**{field: value}))


@pytest.mark.parametrize(
    ("field", "value"),
    [("learning_rate", -1.0), ("learning_rate", math.nan), ("clip_eps", 0.0), ("gamma", 1.5)],
)
def test_bad_hparam_in_sweep_run(field, value, hp, no_tracing):
    with pytest.raises(ValueError, match=rf"hparam {field}="):
        sweep.run(TINY, hp.set(**{field: value}), seeds=1)


def test_bad_hparam_in_one_sweep_member(hp):
    with pytest.raises(ValueError, match="hparam learning_rate="):
        sweep.grid(hp, learning_rate=[1e-3, -1e-3])
    with pytest.raises(ValueError, match="hparam gamma="):
        sweep.grid(hp, gamma=[0.9, 1.5])


def test_boundary_values_are_valid(hp):
    # gamma = 1 and lambda in {0, 1} and learning_rate = 0 are inclusive bounds
    validate_hparams(hp.set(gamma=1.0, gae_lambda=0.0, learning_rate=0.0, ent_coef=0.0))
    validate_hparams(hp.set(gae_lambda=1.0))
    validate_hparams(sweep.grid(hp, gamma=[0.5, 1.0]))


def test_wrong_hparams_class(hp):
    class Other(jaxpo.HParams):
        pass

    other = Other.create(
        hp.env_params,
        learning_rate=1e-3,
        gamma=0.99,
        gae_lambda=0.95,
        max_grad_norm=0.5,
        reward_scale=1.0,
    )
    with pytest.raises(TypeError, match="PPOHParams"):
        make_train(TINY)(jax.random.key(0), other)


def test_hparams_create_unknown_and_missing(hp):
    cls = type(hp)
    with pytest.raises(ValueError, match="bogus"):
        cls.create(hp.env_params, **hparams_defaults(cls), bogus=1.0)
    defaults = hparams_defaults(cls)
    del defaults["clip_eps"]
    with pytest.raises(ValueError, match="clip_eps"):
        cls.create(hp.env_params, **defaults)


# --------------------------------------------------------------------------- action spaces


def fake_algorithm(name, discrete, continuous):
    ppo = ALGORITHMS["ppo"]
    return ppo._replace(name=name, discrete=discrete, continuous=continuous)


def test_continuous_only_algorithm_on_discrete_env():
    algo = fake_algorithm("cont_only", discrete=False, continuous=True)
    with pytest.raises(ValueError, match=r"'cont_only' needs continuous.*CartPole"):
        check_action_space(algo, envs.make("gymnax:CartPole-v1"))
    check_action_space(algo, envs.make("gymnax:Pendulum-v1"))


def test_discrete_only_algorithm_on_continuous_env():
    algo = fake_algorithm("disc_only", discrete=True, continuous=False)
    with pytest.raises(ValueError, match=r"'disc_only' needs discrete.*Pendulum"):
        check_action_space(algo, envs.make("gymnax:Pendulum-v1"))
    check_action_space(algo, envs.make("gymnax:CartPole-v1"))


def test_make_train_checks_action_space(monkeypatch):
    monkeypatch.setitem(ALGORITHMS, "cont_only", fake_algorithm("cont_only", False, True))
    with pytest.raises(ValueError, match=r"'cont_only' needs continuous"):
        make_train(TINY.replace(algo="cont_only"))
