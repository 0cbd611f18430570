"""Static configuration (``Config``) and the checks run on it before anything is traced.

``Config`` holds everything that fixes a shape or the program's control flow; it is frozen
and hashable, and ``make_train`` closes over it. Continuous knobs are traced and live in each
algorithm's ``HParams`` (see :mod:`jaxpo.hparams`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

from . import envs

if TYPE_CHECKING:  # the algorithms import this module
    from .algos.base import Algorithm

ACTIVATIONS = ("tanh", "relu", "gelu", "silu")
FISHER_FORMS = ("gauss_newton", "kl_hessian")
NATURAL_STEPS = ("normalized", "fixed")
MEMORY_REPLACE = ("oldest", "closest")
ADVANTAGES = ("gae", "vtrace")


@dataclasses.dataclass(frozen=True)
class Config:
    """Static settings of a training run (changing any of them recompiles).

    Attributes:
        algo: algorithm name, a key of :data:`jaxpo.algos.ALGORITHMS`.
        env_id: ``backend:name`` environment id.
        brax_backend: physics pipeline for ``brax:`` envs.
        episode_length: time limit of ``brax:`` envs (gymnax envs carry their own). It seeds
            the default env params; the limit a run uses is
            ``hparams.env_params.max_steps_in_episode`` (rebuild hparams with
            ``jaxpo.default_hparams(config)`` after changing it).
        num_envs: parallel environments per agent.
        num_steps: rollout length per update (batch = ``num_envs * num_steps``).
        total_timesteps: env steps per agent; ``num_updates = total // batch``.
        update_epochs: passes over each batch.
        num_minibatches: minibatches per epoch; must divide the batch.
        hidden_sizes: widths of the actor's and the critic's hidden layers.
        activation: hidden-layer activation, one of :data:`ACTIVATIONS`.
        normalize_obs: normalise observations with running statistics (env state).
        normalize_advantages: standardise advantages per minibatch (PPO) or over the whole
            batch (TRPO, NPG).
        clip_value_loss: clip the value update around the old value by ``clip_eps``
            (algorithms without ``clip_eps``, such as TRPO and NPG, train an unclipped critic).
        anneal_lr: decay the learning rate linearly to 0 over the run.
        bootstrap_truncation: bootstrap ``V(final_obs)`` at time-limit truncations (the
            correct choice); ``False`` treats truncation as termination, for ablations.
        action_mode: ``"clip"`` or ``"rescale"`` Gaussian actions into the action box.
        log_std_init: initial log standard deviation of Gaussian policies.
        adam_eps: Adam's epsilon.
        progress_interval: call the progress hook every this many updates (0: never).
        cg_iters: conjugate-gradient iterations per natural-gradient step (TRPO, NPG).
        line_search_steps: candidate step fractions of TRPO's backtracking line search.
        fisher_subsample: compute Fisher-vector products on every k-th time step of each
            environment's rollout (TRPO, NPG).
        fisher_form: ``"gauss_newton"`` (jvp, output Fisher, vjp) or ``"kl_hessian"``
            (Hessian of the mean KL, forward-over-reverse) Fisher-vector products.
        natural_step: NPG's step length: ``"normalized"`` (α = sqrt(2·step_size / xᵀFx)) or
            ``"fixed"`` (α = step_size).
        memory_size: MCPO's number of policy-memory slots N.
        memory_replace: which full slot MCPO overwrites: ``"oldest"`` or ``"closest"`` (the
            smallest KL(π_old ‖ π_i), i.e. the most redundant).
        attention_hidden: width of MCPO's attention MLP.
        attention_steps: Adam steps on the attention network per update (MCPO).
        advantage: the actor-critic family's advantage and value-target estimator,
            ``"gae"`` or ``"vtrace"`` (recomputed with the current parameters at every epoch,
            correcting for how far the policy moved from the one that collected the batch).
        group_size: G, trajectories per group of the grouped algorithms (GRPO, TIC-GRPO):
            ``num_envs = groups × G`` environments, each group reset from one key so its
            trajectories share a start state; ``num_steps`` is the horizon.
        ref_update_interval: GRPO's reference policy (for the k3 KL penalty) becomes the
            current policy every this many updates; 0 keeps the initial policy.
        clip_candidates: the clip values ε Adaptive-PPO's UCB bandit chooses among.
        max_consecutive_skips: an agent whose updates come out non-finite (and are skipped)
            this many times in a row is marked failed and frozen for the rest of the run.
    """

    algo: str = "ppo"
    env_id: str = "gymnax:CartPole-v1"
    brax_backend: str = envs.DEFAULT_BACKEND
    episode_length: int = 1000
    num_envs: int = 4
    num_steps: int = 128
    total_timesteps: int = 500_000
    update_epochs: int = 4
    num_minibatches: int = 4
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    normalize_obs: bool = False
    normalize_advantages: bool = True
    clip_value_loss: bool = True
    anneal_lr: bool = True
    bootstrap_truncation: bool = True
    action_mode: str = "clip"
    log_std_init: float = 0.0
    adam_eps: float = 1e-5
    progress_interval: int = 0
    cg_iters: int = 10
    line_search_steps: int = 10
    fisher_subsample: int = 1
    fisher_form: str = "gauss_newton"
    natural_step: str = "normalized"
    memory_size: int = 5
    memory_replace: str = "oldest"
    attention_hidden: int = 16
    attention_steps: int = 1
    advantage: str = "gae"
    group_size: int = 8
    ref_update_interval: int = 0
    clip_candidates: tuple[float, ...] = (0.1, 0.2, 0.3)
    max_consecutive_skips: int = 10

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied; unknown names raise ``ValueError``."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; fields: {field_names(Config)}")
        return dataclasses.replace(self, **changes)

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


def field_names(cls: type) -> list[str]:
    """Names of a dataclass's fields, in order."""
    return [f.name for f in dataclasses.fields(cls)]


def validate_config(config: Config) -> None:
    """Raises ``ValueError`` naming the field if ``config`` cannot make a valid run."""
    from .algos import ALGORITHMS

    if config.algo not in ALGORITHMS:
        raise ValueError(
            f"unknown algorithm algo={config.algo!r}; choose one of {sorted(ALGORITHMS)}"
        )
    envs.check_env_id(config.env_id)
    if config.brax_backend not in envs.BACKENDS:
        raise ValueError(f"brax_backend={config.brax_backend!r} must be one of {envs.BACKENDS}")
    for name in (
        "num_envs",
        "num_steps",
        "total_timesteps",
        "update_epochs",
        "num_minibatches",
        "episode_length",
        "cg_iters",
        "line_search_steps",
        "fisher_subsample",
        "memory_size",
        "attention_hidden",
        "attention_steps",
        "group_size",
        "max_consecutive_skips",
    ):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name in ("progress_interval", "ref_update_interval"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if not math.isfinite(config.adam_eps) or config.adam_eps <= 0:
        raise ValueError(f"adam_eps must be finite and > 0, got {config.adam_eps!r}")
    if not math.isfinite(config.log_std_init):
        raise ValueError(f"log_std_init must be finite, got {config.log_std_init!r}")
    if not config.hidden_sizes or any(int(h) <= 0 for h in config.hidden_sizes):
        raise ValueError(
            f"hidden_sizes must be non-empty positive widths, got {config.hidden_sizes}"
        )
    if config.activation not in ACTIVATIONS:
        raise ValueError(f"activation={config.activation!r} must be one of {ACTIVATIONS}")
    if config.action_mode not in ("clip", "rescale"):
        raise ValueError(f"action_mode={config.action_mode!r} must be 'clip' or 'rescale'")
    if config.fisher_form not in FISHER_FORMS:
        raise ValueError(f"fisher_form={config.fisher_form!r} must be one of {FISHER_FORMS}")
    if config.natural_step not in NATURAL_STEPS:
        raise ValueError(f"natural_step={config.natural_step!r} must be one of {NATURAL_STEPS}")
    if config.memory_replace not in MEMORY_REPLACE:
        raise ValueError(
            f"memory_replace={config.memory_replace!r} must be one of {MEMORY_REPLACE}"
        )
    if config.advantage not in ADVANTAGES:
        raise ValueError(f"advantage={config.advantage!r} must be one of {ADVANTAGES}")
    if not config.clip_candidates or any(
        not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0
        for eps in config.clip_candidates
    ):
        raise ValueError(
            f"clip_candidates must be a non-empty tuple of finite values > 0, "
            f"got {config.clip_candidates!r}"
        )
    validate_family(config, ALGORITHMS[config.algo])
    if config.fisher_subsample > config.num_steps:
        raise ValueError(
            f"fisher_subsample={config.fisher_subsample} exceeds num_steps={config.num_steps}"
        )
    if config.batch_size % config.num_minibatches and not ALGORITHMS[config.algo].grouped:
        raise ValueError(
            f"num_minibatches={config.num_minibatches} does not divide the batch "
            f"num_envs*num_steps={config.batch_size}"
        )
    if config.num_updates < 1:
        raise ValueError(
            f"total_timesteps={config.total_timesteps} is smaller than one batch "
            f"(num_envs*num_steps={config.batch_size})"
        )


def validate_family(config: Config, algo: Algorithm) -> None:
    """Checks the fields that only some algorithm families accept."""
    from .algos.actor_critic import ActorCriticHParams

    if config.advantage == "vtrace" and not issubclass(algo.hparams_cls, ActorCriticHParams):
        raise ValueError(
            f"advantage='vtrace' needs a first-order actor-critic algorithm (the PPO family); "
            f"algo={config.algo!r} is not one"
        )
    if not algo.grouped:
        return
    if config.group_size < 2:
        raise ValueError(f"group_size must be >= 2 for {config.algo}, got {config.group_size}")
    if config.num_envs % config.group_size:
        raise ValueError(
            f"group_size={config.group_size} does not divide num_envs={config.num_envs} "
            f"(num_envs = groups x group_size for {config.algo})"
        )
    if config.num_envs % config.num_minibatches:
        raise ValueError(
            f"num_minibatches={config.num_minibatches} does not divide the "
            f"num_envs={config.num_envs} trajectories of {config.algo}'s batch"
        )
    if config.normalize_obs:
        raise ValueError(
            f"normalize_obs is not supported by {config.algo}: its environments are reset "
            f"every update, which would reset the running statistics"
        )
