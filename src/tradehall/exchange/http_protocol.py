"""uvicorn's httptools protocol with one socket write per response instead of two.

uvicorn writes the status line and headers to the transport on ``http.response.start`` and the
body on ``http.response.body``. Over TCP_NODELAY that is two ``send()`` calls and two segments per
response; on loopback each ``send`` also runs the receiver's side of the TCP stack, and profiles
of the order endpoint put about 40% of the server's busy time in those two calls.

:class:`CoalescingHttpToolsProtocol` hands uvicorn a transport wrapper that buffers writes and
flushes them once per event-loop iteration (``call_soon``), so a response -- and the responses
of other requests finished in the same iteration on that connection -- goes out in one ``send``.
Everything that must stay ordered behind buffered bytes (``close``, ``write_eof``) flushes
first. A WebSocket upgrade gets the raw transport, so market-data frames are not delayed.

This subclasses uvicorn internals (``connection_made``, ``handle_websocket_upgrade``); the uvicorn
version is pinned in ``requirements.lock`` and the HTTP tests run through it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingHttpToolsProtocol", "CoalescingTransport"]


class CoalescingTransport:
    """A transport wrapper that joins the writes of one loop iteration into one write."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.raw = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._pending.append(bytes(data))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Write everything buffered now."""
        self._scheduled = False
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self.raw.is_closing():
            self.raw.write(data)

    def write_now(self, data: bytes) -> None:
        """Write ``data`` at once, behind anything buffered: one ``send`` for a response that
        is complete before the loop iteration ends (the lean path batches per read itself)."""
        if self._pending:
            self._pending.append(data)
            self.flush()
        elif not self.raw.is_closing():
            self.raw.write(data)

    def is_closing(self) -> bool:
        return self.raw.is_closing()  # asked on every request: spare the __getattr__ fallback

    def get_write_buffer_size(self) -> int:
        return self.raw.get_write_buffer_size() + sum(len(data) for data in self._pending)

    def write_eof(self) -> None:
        self.flush()
        self.raw.write_eof()

    def close(self) -> None:
        self.flush()
        self.raw.close()

    def abort(self) -> None:
        self._pending.clear()
        self.raw.abort()

    def __getattr__(self, name: str) -> Any:
        # is_closing, get_extra_info, pause_reading, resume_reading, set_protocol, ...
        return getattr(self.raw, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools HTTP/1.1 protocol writing each response with one ``send``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        wrapper: Any = CoalescingTransport(transport, self.loop)
        super().connection_made(wrapper)

    def handle_websocket_upgrade(self) -> None:
        wrapper = self.transport
        if isinstance(wrapper, CoalescingTransport):
            wrapper.flush()
            self.transport = wrapper.raw
        super().handle_websocket_upgrade()
