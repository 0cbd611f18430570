"""One progress count for a whole search, across all of its :func:`jaxpo.sweep.run` calls.

A search (:func:`~jaxpo.search.halving`, :func:`~jaxpo.search.pbt`,
:func:`~jaxpo.search.ask_tell`) trains through many sweep calls. Each one's
:class:`~jaxpo.sweep.MergedHook` counts that call's chunks from the call's start update;
:class:`SearchProgress` adds the updates of the search's earlier calls, so a search's
``progress=True`` shows one display and a callable ``progress`` sees ``1 .. total`` once, in
order, where ``total`` adds every call's :func:`call_updates` (chunks × updates).

Usage, inside a search::

    total = generations * call_updates(config, hparams, seeds, updates, chunk_size)
    with SEARCH_PROGRESS.showing(config, progress, total) as counted:
        for _ in range(generations):
            result = counted.run(config, hparams, seeds, updates=updates, chunk_size=chunk_size)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from .. import sweep
from ..config import Config
from ..hparams import HParams
from ..train import ProgressHook, RunnerState


def call_updates(
    config: Config,
    hparams: HParams,
    seeds: int | Sequence[int],
    updates: int,
    chunk_size: int | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> int:
    """What one ``sweep.run`` call adds to a progress count: its chunks × its ``updates``.

    Args:
        config: the static configuration.
        hparams: the call's hparams (batched or not).
        seeds: the call's seeds, as for :func:`jaxpo.sweep.run`.
        updates: the updates the call runs.
        chunk_size: the call's chunk size.
        devices: the call's devices.

    Returns:
        ``sweep.plan(...).num_chunks * updates``.
    """
    return sweep.plan(config, hparams, seeds, chunk_size, devices).num_chunks * updates


class SearchProgress:
    """The progress hook of every search: counts updates over all of its sweep calls.

    One instance, :data:`SEARCH_PROGRESS`, is the hook compiled into every search's sweep
    program, so :func:`~jaxpo.sweep.make_sweep_fn`'s cache keeps one program per config
    whatever the search's display or hook. Being one instance, it serves one search with
    progress at a time.

    Attributes:
        target: where the count goes (a display or the user's hook); ``None``: nowhere, and
            :meth:`run` compiles no hook in.
        batch: env steps per agent per update (``config.batch_size``).
    """

    def __init__(self) -> None:
        self.target: ProgressHook | None = None
        self.batch = 0
        self._base = self._start = 0

    def __call__(self, update: int, env_steps: int, returns: np.ndarray) -> None:
        """Forwards a merged report of the current call as the search's running count."""
        if self.target is not None:
            done = self._base + update - self._start
            self.target(done, self.batch * done, returns)

    @contextlib.contextmanager
    def showing(
        self, config: Config, progress: ProgressHook | bool | None, total: int
    ) -> Iterator[SearchProgress]:
        """Counts from 0 towards a display of ``total`` updates, or towards ``progress``.

        Args:
            config: the search's configuration (display label and steps per update).
            progress: ``True``: one :class:`~jaxpo.progress.ProgressDisplay` of ``total``
                updates; a callable: called as ``hook(count, count * config.batch_size,
                returns)``; ``None`` or ``False``: no progress.
            total: the updates of the whole search, the sum of every call's
                :func:`call_updates`.

        Yields:
            This hook, whose :meth:`run` trains the search's calls.
        """
        self._base, self.batch = 0, config.batch_size
        try:
            if progress is True:
                with sweep.DISPLAY_HOOK.showing(config, total) as display:
                    self.target = display
                    yield self
            else:
                self.target = progress or None
                yield self
        finally:
            self.target = None

    def run(
        self,
        config: Config,
        hparams: HParams,
        seeds: int | Sequence[int] = 1,
        **kwargs: Any,
    ) -> sweep.SweepResult:
        """:func:`jaxpo.sweep.run` reporting to this hook, its count continuing the search's.

        The hook is compiled in only while :meth:`showing` has a target.

        Args:
            config: the static configuration.
            hparams: batched hparams.
            seeds: a count or explicit seeds.
            **kwargs: :func:`jaxpo.sweep.run`'s keyword arguments (``chunk_size``,
                ``devices``, ``state``, ``updates``, ...).

        Returns:
            The call's :class:`~jaxpo.sweep.SweepResult`.
        """
        state: RunnerState | None = kwargs.get("state")
        self._start = 0 if state is None else int(np.ravel(state.update)[0])
        updates = kwargs.get("updates")
        updates = config.num_updates - self._start if updates is None else updates
        hook = None if self.target is None else self
        result = sweep.run(config, hparams, seeds, hook, **kwargs)
        chunking = (kwargs.get("chunk_size"), kwargs.get("devices"))
        self._base += call_updates(config, hparams, seeds, updates, *chunking)
        return result


#: the progress hook of every search.
SEARCH_PROGRESS = SearchProgress()
