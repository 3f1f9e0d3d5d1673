"""One proxied TCP connection: the client socket, the upstream socket, and a link each way.

Toxiproxy's model (``link.go``, ``proxy.go``): each accepted client gets a fresh connection to
the upstream and two links, ``upstream`` (client to server) and ``downstream`` (server to
client), each a chain of the proxy's toxics of that direction. When a link's source ends, its
toxics see the end (slow_close may hold it) and the link closes its destination; the other link
then sees its own source end and does the same, so one side closing closes the whole
connection, as in Toxiproxy (there is no half-close).

Cost with no toxic: a link whose toxics are all skipped (none, or toxicity not drawn) writes
each read straight to the destination from the protocol callback, without a task switch; flow
control pauses the source while the destination's write buffer is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import cast

from catga_bench.faultproxy.model import DOWNSTREAM, UPSTREAM, ToxicSpec
from catga_bench.faultproxy.toxics import TOXIC_TYPES, Chunk, Toxic

log = logging.getLogger("catga.faultproxy")

#: A link pauses its source when this many chunks wait for its toxics (Toxiproxy buffers
#: 1024 chunks ahead of a latency toxic), and resumes it at a quarter of that.
QUEUE_HIGH = 1024
QUEUE_LOW = QUEUE_HIGH // 4

_PAUSE_QUEUE = 1
_PAUSE_DEST = 2
_LINGER_ZERO = struct.pack("ii", 1, 0)


def _abort_with_rst(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError, ValueError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    _abort(transport)


def _abort(transport: asyncio.BaseTransport) -> None:
    with contextlib.suppress(RuntimeError):
        transport.abort()  # type: ignore[attr-defined]


class Side(asyncio.Protocol):
    """One socket of a connection (the client's or the upstream's), as an asyncio protocol.

    Data read here feeds :attr:`out_link`; write-buffer pressure here pauses :attr:`in_link`'s
    source.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self.out_link: Link | None = None
        self.in_link: Link | None = None
        self.lost = False
        self.early: list[bytes] = []  # read before the links exist (uvloop reads at once)
        self.early_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        link = self.out_link
        if link is not None:
            link.feed(data)
        else:
            self.early.append(data)
            if self.transport is not None:
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        if self.out_link is not None:
            self.out_link.feed_eof()
        else:
            self.early_eof = True
        return True  # keep the socket: the link closes it when its toxics are done

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.in_link is not None:
            self.in_link.dest_lost()
        if self.out_link is not None:
            self.out_link.feed_eof()
        self.conn.side_lost()

    def pause_writing(self) -> None:
        if self.in_link is not None:
            self.in_link.dest_paused(True)

    def resume_writing(self) -> None:
        if self.in_link is not None:
            self.in_link.dest_paused(False)


class ClientSide(Side):
    """The accepted client socket: opens the upstream connection when the client arrives."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()
        self.conn.client = self
        self.conn.open_task = asyncio.get_running_loop().create_task(self.conn.open())


class Link:
    """One direction of one connection: chunks from ``source`` to ``dest`` through toxics.

    Chunks pass one at a time through the toxics in the order they were added; toxics added,
    updated or removed while the connection is open take effect on it at once (Toxiproxy's
    ``ToxicLink``). The queue between the socket and the toxics holds at most
    :data:`QUEUE_HIGH` chunks before the source is paused.
    """

    def __init__(
        self, conn: Connection, direction: str, source: Side, dest: Side, toxics: list[Toxic]
    ) -> None:
        self.conn = conn
        self.direction = direction
        self.source = source
        self.dest = dest
        self.toxics = toxics
        self.closed = False
        self._active = any(not t.passthrough for t in toxics)
        self._queue: deque[Chunk | None] = deque()
        self._busy = False
        self._eof = False
        self._paused = 0
        self._dest_paused = False
        self._wake: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        assert dest.transport is not None and source.transport is not None
        self._dest_transport = dest.transport
        self._source_transport = source.transport

    # -- input from the source socket ------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes read from the source."""
        if not (self._active or self._queue or self._busy or self.closed):
            self._dest_transport.write(data)  # fast path: no toxic in the way
            return
        if self.closed:
            return
        self._queue.append(Chunk(data, self._loop.time()))
        if len(self._queue) >= QUEUE_HIGH:
            self._pause(_PAUSE_QUEUE, True)
        self._kick()

    def feed_eof(self) -> None:
        """The source ended (FIN, reset or closed by us)."""
        if self._eof or self.closed:
            return
        self._eof = True
        if not (self._active or self._queue or self._busy):
            self.close()
            return
        self._queue.append(None)
        self._kick()

    # -- destination state -----------------------------------------------------------------

    def dest_paused(self, paused: bool) -> None:
        """The destination's write buffer went over (True) or under (False) its high mark."""
        self._dest_paused = paused
        self._pause(_PAUSE_DEST, paused)
        if not paused:
            self._release_writer()

    def dest_lost(self) -> None:
        """The destination socket is gone: nothing more can be delivered."""
        self._finish()

    # -- toxics ----------------------------------------------------------------------------

    def add_toxic(self, toxic: Toxic) -> None:
        """Append a toxic to this link's chain (it takes effect from the next chunk)."""
        self.toxics.append(toxic)
        if not self.closed:
            toxic.start()
        self._refresh()

    def update_toxic(self, spec: ToxicSpec) -> None:
        """Give the toxic named ``spec.name`` its new attributes and toxicity."""
        for toxic in self.toxics:
            if toxic.name == spec.name:
                toxic.update(spec)
        self._refresh()

    def remove_toxic(self, name: str) -> None:
        """Take the toxic named ``name`` out of the chain."""
        keep: list[Toxic] = []
        for toxic in self.toxics:
            if toxic.name == name:
                toxic.remove()
            else:
                keep.append(toxic)
        self.toxics[:] = keep
        self._refresh()

    def _refresh(self) -> None:
        self._active = any(not t.passthrough for t in self.toxics)

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the destination after flushing what was written (FIN); drop what is queued."""
        if self.closed:
            return
        self._finish()
        self._dest_transport.close()

    def reset(self) -> None:
        """Reset the whole connection (TCP RST both ways)."""
        self.conn.reset()

    def _finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        for toxic in self.toxics:
            toxic.stop()
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._release_writer()

    # -- the toxic chain -------------------------------------------------------------------

    def _pause(self, reason: int, on: bool) -> None:
        before = self._paused
        self._paused = before | reason if on else before & ~reason
        if bool(before) == bool(self._paused) or self.source.lost:
            return
        with contextlib.suppress(RuntimeError, AttributeError):
            if self._paused:
                self._source_transport.pause_reading()
            else:
                self._source_transport.resume_reading()

    def _kick(self) -> None:
        if self._task is None:
            self._task = self._loop.create_task(self._run())
        elif self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _release_writer(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    async def _run(self) -> None:
        try:
            while not self.closed:
                if not self._queue:
                    self._wake = self._loop.create_future()
                    await self._wake
                    continue
                item = self._queue.popleft()
                if self._paused & _PAUSE_QUEUE and len(self._queue) <= QUEUE_LOW:
                    self._pause(_PAUSE_QUEUE, False)
                chain = tuple(self.toxics)
                self._busy = True
                try:
                    if item is None:
                        for toxic in chain:
                            if not toxic.passthrough and not self.closed:
                                await toxic.on_eof()
                        self.close()
                        return
                    await self._through(chain, 0, item)
                finally:
                    self._busy = False
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("faultproxy: link %s of %s failed", self.direction, self.conn.name)
            self.conn.close()

    async def _through(self, chain: tuple[Toxic, ...], index: int, chunk: Chunk) -> None:
        while index < len(chain):
            toxic = chain[index]
            index += 1
            if not toxic.passthrough:
                await toxic.on_chunk(chunk, partial(self._through, chain, index))
                return
        await self._write(chunk)

    async def _write(self, chunk: Chunk) -> None:
        if self.closed or not chunk.data:
            return
        self._dest_transport.write(chunk.data)
        while self._dest_paused and not self.closed:
            self._writable = self._loop.create_future()
            await self._writable


class Connection:
    """A client connection proxied to the upstream, with its two links.

    ``make_toxics(direction, link)`` builds the toxic instances for a new link (one per toxic
    of the proxy in that direction, at the moment the upstream connection is made);
    ``on_done`` is called once both sockets are closed.
    """

    def __init__(
        self,
        name: str,
        upstream: tuple[str, int],
        make_toxics: Callable[[str, Link], Iterable[Toxic]],
        on_done: Callable[[Connection], None],
    ) -> None:
        self.name = name
        self.upstream_address = upstream
        self.client: Side | None = None
        self.server: Side | None = None
        self.links: dict[str, Link] = {}
        self.open_task: asyncio.Task[None] | None = None
        self._make_toxics = make_toxics
        self._on_done = on_done
        self._lost = 0
        self._done = False

    async def open(self) -> None:
        """Connect to the upstream, build the links, start reading from the client."""
        client = self.client
        assert client is not None and client.transport is not None
        loop = asyncio.get_running_loop()
        host, port = self.upstream_address
        try:
            _, server = await loop.create_connection(lambda: Side(self), host, port)
        except OSError as exc:
            log.info("faultproxy %s: cannot reach upstream %s:%s: %s", self.name, host, port, exc)
            client.transport.close()
            return
        assert isinstance(server, Side) and server.transport is not None
        self.server = server
        if client.lost:
            _abort(server.transport)
            return
        up = Link(self, UPSTREAM, client, server, [])
        down = Link(self, DOWNSTREAM, server, client, [])
        self.links = {UPSTREAM: up, DOWNSTREAM: down}
        for link in (up, down):
            for toxic in self._make_toxics(link.direction, link):
                link.add_toxic(toxic)
        client.out_link, client.in_link = up, down
        server.out_link, server.in_link = down, up
        # bytes either side sent before the links existed: the client's request, and the
        # upstream's greeting (server-first protocols: NATS INFO, SMTP, MySQL) — both go on
        for side, link in ((client, up), (server, down)):
            for data in side.early:
                link.feed(data)
            side.early.clear()
            if side.early_eof:
                link.feed_eof()
        client.transport.resume_reading()
        server.transport.resume_reading()  # data_received paused it if it parked bytes

    def add_toxic(self, spec: ToxicSpec, rng: random.Random) -> None:
        """Start a newly added toxic on the matching link."""
        link = self.links.get(spec.stream)
        if link is not None:
            link.add_toxic(TOXIC_TYPES[spec.type](spec, link, rng))

    def update_toxic(self, spec: ToxicSpec) -> None:
        """Pass an updated toxic to the matching link."""
        link = self.links.get(spec.stream)
        if link is not None:
            link.update_toxic(spec)

    def remove_toxic(self, spec: ToxicSpec) -> None:
        """Take a removed toxic out of the matching link."""
        link = self.links.get(spec.stream)
        if link is not None:
            link.remove_toxic(spec.name)

    def _transports(self) -> list[asyncio.Transport]:
        return [
            side.transport
            for side in (self.client, self.server)
            if side is not None and side.transport is not None
        ]

    def close(self) -> None:
        """Drop the connection at once, both sockets (proxy disabled or deleted)."""
        for link in self.links.values():
            link._finish()
        if self.open_task is not None and not self.open_task.done():
            self.open_task.cancel()
        for transport in self._transports():
            _abort(transport)

    def reset(self) -> None:
        """Reset the connection: both sockets closed with SO_LINGER 0 (TCP RST)."""
        for link in self.links.values():
            link._finish()
        for transport in self._transports():
            _abort_with_rst(transport)

    def side_lost(self) -> None:
        """One socket is gone; when both are (or the upstream never came), we are done."""
        self._lost += 1
        expected = 2 if self.server is not None else 1
        if self._lost >= expected and not self._done:
            self._done = True
            self._on_done(self)
