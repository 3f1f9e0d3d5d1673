"""NATS transport: core subjects for QoS 0 and requests, JetStream for QoS 1/2 (nats-py).

Layout on the broker:

* QoS 0 and requests use plain subjects (``nc.publish`` / ``nc.subscribe`` with a queue group /
  ``nc.request``); nothing is stored.
* QoS 1/2 subjects look like ``<prefix>.<family>.<rest>`` (``catga.orders.OrderPlaced``). Each
  family gets one file-backed stream, ``<STREAM_PREFIX>_<FAMILY>`` with subjects
  ``<prefix>.<family>.>``, created on first use; its ``duplicate_window`` makes the envelope's
  ``Nats-Msg-Id`` header dedup publisher retries. A subscriber group is one durable *pull*
  consumer (explicit acks, ``ack_wait``, ``max_deliver``) shared by every member of the group.
* Dead letters go to the stream ``<STREAM_PREFIX>_DLQ`` (subjects ``<dlq_prefix>.>``) on the
  subject ``<dlq_prefix>.<original subject>``, with the original headers and body plus
  ``Catga-DLQ-Reason``, ``Catga-DLQ-Subject`` and ``Catga-DLQ-Deliveries``. Messages whose last
  delivery was never settled (the consumer died each time) are dead-lettered from the broker's
  ``MAX_DELIVERIES`` advisory. :meth:`NatsTransport.dead_letters` reads them back.

Reconnects are nats-py's own (bounded by ``max_reconnect_attempts``); the initial connect gives
up after 3 attempts (at most ``3 * connect_timeout_s + 2 * reconnect_wait_s``) with
:class:`~core.transport.base.BrokerUnavailable`.

Modules: ``_transport`` (:class:`NatsTransport`: connection, publish, request, flush, streams,
subscribe, dead letters, close), ``_subscription`` (a core subscription and a JetStream fetch
loop, each running at most ``max_in_flight`` handlers) and ``_delivery`` (settling one message;
:class:`DeadLetter`, a dead letter read back).
"""

from __future__ import annotations

from core.transport.nats._delivery import DeadLetter
from core.transport.nats._transport import NatsTransport

__all__ = ["DeadLetter", "NatsTransport"]
