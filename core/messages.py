"""Message base types: requests (one handler, a response) and events (0..N handlers).

Every message carries a 64-bit Snowflake ``message_id`` (see :mod:`core.ids`), an optional
``correlation_id``, a QoS level and a delivery mode. Applications subclass :class:`Request` or
:class:`Event` as (slotted) dataclasses::

    @dataclass(slots=True)
    class OrderPlaced(Event):
        order_id: int
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from core.ids import SnowflakeGenerator


class QoS(IntEnum):
    """Delivery guarantee (MQTT's numbering, Catga's ``QualityOfService``)."""

    AT_MOST_ONCE = 0
    """Processed at most once: local processing is awaited, failures are logged and dropped."""
    AT_LEAST_ONCE = 1
    """Retried with backoff until it succeeds or is dead-lettered; duplicates are possible."""
    EXACTLY_ONCE = 2
    """As at-least-once, plus deduplication by message id in the idempotency store."""


class DeliveryMode(StrEnum):
    """When ``publish`` returns for QoS >= 1 (QoS 0 always awaits local processing)."""

    WAIT_FOR_RESULT = "wait"
    """Return after every handler has finished (or been retried and dead-lettered)."""
    ASYNC = "async"
    """Return once accepted (the in-memory "ack"); handlers run in the background."""


_ids = SnowflakeGenerator(int(os.environ.get("CATGA_WORKER_ID", os.getpid())) & 0xFF)


def new_message_id() -> int:
    """Return a fresh Snowflake id from this process's generator (worker id = pid mod 256,
    or ``CATGA_WORKER_ID``)."""
    return _ids.next_id()


@dataclass(slots=True, kw_only=True)
class Message:
    """Fields shared by every message.

    Attributes:
        message_id: 64-bit Snowflake id; the key for QoS 2 deduplication.
        correlation_id: id of the conversation this message belongs to, if any.
        qos: delivery guarantee, see :class:`QoS`.
        delivery_mode: see :class:`DeliveryMode`.
    """

    message_id: int = field(default_factory=new_message_id)
    correlation_id: int | None = None
    qos: QoS = QoS.AT_LEAST_ONCE
    delivery_mode: DeliveryMode = DeliveryMode.WAIT_FOR_RESULT


@dataclass(slots=True, kw_only=True)
class Request(Message):
    """A command or query: exactly one handler, which returns a response (or a ``Result``)."""


@dataclass(slots=True, kw_only=True)
class Event(Message):
    """A notification: fanned out to every subscribed handler (0..N)."""
