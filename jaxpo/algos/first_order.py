"""The first-order update rule: ``update_epochs`` × shuffled minibatches of Adam steps.

The learning rate and the gradient-norm clip are traced: the optax chain is built inside
``train`` from the (possibly traced) hparams, so they are never baked in as constants.
Algorithm state that is neither parameters nor optimiser state (PPO-KL's β, MDPO's iteration
counter, ...) is an :class:`Adaptation`: it is fixed during an update's minibatch steps, seen
by the loss, and advanced once after the update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..batches import Batch
from ..config import Config
from ..hparams import HParams
from .base import LossFn, UpdateRule

#: ``relabel(params, batch) -> batch``: recomputes advantages and targets with the current
#: parameters at the start of every epoch (V-trace's off-policy correction).
Relabel = Callable[[Any, Batch], Batch]


class Adaptation(NamedTuple):
    """Algorithm state carried across updates, beside the optimiser state.

    Attributes:
        init: ``params -> state``.
        prepare: ``(params, state, batch) -> (state, batch)`` before the update (e.g. to
            record π_old's outputs); ``params`` are the pre-update parameters.
        finish: ``(state, old_params, new_params, batch) -> (state, metrics)`` after it.
    """

    init: Callable[[Any], Any]
    prepare: Callable[[Any, Any, Batch], tuple[Any, Batch]]
    finish: Callable[[Any, Any, Any, Batch], tuple[Any, dict[str, jax.Array]]]


#: No algorithm state.
STATELESS = Adaptation(
    init=lambda params: (),
    prepare=lambda params, state, batch: (state, batch),
    finish=lambda state, old, new, batch: (state, {}),
)


def make_optimizer(config: Config, hparams: HParams) -> optax.GradientTransformation:
    """Clip by global norm, then Adam, with a (linearly annealed) traced learning rate."""
    steps_per_update = config.update_epochs * config.num_minibatches

    def learning_rate(count: jax.Array) -> jax.Array:
        if not config.anneal_lr:
            return hparams.learning_rate
        done = (count // steps_per_update).astype(jnp.float32)
        return hparams.learning_rate * (1.0 - done / config.num_updates)

    return optax.chain(
        optax.clip_by_global_norm(hparams.max_grad_norm),
        optax.scale_by_adam(eps=config.adam_eps),
        optax.scale_by_learning_rate(learning_rate),
    )


def shuffled_minibatches(key: jax.Array, batch: Batch, num_minibatches: int) -> Batch:
    """Permutes ``batch`` and splits it into ``[num_minibatches, N / num_minibatches, ...]``."""
    n = batch.action.shape[0]
    perm = jax.random.permutation(key, n)
    return jax.tree.map(
        lambda x: jnp.take(x, perm, axis=0).reshape((num_minibatches, -1) + x.shape[1:]), batch
    )


def make_first_order_rule(
    config: Config,
    hparams: HParams,
    loss_fn: LossFn,
    adaptation: Adaptation = STATELESS,
    relabel: Relabel | None = None,
) -> UpdateRule:
    """Epochs × minibatches of gradient steps on ``loss_fn(params, minibatch, algo_state)``.

    Each epoch reshuffles the batch (its ``shuffleable()`` part, after ``relabel`` if
    one is given). The rule's state is ``{"opt": optimiser state, "algo": algorithm
    state}``. Metrics are the loss function's metrics and the pre-clip gradient norm,
    averaged over every minibatch step of the update, then the adaptation's metrics.
    """
    tx = make_optimizer(config, hparams)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def update(
        params: Any, state: dict[str, Any], batch: Batch, key: jax.Array
    ) -> tuple[Any, dict[str, Any], dict[str, jax.Array]]:
        algo_state, batch = adaptation.prepare(params, state["algo"], batch)

        def minibatch_step(
            carry: tuple[Any, Any], minibatch: Batch
        ) -> tuple[tuple[Any, Any], dict[str, jax.Array]]:
            params, opt_state = carry
            (loss, metrics), grads = grad_fn(params, minibatch, algo_state)
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}
            return (params, opt_state), metrics

        def epoch(carry: tuple[Any, Any], key: jax.Array) -> tuple[tuple[Any, Any], Any]:
            data = batch if relabel is None else relabel(carry[0], batch)
            minibatches = shuffled_minibatches(key, data.shuffleable(), config.num_minibatches)
            return jax.lax.scan(minibatch_step, carry, minibatches)

        keys = jax.random.split(key, config.update_epochs)
        (new_params, opt_state), metrics = jax.lax.scan(epoch, (params, state["opt"]), keys)
        algo_state, algo_metrics = adaptation.finish(algo_state, params, new_params, batch)
        metrics = {**jax.tree.map(jnp.mean, metrics), **algo_metrics}
        return new_params, {"opt": opt_state, "algo": algo_state}, metrics

    return UpdateRule(
        init=lambda params: {"opt": tx.init(params), "algo": adaptation.init(params)},
        update=update,
    )
