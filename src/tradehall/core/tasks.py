"""Small asyncio building blocks shared by the systems' background workers.

* :func:`cancel_and_wait` stops a task and waits until it has really finished, so a ``stop()``
  that returns leaves nothing running that could still touch the object being torn down.
* :class:`WakeFlusher` is the "queue in memory, write in the background" loop several adapters
  use (a Redis cache writer, a price mirror): producers call :meth:`WakeFlusher.wake` -- never an
  ``await``, so the hot path pays one ``Event.set`` -- and one task calls the flush function.
  Wakes that arrive while a flush runs coalesce into one more flush, which then sees everything
  queued in the meantime. :meth:`WakeFlusher.stop` flushes once more after the task has stopped,
  so nothing queued before ``stop()`` is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["WakeFlusher", "cancel_and_wait"]


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel *task* (``None`` is allowed) and wait for it; its cancellation is absorbed."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class WakeFlusher:
    """Runs ``flush()`` in a background task each time :meth:`wake` has been called."""

    def __init__(self, flush: Callable[[], Awaitable[None]], *, name: str) -> None:
        self._flush = flush
        self._name = name
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Ask for a flush soon (safe to call from synchronous code on the loop)."""
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the background task (on the running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Stop the task, then flush what is still queued."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self._flush()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()
