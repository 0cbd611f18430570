"""Shared glue of the natural-gradient family (NPG, TRPO).

One update: (1) the policy takes one natural-gradient step on the whole batch — gradient
``g`` of the surrogate ``E[r·Â]`` at θ_old, direction ``x ≈ F⁻¹g`` by conjugate gradient on
damped Fisher-vector products, then the algorithm's own step along ``x``; (2) the critic is
trained by Adam on ``update_epochs`` × ``num_minibatches`` minibatches of the same batch (its
learning rate is ``hparams.learning_rate``). Advantages are standardised over the whole batch
when ``config.normalize_advantages``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from ..config import Config
from ..hparams import HParams
from ..losses import health
from ..losses.kl import kl_divergence
from ..losses.surrogate import importance_surrogate
from ..losses.value import value_loss
from ..natgrad import (
    CGResult,
    conjugate_gradient,
    make_fisher_vector_product,
    make_kl_hessian_vector_product,
)
from ..networks import Actor, Critic, distribution
from .actor_critic import normalize
from .base import Batch, UpdateRule
from .first_order import make_first_order_rule


@struct.dataclass
class NaturalHParams(HParams):
    """Traced hyperparameters shared by NPG and TRPO.

    ``learning_rate`` and ``max_grad_norm`` (from :class:`~jaxpo.hparams.HParams`) apply to
    the critic's Adam optimiser; the policy moves by natural-gradient steps only.

    Attributes:
        cg_damping: λ added to the Fisher (F + λI) before conjugate gradient, ≥ 0.
    """

    cg_damping: jax.Array

    BOUNDS: ClassVar = {"cg_damping": (0.0, None, True, False)}


#: Defaults shared by NPG and TRPO (``learning_rate`` is the critic's).
NATURAL_DEFAULTS = {
    "learning_rate": 1e-3,
    "gamma": 0.99,
    "gae_lambda": 0.97,
    "max_grad_norm": 0.5,
    "reward_scale": 1.0,
    "cg_damping": 0.1,
}


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


def fisher_samples(config: Config, obs: jax.Array) -> jax.Array:
    """Every ``fisher_subsample``-th time step of every environment's rollout.

    Args:
        config: the run's config (``num_steps``, ``num_envs``, ``fisher_subsample``).
        obs: the batch's observations, flattened time-major, ``[T·B, *obs_shape]``.

    Returns:
        ``[ceil(T/k)·B, *obs_shape]``: all environments are kept, so a large ``k`` thins
        each trajectory rather than dropping whole environments.
    """
    k = config.fisher_subsample
    if k == 1:
        return obs
    by_step = obs.reshape((config.num_steps, config.num_envs) + obs.shape[1:])
    return by_step[::k].reshape((-1,) + obs.shape[1:])


def make_policy_problem(
    config: Config, actor: Actor, params: Any, batch: Batch, damping: jax.Array
) -> PolicyProblem:
    """Gradient, damped Fisher and CG direction of the surrogate at ``params`` (θ_old)."""
    adv = normalize(batch.advantages) if config.normalize_advantages else batch.advantages
    old = jax.lax.stop_gradient(actor.apply(params, batch.obs))

    def surrogate(p: Any) -> tuple[jax.Array, Any]:
        out = actor.apply(p, batch.obs)
        log_prob = distribution(out).log_prob(batch.action)
        return -importance_surrogate(log_prob, batch.log_prob, adv).mean(), out

    (surrogate_old, _), grad = jax.value_and_grad(surrogate, has_aux=True)(params)

    def evaluate(p: Any) -> tuple[jax.Array, jax.Array]:
        value, out = surrogate(p)
        return kl_divergence(old, out).mean(), value - surrogate_old

    fisher_obs = fisher_samples(config, batch.obs)
    make_fvp = (
        make_fisher_vector_product
        if config.fisher_form == "gauss_newton"
        else make_kl_hessian_vector_product
    )
    fvp = make_fvp(lambda p: actor.apply(p, fisher_obs), params, damping)
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
    problem: PolicyProblem, new_params: Any, batch: Batch, actor: Actor
) -> dict[str, jax.Array]:
    """Metrics every natural step reports: sizes, CG residual, ratio health after the step."""
    delta = optax.tree.sub(new_params, problem.params)
    log_ratio = distribution(actor.apply(new_params, batch.obs)).log_prob(batch.action)
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
    config: Config, hparams: NaturalHParams, actor: Actor, critic: Critic, step: PolicyStep
) -> UpdateRule:
    """The family's update rule; ``step`` is the algorithm's move along the CG direction.

    The rule's state is the critic's optimiser state.
    """

    def critic_loss(params: Any, mb: Batch, _: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
        loss = value_loss(critic.apply(params, mb.obs), mb.returns).mean()
        return loss, {"value_loss": loss}

    critic_rule = make_first_order_rule(config, hparams, critic_loss)

    def update(
        params: Any, opt_state: Any, batch: Batch, key: jax.Array
    ) -> tuple[Any, Any, dict[str, jax.Array]]:
        problem = make_policy_problem(config, actor, params["actor"], batch, hparams.cg_damping)
        actor_params, metrics = step(problem, hparams)
        metrics = {**step_metrics(problem, actor_params, batch, actor), **metrics}
        critic_params, opt_state, critic_metrics = critic_rule.update(
            params["critic"], opt_state, batch, key
        )
        metrics["value_loss"] = critic_metrics["value_loss"]
        metrics["grad_norm"] = critic_metrics["grad_norm"]
        return {"actor": actor_params, "critic": critic_params}, opt_state, metrics

    return UpdateRule(init=lambda params: critic_rule.init(params["critic"]), update=update)
