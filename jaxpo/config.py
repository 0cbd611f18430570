"""Static configuration: the common ``Config`` and the base of every algorithm's section.

``Config`` holds what every run has (environment, loop sizes, network, training loop) plus
``algo_config``, the section the algorithm owns: a frozen dataclass with that algorithm's
own static fields, defaults and checks (TRPO's ``cg_iters``, GRPO's ``group_size``, ...).
Everything here fixes a shape or the program's control flow; it is frozen and hashable, and
``make_train`` closes over it. Continuous knobs are traced and live in each algorithm's
``HParams`` (see :mod:`jaxpo.hparams`).

A section's fields read as attributes of the config (``config.cg_iters``), and the
constructor and :meth:`Config.replace` route a section field's name to the section
(``Config(algo="trpo", cg_iters=15)``); a name that belongs to another algorithm's section is
refused with the algorithms that have it.

The checks of a whole config (``validate_config`` and its helpers) live in
:mod:`jaxpo.validation`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import flax.linen as nn

from . import envs, registry

ACTIVATIONS = ("tanh", "relu", "gelu", "silu")

#: Prefix of a user torso module's class name in a JSON record of the config.
USER_TORSO = "module:"


def user_torso_record(module: nn.Module) -> str:
    """How a config record names a user torso: ``"module:pkg.Class"`` of its class."""
    kind = type(module)
    return f"{USER_TORSO}{kind.__module__}.{kind.__qualname__}"


#: Loop sizes of a run whose algorithm does not set its own (see ``AlgoConfig.CONFIG_DEFAULTS``).
LOOP_DEFAULTS = MappingProxyType(
    dict(num_envs=4, num_steps=128, total_timesteps=500_000, update_epochs=4, num_minibatches=4)
)


@dataclasses.dataclass(frozen=True)
class AlgoConfig:
    """Base of an algorithm's static config section (it has no fields of its own).

    Subclasses are frozen dataclasses (so the config stays hashable) whose fields are the
    algorithm's static options, and may override :meth:`validate` and ``CONFIG_DEFAULTS``.

    Attributes:
        CONFIG_DEFAULTS: loop sizes that define the method (a subset of
            :data:`LOOP_DEFAULTS`' names, e.g. A2C's one full-batch step), used when the
            ``Config`` does not set them.
    """

    CONFIG_DEFAULTS: ClassVar[Mapping[str, int]] = MappingProxyType({})

    def validate(self, config: Config) -> None:
        """Raises ``ValueError`` naming the field if ``config`` cannot make a valid run.

        The base checks that ``num_minibatches`` divides the flat batch; sections of
        algorithms that train on whole trajectories check their own batch instead.
        """
        if config.batch_size % config.num_minibatches:
            raise ValueError(
                f"num_minibatches={config.num_minibatches} does not divide the batch "
                f"num_envs*num_steps={config.batch_size}"
            )


@dataclasses.dataclass(frozen=True)
class Config:
    """Static settings of a training run (changing any of them recompiles).

    Attributes:
        algo: algorithm name, a key of :data:`jaxpo.algos.ALGORITHMS`.
        env_id: ``backend:name`` environment id. The episode time limit is an env param
            (``hparams.env_params.max_steps_in_episode``), not a config field.
        brax_backend: physics pipeline for ``brax:`` envs.
        num_envs: parallel environments per agent (default: the algorithm's, else 4).
        num_steps: rollout length per update (batch = ``num_envs * num_steps``; default:
            the algorithm's, else 128).
        total_timesteps: env steps per agent; ``num_updates = total // batch`` (default:
            the algorithm's, else 500,000).
        update_epochs: passes over each batch (default: the algorithm's, else 4).
        num_minibatches: minibatches per epoch; must divide the batch (default: the
            algorithm's, else 4).
        hidden_sizes: widths of the actor's and the critic's hidden layers (after the torso).
        activation: hidden-layer activation, one of :data:`ACTIVATIONS`.
        torso: what the actor and the critic (each with its own weights) put before their
            hidden layers: ``"mlp"`` (nothing: observations are flattened), ``"cnn"``
            (convolutions over image observations ``[H, W, C]``), or, from Python, a
            flax module instance mapping ``[B, *obs_shape]`` to ``[B, F]`` (flax modules
            are hashable, so it is part of the static config).
        cnn_channels: output channels of each convolution of ``torso="cnn"``.
        cnn_kernels: square kernel size of each convolution.
        cnn_strides: stride of each convolution.
        layer_norm: LayerNorm after each hidden Dense layer, before its activation.
        cell: a recurrent cell after the hidden layers of the actor and of the critic (each
            its own): ``"none"``, ``"gru"`` or ``"lstm"`` (see :mod:`jaxpo.recurrence`);
            minibatches then split environments, so ``num_minibatches`` must divide
            ``num_envs``.
        cell_size: units of the recurrent cell.
        normalize_obs: normalise observations with running statistics (env state).
        normalize_advantages: standardise advantages per minibatch (PPO) or over the whole
            batch (TRPO, NPG).
        clip_value_loss: clip the value update around the old value by the algorithm's ε
            (algorithms without one, such as TRPO and NPG, train an unclipped critic).
        anneal_lr: decay the learning rate linearly to 0 over the run.
        bootstrap_truncation: bootstrap ``V(final_obs)`` at time-limit truncations (the
            correct choice); ``False`` treats truncation as termination, for ablations.
        action_mode: ``"clip"`` or ``"rescale"`` Gaussian actions into the action box.
        log_std_init: initial log standard deviation of Gaussian policies.
        adam_eps: Adam's epsilon.
        eval_interval: every this many updates (counted from the run's start), each agent
            evaluates its policy inside the program: ``eval_episodes`` greedy episodes
            (the distribution's mode) in environments of its own, with frozen normaliser
            statistics, reported as the ``eval_return``/``eval_length`` metrics (the
            latest evaluation, NaN before the first); 0: never.
        eval_episodes: episodes (parallel environments) per evaluation.
        max_consecutive_skips: an agent whose updates come out non-finite (and are skipped)
            this many times in a row is marked failed and frozen for the rest of the run.
        algo_config: the algorithm's own section (default: its section's defaults).
    """

    algo: str = "ppo"
    env_id: str = "gymnax:CartPole-v1"
    brax_backend: str = envs.DEFAULT_BACKEND
    num_envs: int = None  # type: ignore[assignment]  # resolved in __post_init__
    num_steps: int = None  # type: ignore[assignment]
    total_timesteps: int = None  # type: ignore[assignment]
    update_epochs: int = None  # type: ignore[assignment]
    num_minibatches: int = None  # type: ignore[assignment]
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    torso: Any = "mlp"
    cnn_channels: tuple[int, ...] = (16,)
    cnn_kernels: tuple[int, ...] = (3,)
    cnn_strides: tuple[int, ...] = (1,)
    layer_norm: bool = False
    cell: str = "none"
    cell_size: int = 128
    normalize_obs: bool = False
    normalize_advantages: bool = True
    clip_value_loss: bool = True
    anneal_lr: bool = True
    bootstrap_truncation: bool = True
    action_mode: str = "clip"
    log_std_init: float = 0.0
    adam_eps: float = 1e-5
    eval_interval: int = 0
    eval_episodes: int = 8
    max_consecutive_skips: int = 10
    algo_config: AlgoConfig = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        section_cls = registry.lookup(self.algo).config_cls
        section = self.algo_config if self.algo_config is not None else section_cls()
        if type(section) is not section_cls:
            raise ValueError(
                f"algo_config of algo={self.algo!r} must be a {section_cls.__name__}, "
                f"got {type(section).__name__}"
            )
        object.__setattr__(self, "algo_config", section)
        defaults = {**LOOP_DEFAULTS, **section.CONFIG_DEFAULTS}
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: a field of the algorithm's section.
        section = self.__dict__.get("algo_config")
        if name.startswith("_") or section is None:
            raise AttributeError(name)
        if name in section_fields(type(section)):
            return getattr(section, name)
        raise AttributeError(f"Config of algo={self.algo!r} has no field {name!r}")

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied, section fields routed to ``algo_config``.

        Changing ``algo`` keeps the section fields the new algorithm also has (the others
        take its defaults), and loop sizes still at the old algorithm's defaults take the
        new one's. Unknown names, and names of another algorithm's section, raise
        ``ValueError``.
        """
        algo = changes.get("algo", self.algo)
        common, section = split_fields(algo, changes)
        if algo != self.algo and "algo_config" not in common:
            old = {**LOOP_DEFAULTS, **self.algo_config.CONFIG_DEFAULTS}
            for name, value in old.items():
                if name not in common and getattr(self, name) == value:
                    common[name] = None
            # Section fields the new algorithm also has keep their values.
            shared = set(section_fields(registry.lookup(algo).config_cls))
            kept = {k: v for k, v in vars(self.algo_config).items() if k in shared}
            common["algo_config"] = registry.lookup(algo).config_cls(**kept)
        config = dataclasses.replace(self, **common)
        if section:
            config = dataclasses.replace(
                config, algo_config=dataclasses.replace(config.algo_config, **section)
            )
        return config

    def to_dict(self) -> dict[str, Any]:
        """Every field as a flat ``{name: value}`` dict, the section's fields included."""
        common = {name: getattr(self, name) for name in COMMON_FIELDS}
        section = {
            f.name: getattr(self.algo_config, f.name) for f in dataclasses.fields(self.algo_config)
        }
        return {**common, **section}

    def to_record(self) -> dict[str, Any]:
        """:meth:`to_dict` made JSON-safe: a flax-module torso becomes ``"module:pkg.Class"``.

        A module cannot be rebuilt from that text: whoever loads the record passes it again
        (``checkpoint.load(directory, torso=...)``).
        """
        fields = self.to_dict()
        if isinstance(self.torso, nn.Module):
            fields["torso"] = user_torso_record(self.torso)
        return fields

    @property
    def batch_size(self) -> int:
        """Env steps collected per update, ``num_envs * num_steps``."""
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        """Samples per minibatch."""
        return self.batch_size // self.num_minibatches

    @property
    def num_updates(self) -> int:
        """Number of updates in a run, ``total_timesteps // batch_size``."""
        return self.total_timesteps // self.batch_size


def config_from_dict(fields: Mapping[str, Any], torso: Any = None) -> Config:
    """A :class:`Config` from its flat :meth:`Config.to_record` (JSON turns tuples into lists).

    Args:
        fields: the record.
        torso: the flax module a record with a user torso (``"module:pkg.Class"``) was
            trained with; it must be an instance of that class.

    Raises:
        ValueError: the record names a user torso and ``torso`` is not an instance of it.
    """
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    recorded = fields.get("torso")
    if isinstance(recorded, str) and recorded.startswith(USER_TORSO):
        given = None if torso is None else user_torso_record(torso)
        if given != recorded:
            raise ValueError(
                f"the run's torso is the user module {recorded[len(USER_TORSO) :]}, which a "
                "file cannot hold: pass an instance, e.g. checkpoint.load(directory, torso=...)"
                " or presets.load(path, torso=...)"
                + ("" if given is None else f" (got a {given[len(USER_TORSO) :]})")
            )
        fields["torso"] = torso
    return Config(**fields)


def section_fields(section_cls: type) -> list[str]:
    """Names of a section class's fields."""
    return [f.name for f in dataclasses.fields(section_cls)]


#: Names of the common fields (``algo_config`` excluded).
COMMON_FIELDS = tuple(f.name for f in dataclasses.fields(Config) if f.name != "algo_config")


def owners(name: str) -> list[str]:
    """Registered algorithms whose section has a field ``name``."""
    return [a.name for a in registry.ALGORITHMS.values() if name in section_fields(a.config_cls)]


def field_names(algo: str) -> list[str]:
    """Every name :meth:`Config.replace` accepts for ``algo``: common, then section fields."""
    return list(COMMON_FIELDS) + section_fields(registry.lookup(algo).config_cls)


def field_default(algo: str, name: str) -> Any:
    """The default of config field ``name`` (common, or of ``algo``'s section), for its type."""
    if name in LOOP_DEFAULTS:
        return LOOP_DEFAULTS[name]
    if name in COMMON_FIELDS:
        return Config.__dataclass_fields__[name].default
    section = registry.lookup(algo).config_cls
    if name in section_fields(section):
        return section.__dataclass_fields__[name].default
    raise ValueError(f"unknown config field {name!r}; fields: {field_names(algo)}")


def is_static(name: str) -> bool:
    """Whether ``name`` is a config field of any registered algorithm (a static setting)."""
    return name in COMMON_FIELDS or bool(owners(name))


def split_fields(algo: str, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Splits ``values`` into common fields and fields of ``algo``'s section.

    Raises:
        ValueError: a name that is neither (naming the algorithms whose section has it).
    """
    own = section_fields(registry.lookup(algo).config_cls)
    common = {k: v for k, v in values.items() if k in COMMON_FIELDS or k == "algo_config"}
    section = {k: v for k, v in values.items() if k in own}
    for name in sorted(set(values) - set(common) - set(section)):
        elsewhere = owners(name)
        if elsewhere:
            raise ValueError(
                f"config field {name!r} belongs to the config of {elsewhere}, not of "
                f"algo={algo!r} (its own fields: {own or 'none'})"
            )
        raise ValueError(f"unknown config field {name!r}; fields: {field_names(algo)}")
    return common, section


_dataclass_init = Config.__init__


def _init(self: Config, *args: Any, **kwargs: Any) -> None:
    """``Config(...)``: the dataclass constructor, with section fields routed by name."""
    algo = args[0] if args else kwargs.get("algo", "ppo")
    common, section = split_fields(algo, kwargs)
    _dataclass_init(self, *args, **common)
    if section:
        object.__setattr__(self, "algo_config", dataclasses.replace(self.algo_config, **section))


Config.__init__ = _init  # type: ignore[method-assign]
