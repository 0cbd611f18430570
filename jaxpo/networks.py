"""Actor and critic networks (flax): an optional torso (a CNN, or a user's module), then an MLP.

The actor's output is a policy output of :mod:`jaxpo.distributions` (categorical logits,
with masked and padding actions at ``MASKED_LOGIT``; a product of categoricals; or a
diagonal Gaussian); :func:`distribution` turns it into a distrax object.

Weights use orthogonal initialisation. Under ``vmap`` a plain orthogonal initializer becomes
one batched LAPACK QR, which can deadlock jaxlib's CPU thread pool on 2-core machines; here
each QR is wrapped in :func:`jax.custom_batching.sequential_vmap`, so a sweep initialises its
members one QR at a time (a negligible one-off cost).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from . import envs
from .distributions import FACTORED, DistParams, distribution, mask_logits
from .recurrence import Recurrence, sequence_inputs

__all__ = [
    "CNN",
    "MLP",
    "TORSOS",
    "Actor",
    "Critic",
    "Networks",
    "distribution",
    "factor_logits",
    "make_networks",
    "make_torso",
    "is_recurrent",
    "orthogonal",
]

Initializer = Callable[[jax.Array, Sequence[int], Any], jax.Array]


def orthogonal(scale: float) -> Initializer:
    """Orthogonal initializer whose QR stays unbatched under ``vmap``."""
    base = nn.initializers.orthogonal(scale)

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.custom_batching.sequential_vmap(lambda k: base(k, shape, dtype))(key)

    return init


_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu, "silu": nn.silu}

#: Network torsos chosen by name (``Config.torso``); a flax module instance is the third kind.
TORSOS = ("mlp", "cnn")


class Conv(nn.Module):
    """A ``VALID`` convolution ``[B, H, W, C] -> [B, H', W', F]`` as patches times a matrix.

    The same parameters (``kernel [k, k, C, F]``, ``bias [F]``) and values as ``nn.Conv``,
    computed as one matrix product over the image's ``k x k`` patches. Under ``vmap`` over
    agents (a sweep, several seeds) ``nn.Conv`` becomes a grouped convolution, which XLA's
    CPU backend runs about 20x slower than the batched matrix product this is
    (``benchmarks/throughput.py --envs minatar``).
    """

    features: int
    kernel: int
    stride: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``[B, H, W, C]`` to ``[B, (H - k) // s + 1, (W - k) // s + 1, F]``."""
        k, s, channels = self.kernel, self.stride, x.shape[-1]
        w = self.param("kernel", orthogonal(2**0.5), (k, k, channels, self.features))
        b = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        rows, cols = (x.shape[1] - k) // s + 1, (x.shape[2] - k) // s + 1
        patches = jnp.stack(
            [
                x[:, i : i + s * (rows - 1) + 1 : s, j : j + s * (cols - 1) + 1 : s, :]
                for i in range(k)
                for j in range(k)
            ],
            axis=-2,
        )  # [B, rows, cols, k * k, C], patch offsets in (i, j) order as the kernel's axes
        return jnp.einsum("brqpc,pcf->brqf", patches, w.reshape(k * k, channels, -1)) + b


class CNN(nn.Module):
    """Convolutions (``VALID`` padding, ReLU) over images ``[B, H, W, C]``, flattened to ``[B, F]``.

    The default is MinAtar's small network: one 3×3 convolution with 16 channels, stride 1
    (Young & Tian 2019), followed in the policy and value networks by their MLP layers.
    """

    channels: tuple[int, ...] = (16,)
    kernels: tuple[int, ...] = (3,)
    strides: tuple[int, ...] = (1,)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``[B, H, W, C]`` to ``[B, F]``."""
        layers = zip(self.channels, self.kernels, self.strides, strict=True)
        for i, (width, kernel, stride) in enumerate(layers):
            x = nn.relu(Conv(width, kernel, stride, name=f"Conv_{i}")(x))
        return x.reshape(x.shape[0], -1)


class MLP(nn.Module):
    """An optional torso, hidden layers, an optional recurrent cell, then a linear output.

    Without a torso, inputs ``[..., *obs_shape]`` are flattened. A torso (a flax module)
    maps observations ``[B, *obs_shape]`` with one batch axis to features ``[B, F]``;
    leading batch axes are folded into one around it. With ``layer_norm`` each hidden
    layer is ``act(LayerNorm(Dense(x)))``. With a ``cell`` (see :mod:`jaxpo.recurrence`)
    the inputs are sequences ``[B, T, *obs_shape]`` and ``recurrent`` is ``(start [B, T],
    carry [B, ...])``; the output is then ``(out [B, T, out_size], states [B, T, ...])``.
    """

    hidden_sizes: tuple[int, ...]
    out_size: int
    activation: str
    out_scale: float
    obs_ndim: int
    torso: Any = None
    layer_norm: bool = False
    cell: str = "none"
    cell_size: int = 128

    @nn.compact
    def __call__(self, x: jax.Array, recurrent: tuple[jax.Array, Any] | None = None) -> Any:
        """Maps ``[..., *obs_shape]`` to ``[..., out_size]`` (and states, with a cell)."""
        batch, obs_shape = x.shape[: x.ndim - self.obs_ndim], x.shape[x.ndim - self.obs_ndim :]
        if self.torso is not None:
            x = self.torso(x.reshape((-1, *obs_shape)))
        x = x.reshape((*batch, -1))
        act = _ACTIVATIONS[self.activation]
        for width in self.hidden_sizes:
            x = nn.Dense(width, kernel_init=orthogonal(2**0.5))(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        if self.cell == "none":
            return nn.Dense(self.out_size, kernel_init=orthogonal(self.out_scale))(x)
        core = Recurrence(self.cell, self.cell_size, orthogonal(1.0), orthogonal(1.0))
        x, states = core(x, *recurrent)
        return nn.Dense(self.out_size, kernel_init=orthogonal(self.out_scale))(x), states


def factor_logits(flat: jax.Array, nvec: tuple[int, ...]) -> jax.Array:
    """Splits logits ``[..., sum(nvec)]`` into ``[..., K, max(nvec)]``, padded with MASKED_LOGIT."""
    width = max(nvec)
    starts = np.cumsum((0, *nvec[:-1]))
    index = starts[:, None] + np.arange(width)[None, :]
    valid = np.arange(width)[None, :] < np.asarray(nvec)[:, None]
    return mask_logits(flat[..., np.where(valid, index, 0)], jnp.asarray(valid))


def head(module: Any, obs: Any, out_size: int, out_scale: float) -> tuple[Any, jax.Array]:
    """The :class:`MLP` of an actor or critic ``module`` (called inside its ``__call__``).

    Returns ``(observations, outputs [..., out_size])``: a recurrent module's input
    ``Sequences`` unwrapped to its observations, and the states after each step sown in the
    ``"recurrent"`` collection.
    """
    obs, recurrent = sequence_inputs(obs, module.NAME, module.cell)
    mlp = MLP(
        module.hidden_sizes,
        out_size,
        module.activation,
        out_scale,
        module.obs_ndim,
        module.torso,
        module.layer_norm,
        module.cell,
        module.cell_size,
    )
    out = mlp(envs.features(obs), recurrent)
    if recurrent is not None:
        out, states = out
        module.sow("recurrent", "states", states)
    return obs, out


class Actor(nn.Module):
    """Policy network: categorical logits (one, or one per factor), or a diagonal Gaussian.

    ``__call__`` returns a policy output (see :mod:`jaxpo.distributions`):
    ``(logits, None)``, ``(logits [..., K, A], FACTORED)`` when ``factors`` (a
    ``MultiDiscrete``'s ``nvec``) is set, or ``(mean, log_std)`` with a state-independent
    log-std. A :class:`~jaxpo.envs.MaskedObs` input masks the illegal actions' logits. With
    a ``cell`` the input is :class:`~jaxpo.recurrence.Sequences` (outputs ``[B, T, ...]``)
    and the states after each step are sown in the ``"recurrent"`` collection (see
    :func:`unroll`).
    """

    NAME: ClassVar[str] = "actor"

    hidden_sizes: tuple[int, ...]
    action_dim: int
    discrete: bool
    activation: str
    obs_ndim: int
    log_std_init: float = 0.0
    factors: tuple[int, ...] = ()
    torso: Any = None
    layer_norm: bool = False
    cell: str = "none"
    cell_size: int = 128

    @nn.compact
    def __call__(self, obs: Any) -> DistParams:
        """Distribution parameters for observations ``[..., *obs_shape]`` (or ``MaskedObs``)."""
        size = sum(self.factors) if self.factors else self.action_dim
        obs, out = head(self, obs, size, 0.01)
        mask = obs.action_mask if isinstance(obs, envs.MaskedObs) else None
        if self.factors:
            return mask_logits(factor_logits(out, self.factors), mask), FACTORED
        if self.discrete:
            return mask_logits(out, mask), None
        log_std = self.param(
            "log_std", nn.initializers.constant(self.log_std_init), (self.action_dim,)
        )
        return out, jnp.broadcast_to(log_std, out.shape)


class Critic(nn.Module):
    """State-value network ``V(s)``: ``[..., *obs_shape] -> [...]`` (a mask is ignored).

    With a ``cell``, as :class:`Actor`: ``Sequences`` in, values ``[B, T]`` out, states sown.
    """

    NAME: ClassVar[str] = "critic"

    hidden_sizes: tuple[int, ...]
    activation: str
    obs_ndim: int
    torso: Any = None
    layer_norm: bool = False
    cell: str = "none"
    cell_size: int = 128

    @nn.compact
    def __call__(self, obs: Any) -> jax.Array:
        """Values of observations ``[..., *obs_shape]``."""
        return head(self, obs, 1, 1.0)[1][..., 0]


class Networks(NamedTuple):
    """The modules of a run: the policy and, for algorithms with a critic, the value network."""

    actor: Actor
    critic: Critic | None


def is_recurrent(networks: Networks) -> bool:
    """Whether the run's networks carry a recurrent state."""
    return networks.actor.cell != "none"


def make_torso(config: Any, env: envs.Environment) -> nn.Module | None:
    """The torso ``config.torso`` names on ``env`` (``None`` for the plain MLP).

    Raises:
        ValueError: a CNN on observations that are not images ``[H, W, C]``, or whose
            kernels and strides leave no pixel of them.
    """
    if isinstance(config.torso, nn.Module):
        return config.torso
    if config.torso == "mlp":
        return None
    if len(env.observation_shape) != 3:
        raise ValueError(
            f"torso='cnn' needs image-like observations [H, W, C]; {env.name} gives "
            f"{list(env.observation_shape)} (use torso='mlp')"
        )
    height, width = env.observation_shape[:2]
    sizes = zip(config.cnn_kernels, config.cnn_strides, strict=True)  # validate_config: same length
    for layer, (kernel, stride) in enumerate(sizes):
        if min(height, width) < kernel:
            raise ValueError(
                f"the CNN's layer {layer} has kernel {kernel} but {env.name}'s images are "
                f"{height}x{width} by then (VALID padding); use smaller cnn_kernels or "
                "cnn_strides, or fewer layers"
            )
        height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
    return CNN(tuple(config.cnn_channels), tuple(config.cnn_kernels), tuple(config.cnn_strides))


def make_networks(config: Any, env: envs.Environment, critic: bool = True) -> Networks:
    """The actor (and critic, unless ``critic=False``) a config asks for on ``env``."""
    space = env.action_space
    obs_ndim = len(env.observation_shape)
    torso = make_torso(config, env)
    factors = tuple(space.nvec) if isinstance(space, envs.MultiDiscrete) else ()
    action_dim = space.n if isinstance(space, envs.Discrete) else space.shape[0]
    actor = Actor(
        hidden_sizes=tuple(config.hidden_sizes),
        action_dim=max(factors) if factors else action_dim,
        discrete=env.is_discrete,
        activation=config.activation,
        obs_ndim=obs_ndim,
        log_std_init=config.log_std_init,
        factors=factors,
        torso=torso,
        layer_norm=config.layer_norm,
        cell=config.cell,
        cell_size=config.cell_size,
    )
    sizes, recurrent = tuple(config.hidden_sizes), (config.cell, config.cell_size)
    value = (
        Critic(sizes, config.activation, obs_ndim, torso, config.layer_norm, *recurrent)
        if critic
        else None
    )
    return Networks(actor, value)
