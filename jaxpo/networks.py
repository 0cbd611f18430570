"""Actor and critic MLPs (flax) with distrax heads.

Weights use orthogonal initialisation. Under ``vmap`` a plain orthogonal initializer becomes
one batched LAPACK QR, which can deadlock jaxlib's CPU thread pool on 2-core machines; here
each QR is wrapped in :func:`jax.custom_batching.sequential_vmap`, so a sweep initialises its
members one QR at a time (a negligible one-off cost).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from . import envs

Initializer = Callable[[jax.Array, Sequence[int], Any], jax.Array]


def orthogonal(scale: float) -> Initializer:
    """Orthogonal initializer whose QR stays unbatched under ``vmap``."""
    base = nn.initializers.orthogonal(scale)

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.custom_batching.sequential_vmap(lambda k: base(k, shape, dtype))(key)

    return init


_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu, "silu": nn.silu}


class MLP(nn.Module):
    """Hidden layers then a linear output; inputs ``[..., *obs_shape]`` are flattened."""

    hidden_sizes: tuple[int, ...]
    out_size: int
    activation: str
    out_scale: float
    obs_ndim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``[..., *obs_shape]`` to ``[..., out_size]``."""
        x = x.reshape(x.shape[: x.ndim - self.obs_ndim] + (-1,))
        act = _ACTIVATIONS[self.activation]
        for width in self.hidden_sizes:
            x = act(nn.Dense(width, kernel_init=orthogonal(2**0.5))(x))
        return nn.Dense(self.out_size, kernel_init=orthogonal(self.out_scale))(x)


class Actor(nn.Module):
    """Policy network: categorical logits, or a diagonal Gaussian with state-independent log-std.

    ``__call__`` returns ``(mean_or_logits, log_std)`` (log_std is
    ``None`` for discrete actions); :func:`distribution` turns that into a distrax object.
    """

    hidden_sizes: tuple[int, ...]
    action_dim: int
    discrete: bool
    activation: str
    obs_ndim: int
    log_std_init: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """Distribution parameters for observations ``[..., *obs_shape]``."""
        out = MLP(self.hidden_sizes, self.action_dim, self.activation, 0.01, self.obs_ndim)(obs)
        if self.discrete:
            return out, None
        log_std = self.param(
            "log_std", nn.initializers.constant(self.log_std_init), (self.action_dim,)
        )
        return out, jnp.broadcast_to(log_std, out.shape)


class Critic(nn.Module):
    """State-value network ``V(s)``: ``[..., *obs_shape] -> [...]``."""

    hidden_sizes: tuple[int, ...]
    activation: str
    obs_ndim: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        """Values of observations ``[..., *obs_shape]``."""
        return MLP(self.hidden_sizes, 1, self.activation, 1.0, self.obs_ndim)(obs)[..., 0]


def distribution(dist_params: tuple[jax.Array, jax.Array | None]) -> distrax.Distribution:
    """A distrax distribution from an :class:`Actor`'s output.

    The diagonal Gaussian is ``Independent(Normal)`` rather than ``MultivariateNormalDiag``:
    the same density, but the latter's bijector machinery made the PPO program on
    Pendulum-v1 take 3.7x longer to compile here (35 s vs 9.5 s).
    """
    loc, log_std = dist_params
    if log_std is None:
        return distrax.Categorical(logits=loc)
    return distrax.Independent(distrax.Normal(loc, jnp.exp(log_std)), reinterpreted_batch_ndims=1)


class Networks(NamedTuple):
    """The modules of a run: the policy and, for algorithms with a critic, the value network."""

    actor: Actor
    critic: Critic | None


def make_networks(config: Any, env: envs.Environment, critic: bool = True) -> Networks:
    """The actor (and critic, unless ``critic=False``) a config asks for on ``env``."""
    space = env.action_space
    discrete = isinstance(space, envs.Discrete)
    obs_ndim = len(env.observation_shape)
    actor = Actor(
        hidden_sizes=tuple(config.hidden_sizes),
        action_dim=space.n if discrete else space.shape[0],
        discrete=discrete,
        activation=config.activation,
        obs_ndim=obs_ndim,
        log_std_init=config.log_std_init,
    )
    value = Critic(tuple(config.hidden_sizes), config.activation, obs_ndim) if critic else None
    return Networks(actor, value)
