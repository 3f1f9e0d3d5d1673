"""Serving a mediator over a transport, and calling one from elsewhere.

:class:`MediatorEndpoint` subscribes a :class:`~core.Mediator`'s message types to subjects and
settles each delivery by what the mediator did; :class:`RemoteMediator` is the caller's side
(``publish`` / ``send`` over the wire). Neither knows which broker is underneath, and the
mediator does not know it is being served.

Settlement of an event delivery (QoS >= 1):

* decoded and published locally (handler failures were already retried and dead-lettered by the
  mediator, per its QoS rules) -> ``ack``;
* rejected by the concurrency limiter (backpressure) -> by default (``on_rejected="report"``)
  the rejection is reported (``on_outcome`` with the REJECTED result, so the sender learns it,
  as it would from a full bounded queue) and the delivery is acked: the broker does not hold a
  backlog the core has already refused, so nothing grows without bound and admitted messages
  keep their latency. ``on_rejected="redeliver"`` nacks it with a delay instead (the broker
  keeps it and redelivers it: it is handled late rather than refused — measured over NATS at
  10x overload: each message rejected ~5 times, a backlog that outlives the run, P99 2.1 s);
* malformed or of an unknown type -> ``term`` with the reason (the dead-letter place), never
  retried, and the endpoint keeps running;
* the mediator raised (a bug) -> ``nack`` with the exception as the reason.

At QoS 0 a rejected message is dropped, counted and reported the same way (at-most-once).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from core.mediator import Mediator
from core.messages import Event, Message, QoS, Request
from core.result import ErrorCode, Result
from core.transport.base import (
    Delivery,
    RequestTimeout,
    Subscription,
    Transport,
    TransportError,
)
from core.transport.envelope import (
    MalformedMessage,
    TypeRegistry,
    decode,
    decode_result,
    encode,
    encode_result,
)

log = logging.getLogger("catga.transport")

#: Called after the mediator returned and before the delivery is settled (acked). Awaited:
#: whatever it records is durable before the broker forgets the message.
OutcomeHook = Callable[[Message, Result[Any], Delivery], Awaitable[None]]
#: Builds the message of a delivery from its ``(headers, body)``; raises
#: :class:`~core.transport.envelope.MalformedMessage` with the reason when it cannot.
Decoder = Callable[[Mapping[str, str], bytes], Message]


def default_subject(message_type: type[Message], family: str = "app",
                    prefix: str = "catga") -> str:
    """``catga.<family>.<TypeName>``: the subject a message type travels on."""
    return f"{prefix}.{family}.{message_type.__name__}"


class MediatorEndpoint:
    """Serves ``mediator`` over ``transport``.

    Args:
        mediator: the local core.
        transport: a connected transport.
        registry: wire names of the message types served.
        group: queue/consumer group shared by the replicas of this service.
        max_in_flight: deliveries handled at once per subscription (the broker holds the rest).
        on_outcome: awaited after each event or request was processed, before settling.
        on_rejected: what happens to a QoS >= 1 message the limiter rejected: ``"report"``
            (settle it and report REJECTED through ``on_outcome``) or ``"redeliver"`` (nack it
            with ``rejected_redelivery_s`` delay). Raises ValueError for anything else.
        rejected_redelivery_s: delay before a rejected QoS >= 1 message is redelivered.
        decoder: builds each delivery's message (default: the wire envelope,
            :func:`~core.transport.envelope.decode` with ``registry``); a service that takes
            plain JSON from foreign producers gives its own. It raises MalformedMessage for
            what it cannot read (dead-lettered with the reason, like a bad envelope).

    Attributes:
        malformed: dead-lettered malformed messages by reason. rejected_dropped: QoS 0 messages
        rejected by the limiter and dropped. rejected_reported: QoS >= 1 rejections settled
        and reported. rejected_redelivered: QoS >= 1 rejections nacked.
    """

    def __init__(self, mediator: Mediator, transport: Transport, registry: TypeRegistry, *,
                 group: str = "catga-core", max_in_flight: int = 1024,
                 on_outcome: OutcomeHook | None = None,
                 on_rejected: Literal["report", "redeliver"] = "report",
                 rejected_redelivery_s: float = 0.05, decoder: Decoder | None = None) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        if on_rejected not in ("report", "redeliver"):
            raise ValueError(f"on_rejected must be 'report' or 'redeliver', got {on_rejected!r}")
        self.on_rejected = on_rejected
        self.mediator = mediator
        self.transport = transport
        self.registry = registry
        self.group = group
        self.max_in_flight = max_in_flight
        self.on_outcome = on_outcome
        self.rejected_redelivery_s = rejected_redelivery_s
        self.decoder = decoder
        self.malformed: Counter[str] = Counter()
        self.rejected_dropped = 0
        self.rejected_redelivered = 0
        self.rejected_reported = 0
        self.errors = 0
        self._subs: list[Subscription] = []

    async def serve_events(self, subject: str, qos: QoS) -> Subscription:
        """Publish every event arriving on ``subject`` to the local handlers."""
        sub = await self.transport.subscribe(subject, self._on_event, qos=qos, group=self.group,
                                             max_in_flight=self.max_in_flight)
        self._subs.append(sub)
        return sub

    async def serve_requests(self, subject: str) -> Subscription:
        """Answer every request arriving on ``subject`` with the local handler's result."""
        sub = await self.transport.subscribe(subject, self._on_request, qos=QoS.AT_MOST_ONCE,
                                             group=self.group, max_in_flight=self.max_in_flight)
        self._subs.append(sub)
        return sub

    async def _decode(self, d: Delivery) -> Message | None:
        try:
            if self.decoder is not None:
                return self.decoder(d.headers, d.body)
            return decode(d.headers, d.body, self.registry)
        except MalformedMessage as exc:
            self.malformed[exc.reason] += 1
            log.warning("dead-lettering a malformed message on %s: %s", d.subject, exc.reason)
            await d.term(f"malformed: {exc.reason}")
            return None

    async def _on_event(self, d: Delivery) -> None:
        msg = await self._decode(d)
        if msg is None:
            return
        if not isinstance(msg, Event):
            self.malformed["not an event"] += 1
            await d.term(f"malformed: {type(msg).__name__} is not an event")
            return
        try:
            result = await self.mediator.publish(msg)
        except Exception as exc:  # a core bug: keep the message
            self.errors += 1
            log.exception("publish raised on %s", d.subject)
            await d.nack(self.rejected_redelivery_s, reason=repr(exc))
            return
        err = result.error
        if err is not None and err.code is ErrorCode.REJECTED:
            if int(msg.qos) == 0:
                self.rejected_dropped += 1
            elif self.on_rejected == "redeliver":
                self.rejected_redelivered += 1
                await d.nack(self.rejected_redelivery_s, reason="rejected by the limiter")
                return
            else:
                self.rejected_reported += 1
        if self.on_outcome is not None:
            await self.on_outcome(msg, result, d)
        await d.ack()

    async def _on_request(self, d: Delivery) -> None:
        msg = await self._decode(d)
        if msg is None:
            if d.reply_to:
                await d.respond({}, encode_result(Result.failure(ErrorCode.INVALID,
                                                                 "malformed request")))
            return
        if not isinstance(msg, Request):
            await d.term(f"malformed: {type(msg).__name__} is not a request")
            return
        try:
            result = await self.mediator.send(msg)
        except Exception as exc:
            self.errors += 1
            log.exception("send raised on %s", d.subject)
            result = Result.failure(ErrorCode.HANDLER_FAILED, repr(exc))
        if self.on_outcome is not None:
            await self.on_outcome(msg, result, d)
        if d.reply_to:
            await d.respond({}, encode_result(result))
        await d.ack()

    async def close(self) -> None:
        """Stop every subscription (unsettled QoS >= 1 deliveries are redelivered later)."""
        subs, self._subs = self._subs, []
        for s in subs:
            await s.stop()


class RemoteMediator:
    """``publish`` / ``send`` to a mediator served elsewhere.

    Args:
        transport: a connected transport.
        registry: wire names of the message types.
        subject_for: the subject of a message type (default :func:`default_subject`).
        request_timeout_s: default timeout of :meth:`send`.
    """

    def __init__(self, transport: Transport, registry: TypeRegistry, *,
                 subject_for: Callable[[type[Message]], str] = default_subject,
                 request_timeout_s: float = 5.0) -> None:
        self.transport = transport
        self.registry = registry
        self.subject_for = subject_for
        self.request_timeout_s = request_timeout_s

    async def publish(self, event: Event) -> Result[None]:
        """Publish ``event`` at its QoS. Success means: handed over (QoS 0) or stored by the
        broker (QoS >= 1) — handling happens on the serving side."""
        headers, body = encode(event, self.registry)
        try:
            await self.transport.publish(self.subject_for(type(event)), headers, body,
                                         qos=event.qos)
        except TransportError as exc:
            return Result.failure(ErrorCode.HANDLER_FAILED, str(exc), retryable=True)
        return Result.success(None)

    async def send(self, request: Request, timeout_s: float | None = None) -> Result[Any]:
        """Send ``request`` and return the serving side's result (TIMEOUT when no reply)."""
        headers, body = encode(request, self.registry)
        timeout = self.request_timeout_s if timeout_s is None else timeout_s
        subject = self.subject_for(type(request))
        try:
            reply = await self.transport.request(subject, headers, body, timeout_s=timeout)
        except TransportError as exc:
            timed_out = isinstance(exc, RequestTimeout)
            code = ErrorCode.TIMEOUT if timed_out else ErrorCode.HANDLER_FAILED
            return Result.failure(code, str(exc), retryable=True)
        try:
            return decode_result(reply.body)
        except MalformedMessage as exc:
            return Result.failure(ErrorCode.INVALID, exc.reason)
