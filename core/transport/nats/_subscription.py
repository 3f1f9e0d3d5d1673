"""Subscriptions of NatsTransport: a core subscription (QoS 0, requests) and a JetStream
pull-consumer fetch loop (QoS 1/2), both running handlers at most ``max_in_flight`` at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js import JetStreamContext

from core.transport.base import (
    Delivery,
    DeliveryHandler,
    Subscription,
    TransportError,
)
from core.transport.nats._delivery import CoreDelivery, JetStreamDelivery

if TYPE_CHECKING:
    from core.transport.nats._transport import NatsTransport

_log = logging.getLogger("catga.transport.nats")

_FETCH_TIMEOUT_S = 1.0


class Handlers:
    """Runs handler tasks (at most ``max_in_flight``) and cancels them on stop."""

    def __init__(self, transport: NatsTransport, handler: DeliveryHandler,
                 max_in_flight: int) -> None:
        self.transport = transport
        self.handler = handler
        self.max_in_flight = max_in_flight
        self.tasks: set[asyncio.Task[None]] = set()
        self.slot_free = asyncio.Event()
        self.stopped = False

    def spawn(self, delivery: Delivery) -> None:
        task = asyncio.create_task(self._run(delivery))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.slot_free.set()

    async def _run(self, delivery: Delivery) -> None:
        try:
            await self.handler(delivery)
        except Exception as exc:
            _log.exception("handler for %s raised", delivery.subject)
            if isinstance(delivery, JetStreamDelivery) and not delivery.settled:
                try:
                    await delivery.nack(reason=f"handler raised {type(exc).__name__}: {exc}")
                except TransportError as nack_exc:
                    _log.warning("could not nack %s: %s", delivery.subject, nack_exc)

    async def stop_handlers(self, grace_s: float) -> None:
        if self.tasks and grace_s > 0:
            await asyncio.wait(set(self.tasks), timeout=grace_s)
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


class CoreSubscription(Handlers, Subscription):
    """QoS 0: a core subscription whose callback waits for a free slot, then spawns."""

    def __init__(self, transport: NatsTransport, handler: DeliveryHandler,
                 max_in_flight: int) -> None:
        super().__init__(transport, handler, max_in_flight)
        self.sub: NatsSubscription | None = None
        self._slots = asyncio.Semaphore(max_in_flight)

    async def on_msg(self, msg: Msg) -> None:
        await self._slots.acquire()
        if self.stopped:
            self._slots.release()
            return
        self.transport.stats.received += 1
        self.spawn(CoreDelivery(self.transport, msg))

    def _done(self, task: asyncio.Task[None]) -> None:
        super()._done(task)
        self._slots.release()

    async def stop(self, grace_s: float = 0.0) -> None:
        """Unsubscribe; wait up to ``grace_s`` seconds for running handlers, cancel the rest."""
        if self.stopped:
            return
        self.stopped = True
        self.transport._subs.discard(self)
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()
        await self.stop_handlers(grace_s)


class JetStreamSubscription(Handlers, Subscription):
    """QoS >= 1: a fetch loop on a durable pull consumer, fetching only free slots."""

    def __init__(self, transport: NatsTransport, handler: DeliveryHandler, max_in_flight: int,
                 psub: JetStreamContext.PullSubscription, stream: str, durable: str,
                 max_deliver: int) -> None:
        super().__init__(transport, handler, max_in_flight)
        self.psub = psub
        self.stream = stream
        self.durable = durable
        self.max_deliver = max_deliver
        self.advisory: NatsSubscription | None = None
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.create_task(self._fetch_loop(), name=f"catga-fetch-{self.durable}")

    async def _fetch_loop(self) -> None:
        backoff = 0.1
        t = self.transport
        while not self.stopped:
            free = self.max_in_flight - len(self.tasks)
            if free <= 0:
                self.slot_free.clear()
                await self.slot_free.wait()
                continue
            try:
                msgs = await self.psub.fetch(batch=free, timeout=_FETCH_TIMEOUT_S)
            except TimeoutError:
                continue  # nothing to do (or reconnecting): ask again
            except nats.errors.ConnectionClosedError:
                if not t._closing:
                    _log.error("fetch loop of %s/%s ends: connection closed for good",
                               self.stream, self.durable)
                return
            except Exception as exc:
                _log.warning("fetch from %s/%s failed (%r); retrying in %.1f s",
                             self.stream, self.durable, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            for msg in msgs:
                delivery = JetStreamDelivery(t, msg, self.max_deliver)
                t.stats.received += 1
                if delivery.delivery_count > 1:
                    t.stats.redelivered += 1
                self.spawn(delivery)

    async def on_max_deliveries(self, msg: Msg) -> None:
        """Advisory: a message's last delivery expired unsettled — dead-letter it."""
        try:
            event = json.loads(msg.data)
            seq, deliveries = int(event["stream_seq"]), int(event.get("deliveries", 0))
            _, js = self.transport._client()
            raw = await js.get_msg(self.stream, seq=seq)
            await self.transport.dead_letter(
                raw.subject or "", raw.headers or {}, raw.data or b"", deliveries,
                f"max deliveries ({self.max_deliver}) reached: not settled within ack_wait")
        except Exception as exc:
            _log.error("could not dead-letter after max deliveries on %s/%s: %r",
                       self.stream, self.durable, exc)

    async def stop(self, grace_s: float = 0.0) -> None:
        """Stop fetching and unsubscribe; wait up to ``grace_s`` seconds for running handlers,
        cancel the rest (their unsettled deliveries come back after ``ack_wait_s``)."""
        if self.stopped:
            return
        self.stopped = True
        self.transport._subs.discard(self)
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.wait({self._loop})
        await self.stop_handlers(grace_s)
        for sub in (self.psub, self.advisory):
            with contextlib.suppress(Exception):
                if sub is not None:
                    await sub.unsubscribe()
