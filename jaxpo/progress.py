"""Host-side progress display fed by the compiled run's progress hook.

One display serves a whole sweep: the hook is called once per reporting interval with the
returns of every member (see :func:`jaxpo.make_train`), never once per member.

Progress goes to stderr, so stdout holds only results. Its units match the ``jaxpo``
headers: env steps are counted per agent (as in "N updates x B env steps"), and the
throughput is the total over all agents, labelled so.
"""

from __future__ import annotations

import time
from typing import IO

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


def default_interval(num_updates: int) -> int:
    """Updates between progress reports when none is set: about 20 reports per run."""
    return max(1, num_updates // 20)


class ProgressDisplay:
    """A progress bar (on a terminal) or one unwrapped log line per report (elsewhere).

    Use as a context manager and pass the instance as ``progress`` to ``make_train`` or
    ``sweep.run``. A log line reads, e.g. (one line, split here)::

        ppo: update 8/20 | env steps 4,096/10,240 per agent
        | 51,200 env steps/s (all 4 agents) | return 21.3 ± 4.0 (4 agents)

    with no throughput on the first report, which comes right after compilation.

    Args:
        num_updates: updates per agent in the run.
        steps_per_update: env steps per agent per update.
        label: shown before the bar or line.
        stream: where to write; ``None`` (the default) is ``sys.stderr`` at write time.
    """

    def __init__(
        self,
        num_updates: int,
        steps_per_update: int,
        label: str = "train",
        stream: IO[str] | None = None,
    ) -> None:
        self.num_updates = num_updates
        self.steps_per_update = steps_per_update
        self.label = label
        self.console = Console(file=stream, stderr=True)
        self.calls = 0
        self._first: tuple[float, int] | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressDisplay:
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} updates"),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.label, total=self.num_updates, info="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def __call__(self, update: int, env_steps: int, returns: np.ndarray) -> None:
        """Reports one interval.

        Args:
            update: the update just done, 1-based.
            env_steps: env steps per agent so far (``update * steps_per_update``).
            returns: every agent's latest episode return.
        """
        self.calls += 1
        returns = np.asarray(returns, np.float64).ravel()
        agents = returns.size
        now = time.perf_counter()
        if self._first is None:  # the first report comes after compilation: time from there
            self._first = (now, env_steps)
        t0, s0 = self._first
        total = self.num_updates * self.steps_per_update
        parts = [f"env steps {env_steps:,}/{total:,} per agent"]
        if now > t0 and env_steps > s0:
            parts.append(
                f"{(env_steps - s0) * agents / (now - t0):,.0f} env steps/s (all {agents} agents)"
            )
        parts.append(f"return {returns.mean():.1f} ± {returns.std():.1f} ({agents} agents)")
        info = " | ".join(parts)
        if self._progress is not None:
            self._progress.update(self._task, completed=update, info=info)
        else:
            line = f"{self.label}: update {update}/{self.num_updates} | {info}"
            # soft_wrap: one line per report, never wrapped or cropped at the console width
            self.console.print(line, soft_wrap=True, markup=False, highlight=False)
