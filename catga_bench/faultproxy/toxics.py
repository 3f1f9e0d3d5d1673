"""The toxics: one class per Toxiproxy toxic, each acting on the chunk stream of one link.

A *link* is one direction of one proxied connection (``upstream``: client to server,
``downstream``: server to client). Every connection gets its own instance of each toxic of its
proxy, so per-connection state (limit_data's byte count, bandwidth's schedule) and the
toxicity draw belong to that connection, as with Toxiproxy's ``ToxicStub`` (``toxics/toxic.go``).

A link hands each chunk read from its source, stamped with its arrival time (event-loop clock,
seconds), to its first toxic's :meth:`Toxic.on_chunk` with an ``emit`` callback that passes it
on to the next toxic and finally writes it to the destination; chunks go through one at a time,
in order. When the source ends, each toxic's :meth:`Toxic.on_eof` runs, then the link closes its
destination. Semantics and units follow Toxiproxy's README ("Toxics") and ``toxics/*.go``.

When a toxic is removed or updated while it holds a chunk (a latency sleep, a bandwidth wait),
the chunk goes on at once, as Toxiproxy's interrupt does ("don't drop any data on the floor").
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from catga_bench.faultproxy.model import ToxicSpec


@dataclass(slots=True)
class Chunk:
    """Bytes read from a link's source; ``ts`` is when they arrived (loop clock, seconds), moved
    forward by each latency toxic so that chained latencies add up."""

    data: bytes
    ts: float


Emit = Callable[[Chunk], Awaitable[None]]


class LinkControl(Protocol):
    """What a toxic may do to its link."""

    def close(self) -> None:
        """Close the destination once what was already written is flushed (FIN)."""

    def reset(self) -> None:
        """Abort both sockets of the connection with a TCP RST (SO_LINGER 0)."""


class Toxic:
    """Base class: one toxic on one link. The default behaviour passes data through.

    ``applied`` is the toxicity draw (``random() < toxicity``), made when the toxic starts on
    the link and again when it is updated; a toxic that is not applied, or was removed, is
    skipped by the link (:attr:`passthrough`).
    """

    type_name: ClassVar[str] = ""

    def __init__(self, spec: ToxicSpec, link: LinkControl, rng: random.Random) -> None:
        self.spec = spec
        self.link = link
        self.rng = rng
        self.applied = rng.random() < spec.toxicity
        self.removed = False
        self.loop = asyncio.get_running_loop()
        self._waiters: set[asyncio.Future[bool]] = set()

    @property
    def name(self) -> str:
        """The toxic's name (unique within its proxy)."""
        return self.spec.name

    @property
    def passthrough(self) -> bool:
        """True when the link should skip this toxic (not drawn, or removed)."""
        return self.removed or not self.applied

    def attr(self, key: str) -> int:
        """One attribute's current value (units as in :mod:`catga_bench.faultproxy.model`)."""
        return self.spec.attributes[key]

    # -- lifecycle, driven by the link -------------------------------------------------------

    def start(self) -> None:
        """The toxic is now on a live link (connection opened, or toxic added)."""

    def update(self, spec: ToxicSpec) -> None:
        """New attributes/toxicity: redraw toxicity, let a held chunk go, restart timers."""
        self.spec = spec
        self.applied = self.rng.random() < spec.toxicity
        self.interrupt()

    def remove(self) -> None:
        """The toxic was removed from its proxy: let a held chunk go, pass everything after."""
        self.removed = True
        self.interrupt()

    def stop(self) -> None:
        """The link closed: cancel timers."""
        self.interrupt()

    # -- data ------------------------------------------------------------------------------

    async def on_chunk(self, chunk: Chunk, emit: Emit) -> None:
        """Handle one chunk; pass it (or what becomes of it) on with ``await emit(...)``."""
        await emit(chunk)

    async def on_eof(self) -> None:
        """The source ended; the link closes its destination when this returns."""

    # -- helpers ---------------------------------------------------------------------------

    def interrupt(self) -> None:
        """Wake every :meth:`sleep_until` in progress (they return False)."""
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(False)
        self._waiters.clear()

    async def sleep_until(self, deadline: float) -> bool:
        """Sleep until ``deadline`` (loop clock, s; ``math.inf`` = until interrupted).

        Returns True when the deadline passed, False when :meth:`interrupt` cut it short.
        """
        delay = deadline - self.loop.time()
        if delay <= 0:
            return True
        fut: asyncio.Future[bool] = self.loop.create_future()
        self._waiters.add(fut)
        handle = None if math.isinf(delay) else self.loop.call_later(delay, _wake, fut)
        try:
            return await fut
        finally:
            if handle is not None:
                handle.cancel()
            self._waiters.discard(fut)


def _wake(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(True)


class Latency(Toxic):
    """``latency``: delays every chunk by ``latency`` ± ``jitter`` milliseconds.

    Toxiproxy: "Add a delay to all data going through the proxy. The delay is equal to
    latency +/- jitter." The delay counts from the chunk's arrival, so a burst is delayed once,
    not once per chunk; jitter is drawn per chunk, uniform over [latency - jitter,
    latency + jitter) ms (``toxics/latency.go``).
    """

    type_name = "latency"

    def delay_s(self) -> float:
        """One delay draw, in seconds."""
        delay = self.attr("latency")
        jitter = self.attr("jitter")
        if jitter > 0:
            delay += self.rng.randrange(-jitter, jitter)
        return delay / 1000.0

    async def on_chunk(self, chunk: Chunk, emit: Emit) -> None:
        target = chunk.ts + self.delay_s()
        if await self.sleep_until(target):
            chunk.ts = target
        await emit(chunk)


class Bandwidth(Toxic):
    """``bandwidth``: limits the link to ``rate`` KB/s (1 KB = 1000 bytes).

    Toxiproxy: "Limit a connection to a maximum number of kilobytes per second." Each chunk
    leaves once its transmission time at ``rate`` has passed; chunks larger than 100 ms worth
    of data are cut into 100 ms pieces (``toxics/bandwidth.go``). Idle time earns no credit.
    With ``rate`` 0 no data gets through until the toxic is removed or updated (as in
    Toxiproxy, whose loop never passes data at rate 0).
    """

    type_name = "bandwidth"

    def __init__(self, spec: ToxicSpec, link: LinkControl, rng: random.Random) -> None:
        super().__init__(spec, link, rng)
        self._next = 0.0

    async def on_chunk(self, chunk: Chunk, emit: Emit) -> None:
        rate = self.attr("rate")
        if rate <= 0:
            await self.sleep_until(math.inf)
            await emit(chunk)
            return
        bytes_per_s = rate * 1000.0
        step = rate * 100
        data = chunk.data
        pos = 0
        while pos < len(data):
            piece = data[pos : pos + step]
            self._next = max(self._next, self.loop.time()) + len(piece) / bytes_per_s
            if not await self.sleep_until(self._next):
                await emit(Chunk(data[pos:], chunk.ts))
                return
            await emit(Chunk(piece, chunk.ts))
            pos += len(piece)


class SlowClose(Toxic):
    """``slow_close``: delays the close of the destination by ``delay`` milliseconds.

    Toxiproxy: "Delay the TCP socket from closing until delay has elapsed."
    """

    type_name = "slow_close"

    async def on_eof(self) -> None:
        await self.sleep_until(self.loop.time() + self.attr("delay") / 1000.0)


class Timeout(Toxic):
    """``timeout``: drops all data and closes the connection after ``timeout`` milliseconds.

    Toxiproxy: "Stops all data from getting through, and closes the connection after timeout.
    If timeout is 0, the connection won't close, and data will be dropped until the toxic is
    removed." As in ``toxics/timeout.go``, the clock restarts with every chunk that arrives,
    and removing the toxic closes the connections it was holding.
    """

    type_name = "timeout"

    def __init__(self, spec: ToxicSpec, link: LinkControl, rng: random.Random) -> None:
        super().__init__(spec, link, rng)
        self._timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        if self.applied and not self.removed and self.attr("timeout") > 0:
            self._timer = self.loop.call_later(self.attr("timeout") / 1000.0, self.link.close)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def start(self) -> None:
        self._arm()

    def update(self, spec: ToxicSpec) -> None:
        super().update(spec)
        self._arm()

    def remove(self) -> None:
        was_applied = self.applied and not self.removed
        super().remove()
        self._disarm()
        if was_applied:
            self.link.close()

    def stop(self) -> None:
        super().stop()
        self._disarm()

    async def on_chunk(self, chunk: Chunk, emit: Emit) -> None:
        self._arm()  # the data is dropped


class ResetPeer(Toxic):
    """``reset_peer``: resets the connection (TCP RST) ``timeout`` milliseconds after data.

    Toxiproxy: "Simulate TCP RESET (Connection reset by peer) on the connections by closing the
    stub Input immediately or after a timeout." The first chunk (or the end of the stream) in
    the toxic's direction starts the clock and is dropped; both sockets are then closed with
    SO_LINGER 0 (``toxics/reset_peer.go``). Once started, the reset happens even if the toxic
    is removed meanwhile, as in Toxiproxy.
    """

    type_name = "reset_peer"

    async def _trigger(self) -> None:
        await asyncio.sleep(self.attr("timeout") / 1000.0)
        self.link.reset()

    async def on_chunk(self, chunk: Chunk, emit: Emit) -> None:
        await self._trigger()

    async def on_eof(self) -> None:
        await self._trigger()


class Slicer(Toxic):
    """``slicer``: cuts each chunk into pieces of about ``average_size`` ± ``size_variation``
    bytes, written one by one with ``delay`` microseconds after each.

    Toxiproxy: "Slices TCP data up into small bits, optionally adding a delay between each
    sliced packet." The cut points follow ``toxics/slicer.go``: halve the chunk around its
    middle ± size_variation until a piece is at most average_size + size_variation. Delays run
    on the event loop's timers (about 1 ms resolution: a few µs rounds up).
    """

    type_name = "slicer"

    def cut_points(self, size: int) -> list[int]:
        """End offsets of the pieces of a ``size``-byte chunk, in order (last = size)."""
        average = self.attr("average_size")
        variation = self.attr("size_variation")
        ends: list[int] = []
        stack = [(0, size)]
        while stack:
            start, end = stack.pop()
            length = end - start
            if length - average <= variation or length <= 1:
                ends.append(end)
                continue
            mid = start + length // 2
            if variation > 0:
                mid += self.rng.randrange(-variation, variation)
            mid = min(max(mid, start + 1), end - 1)
            stack.append((mid, end))
            stack.append((start, mid))
        return ends

    async def on_chunk(self, chunk: Chunk, emit: Emit) -> None:
        delay_s = self.attr("delay") / 1_000_000.0
        data = chunk.data
        start = 0
        for end in self.cut_points(len(data)):
            await emit(Chunk(data[start:end], chunk.ts))
            start = end
            if delay_s > 0 and not await self.sleep_until(self.loop.time() + delay_s):
                if start < len(data):
                    await emit(Chunk(data[start:], chunk.ts))
                return


class LimitData(Toxic):
    """``limit_data``: closes the connection once ``bytes`` bytes went through this link.

    Toxiproxy: "Closes connection when transmitted data exceeded limit." The chunk that
    crosses the limit is cut to it; the count survives updates (``toxics/limit_data.go``).
    """

    type_name = "limit_data"

    def __init__(self, spec: ToxicSpec, link: LinkControl, rng: random.Random) -> None:
        super().__init__(spec, link, rng)
        self.transmitted = 0

    async def on_chunk(self, chunk: Chunk, emit: Emit) -> None:
        remaining = max(0, self.attr("bytes") - self.transmitted)
        if len(chunk.data) > remaining:
            chunk.data = chunk.data[:remaining]
        if chunk.data:
            self.transmitted += len(chunk.data)
            await emit(chunk)
        if self.attr("bytes") - self.transmitted <= 0:
            self.link.close()


#: Toxic classes by Toxiproxy type name.
TOXIC_TYPES: dict[str, type[Toxic]] = {
    cls.type_name: cls
    for cls in (Latency, Bandwidth, SlowClose, Timeout, ResetPeer, Slicer, LimitData)
}
