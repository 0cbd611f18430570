"""Evaluating saved policies: ``jaxpo eval DIR``.

A checkpoint (see :mod:`jaxpo.checkpoint`) holds the actor of every agent (member × seed) of
a run. :func:`evaluate` runs an agent's policy in ``N`` environments at once (one jitted,
batched rollout, vmapped over agents) until each environment has finished its first
episode, and returns those ``N`` returns. Actions are the mode of the policy's
distribution (argmax of the logits, the Gaussian's mean) or samples from it, and pass
through the same wrappers as in training (a Gaussian's action is clipped or rescaled into
the action box by :class:`~jaxpo.envs.ClipAction`). A run that normalised observations is
evaluated with its saved running statistics, frozen: evaluation never updates them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from . import checkpoint, sweep
from .config import Config
from .episodes import AgentPolicy, first_episodes
from .networks import make_networks
from .train import make_eval_env

#: the two ways of acting: the distribution's mode, and samples from it.
MODES = ("deterministic", "stochastic")


def default_agents(saved: checkpoint.Checkpoint) -> list[int]:
    """The agents evaluated unless one is named: every seed of member 0."""
    return list(range(len(saved.seeds)))


def check_agents(saved: checkpoint.Checkpoint, agents: Sequence[int]) -> None:
    """Raises ``ValueError`` unless every agent index is in ``[0, M * S)``."""
    count = len(saved.seeds) * sweep.num_members(saved.hparams)
    bad = [a for a in agents if not 0 <= a < count]
    if bad or not agents:
        raise ValueError(
            f"agent index {bad or agents} out of range: the run has {count} agent(s), "
            "numbered member-major (member * seeds + seed position)"
        )


def agent_policies(saved: checkpoint.Checkpoint, agents: Sequence[int]) -> AgentPolicy:
    """The policies of ``agents`` (member-major indices ``m * S + s``), stacked ``[A, ...]``."""

    def pick(x: Any) -> np.ndarray:
        x = np.asarray(x)
        return x.reshape((-1,) + x.shape[2:])[np.asarray(agents)]

    state = saved.state
    stats = jax.tree.map(pick, state.env_state.stats) if saved.config.normalize_obs else None
    return AgentPolicy(jax.tree.map(pick, state.params["actor"]), stats)


def agent_env_params(saved: checkpoint.Checkpoint, agents: Sequence[int]) -> Any:
    """The env params of the members of ``agents``, stacked ``[A, ...]``."""
    members = np.asarray(agents) // len(saved.seeds)
    return jax.tree.map(lambda x: np.asarray(x)[members], saved.hparams.env_params)


@functools.lru_cache(maxsize=16)
def batched_returns(
    config: Config, episodes: int
) -> Callable[[AgentPolicy, Any, jax.Array, bool], jax.Array]:
    """The compiled ``returns(policies [A], env_params [A], key, deterministic) -> [A, N]``.

    ``N = episodes``; ``deterministic`` is traced, so both modes share one program.

    Each agent acts in ``episodes`` environments (the same start states for every agent,
    from the one key) until all have finished their first episode; an episode still running
    after :data:`jaxpo.episodes.MAX_STEPS` steps counts with its return so far.
    """
    env = make_eval_env(config, episodes)
    actor, _ = make_networks(config, env)

    def returns(
        policy: AgentPolicy, env_params: Any, key: jax.Array, deterministic: jax.Array
    ) -> jax.Array:
        return first_episodes(env, actor, policy, env_params, key, deterministic).returns

    return jax.jit(jax.vmap(returns, in_axes=(0, 0, None, None)))


def evaluate(
    saved: checkpoint.Checkpoint,
    episodes: int,
    key: jax.Array,
    deterministic: bool,
    agents: Sequence[int] | None = None,
) -> np.ndarray:
    """Returns of ``episodes`` parallel episodes of each agent's saved policy.

    One jitted rollout, vmapped over the agents, runs ``episodes`` environments per agent
    until each has finished its first episode (it ends by termination or the env's time
    limit); later episodes of an auto-reset environment are not counted. Every agent sees
    the same start states (drawn from ``key``).

    Args:
        saved: a checkpoint from :func:`jaxpo.checkpoint.load`.
        episodes: ``N``, environments (= episodes) per agent.
        key: PRNG key for the resets, the env steps and, when sampling, the actions.
        deterministic: act with the mode of the policy's distribution (argmax of the
            logits, the Gaussian's mean) instead of sampling from it.
        agents: member-major agent indices ``m * S + s`` (default: every seed of member 0,
            see :func:`default_agents`).

    Returns:
        Undiscounted episode returns ``[A, N]``, in the order of ``agents``.

    Raises:
        ValueError: ``episodes < 1`` or an agent index out of range.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    agents = default_agents(saved) if agents is None else list(agents)
    check_agents(saved, agents)
    returns = batched_returns(saved.config, episodes)
    env_params = agent_env_params(saved, agents)
    return np.asarray(returns(agent_policies(saved, agents), env_params, key, deterministic))


def spread(returns: np.ndarray) -> dict[str, float]:
    """``{"mean", "std"}`` of ``returns`` (std with ddof 0)."""
    return {"mean": float(np.mean(returns)), "std": float(np.std(returns))}


def evaluate_run(
    directory: str | Path, episodes: int = 32, seed: int = 0, agent: int | None = None
) -> dict[str, Any]:
    """``jaxpo eval``: evaluates the run saved in ``directory`` in both modes.

    Prints mean ± std of the returns per agent and over all of them, and writes
    ``directory/eval.json``.

    Args:
        directory: a run directory with a checkpoint (``jaxpo train --out``).
        episodes: parallel episodes per agent and mode.
        seed: the evaluation key's seed (the same key serves both modes).
        agent: one member-major agent index; ``None`` evaluates every seed of member 0.

    Returns:
        What ``eval.json`` holds: the run, the agents with their returns and mean/std per
        mode, and mean/std per mode over every agent's episodes.

    Raises:
        FileNotFoundError: ``directory`` holds no checkpoint.
        ValueError: bad ``episodes`` or ``agent``.
    """
    saved = checkpoint.load(directory)
    agents = default_agents(saved) if agent is None else [agent]
    key = jax.random.key(seed)
    results = {m: evaluate(saved, episodes, key, m == MODES[0], agents) for m in MODES}
    num_seeds = len(saved.seeds)
    report: dict[str, Any] = {
        "algo": saved.config.algo,
        "env_id": saved.config.env_id,
        "update": saved.update,
        "episodes": episodes,
        "seed": seed,
        "normalize_obs": saved.config.normalize_obs,
        "agents": [
            {
                "agent": a,
                "member": a // num_seeds,
                "seed": int(saved.seeds[a % num_seeds]),
                **{m: {**spread(results[m][i]), "returns": results[m][i].tolist()} for m in MODES},
            }
            for i, a in enumerate(agents)
        ],
        **{m: spread(results[m]) for m in MODES},
    }
    path = Path(directory) / "eval.json"
    path.write_text(json.dumps(report, indent=2))

    print(
        f"jaxpo eval: {saved.config.algo} on {saved.config.env_id} after {saved.update} "
        f"updates, {len(agents)} agent(s) x {episodes} episodes per mode"
    )
    print(f"{'agent':>6}  {'seed':>6}  {MODES[0]:>18}  {MODES[1]:>18}")
    for row in report["agents"]:
        cells = [f"{row[m]['mean']:.1f} ± {row[m]['std']:.1f}" for m in MODES]
        print(f"{row['agent']:>6}  {row['seed']:>6}  {cells[0]:>18}  {cells[1]:>18}")
    cells = [f"{report[m]['mean']:.1f} ± {report[m]['std']:.1f}" for m in MODES]
    print(f"{'all':>6}  {'':>6}  {cells[0]:>18}  {cells[1]:>18}")
    print(f"wrote {path}")
    return report
