"""Node discovery: nodes register, heartbeat, and list the nodes that are alive.

A node is *live* while its last heartbeat is at most ``ttl_s`` seconds old. Each process owns
one :class:`Discovery` for its own node: :meth:`~Discovery.register` it, then either call
:meth:`~Discovery.heartbeat` yourself or let :meth:`~Discovery.start_heartbeats` do it in the
background (every ``ttl_s / 3`` by default, so two lost beats are tolerated). A crashed node
stops heartbeating and drops out of :meth:`~Discovery.nodes` at most ``ttl_s`` seconds after
its last heartbeat (readers that cache the list see it later); a node that shuts down cleanly
calls :meth:`~Discovery.deregister` and disappears at once (``close()`` does it).
:mod:`core.cluster.routing` then picks one of the live nodes per message.

Backends:

* :class:`InMemoryDiscovery` — a shared :class:`InMemoryRegistry` in one process, TTL checked
  against an injectable clock (tests, single-process setups).
* :class:`RedisDiscovery` — a sorted set ``key`` (member ``node_id``, score = time of the last
  heartbeat) plus a hash ``key:info`` (``node_id`` -> node JSON). Both writes happen in one Lua
  script that reads the *Redis server's* clock (``TIME``), so client clock skew does not matter.
  :meth:`~RedisDiscovery.nodes` deletes members scored before ``now - ttl_s``
  (``ZREMRANGEBYSCORE`` + ``HDEL``) and returns the rest (``ZRANGEBYSCORE now-ttl +inf``),
  atomically.
* :class:`NatsKvDiscovery` — a JetStream key-value bucket created with ``ttl=ttl_s`` (the
  stream's ``max_age``) and ``history=1``: each heartbeat is a ``put`` of the node JSON, and the
  server deletes a node's entry ``ttl_s`` after its last put. :meth:`~NatsKvDiscovery.nodes`
  reads the latest value of every key. Expiry measured on nats-server 2.9.10 with ``ttl=1 s``:
  the entry is gone 1.0 s after the last put.

Errors: :class:`~core.transport.base.BrokerUnavailable` when the broker cannot be reached (at
connect, or when an operation fails for lack of a connection);
:class:`~core.transport.base.TransportError` for other broker-side failures; ``ValueError`` for
bad arguments; ``RuntimeError`` for calls in the wrong state (heartbeat before register).
"""

from __future__ import annotations

from core.cluster.discovery._base import Discovery
from core.cluster.discovery._memory import InMemoryDiscovery, InMemoryRegistry
from core.cluster.discovery._nats_kv import NatsKvDiscovery
from core.cluster.discovery._redis import RedisDiscovery

__all__ = [
    "Discovery",
    "InMemoryDiscovery",
    "InMemoryRegistry",
    "NatsKvDiscovery",
    "RedisDiscovery",
]
