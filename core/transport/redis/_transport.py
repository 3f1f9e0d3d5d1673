"""RedisTransport: connection, publish, request/reply, subscribe, dead letters, close."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from core.messages import QoS
from core.transport.base import (
    H_DLQ_DELIVERIES,
    H_DLQ_REASON,
    H_DLQ_SUBJECT,
    BrokerUnavailable,
    DeliveryHandler,
    Reply,
    RequestTimeout,
    Subscription,
    Transport,
    TransportError,
)
from core.transport.redis._errors import BACKOFF_MAX_S, BACKOFF_MIN_S, CONN_ERRORS
from core.transport.redis._framing import (
    F_BODY,
    QOS0_SCRIPT,
    QOS0_SHA,
    QOS0_STREAM_LEN,
    Keys,
    check_subject,
    flat_fields,
    pack_frame,
    split_fields,
    unpack_frame,
)
from core.transport.redis._subscription import RedisSubscription
from core.transport.redis._writer import Op, Writer

_log = logging.getLogger("catga.transport.redis")

_HIGH_WATER = 16_384
_MAX_CONNECTIONS = 10_000


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


class RedisTransport(Transport):
    """The transport seam over Redis Pub/Sub and Streams (see the package docstring).

    Args:
        url: ``redis://host:port[/db]`` (also ``rediss://``, ``unix://``).
        ack_wait_s: an unsettled QoS >= 1 delivery is reclaimed by the group after this idle
            time (``XAUTOCLAIM`` min-idle).
        max_deliver: deliveries before a message is dead-lettered.
        key_prefix: prefix of every key and channel.
        dlq_stream: the dead-letter stream key.
        max_stream_len: approximate cap of each stream (``MAXLEN ~``).
        block_ms: ``XREADGROUP BLOCK`` time.
        connect_timeout_s: socket connect timeout; ``connect`` gives up after about this long.
        reconnect_budget_s: how long publishes, acks and requests retry a lost connection.

    Raises:
        ValueError: an argument out of range (the message names it).
    """

    name = "redis"

    def __init__(self, url: str = "redis://127.0.0.1:6379", *, ack_wait_s: float = 30.0,
                 max_deliver: int = 5, key_prefix: str = "catga", dlq_stream: str = "catga:dlq",
                 max_stream_len: int = 1_000_000, block_ms: int = 100,
                 connect_timeout_s: float = 2.0, reconnect_budget_s: float = 30.0) -> None:
        super().__init__()
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"url must start with redis://, rediss:// or unix://, got {url!r}")
        _positive("ack_wait_s", ack_wait_s)
        _positive_int("max_deliver", max_deliver)
        if not isinstance(key_prefix, str) or not key_prefix or any(
                c.isspace() for c in key_prefix):
            raise ValueError(f"key_prefix must be a non-empty string without spaces, "
                             f"got {key_prefix!r}")
        if not isinstance(dlq_stream, str) or not dlq_stream:
            raise ValueError(f"dlq_stream must be a non-empty string, got {dlq_stream!r}")
        _positive_int("max_stream_len", max_stream_len)
        _positive_int("block_ms", block_ms)
        _positive("connect_timeout_s", connect_timeout_s)
        _positive("reconnect_budget_s", reconnect_budget_s, allow_zero=True)
        self.url = url
        self.ack_wait_s = float(ack_wait_s)
        self.max_deliver = max_deliver
        self.key_prefix = key_prefix
        self.dlq_stream = dlq_stream
        self.max_stream_len = max_stream_len
        self.block_ms = block_ms
        self.connect_timeout_s = float(connect_timeout_s)
        self.reconnect_budget_s = float(reconnect_budget_s)
        self._io_timeout_s = block_ms / 1000 + 10.0  # a hung broker is noticed after this
        self.client_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._client: aioredis.Redis | None = None
        self._writer: Writer | None = None
        self._closed = False
        self._down_since: float | None = None
        self._budget_logged = False
        self._probe: asyncio.Task[None] | None = None
        self._subs: set[RedisSubscription] = set()
        self._consumer_seq = itertools.count(1)
        self._keys_cache: dict[str, Keys] = {}
        self._inbox = f"{key_prefix}:inbox:{self.client_id}"
        self._inbox_task: asyncio.Task[None] | None = None
        self._inbox_lock = asyncio.Lock()
        self._replies: dict[str, asyncio.Future[tuple[dict[str, str], bytes]]] = {}
        self._tokens = itertools.count(1)

    # -- connection ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Create the client and PING it (retrying for about ``connect_timeout_s``).

        Raises:
            BrokerUnavailable: no PONG in time. TransportError: the transport was closed.
        """
        if self._closed:
            raise TransportError("transport is closed")
        if self._client is not None:
            return
        client = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=self.connect_timeout_s,
            socket_timeout=self._io_timeout_s, socket_keepalive=True,
            retry=Retry(NoBackoff(), 0), max_connections=_MAX_CONNECTIONS,
            decode_responses=False)
        deadline = time.monotonic() + self.connect_timeout_s
        while True:
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic()) + 0.5):
                    await client.ping()
                break
            except (RedisError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if time.monotonic() + 0.1 >= deadline:
                    with contextlib.suppress(Exception):
                        await client.aclose()
                    raise BrokerUnavailable(self.url, reason) from exc
                await asyncio.sleep(0.1)
        self._client = client
        self._writer = Writer(self, client)
        _log.info("connected to %s as %s", self.url, self.client_id)

    def _live(self) -> tuple[aioredis.Redis, Writer]:
        if self._closed:
            raise TransportError("transport is closed")
        if self._client is None or self._writer is None:
            raise TransportError("transport is not connected (call connect() first)")
        return self._client, self._writer

    def _deadline(self, limit_s: float | None = None) -> float:
        budget = self.reconnect_budget_s if limit_s is None else min(limit_s,
                                                                     self.reconnect_budget_s)
        return time.monotonic() + budget

    def _check_budget(self) -> None:
        """Raise BrokerUnavailable at once while the broker has been gone for longer than the
        reconnect budget (a background PING notices when it is back)."""
        down = self._down_since
        if down is None or time.monotonic() - down < self.reconnect_budget_s:
            return
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._probe_loop(), name="catga-redis-probe")
        raise BrokerUnavailable(self.url, f"unreachable for {time.monotonic() - down:.1f} s "
                                          f"(reconnect budget {self.reconnect_budget_s:g} s)")

    async def _probe_loop(self) -> None:
        backoff = BACKOFF_MIN_S
        while self._down_since is not None and self._client is not None:
            try:
                await self._client.ping()
            except CONN_ERRORS:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            self._note_up()

    def _note_down(self, exc: BaseException, what: str) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            self._budget_logged = False
            self.stats.disconnects += 1
            _log.warning("lost the connection to %s while %s: %s", self.url, what,
                         str(exc) or type(exc).__name__)
        elif not self._budget_logged and now - self._down_since > self.reconnect_budget_s:
            self._budget_logged = True
            _log.error("%s unreachable for more than %g s (still retrying): %s", self.url,
                       self.reconnect_budget_s, str(exc) or type(exc).__name__)

    def _note_up(self) -> None:
        if self._down_since is not None:
            _log.info("reconnected to %s after %.1f s", self.url,
                      time.monotonic() - self._down_since)
            self._down_since = None
            self.stats.reconnects += 1

    def _keys(self, subject: str) -> Keys:
        keys = self._keys_cache.get(subject)
        if keys is None:
            check_subject(subject)
            p = self.key_prefix
            keys = Keys(f"{p}:stream:{subject}", f"{p}:ch:{subject}", f"{p}:req:{subject}",
                         f"{p}:s0:{subject}", f"{p}:g0:{subject}")
            if len(self._keys_cache) < 65_536:
                self._keys_cache[subject] = keys
        return keys

    # -- publishing ---------------------------------------------------------------------------

    async def publish(self, subject: str, headers: Mapping[str, str], body: bytes, *,
                      qos: QoS = QoS.AT_MOST_ONCE) -> None:
        _, writer = self._live()
        keys = self._keys(subject)
        if qos == QoS.AT_MOST_ONCE:
            try:
                self._check_budget()
            except BrokerUnavailable:
                self.stats.publish_errors += 1
                raise
            frame = pack_frame(orjson.dumps(headers if type(headers) is dict else dict(headers)),
                           body)
            tail = (2, keys.marker, keys.s0, keys.channel, frame, QOS0_STREAM_LEN)
            op = Op(("EVALSHA", QOS0_SHA, *tail), None, 0.0, False,
                     ("EVAL", QOS0_SCRIPT, *tail), counts=True)
            if len(writer.queue) < _HIGH_WATER:
                writer.submit(op)
                return
            op.fut = asyncio.get_running_loop().create_future()  # backpressure: wait for it
            writer.submit(op)
            try:
                await op.fut
            except TransportError:
                self.stats.publish_errors += 1
                raise
            self.stats.published += 1
            return
        if qos not in (QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")
        fields = flat_fields(headers, body)
        try:
            await writer.call("XADD", keys.stream, "MAXLEN", "~", self.max_stream_len, "*",
                              *fields)
        except TransportError:
            self.stats.publish_errors += 1
            raise
        self.stats.published += 1

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until everything queued so far reached the broker (a PING through the
        pipeline). Raises BrokerUnavailable / TransportError if that takes over ``timeout_s``."""
        _, writer = self._live()
        try:
            async with asyncio.timeout(timeout_s):
                await writer.call("PING", limit_s=timeout_s)
        except TimeoutError:
            if self._down_since is not None:
                raise BrokerUnavailable(self.url, f"flush timed out after {timeout_s:g} s") \
                    from None
            raise TransportError(f"flush did not complete within {timeout_s:g} s") from None

    # -- request / reply ----------------------------------------------------------------------

    async def request(self, subject: str, headers: Mapping[str, str], body: bytes, *,
                      timeout_s: float) -> Reply:
        _, writer = self._live()
        keys = self._keys(subject)
        _positive("timeout_s", timeout_s)
        await self._ensure_inbox()
        token = str(next(self._tokens))
        fields = flat_fields(headers, body)
        deadline_ms = int((time.time() + timeout_s) * 1000)
        fut: asyncio.Future[tuple[dict[str, str], bytes]] = (
            asyncio.get_running_loop().create_future())
        self._replies[token] = fut
        try:
            async with asyncio.timeout(timeout_s):
                await writer.call("XADD", keys.req, "MAXLEN", "~", self.max_stream_len, "*",
                                  *fields, "~reply", self._inbox, "~token", token,
                                  "~deadline", deadline_ms, limit_s=timeout_s)
                reply_headers, reply_body = await fut
        except TimeoutError:
            raise RequestTimeout(subject, timeout_s) from None
        finally:
            self._replies.pop(token, None)
        return Reply(reply_headers, reply_body)

    async def _ensure_inbox(self) -> None:
        if self._inbox_task is not None:
            return
        async with self._inbox_lock:
            if self._inbox_task is not None:
                return
            pubsub = await self._open_pubsub(self._inbox)
            self._inbox_task = asyncio.create_task(
                self._pubsub_loop(pubsub, self._inbox, self._on_reply, None),
                name="catga-redis-inbox")

    def _on_reply(self, data: bytes) -> None:
        try:
            meta, body = unpack_frame(data)
            token, headers = meta
        except (ValueError, TypeError) as exc:
            _log.warning("dropped a malformed reply on %s: %s", self._inbox, exc)
            return
        fut = self._replies.pop(str(token), None)
        if fut is not None and not fut.done():
            fut.set_result((headers, body))

    async def _open_pubsub(self, channel: str) -> PubSub:
        """A Pub/Sub connection subscribed to ``channel`` (confirmed by the broker)."""
        client, _ = self._live()
        pubsub = client.pubsub()
        try:
            async with asyncio.timeout(self.connect_timeout_s + 1.0):
                await pubsub.subscribe(channel)
                while True:
                    msg = await pubsub.get_message(timeout=self.connect_timeout_s)
                    if msg is not None and msg["type"] == "subscribe":
                        break
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            if isinstance(exc, (*CONN_ERRORS, TimeoutError, RedisError)):
                raise BrokerUnavailable(self.url, f"subscribe {channel}: "
                                                  f"{str(exc) or type(exc).__name__}") from exc
            raise
        return pubsub

    async def _pubsub_loop(self, pubsub: PubSub | None, channel: str,
                           on_data: Callable[[bytes], None],
                           wait_slot: Callable[[], Awaitable[None]] | None) -> None:
        backoff = BACKOFF_MIN_S
        try:
            while True:
                try:
                    if pubsub is None:
                        pubsub = await self._open_pubsub(channel)
                        self._note_up()
                        backoff = BACKOFF_MIN_S
                    while True:
                        if wait_slot is not None:
                            await wait_slot()
                        msg = await pubsub.get_message(timeout=None)
                        if msg is not None and msg["type"] == "message":
                            on_data(msg["data"])
                except (*CONN_ERRORS, RedisError) as exc:
                    if isinstance(exc, CONN_ERRORS):
                        self._note_down(exc, f"reading {channel}")
                    else:
                        _log.error("reading %s failed: %s", channel, exc)
                    if pubsub is not None:
                        with contextlib.suppress(Exception):
                            await pubsub.aclose()
                        pubsub = None
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
        finally:
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    # -- subscribing --------------------------------------------------------------------------

    async def subscribe(self, subject: str, handler: DeliveryHandler, *,
                        qos: QoS = QoS.AT_MOST_ONCE, group: str | None = None,
                        max_in_flight: int = 256) -> Subscription:
        """See :meth:`Transport.subscribe`; wildcards are not supported (ValueError).

        Raises:
            BrokerUnavailable: the groups or the Pub/Sub subscription could not be set up.
        """
        self._live()
        keys = self._keys(subject)
        if qos not in (QoS.AT_MOST_ONCE, QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")
        _positive_int("max_in_flight", max_in_flight)
        if group is not None and (not isinstance(group, str) or not group
                                  or group.startswith("~")):
            raise ValueError(f"group must be a non-empty string not starting with '~', "
                             f"got {group!r}")
        consumer = f"{self.client_id}-{next(self._consumer_seq)}"
        sub = RedisSubscription(self, subject, keys, handler, QoS(qos), group, max_in_flight,
                                 consumer)
        await sub.start()
        self._subs.add(sub)
        return sub

    async def _ensure_group(self, key: str, group: str, start_id: str) -> None:
        client, _ = self._live()
        try:
            await client.xgroup_create(key, group, id=start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise TransportError(f"XGROUP CREATE {key} {group}: {exc}") from exc

    async def _setup(self, coro: Awaitable[Any], what: str) -> Any:
        try:
            async with asyncio.timeout(self.connect_timeout_s + self.block_ms / 1000 + 1.0):
                return await coro
        except (*CONN_ERRORS, TimeoutError) as exc:
            raise BrokerUnavailable(self.url, f"{what}: {str(exc) or type(exc).__name__}") \
                from exc

    # -- dead letters -------------------------------------------------------------------------

    async def dead_letter(self, subject: str, headers: Mapping[str, str], body: bytes,
                          deliveries: int, reason: str) -> None:
        """Store a message in ``dlq_stream`` with the ``Catga-DLQ-*`` headers.

        Raises:
            BrokerUnavailable / TransportError: not stored (the caller must not drop it).
        """
        _, writer = self._live()
        fields: list[Any] = []
        for k, v in headers.items():
            if k in (H_DLQ_REASON, H_DLQ_SUBJECT, H_DLQ_DELIVERIES, F_BODY) or k.startswith("~"):
                continue
            fields += (k, v)
        fields += (H_DLQ_REASON, reason or "unspecified", H_DLQ_SUBJECT, subject,
                   H_DLQ_DELIVERIES, str(deliveries), F_BODY, body)
        await writer.call("XADD", self.dlq_stream, "MAXLEN", "~", self.max_stream_len, "*",
                          *fields)
        self.stats.dead_lettered += 1
        _log.warning("dead-lettered a message from %s after %d deliveries: %s", subject,
                     deliveries, reason)

    async def dead_letters(self, limit: int = 100) -> list[tuple[dict[str, str], bytes]]:
        """Up to ``limit`` dead letters, oldest first: ``(headers, body)`` where the headers
        include ``Catga-DLQ-Reason``, ``Catga-DLQ-Subject`` and ``Catga-DLQ-Deliveries``."""
        client, _ = self._live()
        _positive_int("limit", limit)
        try:
            entries = await client.xrange(self.dlq_stream, "-", "+", count=limit)
        except CONN_ERRORS as exc:
            raise BrokerUnavailable(self.url, str(exc) or type(exc).__name__) from exc
        except RedisError as exc:
            raise TransportError(f"XRANGE {self.dlq_stream}: {exc}") from exc
        out: list[tuple[dict[str, str], bytes]] = []
        for _id, fields in entries:
            headers, body, _meta = split_fields(fields)
            out.append((headers, body))
        return out

    # -- shutdown -----------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop every subscription (running handlers are cancelled; their QoS >= 1 deliveries
        come back after ``ack_wait_s``), flush queued writes (up to 2 s) and disconnect.
        Idempotent; never raises."""
        if self._closed:
            return
        for sub in list(self._subs):
            with contextlib.suppress(Exception):
                await sub.stop()
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(BaseException):
                await self._probe
        if self._inbox_task is not None:
            self._inbox_task.cancel()
            with contextlib.suppress(BaseException):
                await self._inbox_task
            self._inbox_task = None
        writer = self._writer
        if writer is not None and self._down_since is None:  # let queued QoS 0 frames out
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await writer.call("PING", limit_s=2.0)
        self._closed = True
        for fut in self._replies.values():
            if not fut.done():
                fut.set_exception(TransportError("transport closed"))
        self._replies.clear()
        if writer is not None:
            await writer.close()
        client, self._client, self._writer = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()
            _log.info("closed the connection to %s", self.url)
