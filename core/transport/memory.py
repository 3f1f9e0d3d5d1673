"""The in-memory transport: the seam's semantics without a broker (one process, one loop).

Several :class:`InMemoryTransport` instances may share one :class:`InMemoryBroker` (two "nodes"
in a test); closing one is how a test kills a consumer. Semantics follow the NATS transport:

* QoS 0: every plain subscriber gets a copy; a ``group`` gets one copy, given to its members in
  turn. A subscriber whose buffer (``pending_limit``) is full drops the message (counted in
  ``stats.extra["dropped"]``), like a NATS slow consumer.
* QoS >= 1: the broker keeps a log; each ``group`` is a durable consumer (starting at the log's
  beginning) shared by its members. Unsettled deliveries are redelivered after ``ack_wait_s``;
  after ``max_deliver`` deliveries the message is dead-lettered with the reason. Publishing the
  same ``Nats-Msg-Id`` twice within the broker's memory stores it once (publisher dedup).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.messages import QoS
from core.transport.base import (
    H_DLQ_DELIVERIES,
    H_DLQ_REASON,
    H_DLQ_SUBJECT,
    Delivery,
    DeliveryHandler,
    Reply,
    RequestTimeout,
    Subscription,
    Transport,
    TransportError,
)
from core.transport.envelope import H_NATS_DEDUP


def subject_matches(pattern: str, subject: str) -> bool:
    """Exact match, or ``a.b.>`` matching every subject below ``a.b``."""
    if pattern.endswith(".>"):
        return subject.startswith(pattern[:-1])
    return pattern == subject


@dataclass(slots=True)
class _Entry:
    seq: int
    subject: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class _Consumer:
    """A durable consumer: a cursor into the log plus unsettled deliveries."""

    filter: str
    cursor: int = 0
    redeliver: deque[int] = field(default_factory=deque)
    # log seq -> (deliveries so far, redelivery deadline)
    pending: dict[int, list[float]] = field(default_factory=dict)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)


class InMemoryBroker:
    """Shared state of in-memory transports (log, consumers, dead letters).

    Args:
        ack_wait_s: seconds before an unsettled delivery is redelivered.
        max_deliver: deliveries before a message is dead-lettered.
    """

    def __init__(self, ack_wait_s: float = 30.0, max_deliver: int = 5) -> None:
        if ack_wait_s <= 0:
            raise ValueError(f"ack_wait_s must be > 0, got {ack_wait_s}")
        if max_deliver < 1:
            raise ValueError(f"max_deliver must be >= 1, got {max_deliver}")
        self.ack_wait_s = ack_wait_s
        self.max_deliver = max_deliver
        self.log: dict[int, _Entry] = {}
        self.next_seq = 1
        self.seen_ids: set[str] = set()
        self.consumers: dict[tuple[str, str], _Consumer] = {}
        self.dead_letters: list[tuple[dict[str, str], bytes]] = []
        self.core_subs: list[_CoreSub] = []
        self.replies: dict[str, asyncio.Future[Reply]] = {}
        self._rr = itertools.count()

    def store(self, subject: str, headers: Mapping[str, str], body: bytes) -> None:
        dedup = headers.get(H_NATS_DEDUP)
        if dedup is not None:
            if dedup in self.seen_ids:
                return
            self.seen_ids.add(dedup)
        seq = self.next_seq
        self.next_seq += 1
        self.log[seq] = _Entry(seq, subject, dict(headers), body)
        for c in self.consumers.values():
            if subject_matches(c.filter, subject):
                c.wakeup.set()

    def next_for(self, c: _Consumer) -> tuple[_Entry, int] | None:
        """The next delivery for consumer ``c`` (entry, delivery count), or None."""
        now = time.monotonic()
        for seq, (_count, deadline) in c.pending.items():
            if deadline <= now and seq not in c.redeliver:
                c.redeliver.append(seq)
        while c.redeliver:
            seq = c.redeliver.popleft()
            state = c.pending.get(seq)
            entry = self.log.get(seq)
            if state is None or entry is None:
                continue
            state[0] += 1
            state[1] = now + self.ack_wait_s
            return entry, int(state[0])
        while c.cursor < self.next_seq - 1:
            c.cursor += 1
            entry = self.log.get(c.cursor)
            if entry is not None and subject_matches(c.filter, entry.subject):
                c.pending[entry.seq] = [1, now + self.ack_wait_s]
                return entry, 1
        return None

    def dead_letter(self, subject: str, headers: Mapping[str, str], body: bytes,
                    reason: str, deliveries: int) -> None:
        h = dict(headers)
        h.update({H_DLQ_REASON: reason, H_DLQ_SUBJECT: subject,
                  H_DLQ_DELIVERIES: str(deliveries)})
        self.dead_letters.append((h, body))


class _CoreSub(Subscription):
    def __init__(self, owner: InMemoryTransport, subject: str, handler: DeliveryHandler,
                 group: str | None, max_in_flight: int, pending_limit: int) -> None:
        self.owner = owner
        self.subject = subject
        self.group = group
        self.handler = handler
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue(pending_limit)
        self.workers = [asyncio.get_running_loop().create_task(self._work())
                        for _ in range(max_in_flight)]

    def offer(self, d: Delivery) -> None:
        try:
            self.queue.put_nowait(d)
        except asyncio.QueueFull:
            extra = self.owner.stats.extra
            extra["dropped"] = extra.get("dropped", 0) + 1

    async def _work(self) -> None:
        while True:
            d = await self.queue.get()
            self.owner.stats.received += 1
            try:
                await self.handler(d)
            except Exception:  # a handler bug must not kill the subscription
                self.owner.log_handler_error(self.subject)

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.owner.broker.core_subs.remove(self)
        for w in self.workers:
            w.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)


class _MemDelivery(Delivery):
    __slots__ = ("_consumer", "_owner", "_seq", "_settled")

    def __init__(self, owner: InMemoryTransport, entry: _Entry, count: int,
                 consumer: _Consumer | None, reply_to: str | None = None) -> None:
        super().__init__(entry.subject, entry.headers, entry.body, count, reply_to)
        self._owner = owner
        self._consumer = consumer
        self._seq = entry.seq
        self._settled = False

    def _settle(self) -> _Consumer | None:
        if self._settled or self._consumer is None:
            return None
        self._settled = True
        return self._consumer

    async def ack(self) -> None:
        c = self._settle()
        if c is not None:
            c.pending.pop(self._seq, None)
            self._owner.stats.acked += 1

    async def nack(self, delay_s: float = 0.0, reason: str = "") -> None:
        c = self._settle()
        if c is None:
            return
        broker = self._owner.broker
        if self.delivery_count >= broker.max_deliver:
            c.pending.pop(self._seq, None)
            self._owner.dead_letter(self, f"max deliveries ({broker.max_deliver}) reached: "
                                          f"{reason}")
            return
        self._owner.stats.nacked += 1
        state = c.pending.get(self._seq)
        if state is not None:
            state[1] = time.monotonic() + delay_s
            loop = asyncio.get_running_loop()
            loop.call_later(delay_s, c.wakeup.set)

    async def term(self, reason: str) -> None:
        c = self._settle()
        if c is not None:
            c.pending.pop(self._seq, None)
        self._owner.dead_letter(self, reason)

    async def respond(self, headers: Mapping[str, str], body: bytes) -> None:
        if self.reply_to is None:
            raise TransportError(f"delivery on {self.subject!r} is not a request")
        fut = self._owner.broker.replies.pop(self.reply_to, None)
        if fut is not None and not fut.done():
            fut.set_result(Reply(dict(headers), body))


class _DurableSub(Subscription):
    def __init__(self, owner: InMemoryTransport, consumer: _Consumer,
                 handler: DeliveryHandler, max_in_flight: int) -> None:
        self.owner = owner
        self.consumer = consumer
        self.handler = handler
        self.slots = asyncio.Semaphore(max_in_flight)
        self.tasks: set[asyncio.Task[None]] = set()
        self.loop_task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        broker = self.owner.broker
        c = self.consumer
        while True:
            await self.slots.acquire()
            nxt = broker.next_for(c)
            while nxt is None:
                c.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(c.wakeup.wait(), broker.ack_wait_s / 4)
                nxt = broker.next_for(c)
            entry, count = nxt
            d = _MemDelivery(self.owner, entry, count, c)
            self.owner.stats.received += 1
            if count > 1:
                self.owner.stats.redelivered += 1
            t = asyncio.get_running_loop().create_task(self._run(d))
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)

    async def _run(self, d: Delivery) -> None:
        try:
            await self.handler(d)
        except Exception:
            self.owner.log_handler_error(d.subject)
        finally:
            self.slots.release()

    async def stop(self) -> None:
        """Stop fetching; deliveries in progress are cancelled unsettled (redelivered after
        ``ack_wait_s``, as when a consumer process dies)."""
        self.loop_task.cancel()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(self.loop_task, *self.tasks, return_exceptions=True)


class InMemoryTransport(Transport):
    """The seam over an :class:`InMemoryBroker` (a private one unless given).

    Args:
        broker: shared broker state (default: a new private broker).
        pending_limit: QoS 0 messages buffered per subscriber before dropping.
    """

    name = "memory"

    def __init__(self, broker: InMemoryBroker | None = None, *,
                 pending_limit: int = 65_536) -> None:
        super().__init__()
        self.broker = broker or InMemoryBroker()
        self.pending_limit = pending_limit
        self._subs: list[Subscription] = []
        self._inbox = itertools.count()
        self._closed = False

    async def connect(self) -> None:
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise TransportError("transport is closed")

    async def publish(self, subject: str, headers: Mapping[str, str], body: bytes, *,
                      qos: QoS = QoS.AT_MOST_ONCE) -> None:
        self._check()
        self.stats.published += 1
        if qos is QoS.AT_MOST_ONCE:
            self._fan_out(subject, headers, body, None)
        else:
            self.broker.store(subject, headers, body)

    def _fan_out(self, subject: str, headers: Mapping[str, str], body: bytes,
                 reply_to: str | None) -> int:
        groups: dict[str, list[_CoreSub]] = {}
        delivered = 0
        entry = _Entry(0, subject, dict(headers), body)
        for sub in self.broker.core_subs:
            if not subject_matches(sub.subject, subject):
                continue
            if sub.group is None:
                sub.offer(_MemDelivery(sub.owner, entry, 1, None, reply_to))
                delivered += 1
            else:
                groups.setdefault(sub.group, []).append(sub)
        for members in groups.values():
            sub = members[next(self.broker._rr) % len(members)]
            sub.offer(_MemDelivery(sub.owner, entry, 1, None, reply_to))
            delivered += 1
        return delivered

    async def request(self, subject: str, headers: Mapping[str, str], body: bytes, *,
                      timeout_s: float) -> Reply:
        self._check()
        token = f"_INBOX.{id(self)}.{next(self._inbox)}"
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self.broker.replies[token] = fut
        try:
            if not self._fan_out(subject, headers, body, token):
                raise TransportError(f"no responders on {subject!r}")
            try:
                return await asyncio.wait_for(asyncio.shield(fut), timeout_s)
            except TimeoutError:
                raise RequestTimeout(subject, timeout_s) from None
        finally:
            self.broker.replies.pop(token, None)

    async def subscribe(self, subject: str, handler: DeliveryHandler, *,
                        qos: QoS = QoS.AT_MOST_ONCE, group: str | None = None,
                        max_in_flight: int = 256) -> Subscription:
        self._check()
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        sub: Subscription
        if qos is QoS.AT_MOST_ONCE:
            core = _CoreSub(self, subject, handler, group, max_in_flight, self.pending_limit)
            self.broker.core_subs.append(core)
            sub = core
        else:
            key = (subject, group or f"durable:{subject}")
            consumer = self.broker.consumers.get(key)
            if consumer is None:
                consumer = self.broker.consumers[key] = _Consumer(subject)
            sub = _DurableSub(self, consumer, handler, max_in_flight)
        self._subs.append(sub)
        return sub

    def dead_letter(self, d: Delivery, reason: str) -> None:
        self.broker.dead_letter(d.subject, d.headers, d.body, reason, d.delivery_count)
        self.stats.dead_lettered += 1

    async def dead_letters(self, limit: int = 100) -> list[tuple[dict[str, str], bytes]]:
        """The oldest ``limit`` dead letters: (headers incl. the reason, body)."""
        return self.broker.dead_letters[:limit]

    def log_handler_error(self, subject: str) -> None:
        import logging

        logging.getLogger("catga.transport.memory").exception(
            "subscriber on %s raised; the delivery stays unsettled", subject)

    async def flush(self, timeout_s: float = 5.0) -> None:
        await asyncio.sleep(0)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        subs, self._subs = self._subs, []
        for s in subs:
            await s.stop()
