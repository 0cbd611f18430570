"""Shared helper of the rule-level tests: cheap CPU compilation."""

import functools

import jax

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
