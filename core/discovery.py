"""Node discovery: nodes register, heartbeat, and list the nodes that are alive.

A node is *live* while its last heartbeat is at most ``ttl_s`` seconds old. Each process owns
one :class:`Discovery` for its own node: :meth:`~Discovery.register` it, then either call
:meth:`~Discovery.heartbeat` yourself or let :meth:`~Discovery.start_heartbeats` do it in the
background (every ``ttl_s / 3`` by default, so two lost beats are tolerated). A crashed node
stops heartbeating and drops out of :meth:`~Discovery.nodes` at most ``ttl_s`` seconds after
its last heartbeat (readers that cache the list see it later); a node that shuts down cleanly
calls :meth:`~Discovery.deregister` and disappears at once (``close()`` does it).
:mod:`core.routing` then picks one of the live nodes per message.

Backends:

* :class:`InMemoryDiscovery` — a shared :class:`InMemoryRegistry` in one process, TTL checked
  against an injectable clock (tests, single-process setups).
* :class:`RedisDiscovery` — a sorted set ``key`` (member ``node_id``, score = time of the last
  heartbeat) plus a hash ``key:info`` (``node_id`` -> node JSON). Both writes happen in one Lua
  script that reads the *Redis server's* clock (``TIME``), so client clock skew does not matter.
  :meth:`~RedisDiscovery.nodes` deletes members scored before ``now - ttl_s``
  (``ZREMRANGEBYSCORE`` + ``HDEL``) and returns the rest (``ZRANGEBYSCORE now-ttl +inf``),
  atomically.
* :class:`NatsKvDiscovery` — a JetStream key-value bucket created with ``ttl=ttl_s`` (the
  stream's ``max_age``) and ``history=1``: each heartbeat is a ``put`` of the node JSON, and the
  server deletes a node's entry ``ttl_s`` after its last put. :meth:`~NatsKvDiscovery.nodes`
  reads the latest value of every key. Expiry measured on nats-server 2.9.10 with ``ttl=1 s``:
  the entry is gone 1.0 s after the last put.

Errors: :class:`~core.transport.base.BrokerUnavailable` when the broker cannot be reached (at
connect, or when an operation fails for lack of a connection);
:class:`~core.transport.base.TransportError` for other broker-side failures; ``ValueError`` for
bad arguments; ``RuntimeError`` for calls in the wrong state (heartbeat before register).
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from core.routing import NodeInfo
from core.transport.base import BrokerUnavailable, TransportError

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.js.kv import KeyValue
    from redis.asyncio import Redis

__all__ = [
    "Discovery",
    "InMemoryDiscovery",
    "InMemoryRegistry",
    "NatsKvDiscovery",
    "RedisDiscovery",
]

_log = logging.getLogger("catga.discovery")


def _node_json(node: NodeInfo) -> str:
    return json.dumps({"node_id": node.node_id, "address": node.address,
                       "load": node.load, "zone": node.zone}, separators=(",", ":"))


def _node_from_json(raw: bytes | str, last_seen_unix_s: float) -> NodeInfo:
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
        (see :attr:`core.routing.NodeInfo.load`; ``None`` keeps the last one).

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


# -- in memory -------------------------------------------------------------------------------


class InMemoryRegistry:
    """The shared state of :class:`InMemoryDiscovery` objects: ``node_id`` -> last written
    :class:`~core.routing.NodeInfo`. Share one instance between the discoveries of one
    process."""

    def __init__(self) -> None:
        self.entries: dict[str, NodeInfo] = {}


class InMemoryDiscovery(Discovery):
    """Discovery within one process.

    Args:
        registry: shared registry (default: a private new one).
        ttl_s: seconds after the last heartbeat a node stops being live.
        clock: Unix time in seconds (inject a fake one in tests; default :func:`time.time`).
    """

    backend = "memory"

    def __init__(self, registry: InMemoryRegistry | None = None, *, ttl_s: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(ttl_s=ttl_s)
        self.registry = registry if registry is not None else InMemoryRegistry()
        self.clock = clock

    async def _put(self, node: NodeInfo) -> NodeInfo:
        stored = replace(node, last_seen_unix_s=self.clock())
        self.registry.entries[node.node_id] = stored
        return stored

    async def _remove(self, node_id: str) -> None:
        self.registry.entries.pop(node_id, None)

    async def nodes(self) -> list[NodeInfo]:
        """Live nodes; expired entries are removed from the registry."""
        cutoff = self.clock() - self.ttl_s
        entries = self.registry.entries
        for node_id in [i for i, n in entries.items() if n.last_seen_unix_s < cutoff]:
            del entries[node_id]
        return sorted(entries.values(), key=lambda n: n.node_id)


# -- redis -----------------------------------------------------------------------------------

# KEYS: zset, info hash. ARGV: node_id, node json. Returns the server time as a string.
_REDIS_PUT = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], string.format('%.6f', now), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return string.format('%.6f', now)
"""

# KEYS: zset, info hash. ARGV: ttl seconds. Returns {node_id, score, json-or-false, ...}.
_REDIS_NODES = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cutoff = string.format('%.6f', now - tonumber(ARGV[1]))
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff)
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff)
  for _, id in ipairs(expired) do redis.call('HDEL', KEYS[2], id) end
end
local live = redis.call('ZRANGEBYSCORE', KEYS[1], cutoff, '+inf', 'WITHSCORES')
local out = {}
for i = 1, #live, 2 do
  out[#out + 1] = live[i]
  out[#out + 1] = live[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], live[i])
end
return out
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisDiscovery(Discovery):
    """Discovery in Redis: sorted set ``key`` scored by last heartbeat + hash ``key:info``.

    Args:
        client_or_url: a ``redis.asyncio.Redis`` (not closed by :meth:`close`) or a URL
            (``redis://host:port/db``; the client is created by :meth:`connect` and closed by
            :meth:`close`).
        key: sorted-set key; node JSON lives in the hash ``f"{key}:info"``.
        ttl_s: seconds after its last heartbeat a node stops being live.
        connect_timeout_s: seconds to open a connection.
        op_timeout_s: seconds one command may take (socket timeout; URL form only).

    Times are the Redis server's (``TIME`` inside the scripts). Under Redis Cluster both keys
    must hash to one slot: use a hash tag such as ``key="{catga}:nodes"``.

    Raises:
        ValueError: empty ``key`` or bad timeouts.
    """

    backend = "redis"

    def __init__(self, client_or_url: Redis | str, *, key: str = "catga:nodes",
                 ttl_s: float = 10.0, connect_timeout_s: float = 2.0,
                 op_timeout_s: float = 5.0) -> None:
        super().__init__(ttl_s=ttl_s)
        if not key:
            raise ValueError("key must not be empty")
        if not (connect_timeout_s > 0 and op_timeout_s > 0):
            raise ValueError("connect_timeout_s and op_timeout_s must be > 0")
        self.key = key
        self.info_key = f"{key}:info"
        self.connect_timeout_s = float(connect_timeout_s)
        self.op_timeout_s = float(op_timeout_s)
        self._owns_client = isinstance(client_or_url, str)
        self._client: Redis | None = None if isinstance(client_or_url, str) else client_or_url
        if isinstance(client_or_url, str):
            self.url = client_or_url
        else:
            kw = client_or_url.connection_pool.connection_kwargs
            self.url = f"redis://{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"
        self._put_script: Any = None
        self._nodes_script: Any = None

    async def connect(self) -> None:
        """Create the client (URL form) and ``PING`` it.

        Raises:
            BrokerUnavailable: no connection or no valid answer within the timeouts.
        """
        import redis.asyncio as redis_asyncio

        if self._client is None:
            self._client = redis_asyncio.Redis.from_url(
                self.url, socket_connect_timeout=self.connect_timeout_s,
                socket_timeout=self.op_timeout_s)
        client = self._client
        try:
            await asyncio.wait_for(client.ping(), self.connect_timeout_s + self.op_timeout_s)
        except Exception as exc:
            if self._owns_client:
                with contextlib.suppress(Exception):
                    await client.aclose()
                self._client = None
            raise BrokerUnavailable(self.url, f"{type(exc).__name__}: {exc}") from exc
        self._put_script = client.register_script(_REDIS_PUT)
        self._nodes_script = client.register_script(_REDIS_NODES)

    async def _disconnect(self) -> None:
        client, self._put_script, self._nodes_script = self._client, None, None
        if self._owns_client and client is not None:
            self._client = None
            with contextlib.suppress(Exception):
                await client.aclose()

    def _error(self, exc: Exception, what: str) -> TransportError:
        import redis.exceptions as redis_errors

        if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError
                      | OSError):
            return BrokerUnavailable(self.url, f"{what}: {type(exc).__name__}: {exc}")
        return TransportError(f"redis {self.url} {what}: {type(exc).__name__}: {exc}")

    def _scripts(self) -> tuple[Any, Any]:
        if self._put_script is None or self._nodes_script is None:
            raise RuntimeError("RedisDiscovery is not connected: use `async with` or connect()")
        return self._put_script, self._nodes_script

    async def _put(self, node: NodeInfo) -> NodeInfo:
        put, _ = self._scripts()
        try:
            now = await put(keys=[self.key, self.info_key], args=[node.node_id, _node_json(node)])
        except Exception as exc:
            raise self._error(exc, "heartbeat") from exc
        return replace(node, last_seen_unix_s=float(_text(now)))

    async def _remove(self, node_id: str) -> None:
        self._scripts()  # raises when not connected
        assert self._client is not None
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zrem(self.key, node_id)
                pipe.hdel(self.info_key, node_id)
                await pipe.execute()
        except Exception as exc:
            raise self._error(exc, "deregister") from exc

    async def nodes(self) -> list[NodeInfo]:
        """Live nodes; members older than ``ttl_s`` are deleted in the same script."""
        _, script = self._scripts()
        try:
            flat = await script(keys=[self.key, self.info_key], args=[repr(self.ttl_s)])
        except Exception as exc:
            raise self._error(exc, "listing nodes") from exc
        found: list[NodeInfo] = []
        for i in range(0, len(flat), 3):
            node_id, score, raw = _text(flat[i]), float(_text(flat[i + 1])), flat[i + 2]
            if raw is None:  # written by someone else without the info hash
                _log.warning("redis discovery: node %r has no info in %s", node_id,
                             self.info_key)
                continue
            try:
                found.append(_node_from_json(raw, score))
            except (ValueError, KeyError, TypeError) as exc:
                _log.warning("redis discovery: bad info for node %r: %s", node_id, exc)
        return sorted(found, key=lambda n: n.node_id)


# -- nats jetstream key-value ------------------------------------------------------------------

_BUCKET_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_KV_KEY_RE = re.compile(r"^[-/_=a-zA-Z0-9]+(\.[-/_=a-zA-Z0-9]+)*$")


def _kv_key(node_id: str) -> str:
    """``node_id`` if it is a valid KV key, else a base64url form (the id itself is in the
    stored JSON, so the key only has to be unique)."""
    if _KV_KEY_RE.match(node_id):
        return node_id
    return "b64=" + base64.urlsafe_b64encode(node_id.encode()).decode().rstrip("=")


def _unix_s(stamp: object) -> float:
    """A nats-py message timestamp (a ``datetime``; ns since the epoch in some versions) in
    Unix seconds (0.0 when missing)."""
    if isinstance(stamp, datetime):
        return stamp.timestamp()
    if isinstance(stamp, int | float):
        return stamp / 1e9 if stamp > 1e12 else float(stamp)
    return 0.0


class NatsKvDiscovery(Discovery):
    """Discovery in a NATS JetStream key-value bucket whose TTL expires silent nodes.

    Args:
        nc_or_url: a connected ``nats.aio.client.Client`` (not closed by :meth:`close`) or a
            URL (``nats://host:port``; connected by :meth:`connect`, closed by :meth:`close`;
            later drops are retried forever by nats-py, and heartbeats resume).
        bucket: bucket name (``[A-Za-z0-9_-]+``). Created with ``ttl=ttl_s``, ``history=1`` if
            missing. If it exists with another TTL, the bucket's TTL wins (logged) — every node
            must agree on one TTL, so configure it once.
        ttl_s: seconds after its last put a node's entry is deleted by the server (the stream's
            ``max_age``; the server checks ages on a timer, measured accurate to ~10 ms here).
        connect_timeout_s: seconds to connect (URL form).
        api_timeout_s: seconds to wait for a JetStream API answer (a put, a listing).
        reconnect_wait_s: seconds between reconnection attempts after a drop (URL form).

    ``last_seen_unix_s`` is the server's timestamp of the last put. :meth:`nodes` reads the
    bucket through a short-lived ordered consumer (one JetStream API round trip plus the
    deliveries, about a millisecond locally): cache its result for per-message routing.

    Raises:
        ValueError: bad bucket name or timeouts.
    """

    backend = "nats-kv"

    def __init__(self, nc_or_url: NatsClient | str, *, bucket: str = "catga_nodes",
                 ttl_s: float = 10.0, connect_timeout_s: float = 2.0,
                 api_timeout_s: float = 5.0, reconnect_wait_s: float = 1.0) -> None:
        super().__init__(ttl_s=ttl_s)
        if not _BUCKET_RE.match(bucket):
            raise ValueError(f"bucket must match [A-Za-z0-9_-]+, got {bucket!r}")
        if not (connect_timeout_s > 0 and api_timeout_s > 0 and reconnect_wait_s > 0):
            raise ValueError("connect_timeout_s, api_timeout_s and reconnect_wait_s must be > 0")
        self.reconnect_wait_s = float(reconnect_wait_s)
        self.bucket = bucket
        self.connect_timeout_s = float(connect_timeout_s)
        self.api_timeout_s = float(api_timeout_s)
        self._owns_client = isinstance(nc_or_url, str)
        self._nc: NatsClient | None = None if isinstance(nc_or_url, str) else nc_or_url
        if isinstance(nc_or_url, str):
            self.url = nc_or_url
        else:
            connected = nc_or_url.connected_url
            self.url = connected.geturl() if connected is not None else "nats://(unknown)"
        self._kv: KeyValue | None = None
        self._connecting = False
        self._closing = False

    async def _on_error(self, exc: Exception) -> None:
        import nats.errors

        nc = self._nc
        quiet = (self._connecting or nc is None or nc.is_reconnecting or nc.is_closed
                 or isinstance(exc, nats.errors.UnexpectedEOF))  # a drop: reported once below
        _log.log(logging.DEBUG if quiet else logging.WARNING, "nats %s: %r", self.url, exc)

    async def _on_disconnected(self) -> None:
        if not (self._connecting or self._closing):
            _log.warning("discovery lost its connection to %s; reconnecting every %g s",
                         self.url, self.reconnect_wait_s)

    async def _on_reconnected(self) -> None:
        _log.info("discovery reconnected to %s", self.url)

    async def connect(self) -> None:
        """Connect (URL form) and open or create the bucket.

        Raises:
            BrokerUnavailable: the server cannot be reached, or JetStream does not answer
                (not enabled, or no reply within ``api_timeout_s``).
            TransportError: the bucket cannot be created or opened.
        """
        import nats.errors
        from nats.aio.client import Client

        if self._nc is None:
            nc = Client()
            budget = self.connect_timeout_s + 0.5
            self._connecting = True
            try:
                # Two quick attempts for the initial connect; unlimited reconnects afterwards.
                await asyncio.wait_for(nc.connect(
                    servers=[self.url], name="catga-discovery", allow_reconnect=True,
                    connect_timeout=self.connect_timeout_s,  # type: ignore[arg-type]
                    reconnect_time_wait=0.25,  # type: ignore[arg-type]
                    max_reconnect_attempts=1, error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                ), timeout=budget)
            except (OSError, TimeoutError, nats.errors.Error) as exc:
                with contextlib.suppress(Exception):
                    await nc.close()
                reason = (f"no connection within {budget:g} s"
                          if type(exc) is TimeoutError else f"{type(exc).__name__}: {exc}")
                raise BrokerUnavailable(self.url, reason) from exc
            finally:
                self._connecting = False
            nc.options["max_reconnect_attempts"] = -1
            nc.options["reconnect_time_wait"] = self.reconnect_wait_s
            self._nc = nc
        try:
            self._kv = await self._open_bucket(self._nc)
        except BaseException:
            await self._disconnect()
            raise

    async def _open_bucket(self, nc: NatsClient) -> KeyValue:
        import nats.errors
        import nats.js.errors

        js = nc.jetstream(timeout=self.api_timeout_s)
        try:
            try:
                kv = await js.key_value(self.bucket)
            except nats.js.errors.BucketNotFoundError:
                try:
                    kv = await js.create_key_value(bucket=self.bucket, ttl=self.ttl_s,
                                                   history=1)
                except nats.js.errors.BadRequestError:
                    kv = await js.key_value(self.bucket)  # another node created it first
            status = await kv.status()
        except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError) as exc:
            raise BrokerUnavailable(self.url, "JetStream is not enabled on the server") from exc
        except (TimeoutError, nats.errors.ConnectionClosedError) as exc:
            raise BrokerUnavailable(self.url, f"JetStream did not answer: {exc!r}") from exc
        except nats.errors.Error as exc:
            raise TransportError(f"nats {self.url}: cannot open bucket {self.bucket!r}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        ttl = status.ttl
        if not ttl:
            raise TransportError(f"nats {self.url}: bucket {self.bucket!r} has no TTL, so dead "
                                 "nodes would never expire; recreate it with a TTL")
        if abs(ttl - self.ttl_s) > 1e-3:
            _log.warning("bucket %r exists with ttl %g s, not %g s: using %g s", self.bucket,
                         ttl, self.ttl_s, ttl)
            self.ttl_s = float(ttl)
        return kv

    async def _disconnect(self) -> None:
        nc, self._kv = self._nc, None
        if self._owns_client and nc is not None:
            self._nc = None
            self._closing = True
            try:
                with contextlib.suppress(Exception):
                    await nc.close()
            finally:
                self._closing = False

    def _bucket(self) -> KeyValue:
        if self._kv is None:
            raise RuntimeError("NatsKvDiscovery is not connected: use `async with` or connect()")
        return self._kv

    def _error(self, exc: Exception, what: str) -> TransportError:
        import nats.errors

        if isinstance(exc, TransportError):
            return exc
        if isinstance(exc, nats.errors.ConnectionClosedError | nats.errors.NoServersError
                      | nats.errors.OutboundBufferLimitError | nats.errors.NoRespondersError
                      | TimeoutError | OSError) or (self._nc is not None and self._nc.is_closed):
            return BrokerUnavailable(self.url, f"{what}: {type(exc).__name__}: {exc}")
        return TransportError(f"nats {self.url} {what}: {type(exc).__name__}: {exc}")

    async def _put(self, node: NodeInfo) -> NodeInfo:
        import nats.errors
        import nats.js.errors

        kv = self._bucket()
        key, value = _kv_key(node.node_id), _node_json(node).encode()
        try:
            try:
                await kv.put(key, value)
            except (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError):
                # Connected, but no stream takes the subject: the bucket was deleted or the
                # server lost its store. Recreate it once and retry.
                assert self._nc is not None
                _log.warning("bucket %r is gone on %s; recreating it", self.bucket, self.url)
                self._kv = kv = await self._open_bucket(self._nc)
                await kv.put(key, value)
        except Exception as exc:
            raise self._error(exc, "heartbeat") from exc
        # The server stamps the message; reading it back would cost a round trip, so report
        # the local time (nodes() returns the server's stamp).
        return replace(node, last_seen_unix_s=time.time())

    async def _remove(self, node_id: str) -> None:
        kv = self._bucket()
        try:
            await kv.purge(_kv_key(node_id))
        except Exception as exc:
            raise self._error(exc, "deregister") from exc

    async def nodes(self) -> list[NodeInfo]:
        """Live nodes: the latest value of every key still in the bucket (the server has
        already deleted entries older than ``ttl_s``; deleted/purged keys are skipped)."""
        kv = self._bucket()
        found: dict[str, NodeInfo] = {}
        try:
            watcher = await kv.watchall(ignore_deletes=True)
            try:
                while True:
                    # The watcher sends None once the initial values are delivered (or at once
                    # for an empty bucket).
                    entry = await watcher.updates(timeout=self.api_timeout_s)
                    if entry is None:
                        break
                    if entry.value is None:
                        continue
                    seen = _unix_s(entry.created)
                    try:
                        node = _node_from_json(entry.value, seen)
                    except (ValueError, KeyError, TypeError) as exc:
                        _log.warning("nats discovery: bad value under key %r: %s", entry.key,
                                     exc)
                        continue
                    found[node.node_id] = node
            finally:
                with contextlib.suppress(Exception):
                    await watcher.stop()
        except Exception as exc:
            raise self._error(exc, "listing nodes") from exc
        return sorted(found.values(), key=lambda n: n.node_id)
