"""Host-side progress display fed by the compiled run's progress hook.

One display serves a whole sweep: the hook is called once per reporting interval with the
returns of every member (see :func:`jaxpo.make_train`), never once per member.
"""

from __future__ import annotations

import sys
import time
from typing import IO

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


def default_interval(num_updates: int) -> int:
    """Updates between progress reports when none is set: about 20 reports per run."""
    return max(1, num_updates // 20)


class ProgressDisplay:
    """A progress bar (on a terminal) or one log line per report (elsewhere).

    Use as a context manager and pass the instance as ``progress`` to ``make_train`` or
    ``sweep.run``.

    Args:
        num_updates: updates per agent in the run.
        steps_per_update: env steps per agent per update.
        label: shown before the bar.
        stream: where to write (stdout by default).
    """

    def __init__(
        self,
        num_updates: int,
        steps_per_update: int,
        label: str = "train",
        stream: IO | None = None,
    ):
        self.num_updates = num_updates
        self.steps_per_update = steps_per_update
        self.label = label
        self.console = Console(file=stream or sys.stdout)
        self.calls = 0
        self._first: tuple[float, int] | None = None
        self._progress: Progress | None = None
        self._task = None

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
        """Reports ``update`` (1-based); ``returns`` holds every member's latest return."""
        self.calls += 1
        returns = np.asarray(returns, np.float64).ravel()
        agents = returns.size
        now = time.perf_counter()
        if self._first is None:  # the first report comes after compilation: time from there
            self._first = (now, env_steps)
        t0, s0 = self._first
        rate = f"{(env_steps - s0) * agents / (now - t0):,.0f} steps/s | " if now > t0 else ""
        info = (
            f"steps {env_steps * agents:,} | {rate}return "
            f"{returns.mean():.1f} ± {returns.std():.1f} ({agents} agents)"
        )
        if self._progress is not None:
            self._progress.update(self._task, completed=update, info=info)
        else:
            # One log line per report, never wrapped at the console's width.
            line = f"{self.label}: update {update}/{self.num_updates} | {info}"
            self.console.print(line, soft_wrap=True, markup=False, highlight=False)
