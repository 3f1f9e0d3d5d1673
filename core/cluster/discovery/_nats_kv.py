"""Discovery in a NATS JetStream key-value bucket whose TTL expires silent nodes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import time
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from core.cluster.discovery._base import Discovery, node_from_json, node_json
from core.cluster.routing import NodeInfo
from core.transport.base import BrokerUnavailable, TransportError

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.js.kv import KeyValue

_log = logging.getLogger("catga.discovery")


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
        key, value = _kv_key(node.node_id), node_json(node).encode()
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
                        node = node_from_json(entry.value, seen)
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
