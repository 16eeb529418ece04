"""The bet batcher (ADR-005 with C-17/C-18): a bounded queue in front of the single writer.

Handlers call :meth:`Batcher.submit`, which enqueues the bet with a future and waits for the
commit. The flush loop takes up to ``max_batch`` bets (100) as soon as that many are waiting, or
whatever is waiting when the timer (``flush_interval_s``, default 100 ms, measured on the
injected clock from the oldest waiting bet) fires, and writes them in one transaction through
:func:`~tradehall.tap.ledger.place_batch`. A full queue (``max_queue``, 10k) fails at once with
:class:`Overloaded` (503 ``overloaded``). A failed commit fails every bet of the batch.

Up to ``max_in_flight`` batches (2) are handed to the writer at once: while batch N commits,
batch N+1 is already queued behind it in the writer, so the writer never idles for the round trip
of a result through the event loop. The writer runs them in order (the flush function must hand
its batch to the single writer before its first ``await``, as
:meth:`~tradehall.tap.db.Database.write` does), so N+1 sees everything N committed.

Shutdown drains: :meth:`stop` flushes what is queued before returning.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from tradehall.core.clock import Clock
from tradehall.tap.ledger import BetRequest, BetResult

__all__ = ["Batcher", "Overloaded"]

Flush = Callable[[Sequence[BetRequest]], Awaitable[list[BetResult]]]


class Overloaded(Exception):
    """The queue is full; the caller answers 503 ``overloaded`` immediately."""


class Batcher:
    def __init__(
        self,
        flush: Flush,
        clock: Clock,
        *,
        max_batch: int = 100,
        max_queue: int = 10_000,
        flush_interval_s: float = 0.1,
        max_in_flight: int = 2,
        on_flush: Callable[[int, float], None] | None = None,
    ) -> None:
        self._flush = flush
        self._clock = clock
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.flush_interval_s = flush_interval_s
        self._on_flush = on_flush
        self._slots = asyncio.Semaphore(max_in_flight)
        self._in_flight: set[asyncio.Task[None]] = set()
        # (bet, future, monotonic time queued)
        self._pending: list[tuple[BetRequest, asyncio.Future[BetResult], float]] = []
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.flushes = 0

    @property
    def depth(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tap-batcher")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._full.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def enqueue(self, bet: BetRequest) -> asyncio.Future[BetResult]:
        """Queue ``bet``; the future resolves after the commit. Raises :class:`Overloaded`."""
        if self._stopping or len(self._pending) >= self.max_queue:
            raise Overloaded()
        future: asyncio.Future[BetResult] = asyncio.get_running_loop().create_future()
        self._pending.append((bet, future, self._clock.monotonic()))
        self._wake.set()
        if len(self._pending) >= self.max_batch:
            self._full.set()
        return future

    async def submit(self, bet: BetRequest) -> BetResult:
        return await self.enqueue(bet)

    async def _wait_full_or_timer(self) -> None:
        remaining = self.flush_interval_s - (self._clock.monotonic() - self._pending[0][2])
        if remaining <= 0:
            return
        full = asyncio.ensure_future(self._full.wait())
        timer = asyncio.ensure_future(self._clock.sleep(remaining))
        try:
            await asyncio.wait((full, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (full, timer):
                if not task.done():
                    task.cancel()

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._stopping:
                    if self._in_flight:
                        await asyncio.wait(self._in_flight)
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._pending) < self.max_batch and not self._stopping:
                self._full.clear()
                await self._wait_full_or_timer()
            await self._slots.acquire()
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            if len(self._pending) < self.max_batch:
                self._full.clear()
            task = asyncio.create_task(self._write(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            await asyncio.sleep(0)  # the task hands its batch to the writer before the next one

    async def _write(
        self, batch: list[tuple[BetRequest, asyncio.Future[BetResult], float]]
    ) -> None:
        started = self._clock.monotonic()
        try:
            results = await self._flush([bet for bet, _, _ in batch])
        except Exception as exc:
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future, _), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._slots.release()
        self.flushes += 1
        if self._on_flush is not None:
            self._on_flush(len(batch), self._clock.monotonic() - started)
