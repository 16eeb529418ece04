"""The SQLite writer in a child process, spoken to straight from the event loop.

The server's single write connection lives in a spawned child (``--db-writer process``), so
SQLite's CPU work and fsync waits never contend with the event loop for the GIL. The two talk
over a socket pair: :meth:`WriterProcess.submit` pickles the function and writes it to the
socket at once, an asyncio reader task takes the answers back in order, and the child runs the
functions one at a time. No thread of the server process sits on the path.

This replaced a ``ProcessPoolExecutor``: its requests go through a management thread and a
feeder thread of the server process and its results come back through the management thread.
With the event loop holding the GIL nearly all the time under load, each of those hand-offs
waited for a GIL switch, which added 5-15 ms to every batch (measured: 6 ms mean from submit to
the child starting on an idle writer, 5.5 ms from the child's answer to the loop seeing it).

The child commits before it answers, so an acknowledged write is on disk whatever happens to
either process. It exits when the server closes its end of the socket, dies (end of file on the
socket), or goes away while the child is busy (a watcher thread notices the new parent).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import pickle
import signal
import socket
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["WriterDied", "WriterProcess"]

T = TypeVar("T")

_HEADER = 4  # big-endian length of each pickled message


class WriterDied(Exception):
    """The writer process is gone; the write may or may not have committed."""


class WriterProcess:
    """One spawned process holding the write connection; writes run in submission order."""

    def __init__(self, path: Path | str, synchronous: str) -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self._process: Any = None  # multiprocessing's SpawnProcess (untyped in typeshed)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._reading: asyncio.Task[None] | None = None
        self._dead = False

    @property
    def pid(self) -> int | None:
        return None if self._process is None else int(self._process.pid)

    async def start(self) -> None:
        """Spawn the child and wait until its connection is open."""
        ours, theirs = socket.socketpair()
        process = multiprocessing.get_context("spawn").Process(
            target=_serve,
            args=(theirs, str(self.path), self.synchronous, os.getpid()),
            name="tap-db-writer",
            daemon=True,
        )
        try:
            process.start()
        finally:
            theirs.close()
        self._process = process
        self._reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        self._reading = asyncio.create_task(self._read_answers(), name="tap-db-writer-answers")
        await self.submit(_opened)

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Hand ``fn`` to the child now (before any ``await``); the future gets its result.

        ``fn`` and its result must be picklable (module-level functions or
        ``functools.partial`` of them).
        """
        if self._dead or self._writer is None:
            raise WriterDied("the writer process is not running")
        data = pickle.dumps(fn, pickle.HIGHEST_PROTOCOL)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._writer.write(len(data).to_bytes(_HEADER, "big") + data)
        self._pending.append(future)
        return future

    async def _read_answers(self) -> None:
        reader = self._reader
        assert reader is not None
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(_HEADER), "big")
                body = await reader.readexactly(size)
                future = self._pending.popleft()
                if future.done():  # its caller stopped waiting (timeout, cancellation)
                    continue
                try:
                    ok, value = pickle.loads(body)
                except Exception as exc:  # an exception type that does not unpickle
                    ok, value = False, WriterDied(f"unreadable answer from the writer: {exc!r}")
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._dead = True
            while self._pending:
                future = self._pending.popleft()
                if not future.done():
                    future.set_exception(WriterDied("the writer process exited"))

    async def close(self) -> None:
        """Ask the child to close its connection and exit; tolerate a dead child."""
        if self._writer is not None:
            if not self._dead:
                with contextlib.suppress(WriterDied):
                    await self.submit(_stop)
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
            self._writer = None
        if self._reading is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
            self._reading = None
        process = self._process
        if process is not None:
            await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, 5)
            self._process = None


def _opened(conn: sqlite3.Connection) -> None:
    return None


def _stop(conn: sqlite3.Connection) -> None:
    """The message that tells the child to close its connection and exit (never called)."""


def _serve(sock: socket.socket, path: str, synchronous: str, parent_pid: int) -> None:
    """The child's main loop: read a function, run it on the connection, send the outcome."""
    from tradehall.tap.db import WRITER_AUTOCHECKPOINT, connect, start_checkpointer

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when the writer stops
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    conn = connect(path, synchronous=synchronous)
    conn.execute(f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT}")
    start_checkpointer(path, synchronous)
    incoming = sock.makefile("rb")
    try:
        while True:
            header = incoming.read(_HEADER)
            if len(header) < _HEADER:
                return  # the server closed its end or died
            body = incoming.read(int.from_bytes(header, "big"))
            answer: tuple[bool, Any]
            try:
                fn = pickle.loads(body)
                if fn is _stop:
                    conn.close()
                    _send(sock, (True, None))
                    return
                answer = (True, fn(conn))
            except Exception as exc:
                answer = (False, exc)
            _send(sock, answer)
    finally:
        with contextlib.suppress(sqlite3.Error):
            conn.close()


def _send(sock: socket.socket, answer: tuple[bool, Any]) -> None:
    try:
        data = pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # an unpicklable result or exception
        data = pickle.dumps((False, WriterDied(f"unpicklable answer: {exc!r}")))
    sock.sendall(len(data).to_bytes(_HEADER, "big") + data)


def _watch_parent(parent_pid: int) -> None:
    # A SIGKILLed server must not leave its writer behind holding the database open, even when
    # the writer is busy and would not see the end of file on the socket for a while.
    while os.getppid() == parent_pid:
        time.sleep(0.2)
    os._exit(0)
