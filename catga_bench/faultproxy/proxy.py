"""One proxy: its TCP listener, its open connections and its toxics.

Behaviour of Toxiproxy's ``Proxy`` (``proxy.go``, README "Proxy fields"): enabling binds the
listen address (port 0 picks a free port, and ``listen`` then shows the real one, kept across
disable/enable); disabling closes the listener and drops every open connection; changing
``listen`` or ``upstream`` restarts the proxy. Toxics apply to new connections and to the open
ones at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from typing import Any

from catga_bench.faultproxy.link import ClientSide, Connection, Link
from catga_bench.faultproxy.model import (
    ERR_TOXIC_NOT_FOUND,
    STREAMS,
    ApiError,
    ProxyInput,
    ToxicSpec,
    join_host_port,
    split_host_port,
)
from catga_bench.faultproxy.toxics import TOXIC_TYPES, Toxic


def _listen_error(address: str, detail: str) -> ApiError:
    # Toxiproxy answers a listener failure with the Go error text and 500 (api.go apiError).
    return ApiError(f"listen tcp {address}: {detail}", 500)


class Proxy:
    """A named TCP proxy from ``listen`` to ``upstream`` (both ``host:port``)."""

    def __init__(self, name: str, listen: str, upstream: str, rng: random.Random) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.rng = rng
        self.toxics: dict[str, ToxicSpec] = {}
        self.connections: set[Connection] = set()
        self._server: asyncio.AbstractServer | None = None

    # -- JSON ------------------------------------------------------------------------------

    def toxic_list(self) -> list[ToxicSpec]:
        """Toxics as Toxiproxy lists them: upstream ones, then downstream, each in order added."""
        return [t for stream in STREAMS for t in self.toxics.values() if t.stream == stream]

    def to_json(self) -> dict[str, Any]:
        """``{"name", "listen", "upstream", "enabled", "toxics": [...]}``."""
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [t.to_json() for t in self.toxic_list()],
        }

    def fields(self) -> ProxyInput:
        """The proxy's settable fields."""
        return ProxyInput(self.name, self.listen, self.upstream, self.enabled)

    # -- listener --------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind ``listen`` and accept clients (no-op when already enabled).

        Raises ApiError (500, ``listen tcp ADDR: ...``) when the address cannot be bound.
        """
        if self.enabled:
            return
        try:
            host, port = split_host_port(self.listen)
            upstream = split_host_port(self.upstream)
        except ValueError as exc:
            raise _listen_error(self.listen, str(exc)) from None
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                host or "127.0.0.1", port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except OSError as exc:
            raise _listen_error(self.listen, str(exc)) from None
        infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first, as Go's Listen
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(1024)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise _listen_error(self.listen, exc.strerror or str(exc)) from None
        bound_host, bound_port = sock.getsockname()[:2]
        self.listen = join_host_port(bound_host, bound_port)

        def accept() -> ClientSide:
            conn = Connection(self.name, upstream, self._make_toxics, self.connections.discard)
            self.connections.add(conn)
            return ClientSide(conn)

        self._server = await loop.create_server(accept, sock=sock)
        self.enabled = True

    async def stop(self) -> None:
        """Close the listener and drop every open connection (no-op when disabled)."""
        if not self.enabled:
            return
        self.enabled = False
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self.connections):
            conn.close()
        if server is not None:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def update(self, new: ProxyInput) -> None:
        """Apply a proxy update: restart on a new listen/upstream, then enable or disable."""
        if new.listen != self.listen or new.upstream != self.upstream:
            await self.stop()
            self.listen, self.upstream = new.listen, new.upstream
        if new.enabled and not self.enabled:
            await self.start()
        elif not new.enabled and self.enabled:
            await self.stop()

    # -- toxics ----------------------------------------------------------------------------

    def _make_toxics(self, direction: str, link: Link) -> list[Toxic]:
        return [
            TOXIC_TYPES[spec.type](spec, link, self.rng)
            for spec in self.toxics.values()
            if spec.stream == direction
        ]

    def get_toxic(self, name: str) -> ToxicSpec:
        """The toxic called ``name``; 404 ``toxic not found`` when there is none."""
        spec = self.toxics.get(name)
        if spec is None:
            raise ERR_TOXIC_NOT_FOUND
        return spec

    def add_toxic(self, spec: ToxicSpec) -> None:
        """Add a (validated) toxic; open connections get it at once."""
        self.toxics[spec.name] = spec
        for conn in list(self.connections):
            conn.add_toxic(spec, self.rng)

    def update_toxic(self, spec: ToxicSpec) -> None:
        """Replace the toxic of the same name (new attributes and toxicity)."""
        self.toxics[spec.name] = spec
        for conn in list(self.connections):
            conn.update_toxic(spec)

    def remove_toxic(self, name: str) -> None:
        """Remove a toxic; 404 ``toxic not found`` when there is none."""
        spec = self.get_toxic(name)
        del self.toxics[name]
        for conn in list(self.connections):
            conn.remove_toxic(spec)

    def reset_toxics(self) -> None:
        """Remove every toxic."""
        for name in list(self.toxics):
            self.remove_toxic(name)
