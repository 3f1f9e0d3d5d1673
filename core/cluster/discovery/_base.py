"""The discovery seam: :class:`Discovery` (membership of one node, background heartbeats,
the live-node view) and the node JSON every backend stores."""

from __future__ import annotations

import abc
import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import Self

from core.cluster.routing import NodeInfo
from core.transport.base import TransportError

_log = logging.getLogger("catga.discovery")


def node_json(node: NodeInfo) -> str:
    return json.dumps({"node_id": node.node_id, "address": node.address,
                       "load": node.load, "zone": node.zone}, separators=(",", ":"))


def node_from_json(raw: bytes | str, last_seen_unix_s: float) -> NodeInfo:
    data = json.loads(raw)
    return NodeInfo(node_id=str(data["node_id"]), address=str(data["address"]),
                    load=float(data.get("load", 0.0)), zone=str(data.get("zone", "")),
                    last_seen_unix_s=last_seen_unix_s)


class Discovery(abc.ABC):
    """Membership of one node plus a view of all live nodes. Use as an async context manager.

    Subclasses implement :meth:`nodes`, :meth:`_put` and :meth:`_remove` (and, when they hold a
    connection, :meth:`connect` and :meth:`_disconnect`).

    Args:
        ttl_s: seconds after its last heartbeat that a node stops being live (> 0).

    Attributes:
        heartbeats: heartbeats written (including the one of :meth:`register`).
        heartbeat_failures: background heartbeats that raised (logged, then retried next tick).

    Raises:
        ValueError: ``ttl_s`` <= 0.
    """

    backend: str = "abstract"

    def __init__(self, *, ttl_s: float) -> None:
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s!r}")
        self.ttl_s = float(ttl_s)
        self._node: NodeInfo | None = None
        self._hb_task: asyncio.Task[None] | None = None
        # Serializes writes, so a heartbeat in flight cannot re-create a node just deregistered.
        self._lock = asyncio.Lock()
        self.heartbeats = 0
        self.heartbeat_failures = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def connect(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Connect to the backend (no-op for in-memory). Raises BrokerUnavailable."""

    async def _disconnect(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release the backend connection if this object owns it."""

    async def close(self, *, deregister: bool = True) -> None:
        """Stop background heartbeats, deregister (unless ``deregister=False``: then the entry
        simply expires after ``ttl_s``, as after a crash) and disconnect. Idempotent; a failed
        deregistration is logged, not raised (the entry expires anyway)."""
        await self.stop_heartbeats()
        if deregister and self._node is not None:
            try:
                await self.deregister()
            except (TransportError, OSError) as exc:
                _log.warning("%s: deregistering on close failed (%s); the entry expires in "
                             "%g s", self.backend, exc, self.ttl_s)
        self._node = None
        await self._disconnect()

    # -- membership ----------------------------------------------------------------------------

    @property
    def local_node(self) -> NodeInfo | None:
        """The node registered through this object (with the last written load and time)."""
        return self._node

    async def register(self, node: NodeInfo) -> None:
        """Announce ``node`` (its first heartbeat). Registering another id through the same
        object first removes the previous one.

        Raises:
            ValueError: empty ``node_id`` or negative ``load``.
            BrokerUnavailable / TransportError: the write failed.
        """
        if not node.node_id:
            raise ValueError("node_id must not be empty")
        if not node.load >= 0:
            raise ValueError(f"load must be >= 0, got {node.load!r}")
        async with self._lock:
            if self._node is not None and self._node.node_id != node.node_id:
                await self._remove(self._node.node_id)
            self._node = await self._put(node)
            self.heartbeats += 1

    async def heartbeat(self, load: float | None = None) -> None:
        """Refresh the registered node's liveness, optionally reporting a new ``load``
        (see :attr:`core.cluster.routing.NodeInfo.load`; ``None`` keeps the last one).

        Raises:
            RuntimeError: nothing registered. ValueError: ``load`` < 0.
            BrokerUnavailable / TransportError: the write failed.
        """
        if load is not None and not load >= 0:
            raise ValueError(f"load must be >= 0, got {load!r}")
        async with self._lock:
            node = self._node
            if node is None:
                raise RuntimeError(f"{self.backend} discovery: register() a node before "
                                   "heartbeat()")
            if load is not None:
                node = replace(node, load=float(load))
            self._node = await self._put(node)
            self.heartbeats += 1

    async def deregister(self) -> None:
        """Stop heartbeats and remove the registered node at once (no-op if none).

        Raises:
            BrokerUnavailable / TransportError: the delete failed (the entry then expires after
            ``ttl_s``).
        """
        await self.stop_heartbeats()
        async with self._lock:
            node, self._node = self._node, None
            if node is not None:
                await self._remove(node.node_id)

    @abc.abstractmethod
    async def nodes(self) -> list[NodeInfo]:
        """The live nodes (heartbeat within ``ttl_s``), sorted by ``node_id``, each with
        ``last_seen_unix_s`` set. Raises BrokerUnavailable / TransportError."""

    @abc.abstractmethod
    async def _put(self, node: NodeInfo) -> NodeInfo:
        """Write ``node`` as alive now; return it with ``last_seen_unix_s`` as stored."""

    @abc.abstractmethod
    async def _remove(self, node_id: str) -> None:
        """Delete ``node_id``'s entry."""

    # -- background heartbeats ----------------------------------------------------------------

    def start_heartbeats(self, interval_s: float | None = None,
                         load: Callable[[], float] | None = None) -> asyncio.Task[None]:
        """Heartbeat every ``interval_s`` seconds in a background task until
        :meth:`stop_heartbeats`, :meth:`deregister` or :meth:`close`.

        Args:
            interval_s: seconds between beats; default ``ttl_s / 3``. Must be below ``ttl_s``.
            load: called before each beat for the load to report (``None``: keep the last).

        A failing beat is logged and counted in :attr:`heartbeat_failures`; the loop goes on
        (the node drops out of :meth:`nodes` if failures outlast ``ttl_s``).

        Raises:
            RuntimeError: nothing registered, heartbeats already running, or no running loop.
            ValueError: ``interval_s`` <= 0 or >= ``ttl_s``.
        """
        if self._node is None:
            raise RuntimeError(f"{self.backend} discovery: register() a node before "
                               "start_heartbeats()")
        if self._hb_task is not None and not self._hb_task.done():
            raise RuntimeError("heartbeats are already running; stop_heartbeats() first")
        interval = self.ttl_s / 3 if interval_s is None else float(interval_s)
        if not 0 < interval < self.ttl_s:
            raise ValueError(f"interval_s must be > 0 and below ttl_s={self.ttl_s:g} s "
                             f"(ttl_s / 3 tolerates two lost beats), got {interval_s!r}")
        self._hb_task = asyncio.get_running_loop().create_task(
            self._heartbeat_loop(interval, load),
            name=f"catga-discovery-heartbeat-{self._node.node_id}")
        return self._hb_task

    async def stop_heartbeats(self) -> None:
        """Cancel the background heartbeat task and wait for it (no-op if not running)."""
        task, self._hb_task = self._hb_task, None
        if task is None or task.done():
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we were cancelled ourselves, not just the heartbeat task

    async def _heartbeat_loop(self, interval_s: float, load: Callable[[], float] | None) -> None:
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + interval_s
        while True:
            # Scheduled on a fixed grid so a slow beat does not stretch the period.
            await asyncio.sleep(max(0.0, next_beat - loop.time()))
            next_beat = max(next_beat + interval_s, loop.time())
            try:
                await self.heartbeat(None if load is None else load())
            except Exception as exc:  # keep beating: a broker blip must not kill membership
                self.heartbeat_failures += 1
                _log.warning("%s: heartbeat failed (%d so far): %s", self.backend,
                             self.heartbeat_failures, exc)
