"""The first-order update rule: ``update_epochs`` × shuffled minibatches of Adam steps.

The learning rate and the gradient-norm clip are traced: the optax chain is built inside
``train`` from the (possibly traced) hparams, so they are never baked in as constants.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ..config import Config
from ..hparams import HParams
from .base import Batch, UpdateRule

LossFn = Callable[[Any, Batch], tuple[jax.Array, dict[str, jax.Array]]]


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
    n = batch.obs.shape[0]
    perm = jax.random.permutation(key, n)
    return jax.tree.map(
        lambda x: jnp.take(x, perm, axis=0).reshape((num_minibatches, -1) + x.shape[1:]), batch
    )


def make_first_order_rule(config: Config, hparams: HParams, loss_fn: LossFn) -> UpdateRule:
    """Epochs × minibatches of gradient steps on ``loss_fn(params, minibatch)``.

    The rule's state is the optimiser state. Metrics are the loss function's metrics and the
    pre-clip gradient norm, averaged over every minibatch step of the update.
    """
    tx = make_optimizer(config, hparams)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def minibatch_step(
        carry: tuple[Any, Any], minibatch: Batch
    ) -> tuple[tuple[Any, Any], dict[str, jax.Array]]:
        params, opt_state = carry
        (loss, metrics), grads = grad_fn(params, minibatch)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state), {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}

    def epoch(
        carry: tuple[Any, Any, Batch], key: jax.Array
    ) -> tuple[tuple[Any, Any, Batch], dict[str, jax.Array]]:
        params, opt_state, batch = carry
        minibatches = shuffled_minibatches(key, batch, config.num_minibatches)
        (params, opt_state), metrics = jax.lax.scan(
            minibatch_step, (params, opt_state), minibatches
        )
        return (params, opt_state, batch), metrics

    def update(
        params: Any, opt_state: Any, batch: Batch, key: jax.Array
    ) -> tuple[Any, Any, dict[str, jax.Array]]:
        keys = jax.random.split(key, config.update_epochs)
        (params, opt_state, _), metrics = jax.lax.scan(epoch, (params, opt_state, batch), keys)
        return params, opt_state, jax.tree.map(jnp.mean, metrics)

    return UpdateRule(init=tx.init, update=update)
