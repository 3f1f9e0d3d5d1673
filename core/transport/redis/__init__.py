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

Modules: ``_transport`` (:class:`RedisTransport`: connection, publish, request/reply,
subscribe, dead letters, close), ``_writer`` (the auto-pipeline), ``_subscription`` (the
reader, reclaim, redelivery and marker loops of one subscription), ``_delivery`` (settling one
message), ``_framing`` (frames, stream fields, key names, the QoS 0 script) and ``_errors``
(what counts as connection loss, and the backoff).
"""

from __future__ import annotations

from core.transport.redis._transport import RedisTransport

__all__ = ["RedisTransport"]
