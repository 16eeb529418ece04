"""Contract routes answered from the httptools parser callbacks, without an ASGI cycle.

For every request uvicorn's httptools protocol builds a scope dict (copying the app state),
lower-cases and checks each header, creates a ``RequestResponseCycle`` with an ``asyncio.Event``,
starts a Task running the app, and turns the app's ``send`` messages back into bytes, validating
every header on the way. A trivial app cost 34-42 µs of server CPU per request on this stack,
more than the exchange work of a resting order; this path brings ``GET /healthz`` to ~12 µs over
the socket (docs/exchange-performance.md, bench/exchange/http_protocol_bench.py).

:class:`LeanHttpProtocol` keeps that machinery for everything unusual and bypasses it for the
requests :class:`~tradehall.exchange.fastroutes.FastRoutes` serves. When the headers of a request
are complete it checks: nothing earlier on the connection is still unanswered; the method and
origin-form target (no ``%`` escape in the path, no fragment, ASCII) match a contract route
(:meth:`FastRoutes.match_target`, cached); the request is not an upgrade, has no ``Expect`` or
``Transfer-Encoding`` and declares at most 64 KiB of body; the socket's writes are not paused.
Keep-alive is llhttp's verdict, except that HTTP/1.0 is never kept alive (as in uvicorn). Such a
request is *lean*: its body is collected from ``on_body``, and ``on_message_complete`` calls the
synchronous endpoint (:meth:`FastRoutes.call`) and writes the pre-encoded response -- the bytes
uvicorn would write for the same ASGI messages: status line, uvicorn's default headers
(``date``), ``content-type``, ``content-length``, ``connection: close`` when the connection is
not kept alive. Responses of one read are joined into one ``send``.

A command that must wait for the journal does not get a Task, nor a coroutine: it is answered from
a waiter on the journal batch's shared gate (:meth:`ExchangeService.durable_waiter`,
:meth:`~tradehall.exchange.service.DurableGate.add_waiter`, checked by
:meth:`ExchangeService.check_durable`), called synchronously in the loop turn that writes the
batch (a done-callback would answer one turn later). Meanwhile a :class:`_LeanCycle` stands in for
uvicorn's cycle as
``self.cycle``, so uvicorn's own bookkeeping keeps every later request on that connection
queued behind it (pipelining order), ``shutdown()`` turns it into the connection's last response,
and ``connection_lost`` marks it disconnected. A request pipelined after a lean answer that
closed the connection is ignored, as uvicorn never starts a cycle queued behind a closing one.

Anything else -- another method (405 with ``Allow``), ``HEAD``, docs, metrics, admin, WebSocket
upgrades, ``Expect: 100-continue``, chunked or large bodies, a request pipelined behind an
unanswered one -- goes through uvicorn's path unchanged (and from there through ``FastRoutes``'
ASGI path or the Starlette app). A lean request whose body has not fully arrived by the end of a
read is handed to uvicorn's path at that point, with the body received so far, so the body read
deadline (408), the size limit (413) and disconnects mid-body keep their one implementation.

uvicorn internals this depends on, because the lean path has to hand requests back to uvicorn
mid-parse and keep its per-connection state consistent (uvicorn is pinned in
``requirements.lock``; ``tests/exchange/test_ex_lean_http.py`` checks the behaviour against it,
in-process and over real sockets, so an upgrade that changes these fails there):

- the parser callbacks ``on_message_begin``/``on_url``/``on_header``/``on_headers_complete``/
  ``on_body``/``on_message_complete`` and the attributes they fill (``url``, ``headers``,
  ``scope``, ``expect_100_continue``, ``cycle``); for a request handed to uvicorn the scope is
  built by calling ``on_message_begin`` late, then ``on_headers_complete`` as uvicorn would;
- the cycle attributes uvicorn reads (``response_complete``, ``keep_alive``, ``disconnected``,
  ``message_event``), ``on_response_complete`` (pipeline start, keep-alive timer, request count;
  after a lean answer with nothing queued its steps are done inline, with one lazy keep-alive
  timer per connection instead of a timer armed and cancelled per request), ``pipeline``,
  ``timeout_keep_alive_handler``, ``shutdown``, ``send_400_response``, ``flow`` and
  ``server_state.default_headers``;
- ``STATUS_LINE`` and the header order of ``RequestResponseCycle.send``, for identical bytes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from tradehall.exchange.fastroutes import FastRoute, FastRoutes
from tradehall.exchange.http_protocol import CoalescingHttpToolsProtocol, CoalescingTransport
from tradehall.exchange.service import ExchangeService

__all__ = ["LEAN_BODY_LIMIT", "LeanHttpProtocol"]

# Bodies up to this size are collected by the lean path (uvicorn pauses reading above it).
LEAN_BODY_LIMIT = 1 << 16
_FALL_THROUGH_HEADERS = frozenset({b"expect", b"transfer-encoding", b"upgrade"})
_CLOSE = b"connection: close\r\n"


class _Heads:
    """Status line + uvicorn's default headers (+ content-type) per status, rebuilt when
    uvicorn replaces its default headers (the ``date`` header, once a second)."""

    def __init__(self) -> None:
        self._defaults: object = None
        self._by_status: dict[int, bytes] = {}

    def get(self, defaults: list[tuple[bytes, bytes]], status: int) -> bytes:
        if defaults is not self._defaults:
            self._defaults = defaults
            self._by_status = {}
        head = self._by_status.get(status)
        if head is None:
            lines = [STATUS_LINE[status]]
            lines += [b"%s: %s\r\n" % (name.lower(), value) for name, value in defaults]
            if status != 204:  # FastRoutes sends no headers with a 204
                lines.append(b"content-type: application/json\r\n")
            head = self._by_status[status] = b"".join(lines)
        return head


_HEADS = _Heads()


class _NoEvent:
    """uvicorn sets ``cycle.message_event`` when the connection is lost; nothing waits here."""

    def set(self) -> None:
        return None


class _Request:
    """A lean request between its headers and its last body byte."""

    __slots__ = ("arg", "chunks", "content_type", "keep_alive", "query", "route")

    def __init__(
        self,
        route: FastRoute | None,
        arg: str,
        query: bytes,
        content_type: str | None,
        keep_alive: bool,
    ) -> None:
        self.route = route  # None: a request after the connection was closed, ignored
        self.arg = arg
        self.query = query
        self.content_type = content_type
        self.keep_alive = keep_alive
        self.chunks: list[bytes] = []


class _LeanCycle:
    """Stands in for uvicorn's ``RequestResponseCycle`` while a command awaits durability."""

    __slots__ = (
        "_payload",
        "_protocol",
        "_route",
        "_started",
        "_status",
        "disconnected",
        "keep_alive",
        "response_complete",
    )
    message_event = _NoEvent()

    def __init__(
        self,
        protocol: LeanHttpProtocol,
        route: FastRoute,
        started: float,
        status: int,
        payload: bytes,
        keep_alive: bool,
    ) -> None:
        self._protocol = protocol
        self._route = route
        self._started = started
        self._status = status
        self._payload = payload
        self.keep_alive = keep_alive  # uvicorn's shutdown() clears it: answer, then close
        self.disconnected = False  # set by uvicorn's connection_lost
        self.response_complete = False

    def resume(self, gate: asyncio.Future[BaseException | None]) -> None:
        """Answer once the journal batch's gate is done: the command's own answer, or 503."""
        try:
            ExchangeService.check_durable(gate)
        except Exception as exc:  # the journal failed: 503, like the ASGI path
            status, payload = FastRoutes.error_reply(self._route, exc)
        else:
            status, payload = self._status, self._payload
        FastRoutes.record(self._route, self._started, status)
        self.response_complete = True
        if not self.disconnected:
            self._protocol.answered(status, payload, self.keep_alive)


class LeanHttpProtocol(CoalescingHttpToolsProtocol):
    """uvicorn's httptools protocol answering ``FastRoutes``' routes without an ASGI cycle.

    Used only when the app uvicorn loaded is a :class:`FastRoutes` (no proxy-headers or logging
    middleware around it), without ``root_path`` or ``limit_concurrency``; otherwise it behaves
    exactly as :class:`CoalescingHttpToolsProtocol`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        app = self.app
        lean = isinstance(app, FastRoutes) and not self.root_path
        self._front: FastRoutes | None = app if lean and self.limit_concurrency is None else None
        self._lean: _Request | None = None
        self._out: list[bytes] = []
        self._reading = False
        # Keep-alive after lean answers: one lazy timer instead of uvicorn's arm-and-cancel
        # per request (see _idle_check); None while a request is being received or served.
        self._idle_since: float | None = None
        self._idle_timer: asyncio.TimerHandle | None = None

    # ---------------------------------------------------------------- transport side
    def data_received(self, data: bytes) -> None:
        if self._front is None:
            super().data_received(data)
            return
        self._reading = True
        self._idle_since = None
        try:
            super().data_received(data)
            request = self._lean
            if request is not None:  # headers done, body still arriving: uvicorn takes it over
                self._lean = None
                if request.route is not None and not self.transport.is_closing():
                    self._hand_over(request)
        finally:
            self._reading = False
            if self._out:
                self._flush_out()

    def _flush_out(self) -> None:
        out = self._out
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        transport = self.transport
        if isinstance(transport, CoalescingTransport):
            transport.write_now(data)
        else:
            transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        if self._out:  # answers to earlier requests of this read go first
            self._flush_out()
        super().send_400_response(msg)

    def handle_websocket_upgrade(self) -> None:
        if self._out:
            self._flush_out()
        super().handle_websocket_upgrade()

    # ---------------------------------------------------------------- parser callbacks
    def on_message_begin(self) -> None:
        if self._front is None:
            super().on_message_begin()
            return
        # The scope is built only if the request goes to uvicorn (see _to_uvicorn).
        self.url = b""
        self.headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._front is None:
            super().on_header(name, value)
            return
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        front = self._front
        if front is not None:
            cycle = self.cycle
            if cycle is None or cycle.response_complete:
                if self.transport.is_closing():
                    # Pipelined after a lean answer that closed the connection: uvicorn would
                    # never start it (its cycle would sit queued), so it must not run here.
                    self._lean = _Request(None, "", b"", None, False)
                    return
                self._lean = self._lean_request(front)
                if self._lean is not None:
                    return
            self._to_uvicorn()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        request = self._lean
        if request is None:
            super().on_body(body)
            return
        request.chunks.append(body)

    def on_message_complete(self) -> None:
        request = self._lean
        if request is None:
            super().on_message_complete()
            return
        self._lean = None
        front = self._front
        route = request.route
        if front is None or route is None:
            return
        started = time.perf_counter()
        chunks = request.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        status, payload = front.call(route, request.arg, request.query, request.content_type, body)
        if route.durable and status < 400:
            try:
                gate = front.service.durable_waiter()
            except Exception as exc:  # an exception here would become uvicorn's 400
                status, payload = front.error_reply(route, exc)
            else:
                if gate is not None:  # None: durable already (or no journal)
                    cycle = _LeanCycle(self, route, started, status, payload, request.keep_alive)
                    self.cycle = cycle  # type: ignore[assignment]  # later requests queue behind
                    gate.add_waiter(cycle.resume)  # called as the batch is written
                    return
        FastRoutes.record(route, started, status)
        self.answered(status, payload, request.keep_alive)

    # ---------------------------------------------------------------- lean path
    def _lean_request(self, front: FastRoutes) -> _Request | None:
        """The request as a lean one, or ``None`` if uvicorn's path must serve it."""
        parser = self.parser
        found = front.match_target(parser.get_method(), self.url)
        if found is None:
            return None
        content_type: str | None = None
        connection = False
        for name, value in self.headers:
            if name == b"content-type":
                if content_type is None:
                    content_type = value.decode("latin-1")
            elif name == b"content-length":
                if not value.isdigit() or len(value) > 6 or int(value) > LEAN_BODY_LIMIT:
                    return None
            elif name == b"connection":
                connection = True
            elif name in _FALL_THROUGH_HEADERS:
                return None
        if parser.should_upgrade() or self.flow.write_paused:
            return None
        keep_alive = parser.should_keep_alive()
        # uvicorn never keeps an HTTP/1.0 connection alive; llhttp does when it says so.
        if keep_alive and connection and parser.get_http_version() == "1.0":
            keep_alive = False
        return _Request(found[0], found[1], found[2], content_type, keep_alive)

    def answered(self, status: int, payload: bytes, keep_alive: bool) -> None:
        """Write a lean response and do what uvicorn does once a response is complete."""
        head = _HEADS.get(self.server_state.default_headers, status)
        close = b"" if keep_alive else _CLOSE
        if status == 204:
            data = b"%s%s\r\n" % (head, close)
        else:
            data = b"%scontent-length: %d\r\n%s\r\n%s" % (head, len(payload), close, payload)
        self._out.append(data)
        if not keep_alive:
            self._flush_out()
            self.transport.close()
        elif not self._reading:  # a durable answer, from the gate's waiter
            self._flush_out()
        if self.pipeline or self.transport.is_closing():
            self.on_response_complete()  # starts the next queued request
            return
        # The rest of uvicorn's on_response_complete, with the lazy keep-alive timer.
        self.server_state.total_requests += 1
        if self.flow.read_paused:
            self.flow.resume_reading()
        self._idle_since = self.loop.time()
        if self._idle_timer is None:
            self._idle_timer = self.loop.call_later(self.timeout_keep_alive, self._idle_check)

    def _idle_check(self) -> None:
        """Close the connection once it has been idle for the keep-alive timeout since its
        last lean answer; re-armed for the remainder while it has not."""
        self._idle_timer = None
        since = self._idle_since
        if since is None:  # a request is in progress: armed again when it is answered
            return
        remaining = since + self.timeout_keep_alive - self.loop.time()
        if remaining > 0:
            self._idle_timer = self.loop.call_later(remaining, self._idle_check)
        else:
            self.timeout_keep_alive_handler()

    def _to_uvicorn(self) -> None:
        """Let uvicorn serve the current request: build the scope it builds at message begin,
        then run its ``on_headers_complete`` (which starts or queues the ASGI cycle)."""
        url, headers = self.url, self.headers
        super().on_message_begin()
        self.url, self.headers = url, headers
        self.scope["headers"] = headers
        self.expect_100_continue = any(
            name == b"expect" and value.lower() == b"100-continue" for name, value in headers
        )
        super().on_headers_complete()

    def _hand_over(self, request: _Request) -> None:
        self._to_uvicorn()
        if request.chunks:
            self.on_body(b"".join(request.chunks))
