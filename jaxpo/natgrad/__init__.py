"""Natural-gradient numerics on parameter pytrees, all with static loop counts.

- :mod:`.fisher`: Fisher-vector products (Gauss–Newton form via jvp/vjp, and the KL-Hessian
  form as an oracle and fallback).
- :mod:`.cg`: conjugate gradient with a fixed number of iterations.
- :mod:`.line_search`: masked backtracking line search.
"""

from .cg import CGResult, conjugate_gradient
from .fisher import (
    categorical_fisher,
    fisher_vector_product,
    gaussian_fisher,
    kl_hessian_vector_product,
    make_fisher_vector_product,
    make_kl_hessian_vector_product,
    output_fisher,
)
from .line_search import LineSearchResult, backtracking_line_search

__all__ = [
    "CGResult",
    "LineSearchResult",
    "backtracking_line_search",
    "categorical_fisher",
    "conjugate_gradient",
    "fisher_vector_product",
    "gaussian_fisher",
    "kl_hessian_vector_product",
    "make_fisher_vector_product",
    "make_kl_hessian_vector_product",
    "output_fisher",
]
