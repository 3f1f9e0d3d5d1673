"""A small HTTP/1.1 server on asyncio streams, with h11 doing the protocol work.

Enough for a JSON control API: keep-alive, ``Content-Length`` and chunked request bodies (h11),
``Expect: 100-continue``, a cap on body size, an idle timeout. One request at a time per
connection; handlers are coroutines taking a :class:`Request` and returning a
:class:`Response`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

import h11

log = logging.getLogger("catga.faultproxy")

MAX_BODY_BYTES = 1 << 20
IDLE_TIMEOUT_S = 60.0
READ_SIZE = 65536


@dataclass(slots=True)
class Request:
    """One HTTP request: method (upper case), path (percent-decoded, no query), headers
    (lower-case names), body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Response:
    """One HTTP response; ``body`` is sent with a ``Content-Length`` unless the status has no
    body (1xx, 204, 304)."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], Awaitable[Response]]


class _ClientGone(Exception):
    pass


async def serve_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     handler: Handler) -> None:
    """Serve HTTP requests on one accepted connection until it closes."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
    try:
        while True:
            event = await _next_event(conn, reader)
            if isinstance(event, h11.ConnectionClosed):
                return
            assert isinstance(event, h11.Request)
            request = await _read_request(conn, reader, writer, event)
            if request is None:
                response = Response(413, b'{"error":"request body too large","status":413}\n')
            else:
                try:
                    response = await handler(request)
                except Exception:
                    log.exception("faultproxy: API handler failed")
                    response = Response(500, b'{"error":"internal error","status":500}\n')
            await _send_response(conn, writer, response)
            if conn.our_state is h11.MUST_CLOSE or request is None:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return
    except h11.RemoteProtocolError as exc:
        with contextlib.suppress(Exception):
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await _send_response(
                    conn, writer, Response(exc.error_status_hint, b"bad request\n", "text/plain")
                )
    except (_ClientGone, ConnectionError, TimeoutError):
        return
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Event:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await asyncio.wait_for(reader.read(READ_SIZE), IDLE_TIMEOUT_S)
            conn.receive_data(data)
            continue
        if event is h11.PAUSED:
            raise _ClientGone
        assert isinstance(event, h11.Event)
        return event


async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter, head: h11.Request) -> Request | None:
    if conn.client_is_waiting_for_100_continue:
        writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
    body = bytearray()
    while True:
        event = await _next_event(conn, reader)
        if isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY_BYTES:
                return None
        elif isinstance(event, h11.EndOfMessage):
            break
        else:
            raise _ClientGone
    target = head.target.decode("latin-1")
    return Request(
        method=head.method.decode("ascii").upper(),
        path=unquote(urlsplit(target).path),
        headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers},
        body=bytes(body),
    )


async def _send_response(conn: h11.Connection, writer: asyncio.StreamWriter,
                         response: Response) -> None:
    has_body = response.status >= 200 and response.status not in (204, 304)
    headers = [("Server", "catga-bench-faultproxy"), *response.headers]
    if has_body:
        headers += [("Content-Type", response.content_type),
                    ("Content-Length", str(len(response.body)))]
    try:
        reason = HTTPStatus(response.status).phrase.encode()
    except ValueError:
        reason = b""
    out = conn.send(h11.Response(status_code=response.status, headers=headers,
                                 reason=reason)) or b""
    if has_body and response.body:
        out += conn.send(h11.Data(data=response.body)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    writer.write(out)
    await writer.drain()
