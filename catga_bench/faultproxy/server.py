"""The fault-proxy server: the Toxiproxy HTTP API plus the proxies it manages.

Usage::

    async with FaultProxyServer("127.0.0.1", 8474) as server:
        print(server.url)          # http://127.0.0.1:8474
        await server.serve_forever()

Port 0 picks a free port (:attr:`FaultProxyServer.port` tells which). Leaving the ``async with``
closes the API listener, every proxy listener and every proxied connection.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from types import TracebackType

from catga_bench.faultproxy.api import ToxiproxyApi
from catga_bench.faultproxy.httpserver import serve_http
from catga_bench.faultproxy.model import join_host_port, parse_populate
from catga_bench.faultproxy.proxy import Proxy
from catga_bench.faultproxy.registry import ProxyRegistry

#: Toxiproxy's API port (README: "Toxiproxy listens for HTTP on port 8474").
DEFAULT_PORT = 8474
DEFAULT_HOST = "127.0.0.1"


class FaultProxyServer:
    """A Toxiproxy-compatible fault proxy on ``host:port`` (loopback by default).

    ``seed`` makes toxicity and jitter draws reproducible.
    """

    def __init__(
        self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, seed: int | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.registry = ProxyRegistry(random.Random(seed))
        self.api = ToxiproxyApi(self.registry)
        self._server: asyncio.AbstractServer | None = None
        self._clients: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def url(self) -> str:
        """Base URL of the API, e.g. ``http://127.0.0.1:8474``."""
        return f"http://{join_host_port(self.host, self.port)}"

    async def start(self) -> None:
        """Bind the API port (raises OSError when it cannot)."""
        self._server = await asyncio.start_server(self._serve_client, self.host, self.port)
        sockets = self._server.sockets
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients[task] = writer
        try:
            await serve_http(reader, writer, self.api)
        finally:
            self._clients.pop(task, None)

    async def populate(self, config: Path | str) -> list[Proxy]:
        """Create the proxies of a Toxiproxy config file (a JSON array, as ``/populate``).

        Raises ValueError when the file is not a valid config.
        """
        body = Path(config).read_bytes()
        try:
            json.loads(body)
            items = parse_populate(body)
            return await self.registry.populate(items)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{config}: not JSON: {exc}") from None
        except Exception as exc:
            message = getattr(exc, "message", str(exc))
            raise ValueError(f"{config}: {message}") from None

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        await asyncio.Event().wait()

    async def close(self) -> None:
        """Stop the API and every proxy."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._clients.values()):
            writer.transport.abort()
        if self._clients:
            await asyncio.wait(list(self._clients), timeout=1.0)
        await self.registry.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FaultProxyServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
