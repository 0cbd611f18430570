"""Tuned starting points: ``get(algo, env_id) -> (Config, HParams)``.

Where no preset exists for a pair, the algorithm's defaults with the generic config for
that env id are returned, so every algorithm runs on every compatible env. An algorithm's
own loop sizes (e.g. A2C's single full-batch step) come from its config section, as in
``Config(algo=...)``; a preset overrides them only where it names them.

``load(path)`` reads the complete settings of one run back from a file: a ``best.json``
(:func:`jaxpo.search.write_best`) or a training run's ``summary.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from . import registry
from .config import Config, config_from_dict, field_names
from .hparams import HParams, specs
from .train import default_hparams
from .validation import validate_config

#: PureJaxRL's classic PPO settings for small discrete-action gymnax tasks.
CLASSIC = dict(
    num_envs=4, num_steps=128, total_timesteps=500_000, update_epochs=4, num_minibatches=4
)

#: TRPO/NPG: large batches (TRPO peaks and slides on CartPole with 16 × 128), one natural
#: step per batch, critic trained by 5 epochs × 8 minibatches of Adam.
TRUST_REGION = dict(
    num_envs=32, num_steps=128, total_timesteps=1_000_000, update_epochs=5, num_minibatches=8
)
TRUST_REGION_PENDULUM = dict(
    TRUST_REGION, num_envs=16, num_steps=256, total_timesteps=2_000_000, anneal_lr=False
)
PENDULUM = dict(gamma=0.95, gae_lambda=0.95, reward_scale=0.1)

#: A2C: one Adam step per short rollout of many envs.
A2C_CLASSIC = dict(
    num_envs=64, num_steps=8, total_timesteps=1_000_000, update_epochs=1, num_minibatches=1
)
#: MDPO: ten full-batch Adam steps per iteration.
MDPO_CLASSIC = dict(
    num_envs=8, num_steps=128, total_timesteps=1_000_000, update_epochs=10, num_minibatches=1
)

#: PPO-KL and MCPO on Pendulum: 10 epochs × 16 minibatches of 16 × 256 steps, no annealing.
PENALTY_PENDULUM = dict(
    TRUST_REGION_PENDULUM, update_epochs=10, num_minibatches=16, total_timesteps=2_000_000
)

#: brax's inverted pendulum (1000-step episodes): 16 × 128 steps, normalised observations,
#: unclipped value loss. PPO's loop (10 epochs × 8 minibatches) is shared by PPO-KL and MCPO,
#: which are slower than PPO: their presets run 2e6 steps (experiments/results/presets_sweep.md).
INVERTED_PENDULUM = dict(
    num_envs=16,
    num_steps=128,
    total_timesteps=1_000_000,
    update_epochs=10,
    num_minibatches=8,
    normalize_obs=True,
    clip_value_loss=False,
)
INVERTED_PENDULUM_2E6 = dict(INVERTED_PENDULUM, total_timesteps=2_000_000)

#: MinAtar (10 x 10 images): PureJaxRL's loop (64 envs x 128 steps, 4 epochs x 8 minibatches,
#: lr 5e-4, entropy 0.01) with the MinAtar paper's network, one 16-channel 3 x 3 convolution
#: and a 128-unit ReLU layer. The MLP it replaced (256, 256 ReLU over the flattened image) is
#: MINATAR_MLP, kept for the comparison in tests/test_learning_minatar.py.
MINATAR_LOOP = dict(
    num_envs=64, num_steps=128, total_timesteps=5_000_000, update_epochs=4, num_minibatches=8
)
MINATAR = dict(
    MINATAR_LOOP, torso="cnn", cnn_channels=(16,), hidden_sizes=(128,), activation="relu"
)
MINATAR_MLP = dict(MINATAR_LOOP, hidden_sizes=(256, 256), activation="relu")
MINATAR_HPARAMS = dict(learning_rate=5e-4, ent_coef=0.01)

#: (algo, env_id) -> (config overrides, hparam overrides). The PPO CartPole/Acrobot/MinAtar
#: entries follow PureJaxRL's classic settings; continuous-control entries use larger batches,
#: observation normalisation and reward scaling.
PRESETS: dict[tuple[str, str], tuple[dict[str, Any], dict[str, float]]] = {
    ("ppo", "gymnax:CartPole-v1"): (CLASSIC, dict(learning_rate=2.5e-4)),
    ("ppo", "gymnax:Acrobot-v1"): (CLASSIC, dict(learning_rate=2.5e-4)),
    **{
        ("ppo", f"gymnax:{game}-MinAtar"): (MINATAR, MINATAR_HPARAMS)
        for game in ("Breakout", "SpaceInvaders", "Asterix")
    },
    ("ppo", "xminigrid:MiniGrid-EmptyRandom-6x6"): (
        dict(CLASSIC, num_envs=16, total_timesteps=200_000),
        dict(learning_rate=2.5e-4),
    ),
    # Jumanji's 2048: tile-merge rewards in the hundreds, hence the reward scale.
    ("ppo", "jumanji:Game2048-v1"): (
        dict(num_envs=64, num_steps=32, total_timesteps=1_048_576),
        dict(learning_rate=1e-3, reward_scale=0.01),
    ),
    ("ppo", "gymnax:Pendulum-v1"): (
        dict(
            num_envs=16,
            num_steps=256,
            total_timesteps=500_000,
            update_epochs=10,
            num_minibatches=16,
            clip_value_loss=False,
            anneal_lr=False,
        ),
        dict(learning_rate=1e-3, gamma=0.95, reward_scale=0.1, ent_coef=0.0),
    ),
    ("ppo", "brax:inverted_pendulum"): (
        INVERTED_PENDULUM,
        dict(learning_rate=3e-4, reward_scale=0.1),
    ),
    ("ppo", "brax:hopper"): (
        dict(
            num_envs=64,
            num_steps=64,
            total_timesteps=10_000_000,
            update_epochs=4,
            num_minibatches=32,
            normalize_obs=True,
            hidden_sizes=(128, 128),
        ),
        dict(learning_rate=3e-4, ent_coef=0.0, reward_scale=0.1, gamma=0.99),
    ),
    ("trpo", "gymnax:CartPole-v1"): (TRUST_REGION, {}),
    ("npg", "gymnax:CartPole-v1"): (TRUST_REGION, {}),
    ("trpo", "gymnax:Pendulum-v1"): (TRUST_REGION_PENDULUM, dict(PENDULUM, max_kl=0.02)),
    ("npg", "gymnax:Pendulum-v1"): (TRUST_REGION_PENDULUM, dict(PENDULUM, step_size=0.02)),
    ("trpo", "brax:inverted_pendulum"): (
        dict(TRUST_REGION, normalize_obs=True, total_timesteps=1_000_000),
        dict(reward_scale=0.1),
    ),
    ("ppo_kl", "gymnax:CartPole-v1"): (CLASSIC, dict(learning_rate=1e-3, kl_target=0.01)),
    ("a2c", "gymnax:CartPole-v1"): (A2C_CLASSIC, dict(learning_rate=2e-3, reward_scale=0.1)),
    ("mdpo", "gymnax:CartPole-v1"): (MDPO_CLASSIC, dict(learning_rate=1e-3)),
    ("mdpo", "gymnax:Pendulum-v1"): (
        dict(MDPO_CLASSIC, num_envs=16, num_steps=256, total_timesteps=2_000_000, anneal_lr=False),
        dict(PENDULUM, learning_rate=3e-3),
    ),
    ("mcpo", "gymnax:CartPole-v1"): (CLASSIC, dict(learning_rate=2e-3, kl_coef=3.0)),
    ("mcpo", "gymnax:Pendulum-v1"): (
        PENALTY_PENDULUM,
        dict(PENDULUM, learning_rate=1e-3, ent_coef=0.0),
    ),
    ("ppo_kl", "gymnax:Pendulum-v1"): (
        PENALTY_PENDULUM,
        dict(PENDULUM, learning_rate=1e-3, ent_coef=0.0),
    ),
    ("ppo_kl", "brax:inverted_pendulum"): (
        INVERTED_PENDULUM_2E6,
        dict(learning_rate=1e-3, reward_scale=0.1, kl_target=0.01),
    ),
    ("mcpo", "brax:inverted_pendulum"): (
        INVERTED_PENDULUM_2E6,
        dict(learning_rate=1e-3, reward_scale=0.1, kl_coef=2.0),
    ),
    ("mdpo", "brax:inverted_pendulum"): (
        dict(INVERTED_PENDULUM_2E6, update_epochs=10, num_minibatches=1),
        dict(learning_rate=1e-3, reward_scale=0.1),
    ),
}
#: Adaptive-PPO starts from PPO's tuned settings (its bandit picks ε among the candidates).
PRESETS.update(
    {
        ("adaptive_ppo", env): PRESETS["ppo", env]
        for env in ("gymnax:CartPole-v1", "gymnax:Acrobot-v1", "gymnax:Pendulum-v1")
    }
)
#: GRPO/TIC-GRPO: the horizon covers a whole episode (Pendulum's are 200 steps; brax's
#: inverted pendulum's up to 1000, in 2 groups × G = 8 to keep 16,000 steps per update).
#: On Pendulum one standardised return per trajectory is a weak signal: 32 groups × G = 8
#: and a large step (51,200 steps per update, 2e-2) reach about −240 by 5e6 steps where the
#: CartPole-sized 4 groups stay near −900 (experiments/results/presets_sweep.md).
GROUPED = {
    "gymnax:Pendulum-v1": (
        dict(num_steps=200, num_envs=256, total_timesteps=5_000_000),
        dict(learning_rate=2e-2),
    ),
    "brax:inverted_pendulum": (dict(num_steps=1000, num_envs=16), {}),
}
PRESETS.update(
    {(algo, env): preset for algo in ("grpo", "tic_grpo") for env, preset in GROUPED.items()}
)


def get(algo: str, env_id: str) -> tuple[Config, HParams]:
    """A (static config, traced hparams) pair for ``algo`` on ``env_id``.

    Raises:
        ValueError: unknown algorithm or env id.
    """
    config_overrides, hparam_overrides = PRESETS.get((algo, env_id), ({}, {}))
    config = Config(algo=algo, env_id=env_id, **config_overrides)
    validate_config(config)
    return config, default_hparams(config, **hparam_overrides)


def describe(algo: str, env_id: str) -> str:
    """What a run of ``algo`` on ``env_id`` uses: its budget, config fields and hparams.

    Every name listed is one that ``--set`` accepts (hparams also ``--grid``, ``--dist`` and
    ``--point``), with the value this preset gives it and, for hparams, the valid range.
    """
    config, hparams = get(algo, env_id)
    source = "a tuned preset" if (algo, env_id) in PRESETS else "the algorithm's defaults"
    lines = [
        f"{algo} on {env_id} ({source}): total_timesteps {config.total_timesteps:,} env steps "
        f"per seed = {config.num_updates} updates x {config.batch_size} "
        f"(num_envs {config.num_envs} x num_steps {config.num_steps})",
        "",
        "config fields (static: --set NAME=VALUE; each value compiles its own program):",
    ]
    lines += [f"  {name} = {value}" for name, value in config.to_dict().items()]
    lines += ["", "hparams (traced: --set, --grid, --dist, --point; sweeps compile once):"]
    lines += [
        f"  {name} = {float(getattr(hparams, name)):g}  in {spec.describe()}  {spec.doc}"
        for name, spec in specs(type(hparams)).items()
    ]
    limit = getattr(hparams.env_params, "max_steps_in_episode", None)
    if limit is not None:
        lines += ["", f"env: episode_length = {int(limit)} (the time limit; --set only)"]
    return "\n".join(lines)


def budgets() -> str:
    """One line per preset, ``algo env_id: total_timesteps``, then the other pairs' budgets."""
    lines = [
        f"  {algo} {env_id}: {Config(algo=algo, env_id=env_id, **loop).total_timesteps:,}"
        for (algo, env_id), (loop, _) in sorted(PRESETS.items())
    ]
    others: dict[int, list[str]] = {}
    for algo in sorted(registry.ALGORITHMS):
        others.setdefault(Config(algo=algo).total_timesteps, []).append(algo)
    return "\n".join(
        lines
        + [
            f"  other pairs: {total:,} ({', '.join(algos)})"
            for total, algos in sorted(others.items())
        ]
    )


#: ``"format"`` of a settings file (``best.json``) and the top-level keys it may have.
SETTINGS_FORMAT = "jaxpo.settings/1"
SETTINGS_KEYS = ("format", "algo", "env_id", "config", "hparams", "env_params", "provenance")


def env_leaves(env_params: Any) -> dict[str, Any]:
    """``{"path/to/leaf": leaf}`` of env params: the names a settings file gives them."""
    return {
        jax.tree_util.keystr(path, simple=True, separator="/"): leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(env_params)
    }


def _leaf(name: str, value: Any, like: Any) -> Any:
    """Stored env param ``value`` in the type (and dtype, shape) of the default ``like``."""
    kind = {bool: (bool,), int: (int,), float: (int, float)}.get(type(like))
    if kind is not None:  # a Python scalar, as gymnax's dataclasses hold them
        if not isinstance(value, kind) or (bool not in kind and isinstance(value, bool)):
            raise ValueError(f"env_params {name}: expected {type(like).__name__}, got {value!r}")
        return type(like)(value)
    like = np.asarray(like)
    try:
        array = np.asarray(value)
    except ValueError:  # a ragged list
        array = np.asarray(None)
    if array.dtype.kind not in "biuf" or array.shape != like.shape:
        raise ValueError(
            f"env_params {name}: expected numbers of shape {like.shape}, got {value!r}"
        )
    cast = array.astype(like.dtype)
    if like.dtype.kind in "biu" and not np.array_equal(cast, array):
        raise ValueError(f"env_params {name}: expected {like.dtype} values, got {value!r}")
    return jax.numpy.asarray(cast)


def _env_params(default: Any, stored: Any) -> Any:
    """The env's ``default`` params with every leaf replaced by its ``stored`` value."""
    if not isinstance(stored, dict):
        raise ValueError(f"env_params must be an object {{name: value}}, got {stored!r}")
    leaves = env_leaves(default)
    missing, unknown = sorted(set(leaves) - set(stored)), sorted(set(stored) - set(leaves))
    if missing or unknown:
        raise ValueError(
            f"env_params: missing {missing}, unknown {unknown}; this env has {list(leaves)}"
        )
    values = [_leaf(name, stored[name], like) for name, like in leaves.items()]
    return jax.tree.unflatten(jax.tree.structure(default), values)


def from_record(record: Any, torso: Any = None) -> tuple[Config, HParams]:
    """The ``(config, hparams)`` of a settings record (what :func:`load` reads from a file).

    The record holds ``algo``, ``env_id``, ``config`` (every field of
    :meth:`Config.to_record`), ``hparams`` (every scalar hparam) and optionally
    ``env_params`` (``{name: value}`` of every leaf of the env's params, see
    :func:`env_leaves`; absent: the env's defaults). With ``"format"`` (a ``best.json``) no
    other top-level key is allowed; without it (a run's ``summary.json``) others are ignored.

    Args:
        record: the parsed JSON.
        torso: the flax module of a config whose torso is a user module (see
            :func:`~jaxpo.config.config_from_dict`).

    Raises:
        ValueError: a missing, unknown or malformed key, field, hparam or env param.
    """
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if "format" in record:
        if record["format"] != SETTINGS_FORMAT:
            raise ValueError(f"format {record['format']!r} is not {SETTINGS_FORMAT!r}")
        unknown = sorted(set(record) - set(SETTINGS_KEYS))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; a settings file has {SETTINGS_KEYS}")
    missing = [key for key in ("algo", "env_id", "config", "hparams") if key not in record]
    if missing:
        hint = " (a sweep's summary.json: write its best member with write_best)"
        raise ValueError(f"missing key(s) {missing}{hint if 'best' in record else ''}")
    fields, values = record["config"], record["hparams"]
    if not isinstance(fields, dict) or not isinstance(values, dict):
        raise ValueError("config and hparams must be JSON objects {name: value}")
    for key in ("algo", "env_id"):
        if fields.get(key) != record[key]:
            raise ValueError(f"{key}={record[key]!r} disagrees with config.{key}")
    try:
        lacking = sorted(set(field_names(record["algo"])) - set(fields))
        if lacking:
            raise ValueError(f"missing field(s) {lacking}")
        config = config_from_dict(fields, torso)
        validate_config(config)
    except (TypeError, ValueError) as err:
        raise ValueError(f"config: {err}") from None
    default = default_hparams(config)
    env_params = default.env_params
    if "env_params" in record:
        env_params = _env_params(env_params, record["env_params"])
    try:
        return config, type(default).create(env_params, **values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"hparams: {err}") from None


def load(path: str | Path, torso: Any = None) -> tuple[Config, HParams]:
    """The ``(config, hparams)`` saved in a settings file: ``best.json`` or ``summary.json``.

    Args:
        path: a ``best.json`` (:func:`jaxpo.search.write_best`: complete settings, env
            params included) or a training run's ``summary.json`` (its env params are the
            env's defaults: a run's ``--set episode_length`` is not in it).
        torso: the flax module of a user torso (a file records only its class name).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file cannot be read, is not JSON, or is malformed (see
            :func:`from_record`); the message names the file and the problem.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        return from_record(record, torso)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as err:
        why = err.strerror if isinstance(err, OSError) else err
        raise ValueError(f"settings file {path}: {why}") from None
