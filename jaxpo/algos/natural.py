"""Shared glue of the natural-gradient family (NPG, TRPO).

One update: (1) the policy takes one natural-gradient step on the whole batch — gradient
``g`` of the surrogate ``E[r·Â]`` at θ_old, direction ``x ≈ F⁻¹g`` by conjugate gradient on
damped Fisher-vector products, then the algorithm's own step along ``x``; (2) the critic is
trained by Adam on ``update_epochs`` × ``num_minibatches`` minibatches of the same batch (its
learning rate is ``hparams.learning_rate``). Advantages are standardised over the whole batch
when ``config.normalize_advantages``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from ..batches import SampleBatch
from ..collect import sample_collector
from ..config import AlgoConfig, Config
from ..hparams import HParams, hparam
from ..losses import health
from ..losses.kl import DistParams, kl_divergence
from ..losses.surrogate import importance_surrogate
from ..losses.value import value_loss
from ..natgrad import (
    CGResult,
    conjugate_gradient,
    make_fisher_vector_product,
    make_kl_hessian_vector_product,
)
from ..networks import Actor, Networks, distribution
from ..recurrence import Sequences
from ..validation import one_of, positive_int
from .actor_critic import normalize
from .base import Algorithm, LossFn, UpdateRule
from .first_order import make_first_order_rule

FISHER_FORMS = ("gauss_newton", "kl_hessian")


@dataclasses.dataclass(frozen=True)
class NaturalConfig(AlgoConfig):
    """Static options shared by NPG and TRPO.

    Attributes:
        cg_iters: conjugate-gradient iterations per natural-gradient step.
        fisher_subsample: compute Fisher-vector products on every k-th time step of each
            environment's rollout.
        fisher_form: ``"gauss_newton"`` (jvp, output Fisher, vjp) or ``"kl_hessian"``
            (Hessian of the mean KL, forward-over-reverse) Fisher-vector products.
    """

    cg_iters: int = 10
    fisher_subsample: int = 1
    fisher_form: str = "gauss_newton"

    def validate(self, config: Config) -> None:
        """Checks the flat batch and the natural-gradient fields."""
        super().validate(config)
        positive_int("cg_iters", self.cg_iters)
        positive_int("fisher_subsample", self.fisher_subsample)
        one_of("fisher_form", self.fisher_form, FISHER_FORMS)
        if self.fisher_subsample > config.num_steps:
            raise ValueError(
                f"fisher_subsample={self.fisher_subsample} exceeds num_steps={config.num_steps}"
            )


@struct.dataclass
class NaturalHParams(HParams):
    """Traced hyperparameters shared by NPG and TRPO.

    ``learning_rate`` and ``max_grad_norm`` apply to the critic's Adam optimiser; the policy
    moves by natural-gradient steps only.
    """

    cg_damping: jax.Array = hparam(
        0.1, "λ added to the Fisher (F + λI) before conjugate gradient", ge=0.0
    )

    DEFAULTS: ClassVar = {"learning_rate": 1e-3, "gae_lambda": 0.97}


class PolicyProblem(NamedTuple):
    """The policy's side of one natural-gradient update, built at θ_old.

    Attributes:
        params: actor parameters θ_old.
        evaluate: ``params -> (mean KL(π_old ‖ π_θ), surrogate improvement over θ_old)``.
        direction: CG's solution ``x ≈ (F + λI)⁻¹ g``.
        curvature: ``xᵀ(F + λI)x``, scalar.
        cg: the conjugate-gradient result (for metrics).
        grad_norm: ‖g‖.
        metrics: surrogate and entropy at θ_old.
    """

    params: Any
    evaluate: Callable[[Any], tuple[jax.Array, jax.Array]]
    direction: Any
    curvature: jax.Array
    cg: CGResult
    grad_norm: jax.Array
    metrics: dict[str, jax.Array]


#: ``(problem, hparams) -> (new actor params, step metrics)``: an algorithm's policy step.
PolicyStep = Callable[[PolicyProblem, Any], tuple[Any, dict[str, jax.Array]]]


def fisher_samples(config: Config, obs: Any) -> Any:
    """Every ``fisher_subsample``-th time step of every environment's rollout.

    Args:
        config: the run's config (``num_steps``, ``num_envs``, ``fisher_subsample``).
        obs: the batch's observations, flattened time-major, ``[T·B, *obs_shape]`` (or a
            ``MaskedObs`` of such arrays).

    Returns:
        ``[ceil(T/k)·B, *obs_shape]``: all environments are kept, so a large ``k`` thins
        each trajectory rather than dropping whole environments.
    """
    k = config.fisher_subsample
    if k == 1:
        return obs

    def thin(x: jax.Array) -> jax.Array:
        by_step = x.reshape((config.num_steps, config.num_envs) + x.shape[1:])
        return by_step[::k].reshape((-1,) + x.shape[1:])

    return jax.tree.map(thin, obs)


def fisher_outputs(config: Config, actor: Actor, obs: Any) -> Callable[[Any], DistParams]:
    """``params -> outputs [N', ...]``: the samples Fisher-vector products average over.

    Feed-forward: the actor on :func:`fisher_samples` of the batch. Recurrent
    (:class:`~jaxpo.recurrence.Sequences` ``[B, T]``): the actor unrolled over the whole
    sequences (each state needs every step before it), then every ``fisher_subsample``-th
    step's output, flattened to ``[B·ceil(T/k), ...]``.
    """
    if not isinstance(obs, Sequences):
        thinned = fisher_samples(config, obs)
        return lambda p: actor.apply(p, thinned)
    k = config.fisher_subsample

    def apply(p: Any) -> DistParams:
        return jax.tree.map(lambda x: x[:, ::k].reshape((-1, *x.shape[2:])), actor.apply(p, obs))

    return apply


def make_natural_loss(config: Config, hparams: NaturalHParams, networks: Networks) -> LossFn:
    """−E[(π_θ/π_old)·Â] on the whole batch: the surrogate whose natural gradient is followed.

    ``Â`` is standardised over the batch when ``config.normalize_advantages``. Only
    ``params["actor"]`` is read; the critic is trained on the plain value loss.
    """

    def loss_fn(params: Any, batch: SampleBatch, _: Any) -> tuple[jax.Array, dict]:
        adv = normalize(batch.advantages) if config.normalize_advantages else batch.advantages
        log_prob = distribution(networks.actor.apply(params["actor"], batch.obs)).log_prob(
            batch.action
        )
        loss = importance_surrogate(log_prob, batch.log_prob, adv).mean()
        return loss, {"policy_loss": loss}

    return loss_fn


def make_policy_problem(
    config: Config,
    networks: Networks,
    loss_fn: LossFn,
    params: Any,
    batch: SampleBatch,
    damping: jax.Array,
) -> PolicyProblem:
    """Gradient, damped Fisher and CG direction of −``loss_fn`` at ``params`` (θ_old)."""
    actor = networks.actor
    old = jax.lax.stop_gradient(actor.apply(params, batch.obs))

    def surrogate(p: Any) -> jax.Array:  # the objective E[r·Â], to be increased
        return -loss_fn({"actor": p}, batch, None)[0]

    surrogate_old, grad = jax.value_and_grad(surrogate)(params)

    def evaluate(p: Any) -> tuple[jax.Array, jax.Array]:
        return kl_divergence(old, actor.apply(p, batch.obs)).mean(), surrogate(p) - surrogate_old

    make_fvp = (
        make_fisher_vector_product
        if config.fisher_form == "gauss_newton"
        else make_kl_hessian_vector_product
    )
    fvp = make_fvp(fisher_outputs(config, actor, batch.obs), params, damping)
    cg = conjugate_gradient(fvp, grad, config.cg_iters)
    grad_norm = optax.tree.norm(grad)
    return PolicyProblem(
        params=params,
        evaluate=evaluate,
        direction=cg.x,
        curvature=optax.tree.vdot(cg.x, fvp(cg.x)),
        cg=cg,
        grad_norm=grad_norm,
        metrics={
            "policy_loss": -surrogate_old,
            "entropy": distribution(old).entropy().mean(),
        },
    )


def kl_step_scale(radius: jax.Array, curvature: jax.Array) -> jax.Array:
    """sqrt(2δ / xᵀFx): the step length whose quadratic KL model equals δ (0 if xᵀFx ≤ 0)."""
    ok = curvature > 0
    return jnp.where(ok, jnp.sqrt(2.0 * radius / jnp.where(ok, curvature, 1.0)), 0.0)


def step_metrics(
    problem: PolicyProblem, new_params: Any, batch: SampleBatch, networks: Networks
) -> dict[str, jax.Array]:
    """Metrics every natural step reports: sizes, CG residual, ratio health after the step."""
    delta = optax.tree.sub(new_params, problem.params)
    log_ratio = distribution(networks.actor.apply(new_params, batch.obs)).log_prob(batch.action)
    log_ratio = log_ratio - batch.log_prob
    return {
        **problem.metrics,
        "step_norm": optax.tree.norm(delta),
        "cg_residual": problem.cg.residual_norm / jnp.maximum(problem.grad_norm, 1e-30),
        "cg_iterations": problem.cg.iterations.astype(jnp.float32),
        "policy_grad_norm": problem.grad_norm,
        "approx_kl": health.approx_kl(log_ratio),
        "ess_frac": health.ess_fraction(log_ratio),
    }


def make_natural_rule(
    config: Config, hparams: NaturalHParams, networks: Networks, step: PolicyStep
) -> UpdateRule:
    """The family's update rule; ``step`` is the algorithm's move along the CG direction.

    The rule's state is the critic's optimiser state.
    """
    critic = networks.critic
    policy_loss = make_natural_loss(config, hparams, networks)

    def critic_loss(params: Any, mb: SampleBatch, _: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
        loss = value_loss(critic.apply(params, mb.obs), mb.returns).mean()
        return loss, {"value_loss": loss}

    critic_rule = make_first_order_rule(config, hparams, critic_loss)

    def update(
        params: Any, opt_state: Any, batch: SampleBatch, key: jax.Array
    ) -> tuple[Any, Any, dict[str, jax.Array]]:
        problem = make_policy_problem(
            config, networks, policy_loss, params["actor"], batch, hparams.cg_damping
        )
        actor_params, metrics = step(problem, hparams)
        metrics = {**step_metrics(problem, actor_params, batch, networks), **metrics}
        critic_params, opt_state, critic_metrics = critic_rule.update(
            params["critic"], opt_state, batch, key
        )
        metrics["value_loss"] = critic_metrics["value_loss"]
        metrics["grad_norm"] = critic_metrics["grad_norm"]
        return {"actor": actor_params, "critic": critic_params}, opt_state, metrics

    return UpdateRule(init=lambda params: critic_rule.init(params["critic"]), update=update)


def natural_algorithm(
    name: str,
    config_cls: type[NaturalConfig],
    hparams_cls: type[NaturalHParams],
    step: Callable[[Config, PolicyProblem, Any], tuple[Any, dict[str, jax.Array]]],
) -> Algorithm:
    """An :class:`~jaxpo.algos.base.Algorithm` of this family from its policy step."""

    def make_update_rule(config: Config, hparams: NaturalHParams, networks: Networks) -> UpdateRule:
        return make_natural_rule(
            config, hparams, networks, lambda problem, hp: step(config, problem, hp)
        )

    return Algorithm(
        name=name,
        config_cls=config_cls,
        hparams_cls=hparams_cls,
        collector=sample_collector(),
        make_loss=make_natural_loss,
        make_update_rule=make_update_rule,
    )
