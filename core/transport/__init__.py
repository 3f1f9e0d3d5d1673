"""Transports: how messages cross process boundaries.

One seam (:class:`~core.transport.base.Transport`: publish, request, subscribe, ack/nack/term,
flush, close) implemented by :class:`~core.transport.memory.InMemoryTransport`,
``NatsTransport`` (:mod:`core.transport.nats`, extra ``[nats]``) and ``RedisTransport``
(:mod:`core.transport.redis`, extra ``[redis]``); the wire envelope in
:mod:`core.transport.envelope`; serving a mediator over any of them in
:mod:`core.transport.endpoint`.
"""

from __future__ import annotations

from typing import Any

from core.transport.base import (
    BrokerUnavailable,
    Delivery,
    Reply,
    RequestTimeout,
    Subscription,
    Transport,
    TransportError,
)
from core.transport.endpoint import MediatorEndpoint, RemoteMediator, default_subject
from core.transport.envelope import MalformedMessage, TypeRegistry, decode, encode
from core.transport.memory import InMemoryBroker, InMemoryTransport

TRANSPORT_NAMES = ("memory", "nats", "redis")


def open_transport(kind: str, url: str | None = None, **options: Any) -> Transport:
    """A transport by name (not connected yet: use ``async with``).

    Args:
        kind: ``"memory"``, ``"nats"`` or ``"redis"``.
        url: the broker URL (default: the broker's standard local port).
        options: passed to the transport's constructor.

    Raises:
        ValueError: unknown ``kind`` (the message lists the allowed names).
        ImportError: the client library is missing (install the ``[nats]``/``[redis]`` extra).
    """
    if kind == "memory":
        return InMemoryTransport(**options)
    if kind == "nats":
        try:
            from core.transport.nats import NatsTransport
        except ImportError as exc:
            raise ImportError(f"{exc}; install with: pip install 'catga-bench[nats]'") from exc
        return NatsTransport(url or "nats://127.0.0.1:4222", **options)
    if kind == "redis":
        try:
            from core.transport.redis import RedisTransport
        except ImportError as exc:
            raise ImportError(f"{exc}; install with: pip install 'catga-bench[redis]'") from exc
        return RedisTransport(url or "redis://127.0.0.1:6379", **options)
    raise ValueError(f"unknown transport {kind!r}; allowed: {', '.join(TRANSPORT_NAMES)}")


__all__ = [
    "TRANSPORT_NAMES",
    "BrokerUnavailable",
    "Delivery",
    "InMemoryBroker",
    "InMemoryTransport",
    "MalformedMessage",
    "MediatorEndpoint",
    "RemoteMediator",
    "Reply",
    "RequestTimeout",
    "Subscription",
    "Transport",
    "TransportError",
    "TypeRegistry",
    "decode",
    "default_subject",
    "encode",
    "open_transport",
]
