"""A lean HTTP/1.1 client for load: a pool of keep-alive connections to one origin, driven by
callbacks on asyncio protocols (no task, no coroutine per request).

Why not aiohttp's client: its per-request cost (request object, headers multidict, timers,
tasks) capped one generator process near 2,500 req/s on the 2-core reference machine; this
pool sends the same requests at several times that (docs/sut.md, "HTTP", measured figures).

Scope, all the HTTP kind needs: one request in flight per connection (no pipelining), up to
``limit`` connections, requests waiting in FIFO order when all are busy; a response is read
whole (``Content-Length``, ``Transfer-Encoding: chunked``, or up to the connection's close)
and only its status is kept; ``Connection: close`` and 1xx interim responses are honoured. A
request's timeout runs from the moment it is submitted (waiting for a connection included):
on expiry the request fails with TimeoutError and its connection is closed.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections import deque
from collections.abc import Callable

#: ``done(status, error)``: status (int) and None, or 0 and the exception
Done = Callable[[int, BaseException | None], None]
_CRLF2 = b"\r\n\r\n"


class _Request:
    __slots__ = ("conn", "data", "done", "timer")

    def __init__(self, data: bytes, done: Done) -> None:
        self.data = data
        self.done = done
        self.timer: asyncio.TimerHandle | None = None
        self.conn: _Conn | None = None  # the connection it was sent on


class _Conn(asyncio.Protocol):
    """One keep-alive connection: sends a request, parses its response."""

    def __init__(self, pool: H1Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.request: _Request | None = None
        self.buf = bytearray()
        self.status = 0
        self.remaining = -1  # body bytes still due; -1: headers not read; -2: chunked; -3: EOF
        self.keep_alive = True
        self.closed = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            self._parse()
        except ValueError as exc:  # a malformed response: fail it, drop the connection
            self._finish(0, ConnectionError(f"malformed HTTP response: {exc}"), reuse=False)

    def eof_received(self) -> bool | None:
        if self.request is not None and self.remaining == -3:
            self._finish(self.status, None, reuse=False)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.request is not None:
            if self.remaining == -3:
                self._finish(self.status, None, reuse=False)
            else:
                self._finish(0, exc or ConnectionResetError("connection closed by the server"),
                             reuse=False)
        self.pool._lost(self)

    # -- sending
    def send(self, request: _Request) -> None:
        self.request = request
        request.conn = self
        self.remaining = -1
        self.status = 0
        assert self.transport is not None
        self.transport.write(request.data)

    # -- parsing
    def _parse(self) -> None:
        while self.request is not None:
            if self.remaining == -1 and not self._head():
                return
            if self.remaining >= 0:
                if len(self.buf) < self.remaining:
                    return
                del self.buf[:self.remaining]
                self._finish(self.status, None, reuse=self.keep_alive)
                return
            if self.remaining == -2:
                if not self._chunks():
                    return
                self._finish(self.status, None, reuse=self.keep_alive)
                return
            if self.remaining == -3:
                self.buf.clear()  # read until the server closes
                return

    def _head(self) -> bool:
        end = self.buf.find(_CRLF2)
        if end < 0:
            return False
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[:end + 4]
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ValueError(repr(lines[0][:80]))
        status = int(parts[1])
        length, chunked, keep = -1, False, parts[0] != "HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "connection":
                v = value.strip().lower()
                keep = v == "keep-alive" if not keep else v != "close"
        if 100 <= status < 200:
            return True  # an interim response: the real one follows (remaining stays -1)
        self.status, self.keep_alive = status, keep
        if status in (204, 304):
            self.remaining = 0
        elif chunked:
            self.remaining = -2
        elif length >= 0:
            self.remaining = length
        else:
            self.remaining, self.keep_alive = -3, False
        return True

    def _chunks(self) -> bool:
        """Consume complete chunks; True once the last chunk (and trailers) arrived."""
        while True:
            line_end = self.buf.find(b"\r\n")
            if line_end < 0:
                return False
            size = int(bytes(self.buf[:line_end]).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                end = self.buf.find(_CRLF2, line_end)
                if end < 0:
                    if self.buf[line_end:line_end + 4] == _CRLF2:
                        end = line_end
                    else:
                        return False
                del self.buf[:end + 4]
                return True
            if len(self.buf) < line_end + 2 + size + 2:
                return False
            del self.buf[:line_end + 2 + size + 2]

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
