"""An append-only command journal with group commit, checksummed records and torn-tail repair.

Layout: ``<dir>/journal-<first seq>.log`` segment files. Each record is framed as
``[u32 length][u32 crc32(payload)][payload]`` (little-endian); the payload carries its own
sequence number. A new segment starts after every snapshot, so whole segments can be dropped
once a snapshot covers them.

Group commit: :meth:`FileJournal.append` is synchronous and cheap -- it queues the bytes and
returns a future shared by every record of the next batch. One writer task hands each batch to a
worker thread that writes it and (with ``sync="fsync"``) calls ``fdatasync`` once, then resolves
the batch's future and runs the records' ``on_durable`` callbacks in journal order, then the
batch's :meth:`~FileJournal.when_settled` hooks (also called, with the error, if it fails). While
the thread syncs batch N, batch N+1 accumulates, so commands arriving together share one sync.

Sync policies and their loss windows:

- ``fsync`` (default): a record is on stable storage before its future resolves. Nothing
  acknowledged is lost, even on power failure.
- ``none``: written to the OS before the future resolves, never synced. Survives a process crash
  (SIGKILL); a machine crash or power loss can lose the last few seconds. For benchmarks. The
  writes are made on the event loop itself (a page-cache write costs less than a thread hop):
  a batch's first append schedules a loop callback that writes it, without waking the writer
  task, unless a batch ahead of it is still with the thread (opening or rotating a segment),
  in which case the writer takes it in order.

Records are framed into their batch's buffer as they are appended, so a batch is one ``write()``.

Recovery (:meth:`FileJournal.open`): a record that fails its checksum or is cut short at the very
end of the last segment is a torn tail -- reported and truncated. A bad record with data after it,
or anywhere in an earlier segment, is corruption in the middle: startup stops with
:class:`JournalCorrupt`, because silently skipping it would lose acknowledged commands.

The :class:`Journal` protocol is what the service needs; a replicated log (see
``docs/exchange-replication.md``) can implement it instead of local files.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import Literal, Protocol

from tradehall.core.logging import get_logger

__all__ = ["FileJournal", "Journal", "JournalCorrupt", "JournalError", "SyncPolicy"]

SyncPolicy = Literal["fsync", "none"]
_HEADER = struct.Struct("<II")
_MAX_RECORD = 64 << 20
log = get_logger("exchange.journal")


class JournalError(RuntimeError):
    """The journal cannot be written or opened; the exchange must not acknowledge commands."""


class JournalCorrupt(JournalError):
    """A damaged record that is not a torn tail: refusing to start rather than lose data."""


class Journal(Protocol):
    """What the service needs from a durable, ordered command log."""

    def append(
        self, payload: bytes, on_durable: Callable[[], None] | None = None
    ) -> asyncio.Future[None]:
        """Queue one record; the future resolves once it (and all before it) are durable."""
        ...

    def when_settled(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call ``callback`` synchronously once the batch the latest :meth:`append` joined is
        written -- with ``None``, after the batch's ``on_durable`` callbacks -- or has failed,
        with the failure. Call it right after that ``append``."""
        ...

    def rotate(self, next_seq: int) -> asyncio.Future[None]:
        """Start a new segment for records from ``next_seq`` on; resolves when done."""
        ...

    async def drop_before(self, seq: int) -> int:
        """Delete whole segments holding only records below ``seq``; return how many."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Flush everything queued, then stop."""
        ...


class _Batch:
    """The records of one group commit, framed as they are appended: one ``write()`` each."""

    __slots__ = ("callbacks", "frames", "future", "records", "rotate_to", "settled")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.frames = bytearray()
        self.records = 0
        self.callbacks: list[Callable[[], None]] = []
        self.settled: list[Callable[[BaseException | None], None]] = []  # see when_settled
        self.future = future
        self.rotate_to: int | None = None  # start a new segment after this batch


class FileJournal:
    """The embedded journal: segment files in one directory, locked against a second writer."""

    def __init__(self, directory: Path, *, sync: SyncPolicy = "fsync") -> None:
        self.directory = directory
        self.sync = sync
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._segment_first: int = 1
        self._batch: _Batch | None = None  # open: appends join it
        self._appended: _Batch | None = None  # the batch the latest append joined
        self._closed: deque[_Batch] = deque()  # closed by rotate(), waiting for the writer
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._failure: BaseException | None = None
        self._closing = False
        self._busy = False  # the writer task holds a batch (possibly in the thread)
        self.batches_written = 0
        self.records_written = 0

    # ------------------------------------------------------------------ recovery
    def open(self, after_seq: int = 0) -> Iterator[bytes]:
        """Lock the directory and yield every intact record payload, oldest first.

        Records with sequence numbers at or below ``after_seq`` are the snapshot's business; the
        caller skips them by their own sequence number. A torn tail is truncated in place.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JournalError(
                f"data directory {self.directory} is in use by another exchange process"
            ) from None
        segments = self.segments()
        for index, (first, path) in enumerate(segments):
            last = index == len(segments) - 1
            yield from self._read_segment(path, last=last)
            self._segment_first = first
        if not segments:
            self._segment_first = after_seq + 1

    def segments(self) -> list[tuple[int, Path]]:
        """Segment files as (first sequence number, path), in order."""
        found = []
        for path in self.directory.glob("journal-*.log"):
            with contextlib.suppress(ValueError):
                found.append((int(path.stem.split("-", 1)[1]), path))
        return sorted(found)

    def _read_segment(self, path: Path, *, last: bool) -> Iterator[bytes]:
        data = path.read_bytes()
        pos, size = 0, len(data)
        while pos < size:
            problem = None
            if size - pos < _HEADER.size:
                problem = "partial record header"
            else:
                length, crc = _HEADER.unpack_from(data, pos)
                end = pos + _HEADER.size + length
                if length > _MAX_RECORD:
                    problem = f"implausible record length {length}"
                elif end > size:
                    problem = "record cut short"
                elif zlib.crc32(data[pos + _HEADER.size : end]) != crc:
                    problem = "checksum mismatch"
            if problem is None:
                yield data[pos + _HEADER.size : end]
                pos = end
                continue
            # Cut short, or the very last record with a bad checksum: a write the crash tore.
            tail = problem != "checksum mismatch" or end == size
            if last and tail:
                log.warning(
                    "journal_torn_tail_truncated",
                    segment=path.name,
                    offset=pos,
                    dropped_bytes=size - pos,
                    problem=problem,
                )
                with open(path, "r+b") as handle:
                    handle.truncate(pos)
                    handle.flush()
                    os.fsync(handle.fileno())
                return
            raise JournalCorrupt(
                f"journal segment {path} is corrupt at byte {pos} ({problem}) with data after it;"
                " refusing to start: restore the directory from a backup or remove the damaged"
                " segment deliberately"
            )

    # ------------------------------------------------------------------ writing
    async def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="journal-writer")

    def append(
        self, payload: bytes, on_durable: Callable[[], None] | None = None
    ) -> asyncio.Future[None]:
        if self._failure is not None:
            raise JournalError("journal is unusable after a write failure") from self._failure
        batch = self._batch
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._batch = _Batch(loop.create_future())
            if self._inline():
                loop.call_soon(self._write_inline)
            else:
                self._wakeup.set()
        frames = batch.frames
        frames += _HEADER.pack(len(payload), zlib.crc32(payload))
        frames += payload
        batch.records += 1
        if on_durable is not None:
            batch.callbacks.append(on_durable)
        self._appended = batch
        return batch.future

    def when_settled(self, callback: Callable[[BaseException | None], None]) -> None:
        # Synchronous, unlike a done-callback on the batch's future: a waiter answering from it
        # answers in the loop turn that wrote the batch, not one turn later (and no call_soon
        # handle per batch).
        batch = self._appended
        if batch is None:
            raise JournalError("when_settled() needs an append() before it")
        batch.settled.append(callback)

    def _inline(self) -> bool:
        """Whether the open batch may be written on the event loop, now: ``sync="none"``, the
        segment open and nothing queued before it (the writer task idle, no rotation pending)."""
        return (
            self.sync == "none"
            and self._fd is not None
            and not self._busy
            and not self._closed
            and self._failure is None
        )

    def _write_inline(self) -> None:
        """Write the open batch from a loop callback (``sync="none"``): a page-cache write costs
        less than waking the writer task, and much less than a thread hop."""
        batch = self._batch
        if batch is None:  # already taken by rotate() or the writer
            return
        if not self._inline():  # something queued before it: the writer keeps the order
            self._wakeup.set()
            return
        self._batch = None
        try:
            self._write_batch(batch)
        except BaseException as exc:  # disk full, I/O error: stop acknowledging
            self._fail(exc, [batch])
            self._wakeup.set()  # the writer fails anything queued since, and stops
            return
        self._written(batch)

    def rotate(self, next_seq: int) -> asyncio.Future[None]:
        batch = self._batch
        if batch is None:
            batch = _Batch(asyncio.get_running_loop().create_future())
        batch.rotate_to = next_seq
        self._closed.append(batch)  # later records go into a fresh batch, and a fresh segment
        self._batch = None
        self._wakeup.set()
        return batch.future

    async def drop_before(self, seq: int) -> int:
        segments = self.segments()
        # A segment holds [its first, next segment's first - 1]; the newest one is never dropped.
        doomed = [path for (_, path), (next_first, _) in pairwise(segments) if next_first <= seq]
        for path in doomed:
            path.unlink(missing_ok=True)
        if doomed:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._sync_dir)
        return len(doomed)

    async def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        if self._writer is not None:
            await self._writer
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._thread.shutdown(wait=True)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        pending: list[_Batch] = []
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._failure is not None:  # an inline write failed
                self._fail(self._failure, self._take_all())
                return
            while self._pending_batches(pending):
                batch = pending.pop(0)
                self._busy = True
                try:
                    if self.sync == "none" and self._fd is not None and batch.rotate_to is None:
                        # A write into the page cache is cheaper inline than a thread hop (about
                        # 35 µs of CPU per small batch); opening, rotating and syncing still go
                        # to the worker thread.
                        self._write_batch(batch)
                    else:
                        await loop.run_in_executor(self._thread, self._write_batch, batch)
                except BaseException as exc:  # disk full, I/O error: stop acknowledging
                    self._fail(exc, [batch, *pending, *self._take_all()])
                    return
                finally:
                    self._busy = False
                self._written(batch)
            if self._closing and self._batch is None and not self._closed:
                return

    def _take_all(self) -> list[_Batch]:
        """Every batch not yet written, in order (closed ones, then the open one)."""
        batches = list(self._closed)
        self._closed.clear()
        if self._batch is not None:
            batches.append(self._batch)
            self._batch = None
        return batches

    def _fail(self, exc: BaseException, batches: list[_Batch]) -> None:
        if self._failure is None:
            self._failure = exc
            log.critical("journal_write_failed", error=repr(exc))
        for doomed in batches:
            failure = JournalError(f"journal write failed: {exc}")
            if not doomed.future.done():
                doomed.future.set_exception(failure)
                if doomed.settled:  # its hooks hear of it: not an unretrieved exception
                    doomed.future.exception()
            self._settled(doomed, failure)

    def _written(self, batch: _Batch) -> None:
        self.batches_written += 1
        self.records_written += batch.records
        if not batch.future.done():
            batch.future.set_result(None)
        for callback in batch.callbacks:
            try:
                callback()
            except Exception:
                log.exception("journal_callback_failed")
        self._settled(batch, None)

    @staticmethod
    def _settled(batch: _Batch, failure: BaseException | None) -> None:
        hooks, batch.settled = batch.settled, []  # each runs once, even if a batch fails twice
        for hook in hooks:
            try:
                hook(failure)
            except Exception:
                log.exception("journal_callback_failed")

    def _pending_batches(self, pending: list[_Batch]) -> bool:
        # Closed batches go first; then the open batch is closed and taken as it stands.
        if not pending:
            if self._closed:
                pending.append(self._closed.popleft())
            elif self._batch is not None:
                pending.append(self._batch)
                self._batch = None
        return bool(pending)

    def _segment_name(self, first: int) -> str:
        return f"journal-{first:016d}.log"

    def _write_batch(self, batch: _Batch) -> None:
        if self._fd is None:
            path = self.directory / self._segment_name(self._segment_first)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._sync_dir()
        if batch.records:
            frames = batch.frames
            written = os.write(self._fd, frames)
            if written < len(frames):  # a short write: the rest, in as many calls as it takes
                view = memoryview(frames)[written:]
                while view:
                    view = view[os.write(self._fd, view) :]
            if self.sync == "fsync":
                os.fdatasync(self._fd)
        if batch.rotate_to is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            self._segment_first = batch.rotate_to

    def _sync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
