"""Shared helpers of the rule-level tests: cheap CPU compilation and a spy on the loss
function and adaptation an algorithm hands to ``make_first_order_rule``."""

import functools

import jax
import pytest

from jaxpo.algos import actor_critic

_CHEAP_CPU_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
}


def cheap_jit(fn=None, **kwargs):
    """``jax.jit`` with cheap code generation on CPU; usable as a bare decorator."""
    if fn is None:
        return functools.partial(cheap_jit, **kwargs)
    options = _CHEAP_CPU_COMPILE if jax.default_backend() == "cpu" else None
    return jax.jit(fn, compiler_options=options, **kwargs)


def capture_rule_parts(mp: pytest.MonkeyPatch) -> dict:
    """Records (on ``mp``) the ``loss_fn`` and ``adaptation`` an actor-critic algorithm hands
    to ``make_first_order_rule``, in the returned dict once the rule is built."""
    seen = {}
    real = actor_critic.make_first_order_rule

    def spy(config, hparams, loss_fn, adaptation, relabel):
        seen.update(loss_fn=loss_fn, adaptation=adaptation)
        return real(config, hparams, loss_fn, adaptation, relabel)

    mp.setattr(actor_critic, "make_first_order_rule", spy)
    return seen
