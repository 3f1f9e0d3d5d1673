"""What a NATS subscriber or reader gets: a core delivery (QoS 0, requests), a JetStream
delivery (QoS 1/2) and a dead letter read back."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, NamedTuple

from nats.aio.msg import Msg

from core.transport.base import (
    H_DLQ_DELIVERIES,
    H_DLQ_REASON,
    H_DLQ_SUBJECT,
    Delivery,
)

if TYPE_CHECKING:
    from core.transport.nats._transport import NatsTransport


class DeadLetter(NamedTuple):
    """A message read back from the dead-letter stream: ``(headers, body)`` as dead-lettered
    (the original headers plus the ``Catga-DLQ-*`` ones), like RedisTransport's pairs."""

    headers: Mapping[str, str]
    body: bytes

    @property
    def reason(self) -> str:
        """Why it was dead-lettered (``Catga-DLQ-Reason``)."""
        return self.headers.get(H_DLQ_REASON, "")

    @property
    def original_subject(self) -> str:
        """Where it was first published (``Catga-DLQ-Subject``)."""
        return self.headers.get(H_DLQ_SUBJECT, "")

    @property
    def deliveries(self) -> int:
        """How many times it was delivered before (``Catga-DLQ-Deliveries``; 0 if unknown)."""
        raw = self.headers.get(H_DLQ_DELIVERIES, "0")
        return int(raw) if raw.isdigit() else 0


class CoreDelivery(Delivery):
    """A QoS 0 delivery: ack/nack are no-ops, term dead-letters, respond answers requests."""

    __slots__ = ("_transport",)

    def __init__(self, transport: NatsTransport, msg: Msg) -> None:
        super().__init__(msg.subject, msg.headers or {}, msg.data, 1, msg.reply or None)
        self._transport = transport

    async def term(self, reason: str) -> None:
        await self._transport.dead_letter(self.subject, self.headers, self.body, 1, reason)

    async def respond(self, headers: Mapping[str, str], body: bytes) -> None:
        if not self.reply_to:
            await super().respond(headers, body)
            return
        nc, _ = self._transport._client()
        try:
            await nc.publish(self.reply_to, body, headers=dict(headers) if headers else None)
        except Exception as exc:
            raise self._transport._error(exc, f"respond to {self.subject!r}") from exc


class JetStreamDelivery(Delivery):
    """A QoS >= 1 delivery backed by a JetStream message. Settling twice is a no-op."""

    __slots__ = ("_max_deliver", "_msg", "_transport", "settled")

    def __init__(self, transport: NatsTransport, msg: Msg, max_deliver: int) -> None:
        super().__init__(msg.subject, msg.headers or {}, msg.data,
                         msg.metadata.num_delivered or 1, None)
        self._transport = transport
        self._msg = msg
        self._max_deliver = max_deliver
        self.settled = False

    async def ack(self) -> None:
        """Acknowledge (fire-and-forget ``+ACK``). Raises BrokerUnavailable when closed."""
        if self._settle():
            await self._send(self._msg.ack(), "ack")
            self._transport.stats.acked += 1

    async def nack(self, delay_s: float = 0.0, reason: str = "") -> None:
        """Redeliver after ``delay_s`` seconds, or dead-letter (then ``+TERM``) if this was the
        ``max_deliver``-th delivery. Counts ``nacked`` either way."""
        if self.settled:
            return
        if self.delivery_count >= self._max_deliver:
            await self._transport.dead_letter(
                self.subject, self.headers, self.body, self.delivery_count,
                f"max deliveries ({self._max_deliver}) reached: {reason or 'nacked'}")
            self._settle()
            await self._send(self._msg.term(), "term")
        else:
            self._settle()
            await self._send(self._msg.nak(delay=delay_s if delay_s > 0 else None), "nak")
        self._transport.stats.nacked += 1

    async def term(self, reason: str) -> None:
        """Dead-letter with ``reason``, then ``+TERM`` (if the dead letter cannot be stored,
        raises and leaves the delivery unsettled, so it comes back after ``ack_wait_s``)."""
        if self.settled:
            return
        await self._transport.dead_letter(self.subject, self.headers, self.body,
                                          self.delivery_count, reason)
        self._settle()
        await self._send(self._msg.term(), "term")

    def _settle(self) -> bool:
        first, self.settled = not self.settled, True
        return first

    async def _send(self, op: Awaitable[None], what: str) -> None:
        try:
            await op
        except Exception as exc:
            raise self._transport._error(exc, f"{what} on {self.subject!r}") from exc
