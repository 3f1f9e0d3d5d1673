"""The transport seam: the one narrow interface every broker implements.

Like httpx's single ``handle_async_request``, a transport moves opaque ``(headers, body)`` pairs
(see :mod:`core.transport.envelope`) and knows nothing of handlers, QoS policy or results; the
mediator side (:mod:`core.transport.node`) knows nothing of the broker. Implementations:
:class:`~core.transport.memory.InMemoryTransport`, ``NatsTransport`` (nats-py: core subjects
and JetStream) and ``RedisTransport`` (redis.asyncio: Pub/Sub and Streams).

Delivery guarantees a transport must give, by QoS:

* QoS 0 (at-most-once): ``publish`` hands the message to the broker and returns; subscribers of
  a ``group`` share the messages (NATS queue group semantics); no acks, no redelivery.
* QoS 1/2 (at-least-once): ``publish`` returns only when the broker has *stored* the message
  (JetStream ``PubAck``, the ``XADD`` reply); the stored id dedups publisher retries where the
  broker can (``Nats-Msg-Id``). Subscribers in the same ``group`` share a durable consumer: each
  delivery must be ``ack``-ed, ``nack``-ed (redeliver after a delay) or ``term``-inated
  (dead-lettered with the reason). A delivery neither acked nor nacked within ``ack_wait_s`` is
  redelivered (the consumer died); after ``max_deliver`` deliveries it goes to the dead-letter
  place with the reason instead. QoS 2 duplicates are removed above the transport (idempotency
  store keyed by message id), not here.

Errors: :class:`BrokerUnavailable` (cannot connect, or the connection is gone for longer than the
reconnect budget), :class:`RequestTimeout` (no reply in time), :class:`TransportError` (base).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Self

from core.messages import QoS

#: Header carrying the dead-letter reason on messages in the dead-letter place.
H_DLQ_REASON = "Catga-DLQ-Reason"
#: Header carrying the subject a dead-lettered message was first published to.
H_DLQ_SUBJECT = "Catga-DLQ-Subject"
#: Header carrying how many times a dead-lettered message was delivered.
H_DLQ_DELIVERIES = "Catga-DLQ-Deliveries"


class TransportError(Exception):
    """Base class of transport failures."""


class BrokerUnavailable(TransportError):
    """The broker cannot be reached (``url`` and the ``reason`` in one line)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"broker {url} is unreachable: {reason}")
        self.url = url
        self.reason = reason


class RequestTimeout(TransportError):
    """No reply to a request within its timeout (``subject``, ``timeout_s``)."""

    def __init__(self, subject: str, timeout_s: float) -> None:
        super().__init__(f"no reply on {subject!r} within {timeout_s:g} s")
        self.subject = subject
        self.timeout_s = timeout_s


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply to :meth:`Transport.request`: headers and body."""

    headers: Mapping[str, str]
    body: bytes


@dataclass(slots=True)
class TransportStats:
    """Counters every transport keeps (exported as metrics by the node).

    Attributes:
        published: messages published. received: deliveries handed to handlers.
        acked / nacked: settled deliveries. redelivered: deliveries with ``delivery_count > 1``.
        dead_lettered: messages moved to the dead-letter place (``by_reason`` in the node).
        reconnects: connections re-established after a drop. disconnects: drops seen.
        publish_errors: publishes that failed (broker down, no ack).
    """

    published: int = 0
    received: int = 0
    acked: int = 0
    nacked: int = 0
    redelivered: int = 0
    dead_lettered: int = 0
    reconnects: int = 0
    disconnects: int = 0
    publish_errors: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        """All counters, ``extra`` ones included, as one flat dict."""
        out = {k: v for k, v in asdict(self).items() if isinstance(v, int)}
        out.update(self.extra)
        return out


class Delivery:
    """One message handed to a subscriber.

    Attributes:
        subject: where it was published. headers / body: as published.
        delivery_count: 1 on first delivery, 2+ on redeliveries (QoS >= 1; always 1 at QoS 0).
        reply_to: set when this is a request: answer with :meth:`respond`.
    """

    __slots__ = ("body", "delivery_count", "headers", "reply_to", "subject")

    def __init__(self, subject: str, headers: Mapping[str, str], body: bytes,
                 delivery_count: int = 1, reply_to: str | None = None) -> None:
        self.subject = subject
        self.headers = headers
        self.body = body
        self.delivery_count = delivery_count
        self.reply_to = reply_to

    async def ack(self) -> None:
        """Processing finished: the broker may forget the message (no-op at QoS 0)."""

    async def nack(self, delay_s: float = 0.0, reason: str = "") -> None:
        """Processing failed: redeliver after ``delay_s`` — or, if this was the last allowed
        delivery, dead-letter it with ``reason`` (no-op at QoS 0)."""

    async def term(self, reason: str) -> None:
        """Never redeliver: move the message to the dead-letter place with ``reason`` (a
        malformed or poison message). At QoS 0 the message is still dead-lettered."""
        raise NotImplementedError(f"{type(self).__name__} must implement term()")

    async def respond(self, headers: Mapping[str, str], body: bytes) -> None:
        """Send the reply of a request (raises TransportError if this is not a request)."""
        raise TransportError(f"delivery on {self.subject!r} is not a request")


#: What a subscriber is: called once per delivery; it must settle the delivery itself.
DeliveryHandler = Callable[[Delivery], Awaitable[None]]


class Subscription(abc.ABC):
    """A live subscription; :meth:`stop` ends it (unsettled QoS >= 1 deliveries are
    redelivered to the group's other members or after a restart)."""

    @abc.abstractmethod
    async def stop(self) -> None: ...


class Transport(abc.ABC):
    """The seam. Use as an async context manager (``async with NatsTransport(url) as t``).

    Subclasses set ``name`` and implement the abstract methods; ``stats`` counts what happened.
    """

    name: str = "abstract"

    def __init__(self) -> None:
        self.stats = TransportStats()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    @abc.abstractmethod
    async def connect(self) -> None:
        """Connect (bounded retry). Raises BrokerUnavailable."""

    @abc.abstractmethod
    async def publish(self, subject: str, headers: Mapping[str, str], body: bytes, *,
                      qos: QoS = QoS.AT_MOST_ONCE) -> None:
        """Publish one message (QoS >= 1: returns once the broker stored it).

        Raises:
            BrokerUnavailable: the broker is down beyond the reconnect budget.
            TransportError: the broker refused or did not acknowledge the message.
        """

    @abc.abstractmethod
    async def request(self, subject: str, headers: Mapping[str, str], body: bytes, *,
                      timeout_s: float) -> Reply:
        """Send a request to one member of the subscribers' group and await its reply.

        Raises:
            RequestTimeout: no reply within ``timeout_s``.
            BrokerUnavailable: the broker is down.
        """

    @abc.abstractmethod
    async def subscribe(self, subject: str, handler: DeliveryHandler, *,
                        qos: QoS = QoS.AT_MOST_ONCE, group: str | None = None,
                        max_in_flight: int = 256) -> Subscription:
        """Start delivering messages published to ``subject`` (requests too) to ``handler``.

        Args:
            subject: exact subject (dot-separated; ``>`` as the last token matches the rest).
            handler: awaited per delivery, at most ``max_in_flight`` at once (backpressure: the
                transport fetches no more than that).
            qos: 0 for core/pub-sub delivery, 1 or 2 for the durable, acknowledged path.
            group: members of a group share the messages (queue group / consumer group).
        """

    @abc.abstractmethod
    async def flush(self, timeout_s: float = 5.0) -> None:
        """Return once everything published so far has reached the broker."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop subscriptions, flush and disconnect (idempotent)."""
