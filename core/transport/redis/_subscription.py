"""One subscription of RedisTransport: its reader, reclaim, redelivery and marker loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError, ResponseError

from core.messages import QoS
from core.transport.base import (
    DeliveryHandler,
    Subscription,
    TransportError,
)
from core.transport.redis._delivery import RedisDelivery
from core.transport.redis._errors import BACKOFF_MAX_S, BACKOFF_MIN_S, CONN_ERRORS, is_nogroup
from core.transport.redis._framing import (
    F_DEADLINE,
    F_REPLY,
    F_TOKEN,
    Keys,
    split_fields,
    unpack_frame,
)
from core.transport.redis._writer import Op

if TYPE_CHECKING:
    from core.transport.redis._transport import RedisTransport

_log = logging.getLogger("catga.transport.redis")

_ANY_GROUP = "~any"
_MARKER_TTL_MS = 30_000
_MARKER_REFRESH_S = 10.0
_S0_TTL_MS = 120_000
_CLEANUP_TIMEOUT_S = 1.0


@dataclass(frozen=True, slots=True)
class Spec:
    """One stream a subscription reads: its key, consumer group and kind."""

    key: str
    group: str
    kind: str  # "main" (QoS >= 1), "req" (requests), "s0" (grouped QoS 0, NOACK)
    start_id: str

    @property
    def acks(self) -> bool:
        return self.kind != "s0"


class RedisSubscription(Subscription):
    """Reader loops over one subject's streams (and Pub/Sub channel), running the handler at
    most ``max_in_flight`` times at once."""

    def __init__(self, transport: RedisTransport, subject: str, keys: Keys,
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
        self.specs: list[Spec] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._slot = asyncio.Event()
        self._stopped = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        t, keys, group = self.transport, self.keys, self.group
        self.specs.append(Spec(keys.req, group or _ANY_GROUP, "req", "$"))
        pubsub: PubSub | None = None
        if self.qos >= QoS.AT_LEAST_ONCE:
            main_group = group or f"~eph:{self.consumer}"
            self.specs.append(Spec(keys.stream, main_group, "main", "0" if group else "$"))
        elif group is not None:
            self.specs.append(Spec(keys.s0, group, "s0", "$"))
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

    def _spawn(self, delivery: RedisDelivery) -> None:
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

    async def _run(self, delivery: RedisDelivery) -> None:
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
            headers, body = unpack_frame(data)
            if not isinstance(headers, dict):
                raise ValueError("headers are not a JSON object")
        except ValueError as exc:
            self._malformed(exc)
            return
        self._spawn(RedisDelivery(self, headers, body, 1, None, None))

    def _malformed(self, exc: BaseException) -> None:
        extra = self.transport.stats.extra
        extra["malformed"] = extra.get("malformed", 0) + 1
        _log.warning("dropped a malformed frame on %s: %s", self.subject, exc)

    def _deliver(self, spec: Spec, entry_id: bytes, fields: dict[bytes, bytes],
                 count: int) -> None:
        if spec.kind == "s0":
            frame = fields.get(b"f")
            if frame is None:
                self._malformed(ValueError("stream entry without a frame"))
                return
            self._on_frame(frame)
            return
        headers, body, meta = split_fields(fields)
        if spec.kind == "req":
            reply, token = meta.get(F_REPLY), meta.get(F_TOKEN)
            try:
                deadline_ms = int(meta.get(F_DEADLINE) or 0)
            except ValueError:
                deadline_ms = 0
            if reply is None or token is None or (
                    deadline_ms and deadline_ms < time.time() * 1000):
                # expired (or not a request): nobody is waiting for the answer
                self.transport._live()[1].submit(Op(("XACK", spec.key, spec.group, entry_id),
                                                     None, 0.0, False))
                return
            self._spawn(RedisDelivery(self, headers, body, count, spec, entry_id,
                                       reply.decode(), token.decode()))
            return
        self._spawn(RedisDelivery(self, headers, body, count, spec, entry_id))

    # -- loops --------------------------------------------------------------------------------

    async def _read_loop(self, spec: Spec) -> None:
        t = self.transport
        client, _ = t._live()
        streams = {spec.key: ">"}
        noack = not spec.acks
        backoff = BACKOFF_MIN_S
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
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            except CONN_ERRORS as exc:
                t._note_down(exc, f"reading {spec.key}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            t._note_up()
            backoff = BACKOFF_MIN_S
            for _stream, entries in resp or ():
                for entry_id, fields in entries:
                    if fields is not None:
                        self._deliver(spec, entry_id, fields, 1)

    async def _on_response_error(self, spec: Spec, exc: ResponseError, backoff: float) -> None:
        if is_nogroup(exc):
            # the broker lost the group (restart without its data, the stream expired)
            _log.warning("group %s on %s is gone; recreating it", spec.group, spec.key)
            try:
                if spec.kind == "s0":
                    await self._refresh_marker()
                await self.transport._ensure_group(spec.key, spec.group, spec.start_id)
                return
            except (*CONN_ERRORS, RedisError, TransportError) as exc2:
                _log.warning("could not recreate group %s on %s: %s", spec.group, spec.key,
                             exc2)
        else:
            _log.error("reading %s failed: %s", spec.key, exc)
        await asyncio.sleep(backoff)

    async def _reclaim_loop(self, spec: Spec) -> None:
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
                await self._on_response_error(spec, exc, BACKOFF_MIN_S)
            except CONN_ERRORS as exc:
                t._note_down(exc, f"reclaiming from {spec.key}")
            except TransportError as exc:  # a dead letter refused
                _log.error("reclaiming from %s failed: %s", spec.key, exc)

    async def _claimed(self, spec: Spec, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
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
                headers, body, _meta = split_fields(fields)
                await t.dead_letter(self.subject, headers, body, count - 1,
                                    f"max deliveries ({t.max_deliver}) reached: not "
                                    f"acknowledged within {t.ack_wait_s:g} s")
                await t._live()[1].call("XACK", spec.key, spec.group, entry_id)
                continue
            self._deliver(spec, entry_id, fields, count)

    def redeliver_later(self, delivery: RedisDelivery, delay_s: float) -> None:
        if self._stopped:
            return  # stays pending: the group reclaims it after ack_wait_s
        self._spawn_loop(self._redeliver(delivery, delay_s))

    async def _redeliver(self, delivery: RedisDelivery, delay_s: float) -> None:
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
        except (*CONN_ERRORS, RedisError) as exc:
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
            except (*CONN_ERRORS, RedisError) as exc:
                _log.warning("could not refresh %s: %s", self.keys.marker, exc)
