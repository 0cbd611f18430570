"""Rendering an episode of a saved policy: ``jaxpo render DIR --out FILE``.

:func:`episode` rolls one episode of an agent's deterministic policy (the mode of its
distribution, through the training wrappers, with the checkpoint's frozen observation
statistics; see :mod:`jaxpo.evaluate`) in one ``lax.scan`` and returns the environment's
state before every step. :func:`render` draws those states: ``brax:`` envs as brax's HTML
viewer (``brax.io.html.render`` of the pipeline states), the ``gymnax:`` envs in
:data:`GYMNAX_VISUALISED` as a GIF by gymnax's ``Visualizer`` (matplotlib, Agg backend,
Pillow writer; the classic-control envs are drawn by gymnasium's renderer, which needs
``pygame``, the ``render`` extra).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from . import checkpoint, envs
from .episodes import initial_actor_carry, select_action
from .evaluate import agent_env_params, agent_policies, check_agents
from .networks import make_networks
from .recurrence import reset_carry
from .train import bare_env, make_eval_env

#: gymnax's classic-control envs, which its ``Visualizer`` draws with gymnasium and pygame.
GYMNAX_CLASSIC_CONTROL = (
    "Acrobot-v1",
    "CartPole-v1",
    "Pendulum-v1",
    "MountainCar-v0",
    "MountainCarContinuous-v0",
)
#: the gymnax envs that ``gymnax.visualize.Visualizer`` draws (its own list).
GYMNAX_VISUALISED = (
    *GYMNAX_CLASSIC_CONTROL,
    "Catch-bsuite",
    "Asterix-MinAtar",
    "Breakout-MinAtar",
    "Freeway-MinAtar",
    "Seaquest-MinAtar",
    "SpaceInvaders-MinAtar",
    "Pong-misc",
    "PointRobot-misc",
    "MetaMaze-misc",
    "FourRooms-misc",
)
#: the file each backend's renderer writes.
SUFFIXES = {"brax": ".html", "gymnax": ".gif"}


class Episode(NamedTuple):
    """One rendered episode.

    Attributes:
        states: the bare environment's state before each step, ``T`` host pytrees.
        rewards: the reward of each step, ``[T]``.
    """

    states: list[Any]
    rewards: np.ndarray


def check_renderable(env_id: str, out: str | Path) -> None:
    """Raises ``ValueError`` unless ``env_id`` has a visualiser, runnable here, for ``out``."""
    backend, name = envs.parse_env_id(env_id)
    if backend not in SUFFIXES or (backend == "gymnax" and name not in GYMNAX_VISUALISED):
        raise ValueError(
            f"{env_id} has no visualiser; jaxpo render draws brax: envs (HTML) and the gymnax: "
            f"envs {', '.join(GYMNAX_VISUALISED)} (GIF)"
        )
    if Path(out).suffix.lower() != SUFFIXES[backend]:
        raise ValueError(
            f"--out: a {backend}: env renders to a {SUFFIXES[backend]} file, got {out}"
        )
    if name in GYMNAX_CLASSIC_CONTROL and not importlib.util.find_spec("pygame"):
        raise ValueError(f"rendering {env_id} needs pygame: pip install 'jaxpo[render]'")


def episode(saved: checkpoint.Checkpoint, agent: int, key: jax.Array, max_steps: int) -> Episode:
    """The first episode of ``agent``'s deterministic policy, at most ``max_steps`` steps.

    Args:
        saved: a checkpoint from :func:`jaxpo.checkpoint.load`.
        agent: member-major agent index ``m * S + s``.
        key: PRNG key of the reset and the env steps.
        max_steps: the most steps rolled (the episode is cut there if it goes on).

    Returns:
        The states before each step up to the step that ended the episode (the state it
        ended in is replaced by the auto-reset), and the rewards of those steps.
    """
    if max_steps < 1:
        raise ValueError(f"--max-steps must be >= 1, got {max_steps}")
    check_agents(saved, [agent])
    env = make_eval_env(saved.config, 1)
    actor, _ = make_networks(saved.config, env)

    @jax.jit
    def roll(policy: Any, env_params: Any, key: jax.Array) -> tuple[Any, jax.Array, jax.Array]:
        k_reset, k_steps = jax.random.split(key)
        state, ts = env.reset(k_reset, env_params)

        def step(loop: tuple[Any, jax.Array, Any], k: jax.Array) -> tuple[Any, Any]:
            state, obs, carry = loop
            k_act, k_env = jax.random.split(k)
            carry, action = select_action(actor, policy, carry, obs, k_act, deterministic=True)
            next_state, ts = env.step(k_env, state, action, env_params)
            carry = reset_carry(carry, ts.info["episode_done"])
            # the VecEnv of one copy: EpisodeStatsState around the bare env's state, [1, ...]
            loop = (next_state, ts.obs, carry)
            return loop, (state.env_state, ts.reward, ts.info["episode_done"])

        keys = jax.random.split(k_steps, max_steps)
        loop = (state, ts.obs, initial_actor_carry(actor, 1))
        _, (states, rewards, done) = jax.lax.scan(step, loop, keys)
        return states, rewards[:, 0], done[:, 0]

    inputs = jax.tree.map(
        lambda x: x[0], (agent_policies(saved, [agent]), agent_env_params(saved, [agent]))
    )
    states, rewards, done = jax.device_get(roll(*inputs, key))
    length = int(np.argmax(done)) + 1 if done.any() else max_steps
    frames = [jax.tree.map(lambda x, t=t: x[t, 0], states) for t in range(length)]
    return Episode(frames, np.asarray(rewards[:length]))


def write_brax_html(env: envs.BraxEnv, states: list[Any], out: Path) -> None:
    """Writes brax's HTML viewer of the pipeline states of ``states`` (``BraxState``s)."""
    from brax.io import html

    pipeline_states = [s.env_state.pipeline_state for s in states]
    out.write_text(html.render(env.brax_env.sys, pipeline_states))


def write_gymnax_gif(env: envs.GymnaxEnv, params: Any, run: Episode, out: Path) -> None:
    """Writes gymnax's animation of ``run`` as a GIF (the return so far in each title)."""
    # gymnasium's classic-control renderer draws off-screen with pygame: no banner, and no
    # display or sound device probed (SDL complains on a headless machine)
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    import matplotlib

    matplotlib.use("Agg")
    from gymnax.visualize import Visualizer

    Visualizer(env.gymnax_env, params, run.states, np.cumsum(run.rewards)).animate(str(out))


def render(
    directory: str | Path,
    out: str | Path,
    max_steps: int = 500,
    agent: int = 0,
    seed: int = 0,
) -> Episode:
    """``jaxpo render``: draws one deterministic episode of a saved agent to ``out``.

    ``brax:`` envs give an HTML file with brax's viewer, the gymnax envs of
    :data:`GYMNAX_VISUALISED` a GIF.

    Args:
        directory: a run directory with a checkpoint (``jaxpo train --out``).
        out: the ``.html`` (brax) or ``.gif`` (gymnax) file to write.
        max_steps: the longest episode drawn.
        agent: member-major agent index ``m * S + s`` (default: the first seed).
        seed: the seed of the episode's key.

    Returns:
        The episode drawn.

    Raises:
        FileNotFoundError: ``directory`` holds no checkpoint.
        ValueError: the env has no visualiser, ``out`` has the wrong suffix, or bad
            ``max_steps``/``agent``.
    """
    saved = checkpoint.load(directory)
    out = Path(out)
    check_renderable(saved.config.env_id, out)
    run = episode(saved, agent, jax.random.key(seed), max_steps)
    env = bare_env(saved.config)
    out.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(env, envs.BraxEnv):
        write_brax_html(env, run.states, out)
    else:
        params = jax.tree.map(lambda x: x[0], agent_env_params(saved, [agent]))
        write_gymnax_gif(env, params, run, out)
    print(
        f"jaxpo render: {saved.config.env_id}, agent {agent}, {len(run.states)} steps, "
        f"return {run.rewards.sum():.1f}; wrote {out}"
    )
    return run
