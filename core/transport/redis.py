"""Redis transport: Pub/Sub and Streams behind the transport seam (redis.asyncio).

Layout on the broker (``P`` is ``key_prefix``, subjects are used verbatim in key names):

* **QoS 0, no group** — ``PUBLISH P:ch:<subject>`` of one frame (4-byte big-endian length of the
  JSON headers, the headers, then the raw body: arbitrary bytes round-trip). Each subscriber holds
  a Pub/Sub subscription and gets every message; nothing is stored.
* **QoS 0 with a group** — Pub/Sub cannot share messages among a group's members, so grouped
  QoS 0 subscribers read the stream ``P:s0:<subject>`` through a consumer group with ``NOACK``
  (each message to exactly one member, no pending list, no redelivery: at most once). Publishers
  do not know about groups: every QoS 0 publish runs one small Lua script that ``PUBLISH``-es the
  frame and, only while the marker key ``P:g0:<subject>`` exists, also ``XADD``-s it to that
  stream (capped at ``MAXLEN ~ 100000``). Grouped subscribers refresh the marker (30 s TTL)
  every 10 s and keep the stream alive (2 min TTL), so once the last member is gone the extra
  ``XADD`` stops and the stream expires. A group that comes back within that window first gets
  the messages published while it was away (at most ~30 s worth).
* **QoS 1/2** — ``XADD P:stream:<subject> MAXLEN ~ max_stream_len * <headers...> body <body>``;
  ``publish`` returns after the reply (the entry is stored; with ``appendfsync always`` it is
  on disk). A group is a Redis consumer group created at id ``0`` (a new group sees what the
  stream still holds); each subscription is its own consumer (``<host>-<pid>-<rand>-<n>``) that
  reads ``XREADGROUP ... COUNT <free slots> BLOCK block_ms >``. Every ``ack_wait_s / 2`` it also
  ``XAUTOCLAIM``-s entries idle for more than ``ack_wait_s`` (from dead or stuck consumers);
  their delivery count is the pending list's times-delivered (``XPENDING``). An entry claimed
  for the ``max_deliver + 1``-th time is dead-lettered instead of delivered. ``subscribe``
  without a group gets a private group (created at ``$``, destroyed on ``stop``).
* ``ack`` is ``XACK``; ``nack(delay_s)`` keeps the entry pending to this consumer (re-claiming it
  with ``XCLAIM JUSTID`` every ``ack_wait_s / 3`` so nobody else takes it), then ``XCLAIM``-s it
  (delivery count + 1) and hands it to the handler again; if this process dies meanwhile the
  group gets it after ``ack_wait_s``. On the ``max_deliver``-th delivery ``nack`` dead-letters
  it instead. ``term`` dead-letters and acks.
* **Dead letters** — ``XADD dlq_stream`` with the original headers and body plus
  ``Catga-DLQ-Reason``, ``Catga-DLQ-Subject`` and ``Catga-DLQ-Deliveries``;
  :meth:`RedisTransport.dead_letters` reads them back.
* **Requests** — ``XADD P:req:<subject>`` (fields as for QoS 1 plus ``~reply``, ``~token`` and an
  absolute ``~deadline`` in ms) read by a consumer group (the subscription's group, or ``~any``
  shared by all ungrouped subscribers), so exactly one member handles each request. The reply is
  ``PUBLISH P:inbox:<client id>`` (frame with the correlation token) to the requester's single
  inbox subscription; the request entry is ``XACK``-ed once replied. A request whose handler
  died is reclaimed after ``ack_wait_s`` only if its deadline has not passed (else dropped).

Header names must not be ``body`` nor start with ``~`` (reserved stream fields). Wildcard
subjects (``*``, ``>``) are not supported by this transport (ValueError). Needs Redis >= 6.2
(``XAUTOCLAIM``); tested with 7.0. ``Subscription.stop(grace_s=0.0)`` stops reading, waits up to
``grace_s`` for running handlers and cancels the rest (their QoS >= 1 deliveries stay pending and
are reclaimed by the group), then drops the consumer from its groups if it has nothing pending.
Consumers of processes that died stay listed in their groups (``XINFO CONSUMERS``) with their
pending entries, which the group reclaims.

Writes (publishes, acks, replies, dead letters) go through one *auto-pipeline*: commands issued
while a batch is in flight are sent together as the next pipeline, so N concurrent publishers
cost about one round trip per batch rather than per message. QoS 0 ``publish`` only queues the
frame (like nats-py's buffered publish) and returns; ``flush`` waits until everything queued has
reached the broker, and ``publish`` blocks once 16384 frames are queued (backpressure). QoS 0
frames that fail to go out (connection lost) are dropped and counted in ``publish_errors``;
``stats.published`` counts them once the broker accepted them.

Connection loss: every loop (readers, reclaimers, Pub/Sub, the writer) retries with bounded
exponential backoff (50 ms to 2 s) forever and logs to ``catga.transport.redis``; the first
failure counts ``stats.disconnects`` and the first success after it ``stats.reconnects``. A
publish, ack or request retries for up to ``reconnect_budget_s`` and then raises
:class:`~core.transport.base.BrokerUnavailable`; once the broker has been gone for longer than
the budget, every publish (QoS 0 too), ack and request raises it at once, until a background
``PING`` (or any loop) reaches the broker again. A single attempt against a *hung* broker (one
that accepts but never answers) is only abandoned after the socket timeout (``block_ms`` +
10 s). A QoS 1 publish retried after a lost reply may be stored twice (at least once; QoS 2
dedup happens above the transport). Pub/Sub messages and replies sent while a subscriber is
disconnected are lost (QoS 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import math
import os
import socket
import struct
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - redis[hiredis] is the declared extra
    _hiredis_pack = None
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.messages import QoS
from core.transport.base import (
    H_DLQ_DELIVERIES,
    H_DLQ_REASON,
    H_DLQ_SUBJECT,
    BrokerUnavailable,
    Delivery,
    DeliveryHandler,
    Reply,
    RequestTimeout,
    Subscription,
    Transport,
    TransportError,
)

__all__ = ["RedisTransport"]

_log = logging.getLogger("catga.transport.redis")

_CONN_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError, RedisTimeoutError, OSError, BrokerUnavailable,
)
_F_BODY = "body"
_F_REPLY = b"~reply"
_F_TOKEN = b"~token"
_F_DEADLINE = b"~deadline"
_F_FRAME = "f"
_ANY_GROUP = "~any"
_QOS0_STREAM_LEN = 100_000
_MARKER_TTL_MS = 30_000
_MARKER_REFRESH_S = 10.0
_S0_TTL_MS = 120_000
_MAX_BATCH = 1024
_HIGH_WATER = 16_384
_BACKOFF_MIN_S = 0.05
_BACKOFF_MAX_S = 2.0
_MAX_CONNECTIONS = 10_000
_CLEANUP_TIMEOUT_S = 1.0
_LEN = struct.Struct("!I")

# KEYS[1] group marker, KEYS[2] grouped-QoS-0 stream; ARGV channel, frame, maxlen.
_QOS0_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'f', ARGV[2])
end
return redis.call('PUBLISH', ARGV[1], ARGV[2])
"""
_QOS0_SHA = hashlib.sha1(_QOS0_SCRIPT.encode()).hexdigest()
_LOAD = ("SCRIPT", "LOAD", _QOS0_SCRIPT)
_LOAD_PACKED = _hiredis_pack(_LOAD) if _hiredis_pack is not None else b""


def _frame(meta: bytes, body: bytes) -> bytes:
    return _LEN.pack(len(meta)) + meta + bytes(body)


def _unframe(frame: bytes) -> tuple[Any, bytes]:
    """``(decoded JSON meta, body)``; raises ValueError on a frame that is not ours."""
    if len(frame) < _LEN.size:
        raise ValueError("frame shorter than its length prefix")
    (n,) = _LEN.unpack_from(frame)
    end = _LEN.size + n
    if end > len(frame):
        raise ValueError("frame length prefix exceeds the frame")
    return orjson.loads(frame[_LEN.size:end]), frame[end:]


def _check_subject(subject: str) -> None:
    if not isinstance(subject, str) or not subject or any(c.isspace() for c in subject):
        raise ValueError(f"subject must be a non-empty string without spaces, got {subject!r}")
    tokens = subject.split(".")
    if "" in tokens:
        raise ValueError(f"subject {subject!r} has an empty token")
    if "*" in tokens or ">" in tokens:
        raise ValueError(f"wildcard subjects are not supported by RedisTransport: {subject!r}")


def _flat_fields(headers: Mapping[str, str], body: bytes) -> list[Any]:
    out: list[Any] = []
    for k, v in headers.items():
        if k == _F_BODY or k.startswith("~"):
            raise TransportError(f"header name {k!r} is reserved by RedisTransport")
        out.append(k)
        out.append(v)
    out.append(_F_BODY)
    out.append(body if type(body) is bytes else bytes(body))
    return out


def _split_fields(
    fields: Mapping[bytes, bytes],
) -> tuple[dict[str, str], bytes, dict[bytes, bytes]]:
    """Stream entry fields -> (headers, body, reserved ``~`` fields)."""
    headers: dict[str, str] = {}
    body = b""
    meta: dict[bytes, bytes] = {}
    for k, v in fields.items():
        if k == b"body":
            body = v
        elif k[:1] == b"~":
            meta[k] = v
        else:
            headers[k.decode(errors="replace")] = v.decode(errors="replace")
    return headers, body, meta


def _is_nogroup(exc: BaseException) -> bool:
    return str(exc).startswith("NOGROUP")


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True, slots=True)
class _Keys:
    stream: str
    channel: str
    req: str
    s0: str
    marker: str


@dataclass(frozen=True, slots=True)
class _Spec:
    """One stream a subscription reads: its key, consumer group and kind."""

    key: str
    group: str
    kind: str  # "main" (QoS >= 1), "req" (requests), "s0" (grouped QoS 0, NOACK)
    start_id: str

    @property
    def acks(self) -> bool:
        return self.kind != "s0"


class _Op:
    """A queued command. Without ``fut`` it is fire-and-forget; ``counts`` marks a QoS 0 frame
    (counted in ``published`` / ``publish_errors``)."""

    __slots__ = ("alt", "args", "counts", "deadline", "fut", "packed", "retry")

    def __init__(self, args: tuple[Any, ...], fut: asyncio.Future[Any] | None, deadline: float,
                 retry: bool, alt: tuple[Any, ...] | None = None, counts: bool = False) -> None:
        self.args = args
        # packed by the caller, so an argument of a bad type fails there, not the whole batch
        self.packed = _hiredis_pack(args) if _hiredis_pack is not None else None
        self.fut = fut
        self.deadline = deadline
        self.retry = retry
        self.alt = alt
        self.counts = counts


class _Writer:
    """Auto-pipelining: one pipeline in flight; commands queued meanwhile form the next one."""

    def __init__(self, transport: RedisTransport, client: aioredis.Redis) -> None:
        self._t = transport
        self._client = client
        self.queue: deque[_Op] = deque()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="catga-redis-writer")

    def submit(self, op: _Op) -> None:
        self.queue.append(op)
        self._wake.set()

    async def call(self, *args: Any, limit_s: float | None = None) -> Any:
        """Run one command through the pipeline (retried on connection loss until the
        deadline); raises BrokerUnavailable or TransportError."""
        self._t._check_budget()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.submit(_Op(args, fut, self._t._deadline(limit_s), True))
        return await fut

    async def _run(self) -> None:
        backoff = _BACKOFF_MIN_S
        queue = self.queue
        while True:
            if not queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch: list[_Op] = []
            while queue and len(batch) < _MAX_BATCH:
                op = queue.popleft()
                if op.fut is None or not op.fut.done():  # skip ops whose caller gave up
                    batch.append(op)
            if not batch:
                continue
            try:
                results = await self._execute(batch)
            except asyncio.CancelledError:
                queue.extendleft(reversed(batch))
                raise
            except _CONN_ERRORS as exc:
                self._t._note_down(exc, "writing")
                self._requeue_or_fail(batch, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            except Exception as exc:  # a bug or an unexpected client error: fail the batch
                _log.exception("pipeline of %d commands failed", len(batch))
                for op in batch:
                    self._fail(op, TransportError(f"redis pipeline failed: {exc!r}"))
                continue
            self._t._note_up()
            backoff = _BACKOFF_MIN_S
            again: list[_Op] = []
            for op, res in zip(batch, results, strict=True):
                if isinstance(res, NoScriptError) and op.alt is not None:
                    op.args, op.alt = op.alt, None  # script cache empty (restart): EVAL once
                    if op.packed is not None:
                        op.packed = _hiredis_pack(op.args)
                    again.append(op)
                elif isinstance(res, Exception):
                    self._fail(op, TransportError(f"redis refused {op.args[0]}: {res}"))
                elif op.fut is None:
                    if op.counts:
                        self._t.stats.published += 1  # a queued QoS 0 frame went out
                elif not op.fut.done():
                    op.fut.set_result(res)
            if again:
                queue.extendleft(reversed(again))

    async def _execute(self, batch: list[_Op]) -> list[Any]:
        """Send ``batch`` in one write on one pooled connection and read every reply (raw
        RESP values; a refused command's reply is its ResponseError). This is a leaner
        ``pipeline(transaction=False)``: hiredis packs, one timeout covers the whole batch."""
        pool = self._client.connection_pool
        conn = await pool.get_connection()
        # The script cache is empty after a broker restart (which the pool hides by
        # reconnecting): load it ahead of any batch that uses it, so EVALSHA never fails and
        # replies stay in order (a NOSCRIPT retry would overtake a flush's PING).
        load = any(op.alt is not None for op in batch)
        try:
            async with asyncio.timeout(self._t._io_timeout_s):
                if _hiredis_pack is not None:
                    packed = b"".join([op.packed for op in batch])  # type: ignore[misc]
                    if load:
                        packed = _LOAD_PACKED + packed
                else:
                    packed = conn.pack_commands(
                        [*((_LOAD,) if load else ()), *(op.args for op in batch)])
                await conn.send_packed_command(packed, check_health=False)
                if load:
                    with contextlib.suppress(ResponseError):
                        await conn.read_response(timeout=math.inf)
                results: list[Any] = []
                for _ in batch:
                    try:
                        results.append(await conn.read_response(timeout=math.inf))
                    except ResponseError as exc:
                        results.append(exc)
            return results
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)  # replies may be left unread: drop it
            raise
        finally:
            await pool.release(conn)

    def _requeue_or_fail(self, batch: list[_Op], exc: BaseException) -> None:
        now = time.monotonic()
        keep: list[_Op] = []
        for op in batch:
            if not op.retry:
                self._fail(op, BrokerUnavailable(self._t.url, str(exc) or type(exc).__name__))
            elif now >= op.deadline:
                self._fail(op, BrokerUnavailable(
                    self._t.url, f"{exc or type(exc).__name__} (gave up after the reconnect "
                                 f"budget of {self._t.reconnect_budget_s:g} s)"))
            else:
                keep.append(op)
        self.queue.extendleft(reversed(keep))

    def _fail(self, op: _Op, exc: BaseException) -> None:
        if op.fut is None:
            if op.counts:
                self._t.stats.publish_errors += 1
            _log.debug("dropped %s: %s", op.args[0], exc)
        elif not op.fut.done():
            op.fut.set_exception(exc)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        while self.queue:
            self._fail(self.queue.popleft(), TransportError("transport closed"))


class RedisTransport(Transport):
    """The transport seam over Redis Pub/Sub and Streams (see the module docstring).

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
        self._writer: _Writer | None = None
        self._closed = False
        self._down_since: float | None = None
        self._budget_logged = False
        self._probe: asyncio.Task[None] | None = None
        self._subs: set[_RedisSubscription] = set()
        self._consumer_seq = itertools.count(1)
        self._keys_cache: dict[str, _Keys] = {}
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
        self._writer = _Writer(self, client)
        _log.info("connected to %s as %s", self.url, self.client_id)

    def _live(self) -> tuple[aioredis.Redis, _Writer]:
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
        backoff = _BACKOFF_MIN_S
        while self._down_since is not None and self._client is not None:
            try:
                await self._client.ping()
            except _CONN_ERRORS:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
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

    def _keys(self, subject: str) -> _Keys:
        keys = self._keys_cache.get(subject)
        if keys is None:
            _check_subject(subject)
            p = self.key_prefix
            keys = _Keys(f"{p}:stream:{subject}", f"{p}:ch:{subject}", f"{p}:req:{subject}",
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
            frame = _frame(orjson.dumps(headers if type(headers) is dict else dict(headers)),
                           body)
            tail = (2, keys.marker, keys.s0, keys.channel, frame, _QOS0_STREAM_LEN)
            op = _Op(("EVALSHA", _QOS0_SHA, *tail), None, 0.0, False,
                     ("EVAL", _QOS0_SCRIPT, *tail), counts=True)
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
        fields = _flat_fields(headers, body)
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
        fields = _flat_fields(headers, body)
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
            meta, body = _unframe(data)
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
            if isinstance(exc, (*_CONN_ERRORS, TimeoutError, RedisError)):
                raise BrokerUnavailable(self.url, f"subscribe {channel}: "
                                                  f"{str(exc) or type(exc).__name__}") from exc
            raise
        return pubsub

    async def _pubsub_loop(self, pubsub: PubSub | None, channel: str,
                           on_data: Callable[[bytes], None],
                           wait_slot: Callable[[], Awaitable[None]] | None) -> None:
        backoff = _BACKOFF_MIN_S
        try:
            while True:
                try:
                    if pubsub is None:
                        pubsub = await self._open_pubsub(channel)
                        self._note_up()
                        backoff = _BACKOFF_MIN_S
                    while True:
                        if wait_slot is not None:
                            await wait_slot()
                        msg = await pubsub.get_message(timeout=None)
                        if msg is not None and msg["type"] == "message":
                            on_data(msg["data"])
                except (*_CONN_ERRORS, RedisError) as exc:
                    if isinstance(exc, _CONN_ERRORS):
                        self._note_down(exc, f"reading {channel}")
                    else:
                        _log.error("reading %s failed: %s", channel, exc)
                    if pubsub is not None:
                        with contextlib.suppress(Exception):
                            await pubsub.aclose()
                        pubsub = None
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX_S)
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
        sub = _RedisSubscription(self, subject, keys, handler, QoS(qos), group, max_in_flight,
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
        except (*_CONN_ERRORS, TimeoutError) as exc:
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
            if k in (H_DLQ_REASON, H_DLQ_SUBJECT, H_DLQ_DELIVERIES, _F_BODY) or k.startswith("~"):
                continue
            fields += (k, v)
        fields += (H_DLQ_REASON, reason or "unspecified", H_DLQ_SUBJECT, subject,
                   H_DLQ_DELIVERIES, str(deliveries), _F_BODY, body)
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
        except _CONN_ERRORS as exc:
            raise BrokerUnavailable(self.url, str(exc) or type(exc).__name__) from exc
        except RedisError as exc:
            raise TransportError(f"XRANGE {self.dlq_stream}: {exc}") from exc
        out: list[tuple[dict[str, str], bytes]] = []
        for _id, fields in entries:
            headers, body, _meta = _split_fields(fields)
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


class _RedisDelivery(Delivery):
    __slots__ = ("_deadline_ms", "_entry_id", "_settled", "_spec", "_sub", "_token")

    def __init__(self, sub: _RedisSubscription, headers: dict[str, str], body: bytes,
                 delivery_count: int, spec: _Spec | None, entry_id: bytes | None,
                 reply_to: str | None = None, token: str | None = None) -> None:
        super().__init__(sub.subject, headers, body, delivery_count, reply_to)
        self._sub = sub
        self._spec = spec
        self._entry_id = entry_id
        self._token = token
        self._settled = False

    @property
    def settled(self) -> bool:
        return self._settled

    def _settle(self) -> bool:
        if self._settled:
            return False
        self._settled = True
        return True

    async def _xack(self) -> None:
        spec = self._spec
        assert spec is not None and self._entry_id is not None
        await self._sub.transport._live()[1].call("XACK", spec.key, spec.group, self._entry_id)

    async def ack(self) -> None:
        if self._spec is None or not self._spec.acks or not self._settle():
            return
        await self._xack()
        self._sub.transport.stats.acked += 1

    async def nack(self, delay_s: float = 0.0, reason: str = "") -> None:
        spec = self._spec
        if spec is None or not spec.acks or not self._settle():
            return
        t = self._sub.transport
        t.stats.nacked += 1
        if spec.kind == "req":
            await self._xack()  # requests are not redelivered on nack: the requester times out
            return
        if self.delivery_count >= t.max_deliver:
            await t.dead_letter(self.subject, self.headers, self.body, self.delivery_count,
                                f"max deliveries ({t.max_deliver}) reached: {reason}")
            await self._xack()
            return
        self._sub.redeliver_later(self, max(0.0, float(delay_s)))

    async def term(self, reason: str) -> None:
        if not self._settle():
            return
        t = self._sub.transport
        await t.dead_letter(self.subject, self.headers, self.body, self.delivery_count, reason)
        if self._spec is not None and self._spec.acks:
            await self._xack()

    async def respond(self, headers: Mapping[str, str], body: bytes) -> None:
        if self.reply_to is None:
            await super().respond(headers, body)
            return
        writer = self._sub.transport._live()[1]
        frame = _frame(orjson.dumps([self._token, dict(headers)]), body)
        if self._settle():
            spec = self._spec
            assert spec is not None
            await asyncio.gather(writer.call("PUBLISH", self.reply_to, frame),
                                 writer.call("XACK", spec.key, spec.group, self._entry_id))
        else:
            await writer.call("PUBLISH", self.reply_to, frame)


class _RedisSubscription(Subscription):
    """Reader loops over one subject's streams (and Pub/Sub channel), running the handler at
    most ``max_in_flight`` times at once."""

    def __init__(self, transport: RedisTransport, subject: str, keys: _Keys,
                 handler: DeliveryHandler, qos: QoS, group: str | None, max_in_flight: int,
                 consumer: str) -> None:
        self.transport = transport
        self.subject = subject
        self.keys = keys
        self.handler = handler
        self.qos = qos
        self.group = group
        self.max_in_flight = max_in_flight
        self.consumer = consumer
        self.specs: list[_Spec] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._slot = asyncio.Event()
        self._stopped = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        t, keys, group = self.transport, self.keys, self.group
        self.specs.append(_Spec(keys.req, group or _ANY_GROUP, "req", "$"))
        pubsub: PubSub | None = None
        if self.qos >= QoS.AT_LEAST_ONCE:
            main_group = group or f"~eph:{self.consumer}"
            self.specs.append(_Spec(keys.stream, main_group, "main", "0" if group else "$"))
        elif group is not None:
            self.specs.append(_Spec(keys.s0, group, "s0", "$"))
            await t._setup(self._refresh_marker(), f"mark group {group} on {keys.marker}")
        for spec in self.specs:
            await t._setup(t._ensure_group(spec.key, spec.group, spec.start_id),
                           f"create group {spec.group} on {spec.key}")
        if self.qos == QoS.AT_MOST_ONCE and group is None:
            pubsub = await t._open_pubsub(keys.channel)
            self._spawn_loop(t._pubsub_loop(pubsub, keys.channel, self._on_frame,
                                            self._wait_slot))
        for spec in self.specs:
            self._spawn_loop(self._read_loop(spec))
            if spec.acks:
                self._spawn_loop(self._reclaim_loop(spec))
            if spec.kind == "s0":
                self._spawn_loop(self._marker_loop())

    def _spawn_loop(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._loop_done)

    def _loop_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("a loop of the subscription to %s died", self.subject,
                       exc_info=task.exception())

    async def stop(self, grace_s: float = 0.0) -> None:
        """Stop reading; wait up to ``grace_s`` for running handlers, cancel the rest (their
        QoS >= 1 deliveries stay pending and the group gets them after ``ack_wait_s``)."""
        if self._stopped:
            return
        self._stopped = True
        self._slot.set()
        self.transport._subs.discard(self)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._handlers and grace_s > 0:
            await asyncio.wait(set(self._handlers), timeout=grace_s)
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self.transport._down_since is None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLEANUP_TIMEOUT_S):
                    await self._cleanup()

    async def _cleanup(self) -> None:
        """Drop this consumer from its groups when it has nothing pending (a pending entry
        must stay so the group can reclaim it); destroy a private group."""
        client, _ = self.transport._live()
        for spec in self.specs:
            if spec.group.startswith("~eph:"):
                await client.xgroup_destroy(spec.key, spec.group)
                continue
            if spec.acks:
                info = await client.xpending(spec.key, spec.group)
                mine = [c for c in info.get("consumers") or []
                        if c.get("name") in (self.consumer, self.consumer.encode())]
                if mine and int(mine[0].get("pending", 0)) > 0:
                    continue
            await client.xgroup_delconsumer(spec.key, spec.group, self.consumer)

    # -- flow control -------------------------------------------------------------------------

    def _free(self) -> int:
        return self.max_in_flight - self._in_flight

    async def _wait_slot(self) -> None:
        while self._in_flight >= self.max_in_flight and not self._stopped:
            self._slot.clear()
            await self._slot.wait()

    def _spawn(self, delivery: _RedisDelivery) -> None:
        stats = self.transport.stats
        stats.received += 1
        if delivery.delivery_count > 1:
            stats.redelivered += 1
        self._in_flight += 1
        task = asyncio.create_task(self._run(delivery))
        self._handlers.add(task)
        task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        self._handlers.discard(task)
        self._in_flight -= 1
        self._slot.set()

    async def _run(self, delivery: _RedisDelivery) -> None:
        try:
            await self.handler(delivery)
        except Exception as exc:
            _log.exception("handler for %s raised", self.subject)
            if not delivery.settled and delivery._spec is not None and delivery._spec.acks:
                try:
                    await delivery.nack(reason=f"handler raised {type(exc).__name__}: {exc}")
                except TransportError as nack_exc:
                    _log.warning("could not nack a delivery on %s: %s", self.subject, nack_exc)

    # -- deliveries ---------------------------------------------------------------------------

    def _on_frame(self, data: bytes) -> None:
        try:
            headers, body = _unframe(data)
            if not isinstance(headers, dict):
                raise ValueError("headers are not a JSON object")
        except ValueError as exc:
            self._malformed(exc)
            return
        self._spawn(_RedisDelivery(self, headers, body, 1, None, None))

    def _malformed(self, exc: BaseException) -> None:
        extra = self.transport.stats.extra
        extra["malformed"] = extra.get("malformed", 0) + 1
        _log.warning("dropped a malformed frame on %s: %s", self.subject, exc)

    def _deliver(self, spec: _Spec, entry_id: bytes, fields: dict[bytes, bytes],
                 count: int) -> None:
        if spec.kind == "s0":
            frame = fields.get(b"f")
            if frame is None:
                self._malformed(ValueError("stream entry without a frame"))
                return
            self._on_frame(frame)
            return
        headers, body, meta = _split_fields(fields)
        if spec.kind == "req":
            reply, token = meta.get(_F_REPLY), meta.get(_F_TOKEN)
            try:
                deadline_ms = int(meta.get(_F_DEADLINE) or 0)
            except ValueError:
                deadline_ms = 0
            if reply is None or token is None or (
                    deadline_ms and deadline_ms < time.time() * 1000):
                # expired (or not a request): nobody is waiting for the answer
                self.transport._live()[1].submit(_Op(("XACK", spec.key, spec.group, entry_id),
                                                     None, 0.0, False))
                return
            self._spawn(_RedisDelivery(self, headers, body, count, spec, entry_id,
                                       reply.decode(), token.decode()))
            return
        self._spawn(_RedisDelivery(self, headers, body, count, spec, entry_id))

    # -- loops --------------------------------------------------------------------------------

    async def _read_loop(self, spec: _Spec) -> None:
        t = self.transport
        client, _ = t._live()
        streams = {spec.key: ">"}
        noack = not spec.acks
        backoff = _BACKOFF_MIN_S
        while not self._stopped:
            await self._wait_slot()
            if self._stopped:
                return
            try:
                resp = await client.xreadgroup(spec.group, self.consumer, streams,
                                               count=self._free(), block=t.block_ms,
                                               noack=noack)
            except ResponseError as exc:
                await self._on_response_error(spec, exc, backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            except _CONN_ERRORS as exc:
                t._note_down(exc, f"reading {spec.key}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            t._note_up()
            backoff = _BACKOFF_MIN_S
            for _stream, entries in resp or ():
                for entry_id, fields in entries:
                    if fields is not None:
                        self._deliver(spec, entry_id, fields, 1)

    async def _on_response_error(self, spec: _Spec, exc: ResponseError, backoff: float) -> None:
        if _is_nogroup(exc):
            # the broker lost the group (restart without its data, the stream expired)
            _log.warning("group %s on %s is gone; recreating it", spec.group, spec.key)
            try:
                if spec.kind == "s0":
                    await self._refresh_marker()
                await self.transport._ensure_group(spec.key, spec.group, spec.start_id)
                return
            except (*_CONN_ERRORS, RedisError, TransportError) as exc2:
                _log.warning("could not recreate group %s on %s: %s", spec.group, spec.key,
                             exc2)
        else:
            _log.error("reading %s failed: %s", spec.key, exc)
        await asyncio.sleep(backoff)

    async def _reclaim_loop(self, spec: _Spec) -> None:
        """Every ``ack_wait_s / 2``: claim entries idle for over ``ack_wait_s`` and deliver
        them here (or dead-letter them past ``max_deliver``)."""
        t = self.transport
        client, _ = t._live()
        min_idle_ms = max(1, int(t.ack_wait_s * 1000))
        while not self._stopped:
            await asyncio.sleep(t.ack_wait_s / 2)
            cursor: bytes | str = "0-0"
            try:
                while not self._stopped:
                    await self._wait_slot()
                    if self._stopped:
                        return
                    res = await client.xautoclaim(spec.key, spec.group, self.consumer,
                                                  min_idle_ms, cursor, count=self._free())
                    entries = [(i, f) for i, f in res[1] if i is not None and f is not None]
                    if entries:
                        await self._claimed(spec, entries)
                    if res[0] in (b"0-0", "0-0"):
                        break
                    cursor = res[0]
                t._note_up()
            except ResponseError as exc:
                await self._on_response_error(spec, exc, _BACKOFF_MIN_S)
            except _CONN_ERRORS as exc:
                t._note_down(exc, f"reclaiming from {spec.key}")
            except TransportError as exc:  # a dead letter refused
                _log.error("reclaiming from %s failed: %s", spec.key, exc)

    async def _claimed(self, spec: _Spec, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        t = self.transport
        client, _ = t._live()
        pending = await client.xpending_range(
            spec.key, spec.group, min=entries[0][0], max=entries[-1][0],
            count=len(entries) + self.max_in_flight + 64, consumername=self.consumer)
        counts = {p["message_id"]: int(p["times_delivered"]) for p in pending}
        extra = t.stats.extra
        extra["reclaimed"] = extra.get("reclaimed", 0) + len(entries)
        for entry_id, fields in entries:
            count = counts.get(entry_id, 2)
            if spec.kind == "main" and count > t.max_deliver:
                headers, body, _meta = _split_fields(fields)
                await t.dead_letter(self.subject, headers, body, count - 1,
                                    f"max deliveries ({t.max_deliver}) reached: not "
                                    f"acknowledged within {t.ack_wait_s:g} s")
                await t._live()[1].call("XACK", spec.key, spec.group, entry_id)
                continue
            self._deliver(spec, entry_id, fields, count)

    def redeliver_later(self, delivery: _RedisDelivery, delay_s: float) -> None:
        if self._stopped:
            return  # stays pending: the group reclaims it after ack_wait_s
        self._spawn_loop(self._redeliver(delivery, delay_s))

    async def _redeliver(self, delivery: _RedisDelivery, delay_s: float) -> None:
        t = self.transport
        spec = delivery._spec
        assert spec is not None and delivery._entry_id is not None
        client, _ = t._live()
        ids = [delivery._entry_id]
        try:
            end = time.monotonic() + delay_s
            while (left := end - time.monotonic()) > 0:
                await asyncio.sleep(min(left, t.ack_wait_s / 3))
                if end - time.monotonic() > 0 and not await client.xclaim(
                        spec.key, spec.group, self.consumer, 0, ids, justid=True):
                    return  # no longer pending (acked or trimmed)
            await self._wait_slot()
            if self._stopped:
                return
            got = await client.xclaim(spec.key, spec.group, self.consumer, 0, ids)
        except (*_CONN_ERRORS, RedisError) as exc:
            _log.warning("could not redeliver a nacked message on %s now (%s); the group gets "
                         "it after ack_wait_s", self.subject, exc)
            return
        for entry_id, fields in got:
            if entry_id is not None and fields is not None:
                self._deliver(spec, entry_id, fields, delivery.delivery_count + 1)

    async def _refresh_marker(self) -> None:
        client, _ = self.transport._live()
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.marker, b"1", px=_MARKER_TTL_MS)
            pipe.pexpire(self.keys.s0, _S0_TTL_MS)
            await pipe.execute()

    async def _marker_loop(self) -> None:
        while not self._stopped:
            await asyncio.sleep(_MARKER_REFRESH_S)
            try:
                await self._refresh_marker()
            except (*_CONN_ERRORS, RedisError) as exc:
                _log.warning("could not refresh %s: %s", self.keys.marker, exc)
