"""The HTTP/1.1 connection pool of ``--sut http``: keep-alive connections to one origin, driven
by callbacks on asyncio protocols (no task, no coroutine per request). Responses are parsed by
``httptools.HttpResponseParser`` (MagicStack's binding of llhttp, Node's parser, as used by
uvicorn); the only code of ours is the pool: connections, the FIFO of waiting requests,
timeouts.

Why not a client library: aiohttp's ``ClientSession``, tuned (``TCPConnector(limit=1000)``, no
DNS cache expiry, ``DummyCookieJar``, no automatic headers, no decompression, one session-wide
timeout) and on the generator's uvloop, held 5,000 requests/s in one generator process
against the Node example service (P99 8 ms) and collapsed at 5,500/s (2,776/s achieved, P99
12 s, requests timing out); this pool holds 18,000/s there (P99 90 ms; docs/sut.md, "HTTP",
measured on the 2-core reference machine). The acceptance floor is 5,000/s per process with
margin, so a library is not enough here.

Scope, all the HTTP kind needs: one request in flight per connection (no pipelining), up to
``limit`` connections, requests waiting in FIFO order when all are busy; a response is read
whole (``Content-Length``, ``Transfer-Encoding: chunked``, or up to the connection's close)
and only its status is kept; ``Connection: close`` and 1xx interim responses are honoured; a
malformed response, or one cut short by a close, fails with ConnectionError. A request's
timeout runs from the moment it is submitted (waiting for a connection included): on expiry
the request fails with TimeoutError and its connection is closed.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections import deque
from collections.abc import Callable

import httptools

#: ``done(status, error)``: status (int) and None, or 0 and the exception
Done = Callable[[int, BaseException | None], None]


class _Request:
    __slots__ = ("conn", "data", "done", "timer")

    def __init__(self, data: bytes, done: Done) -> None:
        self.data = data
        self.done = done
        self.timer: asyncio.TimerHandle | None = None
        self.conn: _Conn | None = None  # the connection it was sent on


class _Conn(asyncio.Protocol):
    """One keep-alive connection: sends a request; httptools parses its response."""

    def __init__(self, pool: H1Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.request: _Request | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0  # the response's, once its head is read (0: not yet)
        self.framed = False  # it has a Content-Length or chunked body (else: up to the close)
        self.closed = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.request is None:
            return  # nothing asked (a request that timed out): its connection is going
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:  # malformed: fail it, drop the connection
            self._finish(0, ConnectionError(f"malformed HTTP response: {exc}"), reuse=False)

    def eof_received(self) -> bool | None:
        self._closed_by_server(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._closed_by_server(exc)
        self.pool._lost(self)

    def _closed_by_server(self, exc: Exception | None) -> None:
        if self.request is None:
            return
        if self.status and not self.framed:  # a body read up to the close: it is complete
            self._finish(self.status, None, reuse=False)
        else:
            self._finish(0, exc or ConnectionResetError("connection closed by the server"),
                         reuse=False)

    # -- httptools.HttpResponseParser's callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status >= 200:
            self.status = status
            self.framed = self.framed or status in (204, 304)
        else:  # 1xx: an interim response, the real one follows
            self.framed = False

    def on_message_complete(self) -> None:
        if self.status:
            self._finish(self.status, None, reuse=self.parser.should_keep_alive())
        # else the end of an interim response

    # -- sending
    def send(self, request: _Request) -> None:
        self.request = request
        request.conn = self
        self.status, self.framed = 0, False
        assert self.transport is not None
        self.transport.write(request.data)

    def _finish(self, status: int, error: BaseException | None, *, reuse: bool) -> None:
        request, self.request = self.request, None
        if request is None:
            return
        if request.timer is not None:
            request.timer.cancel()
        if not reuse and not self.closed:
            self.closed = True
            assert self.transport is not None
            self.transport.close()
        try:
            request.done(status, error)
        finally:
            if reuse and not self.closed:
                self.pool._idle(self)

    def abort(self) -> None:
        """Drop the connection (a timed-out request)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class H1Pool:
    """Keep-alive connections to ``host:port`` (TLS with ``ssl``), at most ``limit``.

    :meth:`submit` a complete request (bytes); ``done(status, None)`` or ``done(0, exc)`` is
    called on the loop once, with TimeoutError after ``timeout_s``.
    """

    def __init__(self, host: str, port: int, *, limit: int = 1000, timeout_s: float = 10.0,
                 ssl: _ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.limit, self.timeout_s, self.ssl = (
            host, port, limit, timeout_s, ssl)
        self.loop = asyncio.get_running_loop()
        self.idle: list[_Conn] = []
        self.conns: set[_Conn] = set()
        self.connecting = 0
        self.waiting: deque[_Request] = deque()
        self.closing = False
        self.peak = 0  # the most connections open at once

    @property
    def open_connections(self) -> int:
        return len(self.conns)

    def submit(self, data: bytes, done: Done) -> None:
        request = _Request(data, done)
        request.timer = self.loop.call_later(self.timeout_s, self._expire, request)
        if self.idle:
            self.idle.pop().send(request)
            return
        self.waiting.append(request)
        if len(self.conns) + self.connecting < self.limit:
            self._connect()

    def _connect(self) -> None:
        self.connecting += 1
        task = self.loop.create_task(self.loop.create_connection(
            lambda: _Conn(self), self.host, self.port, ssl=self.ssl))
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[tuple[asyncio.BaseTransport, _Conn]]) -> None:
        self.connecting -= 1
        exc = None if task.cancelled() else task.exception()
        if exc is not None or task.cancelled():
            if self.waiting:  # the request that asked for it fails now, not at its timeout
                request = self.waiting.popleft()
                if request.timer is not None:
                    request.timer.cancel()
                request.done(0, exc or ConnectionError("connect cancelled"))
            return
        conn = task.result()[1]
        self.conns.add(conn)
        self.peak = max(self.peak, len(self.conns))
        if self.closing:
            conn.abort()
            return
        self._idle(conn)

    def _idle(self, conn: _Conn) -> None:
        if self.waiting:
            conn.send(self.waiting.popleft())
        else:
            self.idle.append(conn)

    def _lost(self, conn: _Conn) -> None:
        self.conns.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if self.waiting and not self.closing and \
                len(self.conns) + self.connecting < self.limit:
            self._connect()

    def _expire(self, request: _Request) -> None:
        request.timer = None
        conn = request.conn
        if conn is not None and conn.request is request:
            conn.request = None
            conn.abort()
        else:
            try:
                self.waiting.remove(request)
            except ValueError:
                return
        request.done(0, TimeoutError(f"no response within {self.timeout_s:g} s"))

    async def close(self) -> None:
        """Fail the waiting requests (ConnectionAbortedError), close every connection."""
        self.closing = True
        while self.waiting:
            request = self.waiting.popleft()
            if request.timer is not None:
                request.timer.cancel()
            request.done(0, ConnectionAbortedError("the run ended"))
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.sleep(0)


__all__ = ["Done", "H1Pool"]
