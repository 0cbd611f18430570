"""A random tabular MDP as a probe (``probe:tabular``), with exact float64 oracles.

The MDP has ``S`` states and ``A`` actions, drawn from a seed (:func:`random_mdp`): each
transition row ``P[s, a, ·]`` is Dirichlet(1, ..., 1), each reward ``R[s, a]`` is N(0, 1) and
paid deterministically, and every episode starts in state ``s0 = 0`` (a start distribution
``mu0`` may replace it). Observations are one-hot states, ``[S]`` float32; actions are
``0..A-1``. ``probe:tabular`` is ``S = 4``, ``A = 3``, seed 0.

One step from state ``s`` with action ``a`` pays ``R[s, a]``, then the episode *goes on*
with probability ``continue_prob`` to ``s' ~ P[s, a, ·]`` and otherwise *terminates*
(auto-reset to ``mu0``); a step that reaches ``max_steps_in_episode`` without terminating is
*truncated* (auto-reset too, bootstrapped from ``V(final_obs)``). ``final_obs`` is always
the one-hot ``s'``. Both are env params (traced), so each of the two exact set-ups below
is a change of params, not of program:

1. **The agent discounts** (the defaults, ``continue_prob = 1``): agent ``gamma = γ``, the
   time limit only truncates. With the critic equal to the exact ``V^π``, GAE(γ, λ) gives
   ``E[Â_t | s_t, a_t] = A^π(s_t, a_t)`` for every λ: each later TD error has mean 0, and
   the truncation bootstrap is exact. The states visited are the time average of
   ``mu0 P_π^t`` over an episode, not ``d^π``.
2. **The environment discounts** (``continue_prob = γ``, no reachable time limit, agent
   ``gamma = 1``): the undiscounted return until termination from ``(s, a)`` has
   expectation ``Q^π(s, a)`` of the γ-discounted MDP, so GAE(1, 1) with the exact critic
   again averages to ``A^π``. The chain that restarts from ``mu0`` with probability 1 − γ
   per step has stationary distribution ``ν = (1−γ)·mu0 + γ·ν P_π``, i.e. exactly
   ``d^π = (1−γ)·mu0ᵀ(I − γP_π)⁻¹``: a rollout started from it (or run long enough from
   anywhere; the distance decays like γ^t) visits ``(s, a)`` with frequency
   ``d^π(s)π(a|s)``, so the sample mean of ``f(s_t, a_t)`` estimates
   ``E_{s∼d^π, a∼π}[f]`` and the mean policy-gradient loss has gradient
   ``−(1−γ)·∇V^π(s0)``. The agent must not discount again (``gamma < 1`` would evaluate
   the γ·gamma-discounted MDP).

Terminating with probability 1 − γ *and* discounting by γ in GAE is the mistake this
avoids. :func:`random_mdp` rounds its tables through float32, so the env's float32 tables
and the oracles' float64 ones agree to about 1e-7 relatively.

The oracles (:func:`evaluate_policy` and its parts) are NumPy float64: for a tabular policy
``pi[s, a]``, ``V^π = (I − γP_π)⁻¹ r_π``, ``Q^π = R + γ P V^π``, ``A^π = Q^π − V^π`` and
``d^π`` by linear solves (Puterman, "Markov Decision Processes", 1994, §6.1; Kakade and
Langford, "Approximately Optimal Approximate Reinforcement Learning", 2002, for ``d^π``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .core import Discrete, Environment, TimeStep, first_timestep, select_tree

#: ``probe:`` names of the tabular MDPs (beside :data:`~jaxpo.envs.probes.PROBES`).
TABULAR = ("tabular",)

#: A time limit no rollout reaches (set-up 2 of the module docstring).
NO_TIME_LIMIT = 2**30


class TabularMDP(NamedTuple):
    """The tables of a finite MDP, NumPy float64.

    Attributes:
        transition: ``P[s, a, s']``, ``[S, A, S]``, rows sum to 1.
        reward: ``R[s, a]``, ``[S, A]``.
        start: ``mu0[s]``, the start distribution, ``[S]``.
    """

    transition: np.ndarray
    reward: np.ndarray
    start: np.ndarray


def random_mdp(
    seed: int, num_states: int = 4, num_actions: int = 3, start_state: int = 0
) -> TabularMDP:
    """A random :class:`TabularMDP`: Dirichlet(1) rows, N(0, 1) rewards, start ``start_state``.

    The tables are rounded to float32 and back (rows renormalised in float64), so the
    environment's float32 tables and the oracle's float64 ones describe the same MDP.
    """
    rng = np.random.default_rng(seed)
    transition = rng.dirichlet(np.ones(num_states), size=(num_states, num_actions))
    transition = transition.astype(np.float32).astype(np.float64)
    transition /= transition.sum(-1, keepdims=True)
    reward = rng.normal(size=(num_states, num_actions)).astype(np.float32).astype(np.float64)
    start = np.eye(num_states)[start_state]
    return TabularMDP(transition, reward, start)


@struct.dataclass
class TabularParams:
    """The environment's (traced) parameters.

    Attributes:
        transition: ``P[s, a, s']``, ``[S, A, S]`` float32.
        reward: ``R[s, a]``, ``[S, A]`` float32.
        start: start distribution, ``[S]`` float32.
        continue_prob: probability that an episode goes on after a step, scalar float32.
        max_steps_in_episode: the time limit (truncation), scalar int32.
    """

    transition: jax.Array
    reward: jax.Array
    start: jax.Array
    continue_prob: jax.Array
    max_steps_in_episode: jax.Array


def tabular_params(
    mdp: TabularMDP, continue_prob: float = 1.0, max_steps_in_episode: int = 100
) -> TabularParams:
    """The env params of ``mdp``, float32.

    The defaults are set-up 1 of the module docstring; set-up 2 is ``continue_prob = γ``,
    ``max_steps_in_episode = NO_TIME_LIMIT``.
    """
    return TabularParams(
        transition=jnp.asarray(mdp.transition, jnp.float32),
        reward=jnp.asarray(mdp.reward, jnp.float32),
        start=jnp.asarray(mdp.start, jnp.float32),
        continue_prob=jnp.float32(continue_prob),
        max_steps_in_episode=jnp.int32(max_steps_in_episode),
    )


@struct.dataclass
class TabularState:
    """The current state index and the steps taken in the episode."""

    state: jax.Array
    time: jax.Array


class TabularEnv(Environment):
    """A random tabular MDP (see the module docstring); ``name`` is ``probe:tabular``."""

    def __init__(self, num_states: int = 4, num_actions: int = 3, seed: int = 0):
        self.num_states = num_states
        self.num_actions = num_actions
        self.seed = seed
        self.name = "probe:tabular"
        self.observation_shape = (num_states,)
        self.action_space = Discrete(num_actions)

    def mdp(self) -> TabularMDP:
        """The float64 tables behind :meth:`default_params`."""
        return random_mdp(self.seed, self.num_states, self.num_actions)

    def default_params(self) -> TabularParams:
        """The seed's tables; the agent discounts (``continue_prob = 1``), time limit 100."""
        return tabular_params(self.mdp())

    def _obs(self, state: jax.Array) -> jax.Array:
        return jax.nn.one_hot(state, self.num_states, dtype=jnp.float32)

    def _start(self, key: jax.Array, params: TabularParams) -> TabularState:
        state = jax.random.categorical(key, jnp.log(params.start))
        return TabularState(state.astype(jnp.int32), jnp.int32(0))

    def reset(self, key: jax.Array, params: TabularParams) -> tuple[TabularState, TimeStep]:
        """Starts an episode in a state drawn from ``params.start``."""
        state = self._start(key, params)
        return state, first_timestep(self._obs(state.state))

    def step(
        self, key: jax.Array, state: TabularState, action: jax.Array, params: TabularParams
    ) -> tuple[TabularState, TimeStep]:
        """Pays ``R[s, a]``, moves to ``s' ~ P[s, a]``, ends the episode as described above."""
        k_next, k_go_on, k_reset = jax.random.split(key, 3)
        action = jnp.asarray(action, jnp.int32)
        reward = params.reward[state.state, action]
        logits = jnp.log(params.transition[state.state, action])
        next_state = jax.random.categorical(k_next, logits).astype(jnp.int32)
        time = state.time + 1
        terminated = ~jax.random.bernoulli(k_go_on, params.continue_prob)
        truncated = (time >= params.max_steps_in_episode) & ~terminated
        stepped = TabularState(next_state, time)
        new_state = select_tree(terminated | truncated, self._start(k_reset, params), stepped)
        return new_state, TimeStep(
            obs=self._obs(new_state.state),
            reward=reward.astype(jnp.float32),
            terminated=terminated,
            truncated=truncated,
            final_obs=self._obs(next_state),
            info={},
        )


# --------------------------------------------------------------------------- exact oracles


class PolicyEvaluation(NamedTuple):
    """Exact quantities of a tabular policy, NumPy float64.

    Attributes:
        v: ``V^π[s]``, ``[S]``.
        q: ``Q^π[s, a]``, ``[S, A]``.
        advantage: ``A^π[s, a] = Q^π − V^π``, ``[S, A]``.
        visitation: ``d^π[s]``, the normalised discounted state visitation, ``[S]``.
        start_value: ``V^π(s0) = mu0ᵀ V^π``, scalar.
    """

    v: np.ndarray
    q: np.ndarray
    advantage: np.ndarray
    visitation: np.ndarray
    start_value: float


def policy_transition(mdp: TabularMDP, pi: np.ndarray) -> np.ndarray:
    """P_π[s, s'] = Σ_a π(a|s)·P[s, a, s'], ``[S, S]``."""
    return np.einsum("sa,sat->st", pi, mdp.transition)


def state_values(mdp: TabularMDP, pi: np.ndarray, gamma: float) -> np.ndarray:
    """V^π = (I − γP_π)⁻¹ r_π with r_π[s] = Σ_a π(a|s)·R[s, a], ``[S]``."""
    r_pi = np.sum(pi * mdp.reward, axis=-1)
    eye = np.eye(len(r_pi))
    return np.linalg.solve(eye - gamma * policy_transition(mdp, pi), r_pi)


def action_values(mdp: TabularMDP, v: np.ndarray, gamma: float) -> np.ndarray:
    """Q[s, a] = R[s, a] + γ·Σ_s' P[s, a, s']·V[s'], ``[S, A]``."""
    return mdp.reward + gamma * mdp.transition @ v


def discounted_visitation(mdp: TabularMDP, pi: np.ndarray, gamma: float) -> np.ndarray:
    """d^π = (1−γ)·mu0ᵀ(I − γP_π)⁻¹ = (1−γ)·Σ_t γ^t·Pr(s_t = s), ``[S]``, sums to 1."""
    eye = np.eye(len(mdp.start))
    return (1.0 - gamma) * np.linalg.solve((eye - gamma * policy_transition(mdp, pi)).T, mdp.start)


def evaluate_policy(mdp: TabularMDP, pi: np.ndarray, gamma: float) -> PolicyEvaluation:
    """V^π, Q^π, A^π, d^π and V^π(s0) of the tabular policy ``pi[s, a]`` (rows sum to 1).

    Args:
        mdp: the tables.
        pi: ``π(a|s)``, ``[S, A]``.
        gamma: discount γ in [0, 1).
    """
    pi = np.asarray(pi, np.float64)
    v = state_values(mdp, pi, gamma)
    q = action_values(mdp, v, gamma)
    return PolicyEvaluation(
        v=v,
        q=q,
        advantage=q - v[:, None],
        visitation=discounted_visitation(mdp, pi, gamma),
        start_value=float(mdp.start @ v),
    )


def softmax_policy(logits: Any) -> np.ndarray:
    """π(a|s) = softmax(logits[s])[a] in float64, ``[S, A]``."""
    logits = np.asarray(logits, np.float64)
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def softmax_policy_gradient(mdp: TabularMDP, logits: Any, gamma: float) -> np.ndarray:
    """∇ V^π(s0) with respect to the logits table of π = softmax(logits), ``[S, A]``.

    The policy gradient theorem, ∇V(s0) = (1/(1−γ))·E_{s∼d^π, a∼π}[∇log π(a|s)·Q^π(s, a)],
    with ∂log π(a|s)/∂logits[s, b] = 1[a = b] − π(b|s), gives
    ``d^π(s)·π(b|s)·A^π(s, b) / (1−γ)`` (Sutton et al., "Policy Gradient Methods for
    Reinforcement Learning with Function Approximation", 2000).
    """
    pi = softmax_policy(logits)
    ev = evaluate_policy(mdp, pi, gamma)
    return ev.visitation[:, None] * pi * ev.advantage / (1.0 - gamma)
