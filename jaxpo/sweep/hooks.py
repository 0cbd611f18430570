"""Progress plumbing of a sweep: one report per update for all agents of all devices.

:class:`MergedHook` merges the per-device progress calls of a sharded sweep;
:class:`DisplayHook` (one instance, :data:`DISPLAY_HOOK`) forwards them to the progress
display of ``run(progress=True)``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import numpy as np

from ..config import Config
from ..progress import ProgressDisplay
from ..train import ProgressHook


class MergedHook:
    """Turns the per-device progress calls of a sharded sweep into one call per report.

    Each device calls the hook with its own agents' returns; this waits until all
    ``shards`` local devices reported an update, then calls ``hook`` once with every
    local agent's return (order across devices unspecified; a partly filled last chunk's
    padding, copies of agent 0, included). Updates of later chunks continue the count: a run
    of ``updates`` updates from update ``start`` reports chunk ``c``'s update ``start + u`` as
    ``start + c * updates + u``. With several processes, each one's hook sees its own
    devices' agents.
    """

    def __init__(self, hook: ProgressHook, shards: int) -> None:
        self.hook, self.shards = hook, shards
        self._lock = threading.Lock()
        self.reset(0, 1)

    def reset(self, start: int, updates: int) -> None:
        """Forgets partial reports; counts a run of ``updates`` updates from ``start``."""
        self._pending: dict[int, list[np.ndarray]] = {}
        self._offset, self._last = 0, start + updates
        self._updates = updates

    def __call__(self, update: int, env_steps: int, returns: np.ndarray) -> None:
        """Records one device's report of ``update``; forwards once all shards reported."""
        with self._lock:
            parts = self._pending.setdefault(update, [])
            parts.append(np.ravel(returns))
            if len(parts) < self.shards:
                return
            del self._pending[update]
            done = self._offset + update
            if update == self._last:
                self._offset += self._updates
            self.hook(done, env_steps // update * done, np.concatenate(parts))


class DisplayHook:
    """The progress hook of ``run(progress=True)``: forwards each report to ``display``.

    One instance, :data:`DISPLAY_HOOK`, serves every such run (its ``display`` set for the
    run's duration), so :func:`~jaxpo.sweep.make_sweep_fn`'s cache keeps one compiled program
    per config rather than compiling again for each new display.
    """

    def __init__(self) -> None:
        self.display: ProgressDisplay | None = None

    @contextlib.contextmanager
    def showing(self, config: Config, total_updates: int) -> Iterator[DisplayHook]:
        """Forwards to a new display of ``total_updates`` updates (label ``config.algo``)."""
        with ProgressDisplay(total_updates, config.batch_size, label=config.algo) as display:
            self.display = display
            try:
                yield self
            finally:
                self.display = None

    def __call__(self, update: int, env_steps: int, returns: np.ndarray) -> None:
        """Reports to the current display, if any."""
        if self.display is not None:
            self.display(update, env_steps, returns)


#: the progress hook of every ``run(progress=True)``.
DISPLAY_HOOK = DisplayHook()
