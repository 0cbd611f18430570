"""Shared builders of the tests: tiny configs, tiny networks and their parameters, random
actions, batches and rollouts, NumPy references of the KLs, and metrics as NumPy.

Plain functions and constants rather than fixtures, because module-level code needs them:
config constants, ``parametrize`` lists, and programs jitted once per module that build
their networks inside the trace. Fixtures are in ``conftest.py``. Every random helper takes
the generator (or seed) it draws from, so a test's data stay its own.
"""

from __future__ import annotations

import subprocess

import jax
import jax.numpy as jnp
import numpy as np

from jaxpo import Config
from jaxpo.batches import SampleBatch
from jaxpo.networks import Actor, Critic, Networks

# --------------------------------------------------------------------------- configs


#: the loop sizes of :func:`tiny_config`, unless a test names others
TINY_SIZES = {
    "num_envs": 2,
    "num_steps": 16,
    "update_epochs": 2,
    "num_minibatches": 2,
    "hidden_sizes": (16,),
}


def tiny_config(algo: str = "ppo", *, updates: int | None = None, **changes) -> Config:
    """A small ``Config``: ``TINY_SIZES`` with ``changes`` applied, for ``updates`` updates of
    ``num_envs * num_steps`` env steps (``None``: the default budget, for tests that never
    train)."""
    fields = {**TINY_SIZES, **changes}
    if updates is not None:
        fields["total_timesteps"] = fields["num_envs"] * fields["num_steps"] * updates
    return Config(algo=algo, **fields)


# --------------------------------------------------------------------------- networks

#: the two kinds of policy: discrete (categorical logits) and continuous (diagonal Gaussian)
KINDS = ["categorical", "gaussian"]
#: observation width of the tiny networks, and their action sizes per kind
OBS_DIM = 4
ACTION_DIMS = {"categorical": 3, "gaussian": 2}


def tiny_actor(kind: str, hidden_sizes=(8, 8), action_dim: int | None = None) -> Actor:
    """A tanh actor on ``OBS_DIM`` observations; ``action_dim`` defaults to ``ACTION_DIMS``."""
    return Actor(
        hidden_sizes=hidden_sizes,
        action_dim=ACTION_DIMS[kind] if action_dim is None else action_dim,
        discrete=kind == "categorical",
        activation="tanh",
        obs_ndim=1,
    )


def tiny_critic(hidden_sizes=(8,)) -> Critic:
    """A tanh critic on ``OBS_DIM`` observations."""
    return Critic(hidden_sizes, "tanh", 1)


def tiny_networks(kind: str, hidden_sizes=(8, 8), critic_sizes=(8,)) -> Networks:
    """``Networks(tiny_actor(kind, hidden_sizes), tiny_critic(critic_sizes))``."""
    return Networks(tiny_actor(kind, hidden_sizes), tiny_critic(critic_sizes))


def init_params(kind: str, seed: int = 0, hidden_sizes=(8, 8), critic_sizes=(8,)) -> dict:
    """``{"actor", "critic"}`` parameters of :func:`tiny_networks`, from ``jax.random.key(seed)``
    split into the actor's and the critic's keys."""
    networks = tiny_networks(kind, hidden_sizes, critic_sizes)
    obs = jnp.zeros((1, OBS_DIM), jnp.float32)
    key_a, key_c = jax.random.split(jax.random.key(seed))
    return {"actor": networks.actor.init(key_a, obs), "critic": networks.critic.init(key_c, obs)}


# --------------------------------------------------------------------------- random data


def random_actions(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """``n`` actions: uniform ints below ``ACTION_DIMS[kind]``, or N(0, 1.5²) vectors."""
    if kind == "categorical":
        return rng.integers(0, ACTION_DIMS[kind], n)
    return 1.5 * rng.normal(size=(n, ACTION_DIMS[kind]))


def random_batch(rng: np.random.Generator, kind: str, n: int, log_prob=None) -> SampleBatch:
    """A float32 batch of ``n`` random observations, actions (int32 or float32), values,
    advantages and returns.

    ``log_prob``: the behaviour log-probabilities, or a function of ``(obs, action)`` giving
    them, or ``None`` for N(−1, 0.3²) draws (taken after the actions, before the values).
    """
    obs = rng.normal(size=(n, OBS_DIM)).astype(np.float32)
    action = random_actions(rng, kind, n)
    action = action.astype(np.int32 if kind == "categorical" else np.float32)
    if log_prob is None:
        log_prob = rng.normal(-1.0, 0.3, n)
    elif callable(log_prob):
        log_prob = log_prob(obs, action)
    v, adv, ret = rng.normal(size=(3, n)).astype(np.float32)
    return SampleBatch(obs, action, np.asarray(log_prob, np.float32), v, adv, ret)


def random_rollout(rng: np.random.Generator, T: int, B: int, p_term=0.2, p_trunc=0.2):
    """``(rewards, values, next_values, terminated, done)`` of a random ``[T, B]`` rollout:
    float64 normals, and each step terminated with probability ``p_term``, else truncated
    with probability ``p_trunc`` (``done`` is either)."""
    rewards = rng.normal(size=(T, B))
    values = rng.normal(size=(T, B))
    next_values = rng.normal(size=(T, B))
    terminated = rng.random((T, B)) < p_term
    truncated = (rng.random((T, B)) < p_trunc) & ~terminated
    done = terminated | truncated
    return rewards, values, next_values, terminated, done


# --------------------------------------------------------------------------- NumPy references


def np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def np_categorical_kl(lp, lq):
    """KL(p‖q) per sample of categoricals given by logits, in the inputs' precision."""
    a, b = np_log_softmax(lp), np_log_softmax(lq)
    return np.sum(np.exp(a) * (a - b), axis=-1)


def np_gaussian_kl(mp, lp, mq, lq):
    """KL(p‖q) per sample of diagonal Gaussians (mean, log-std), in the inputs' precision."""
    vp, vq = np.exp(2 * lp), np.exp(2 * lq)
    return np.sum(lq - lp + (vp + (mp - mq) ** 2) / (2 * vq) - 0.5, axis=-1)


# --------------------------------------------------------------------------- results


def to_numpy(metrics: dict) -> dict[str, np.ndarray]:
    """``{name: np.asarray(value)}`` of a metrics dict."""
    return {k: np.asarray(v) for k, v in metrics.items()}


# --------------------------------------------------------------------------- subprocesses


def finish(proc, timeout: float) -> str:
    """Waits for ``proc`` (killing it after ``timeout`` s); its stdout, or the test fails."""
    import pytest

    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"subprocess timed out:\n{err.decode()[-3000:]}")
    assert proc.returncode == 0, err.decode()[-3000:]
    return out.decode()
