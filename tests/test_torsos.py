"""Network torsos: the CNN, a user's flax module, LayerNorm, leading batch axes, the torso
config fields, a CNN agent in a compile-once sweep and TRPO's Fisher path through a CNN.

The numerics are checked in float64 against references written here independently of
``jaxpo.networks``: a NumPy forward pass (the convolutions as explicit loops over output
positions and kernel offsets), NumPy log-probabilities and KLs, and dense Fishers (the exact
score outer product summed over actions for a categorical head, ``Jᵀ M J`` from
``jax.jacobian`` for a Gaussian one).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import np_categorical_kl, np_gaussian_kl, np_log_softmax
from jax.flatten_util import ravel_pytree
from rule_helpers import cheap_jit
from sweeps import count_traces

import jaxpo
from jaxpo import Config, sweep
from jaxpo.losses.kl import kl_divergence
from jaxpo.natgrad import make_fisher_vector_product
from jaxpo.networks import CNN, Actor, Critic, distribution, make_networks
from jaxpo.validation import validate_config

IMAGE = (5, 5, 2)  # H, W, C
N = 12  # observations per batch
ACTIONS = 3  # categorical actions / Gaussian dimensions
HIDDEN = (8,)
#: two convolutions, the second strided: 5×5×2 -> 4×4×3 -> 2×2×4 (16 features)
CNN_SIZES = {"channels": (3, 4), "kernels": (2, 2), "strides": (1, 2)}


class DenseTanh(nn.Module):
    """A user's torso: flatten, one Dense layer, tanh."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.tanh(nn.Dense(self.features)(x.reshape(x.shape[0], -1)))


def cnn() -> CNN:
    return CNN(**CNN_SIZES)


#: variant -> (torso, discrete, layer_norm)
VARIANTS = {
    "cnn_categorical": ("cnn", True, False),
    "cnn_gaussian": ("cnn", False, False),
    "user_categorical": ("user", True, False),
    "cnn_layer_norm": ("cnn", True, True),
    "cnn_gaussian_layer_norm": ("cnn", False, True),
}


def make_actor(variant: str) -> Actor:
    torso, discrete, layer_norm = VARIANTS[variant]
    return Actor(
        hidden_sizes=HIDDEN,
        action_dim=ACTIONS,
        discrete=discrete,
        activation="tanh",
        obs_ndim=3,
        torso=cnn() if torso == "cnn" else DenseTanh(6),
        layer_norm=layer_norm,
    )


def random_params(module: nn.Module, seed: int, example=None) -> dict:
    """NumPy float64 params shaped like ``module``'s own: kernels ~ N(0, 1.5²/fan_in),
    LayerNorm scales ~ 1 + N(0, 0.3²), biases and log-std ~ N(0, 0.3²)."""
    rng = np.random.default_rng(seed)
    example = jnp.zeros((1, *IMAGE)) if example is None else example
    shapes = jax.eval_shape(module.init, jax.random.key(0), example)

    def draw(path, leaf):
        name = path[-1].key
        if name == "kernel":
            return 1.5 / np.sqrt(np.prod(leaf.shape[:-1])) * rng.normal(size=leaf.shape)
        if name == "scale":
            return 1.0 + 0.3 * rng.normal(size=leaf.shape)
        return 0.3 * rng.normal(size=leaf.shape)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def random_obs(seed: int, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *IMAGE))


def flat(tree) -> np.ndarray:
    """Leaves concatenated in NumPy, in ``ravel_pytree``'s order."""
    return np.concatenate([np.asarray(x).ravel() for x in jax.tree.leaves(tree)])


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


# --------------------------------------------------------------------------- NumPy forward pass


def np_conv_valid(x, kernel, bias, stride):
    """``VALID`` cross-correlation with ``stride``: ``[B, H, W, C] -> [B, H', W', O]``."""
    batch, height, width, channels = x.shape
    k = kernel.shape[0]
    out_h, out_w = (height - k) // stride + 1, (width - k) // stride + 1
    out = np.zeros((batch, out_h, out_w, kernel.shape[-1]))
    for i in range(out_h):
        for j in range(out_w):
            total = np.zeros((batch, kernel.shape[-1]))
            for di in range(k):
                for dj in range(k):
                    for c in range(channels):
                        pixel = x[:, i * stride + di, j * stride + dj, c]
                        total += pixel[:, None] * kernel[di, dj, c][None, :]
            out[:, i, j] = total + bias
    return out


def np_layer_norm(x, scale, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def np_actor(variant: str, params: dict, obs: np.ndarray):
    """The actor's output in NumPy: logits ``[N, A]`` or ``(mean, log_std)``."""
    torso, discrete, layer_norm = VARIANTS[variant]
    p = params["params"]
    x = obs
    if torso == "cnn":
        for i, stride in enumerate(CNN_SIZES["strides"]):
            conv = p["torso"][f"Conv_{i}"]
            x = np.maximum(np_conv_valid(x, conv["kernel"], conv["bias"], stride), 0.0)
        x = x.reshape(x.shape[0], -1)
    else:
        dense = p["torso"]["Dense_0"]
        x = np.tanh(x.reshape(x.shape[0], -1) @ dense["kernel"] + dense["bias"])
    mlp = p["MLP_0"]
    x = x @ mlp["Dense_0"]["kernel"] + mlp["Dense_0"]["bias"]
    if layer_norm:
        x = np_layer_norm(x, mlp["LayerNorm_0"]["scale"], mlp["LayerNorm_0"]["bias"])
    x = np.tanh(x)
    out = x @ mlp["Dense_1"]["kernel"] + mlp["Dense_1"]["bias"]
    if discrete:
        return out
    return out, np.broadcast_to(p["log_std"], out.shape)


def np_log_prob(variant: str, out, actions):
    if VARIANTS[variant][1]:
        return np.take_along_axis(np_log_softmax(out), actions[:, None], axis=-1)[:, 0]
    mean, log_std = out
    z = (actions - mean) / np.exp(log_std)
    return np.sum(-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi), axis=-1)


# --------------------------------------------------------------------------- dense Fishers


def dense_fisher(actor: Actor, discrete: bool, params, obs):
    """Categorical: mean_n Σ_a p_a ∇log π(a|s_n) ∇log π(a|s_n)ᵀ, exact over actions.
    Gaussian: mean_n J_nᵀ diag(1/σ², 2) J_n on (mean, log_std)."""
    theta, unravel = ravel_pytree(params)
    if discrete:

        def log_pi(t):
            return jax.nn.log_softmax(actor.apply(unravel(t), obs)[0], axis=-1)

        scores = jax.jacobian(log_pi)(theta)  # [N, A, P]
        p = jnp.exp(log_pi(theta))
        return jnp.einsum("na,nap,naq->pq", p, scores, scores) / obs.shape[0]
    j_mean, j_log_std = jax.jacobian(lambda t: actor.apply(unravel(t), obs))(theta)
    _, log_std = actor.apply(params, obs)
    fisher = jnp.einsum("nd,ndp,ndq->pq", jnp.exp(-2 * log_std), j_mean, j_mean)
    fisher += 2.0 * jnp.einsum("ndp,ndq->pq", j_log_std, j_log_std)
    return fisher / obs.shape[0]


@functools.cache
def oracle(variant: str):
    """Jitted once per variant: output, log-probs, KL(p‖q), the Gauss–Newton FVP and the
    dense Fisher."""
    actor = make_actor(variant)
    discrete = VARIANTS[variant][1]

    @cheap_jit
    def run(params, params_q, obs, actions, v_flat, damping):
        out = actor.apply(params, obs)
        log_prob = distribution(out).log_prob(actions)
        kl = kl_divergence(out, actor.apply(params_q, obs))
        _, unravel = ravel_pytree(params)
        fvp = make_fisher_vector_product(lambda p: actor.apply(p, obs), params, damping)
        product = ravel_pytree(fvp(unravel(v_flat)))[0]
        return out, log_prob, kl, product, dense_fisher(actor, discrete, params, obs)

    return actor, run


def random_actions(variant: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if VARIANTS[variant][1]:
        return rng.integers(0, ACTIONS, N)
    return 1.5 * rng.normal(size=(N, ACTIONS))


def run_oracle(variant: str, seed: int, damping: float = 0.0):
    """Everything in float64: ``(params, params_q, obs, actions, v, jax outputs)``."""
    actor, run = oracle(variant)
    params = random_params(actor, seed)
    params_q = random_params(actor, seed + 100)
    obs, actions = random_obs(seed + 200), random_actions(variant, seed + 300)
    v = np.random.default_rng(seed + 400).normal(size=flat(params).size)
    with jax.enable_x64(True):
        results = run(params, params_q, obs, actions, v, damping)
        results = jax.tree.map(np.asarray, results)
    return params, params_q, obs, actions, v, results


# --------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_log_prob_and_kl_match_numpy(variant):
    discrete = VARIANTS[variant][1]
    params, params_q, obs, actions, _, (out, log_prob, kl, _, _) = run_oracle(variant, seed=1)
    want = np_actor(variant, params, obs)
    want_q = np_actor(variant, params_q, obs)
    if discrete:
        assert out[0].dtype == np.float64 and out[1] is None
        np.testing.assert_allclose(out[0], want, rtol=1e-10, atol=1e-12)
        want_kl = np_categorical_kl(want, want_q)
    else:
        np.testing.assert_allclose(out[0], want[0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(out[1], want[1], rtol=1e-12, atol=0)
        want_kl = np_gaussian_kl(*want, *want_q)
    np.testing.assert_allclose(log_prob, np_log_prob(variant, want, actions), rtol=1e-10)
    assert (want_kl > 1e-3).all()  # the two settings really differ
    np.testing.assert_allclose(kl, want_kl, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fvp_matches_dense_fisher(variant):
    for damping in (0.0, 0.1):
        _, _, _, _, v, (*_, product, fisher) = run_oracle(variant, seed=2, damping=damping)
        assert product.dtype == np.float64 and fisher.shape == (v.size, v.size)
        want = (fisher + damping * np.eye(v.size)) @ v
        assert rel_err(product, want) <= 1e-10, variant


def test_torso_parameters_have_nonzero_fisher_block():
    """The Fisher reaches through the torso: its block on the torso's weights is not ~0."""
    params, _, _, _, _, (*_, fisher) = run_oracle("cnn_categorical", seed=3)
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    is_torso = np.concatenate(
        [np.full(leaf.size, "torso" in jax.tree_util.keystr(path)) for path, leaf in leaves]
    )
    block = fisher[np.ix_(is_torso, is_torso)]
    assert is_torso.sum() == 3 * 2 * 2 * 2 + 3 + 4 * 2 * 2 * 3 + 4
    assert np.trace(block) > 1e-3 * np.trace(fisher)


def test_layer_norm_changes_output_and_has_scale_and_bias():
    plain, normed = make_actor("cnn_categorical"), make_actor("cnn_layer_norm")
    obs = jnp.asarray(random_obs(5), jnp.float32)
    p_normed = normed.init(jax.random.key(0), obs)
    ln = p_normed["params"]["MLP_0"]["LayerNorm_0"]
    assert set(ln) == {"scale", "bias"} and ln["scale"].shape == ln["bias"].shape == HIDDEN
    p_plain = plain.init(jax.random.key(0), obs)
    assert "LayerNorm_0" not in p_plain["params"]["MLP_0"]
    # the same Dense and Conv weights, with and without the (freshly initialised) LayerNorm
    shared = jax.tree.map(lambda x: x, p_normed)
    del shared["params"]["MLP_0"]["LayerNorm_0"]
    assert jax.tree.structure(shared) == jax.tree.structure(p_plain)
    without = np.asarray(plain.apply(shared, obs)[0])
    with_ln = np.asarray(normed.apply(p_normed, obs)[0])
    assert np.abs(without - with_ln).max() > 1e-4
    # the critic takes layer_norm too
    critic = Critic(HIDDEN, "tanh", 3, cnn(), layer_norm=True)
    assert "LayerNorm_0" in critic.init(jax.random.key(1), obs)["params"]["MLP_0"]


@pytest.mark.parametrize("torso", ["cnn", "user"])
def test_leading_batch_axes_are_folded(torso):
    variant = "cnn_categorical" if torso == "cnn" else "user_categorical"
    actor = make_actor(variant)
    critic = Critic(HIDDEN, "tanh", 3, cnn() if torso == "cnn" else DenseTanh(6))
    obs = jnp.asarray(np.random.default_rng(6).normal(size=(4, 3, *IMAGE)), jnp.float32)
    p_actor = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), random_params(actor, 7))
    p_critic = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), random_params(critic, 8))
    logits, _ = actor.apply(p_actor, obs)
    values = critic.apply(p_critic, obs)
    assert logits.shape == (4, 3, ACTIONS) and values.shape == (4, 3)
    for t in range(4):
        np.testing.assert_allclose(logits[t], actor.apply(p_actor, obs[t])[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(values[t], critic.apply(p_critic, obs[t]), rtol=1e-5, atol=1e-6)
    # and one observation alone (a batch of one)
    np.testing.assert_allclose(
        logits[2, 1], actor.apply(p_actor, obs[2, 1:2])[0][0], rtol=1e-5, atol=1e-6
    )


# --------------------------------------------------------------------------- config


def test_cnn_on_vector_observations_is_refused():
    env = jaxpo.envs.make("gymnax:CartPole-v1")
    with pytest.raises(ValueError, match="torso='cnn'"):
        make_networks(Config(torso="cnn"), env)
    # the MLP and a user module build fine there
    make_networks(Config(torso="mlp"), env)
    make_networks(Config(torso=DenseTanh(4)), env)


@pytest.mark.parametrize("game", ["Breakout", "SpaceInvaders", "Asterix"])
def test_minatar_presets_use_the_cnn(game):
    config, _ = jaxpo.presets.get("ppo", f"gymnax:{game}-MinAtar")
    env = jaxpo.envs.make(config.env_id)
    channels = env.observation_shape[-1]
    actor = make_networks(config, env).actor
    params = actor.init(jax.random.key(0), jnp.zeros((1, *env.observation_shape)))["params"]
    assert params["torso"]["Conv_0"]["kernel"].shape == (3, 3, channels, 16)
    # 8 x 8 pixels x 16 channels into the 128-unit ReLU layer
    assert params["MLP_0"]["Dense_0"]["kernel"].shape == (8 * 8 * 16, 128)


def test_cnn_that_leaves_no_pixel_is_refused():
    env = jaxpo.envs.make("gymnax:Breakout-MinAtar")  # 10x10x4
    # 10 -> (10 - 5) // 2 + 1 = 3 pixels, then a 5x5 kernel: nothing left
    shrinking = Config(torso="cnn", cnn_channels=(8, 8), cnn_kernels=(5, 5), cnn_strides=(2, 1))
    with pytest.raises(ValueError, match="layer 1 has kernel 5 .* 3x3"):
        make_networks(shrinking, env)
    # a kernel the size of what is left gives one pixel, which is allowed
    exact = Config(torso="cnn", cnn_channels=(8, 8), cnn_kernels=(5, 3), cnn_strides=(2, 1))
    actor = make_networks(exact, env).actor
    params = actor.init(jax.random.key(0), jnp.zeros((1, 10, 10, 4)))
    assert actor.apply(params, jnp.zeros((2, 10, 10, 4)))[0].shape == (2, env.action_space.n)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"torso": "rnn"}, "torso"),
        ({"torso": "cnn", "cnn_channels": (16, 0)}, "cnn_channels"),
        ({"torso": "cnn", "cnn_channels": (16, 16), "cnn_kernels": (3,)}, "one entry per"),
        ({"torso": "cnn", "cnn_strides": ()}, "cnn_strides"),
        ({"torso": nn.Dense}, "torso"),  # a module class, not an instance
    ],
)
def test_validate_config_refuses_bad_torsos(changes, match):
    with pytest.raises(ValueError, match=match):
        validate_config(Config(**changes))


def test_user_module_config_is_hashable():
    a, b, c = Config(torso=DenseTanh(4)), Config(torso=DenseTanh(4)), Config(torso=DenseTanh(5))
    validate_config(a)
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert len({a, b, c}) == 2
    assert a.to_record()["torso"].startswith("module:") and "DenseTanh" in a.to_record()["torso"]


# --------------------------------------------------------------------------- end to end

BREAKOUT = dict(
    env_id="gymnax:Breakout-MinAtar",
    torso="cnn",
    cnn_channels=(4,),
    hidden_sizes=(16,),
    num_envs=4,
    num_steps=8,
    update_epochs=1,
    num_minibatches=1,
)


def test_cnn_sweep_over_learning_rate_compiles_once():
    config = Config(algo="ppo", total_timesteps=4 * 8 * 2, **BREAKOUT)
    grid = sweep.grid(jaxpo.default_hparams(config), learning_rate=[1e-2, 1e-3, 1e-4])
    sweep.make_sweep_fn.cache_clear()
    with pytest.MonkeyPatch.context() as mp:
        traces = count_traces(mp)
        result = sweep.run(config, grid, seeds=1)
        jax.block_until_ready(result.metrics)
    sweep.make_sweep_fn.cache_clear()
    assert traces["n"] == 1
    metrics = {k: np.asarray(v) for k, v in result.metrics.items()}
    assert metrics["policy_loss"].shape == (3, 1, 2)
    for name, value in metrics.items():
        assert np.isfinite(value).all(), name
    # the members trained differently: their conv kernels differ after 2 updates
    kernels = np.asarray(result.state.params["actor"]["params"]["torso"]["Conv_0"]["kernel"])
    assert kernels.shape[:2] == (3, 1)
    for m in (1, 2):
        assert np.abs(kernels[0, 0] - kernels[m, 0]).max() > 1e-6


def test_trpo_on_cnn_keeps_the_trust_region():
    config = Config(algo="trpo", total_timesteps=4 * 8 * 4, **BREAKOUT)
    hparams = jaxpo.default_hparams(config, cg_damping=0.01)
    result = jax.jit(jaxpo.make_train(config))(jax.random.key(0), hparams)
    metrics = {k: np.asarray(v) for k, v in result.metrics.items()}
    for name, value in metrics.items():
        assert np.isfinite(value).all(), name
    max_kl = float(hparams.max_kl)
    kl = metrics["kl"]
    assert (kl <= 1.5 * max_kl).all(), kl
    # the Fisher through the CNN is right in scale: every step is accepted and the step
    # sized by the quadratic model lands near the bound (a Fisher too large would give KLs
    # far below it; too small, rejected or heavily backtracked steps)
    assert (metrics["accepted"] == 1.0).all(), metrics["accepted"]
    assert (metrics["backtracks"] <= 2).all(), metrics["backtracks"]
    assert kl.mean() >= 0.3 * max_kl, kl
