"""Transports: how messages cross process boundaries (groundwork for NATS and Redis).

Only the wire envelope exists so far (:mod:`core.transport.envelope`); the transport seam and
the broker implementations come with the real-brokers issue.
"""

from core.transport.envelope import MalformedMessage, TypeRegistry, decode, encode

__all__ = ["MalformedMessage", "TypeRegistry", "decode", "encode"]
