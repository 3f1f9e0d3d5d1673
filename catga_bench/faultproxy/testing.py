"""Helpers for trying the fault proxy on loopback: an upstream server and a small API client.

Used by the tests and by :mod:`catga_bench.faultproxy.bench`; handy in experiments too::

    async with Upstream() as echo, FaultProxyServer("127.0.0.1", 0) as server:
        api = ApiClient(server.url)
        status, proxy = await api.post("/proxies", {"name": "db", "upstream": echo.address})
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import h11

from catga_bench.faultproxy.model import join_host_port, split_host_port


class Upstream:
    """A TCP server on 127.0.0.1 (free port) standing for the service behind a proxy.

    With ``echo=True`` it sends back whatever it reads, and closes when the client does;
    otherwise each accepted connection's ``(reader, writer)`` is put on :attr:`accepted` for
    the test to drive by hand.
    """

    def __init__(self, *, echo: bool = True) -> None:
        self.echo = echo
        self.accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def address(self) -> str:
        """``"127.0.0.1:PORT"``."""
        return join_host_port("127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        if not self.echo:
            self.accepted.put_nowait((reader, writer))
            return
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Upstream:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 1.0)


class ApiClient:
    """A minimal asyncio HTTP/1.1 client for the Toxiproxy API (one connection per call).

    Each call returns ``(status, body)``, the body decoded from JSON when it is JSON, else
    text (``None`` when empty).
    """

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Send one request; ``body`` is sent as JSON, or ``raw`` as it is."""
        payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        head = [("Host", join_host_port(self.host, self.port)), ("Connection", "close"),
                ("User-Agent", "catga-bench-faultproxy-test"),
                ("Content-Length", str(len(payload)))]
        if payload:
            head.append(("Content-Type", "application/json"))
        for key, value in (headers or {}).items():
            head = [(k, v) for k, v in head if k.lower() != key.lower()] + [(key, value)]
        conn = h11.Connection(h11.CLIENT)
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            out = conn.send(h11.Request(method=method, target=path, headers=head)) or b""
            if payload:
                out += conn.send(h11.Data(data=payload)) or b""
            out += conn.send(h11.EndOfMessage()) or b""
            writer.write(out)
            status = 0
            content_type = ""
            data = bytearray()
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    content_type = dict(event.headers).get(b"content-type", b"").decode()
                elif isinstance(event, h11.Data):
                    data += event.data
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        if not data:
            return status, None
        if content_type.startswith("application/json"):
            return status, json.loads(data)
        return status, data.decode()

    async def get(self, path: str) -> tuple[int, Any]:
        """``GET path``."""
        return await self.request("GET", path)

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        """``POST path`` with a JSON body."""
        return await self.request("POST", path, body)

    async def patch(self, path: str, body: Any = None) -> tuple[int, Any]:
        """``PATCH path`` with a JSON body."""
        return await self.request("PATCH", path, body)

    async def delete(self, path: str) -> tuple[int, Any]:
        """``DELETE path``."""
        return await self.request("DELETE", path)


async def connect(listen: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a client connection to a proxy's ``listen`` address."""
    host, port = split_host_port(listen)
    return await asyncio.open_connection(host, port)
