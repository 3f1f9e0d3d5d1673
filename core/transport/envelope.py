"""The wire envelope: how a message travels over a broker (NATS, Redis) and back.

A message goes on the wire as **headers + body**:

* headers (strings): ``Catga-Message-Id`` (decimal Snowflake id), ``Catga-Message-Type`` (the
  registered type name), ``Catga-Correlation-Id`` (optional), ``Catga-QoS`` (0/1/2),
  ``Catga-Delivery-Mode`` (``wait``/``async``), ``traceparent`` (W3C Trace Context, optional),
  and ``Nats-Msg-Id`` (= the message id, so JetStream's publisher deduplication applies);
* body: the message's own fields (everything but the envelope fields) as a JSON object (orjson).

Redis Streams carry the same pairs as stream fields (``body`` holds the JSON). Anything that
cannot be decoded — missing or bad headers, an unknown type, a body that is not a JSON object of
the type's fields — raises :class:`MalformedMessage` with the reason, so the consumer can
dead-letter it (nothing is lost) and keep running. Format documented in docs/wire-format.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from core.messages import DeliveryMode, Message, QoS
from core.result import Error, ErrorCode, FanoutOutcome, Result

H_ID = "Catga-Message-Id"
H_TYPE = "Catga-Message-Type"
H_CORRELATION = "Catga-Correlation-Id"
H_QOS = "Catga-QoS"
H_MODE = "Catga-Delivery-Mode"
H_TRACEPARENT = "traceparent"
H_NATS_DEDUP = "Nats-Msg-Id"
_ENVELOPE_FIELDS = frozenset({"message_id", "correlation_id", "qos", "delivery_mode"})


class MalformedMessage(ValueError):
    """A wire message that cannot become a ``Message``; ``reason`` says why (for the
    dead-letter record)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TypeRegistry:
    """Maps wire type names to message classes (both directions).

    Args:
        types: message classes to register under their class name.

    Raises:
        ValueError: two classes with the same name, or a class that is not a dataclass Message.
    """

    def __init__(self, types: Iterable[type[Message]] = ()) -> None:
        self._by_name: dict[str, type[Message]] = {}
        self._fields: dict[type[Message], tuple[str, ...]] = {}
        for t in types:
            self.register(t)

    def register(self, message_type: type[Message], name: str | None = None) -> None:
        """Register ``message_type`` under ``name`` (default: its class name)."""
        if not (isinstance(message_type, type) and issubclass(message_type, Message)
                and dataclasses.is_dataclass(message_type)):
            raise ValueError(f"{message_type!r} is not a dataclass subclass of Message")
        key = name or message_type.__name__
        if self._by_name.get(key, message_type) is not message_type:
            raise ValueError(f"message type name {key!r} is already registered")
        self._by_name[key] = message_type
        self._fields[message_type] = tuple(
            f.name for f in dataclasses.fields(message_type) if f.name not in _ENVELOPE_FIELDS
        )

    def name_of(self, message_type: type[Message]) -> str:
        for name, t in self._by_name.items():
            if t is message_type:
                return name
        raise KeyError(f"{message_type.__name__} is not registered")

    def lookup(self, name: str) -> type[Message] | None:
        return self._by_name.get(name)

    def fields_of(self, message_type: type[Message]) -> tuple[str, ...]:
        return self._fields[message_type]


def encode(message: Message, registry: TypeRegistry,
           traceparent: str | None = None) -> tuple[dict[str, str], bytes]:
    """Return ``(headers, body)`` for ``message``.

    Raises:
        KeyError: the message's type is not registered.
        TypeError: a field cannot be serialised to JSON.
    """
    t = type(message)
    headers = {
        H_ID: str(message.message_id),
        H_NATS_DEDUP: str(message.message_id),
        H_TYPE: registry.name_of(t),
        H_QOS: str(int(message.qos)),
        H_MODE: message.delivery_mode.value,
    }
    if message.correlation_id is not None:
        headers[H_CORRELATION] = str(message.correlation_id)
    if traceparent:
        headers[H_TRACEPARENT] = traceparent
    body = orjson.dumps({name: getattr(message, name) for name in registry.fields_of(t)})
    return headers, body


def decode(headers: Mapping[str, str], body: bytes, registry: TypeRegistry) -> Message:
    """Rebuild the message from ``(headers, body)``.

    Raises:
        MalformedMessage: with the reason (missing/bad header, unknown type, bad body).
    """
    type_name = headers.get(H_TYPE)
    if not type_name:
        raise MalformedMessage(f"missing header {H_TYPE}")
    message_type = registry.lookup(type_name)
    if message_type is None:
        raise MalformedMessage(f"unknown message type {type_name!r}")
    message_id = _int_header(headers, H_ID, required=True)
    correlation = _int_header(headers, H_CORRELATION, required=False)
    qos_raw = headers.get(H_QOS, "1")
    if qos_raw not in ("0", "1", "2"):
        raise MalformedMessage(f"header {H_QOS} must be 0, 1 or 2, got {qos_raw!r}")
    mode_raw = headers.get(H_MODE, DeliveryMode.WAIT_FOR_RESULT.value)
    try:
        mode = DeliveryMode(mode_raw)
    except ValueError:
        raise MalformedMessage(f"header {H_MODE} must be wait or async, got {mode_raw!r}") from None
    try:
        fields: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"body is not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise MalformedMessage(f"body must be a JSON object, got {type(fields).__name__}")
    expected = registry.fields_of(message_type)
    unknown = sorted(set(fields) - set(expected))
    if unknown:
        raise MalformedMessage(f"unknown field {unknown[0]!r} for {type_name}")
    try:
        return message_type(**fields, message_id=message_id, correlation_id=correlation,
                            qos=QoS(int(qos_raw)), delivery_mode=mode)
    except TypeError as exc:
        raise MalformedMessage(f"body does not fit {type_name}: {exc}") from None


def _int_header(headers: Mapping[str, str], name: str, *, required: bool) -> int | None:
    raw = headers.get(name)
    if raw is None or raw == "":
        if required:
            raise MalformedMessage(f"missing header {name}")
        return None
    try:
        value = int(raw)
    except ValueError:
        raise MalformedMessage(f"header {name} must be an integer, got {raw!r}") from None
    if not 0 <= value < 2**63:
        raise MalformedMessage(f"header {name} out of range: {raw}")
    return value


def encode_result(result: Result[Any]) -> bytes:
    """A ``Result`` as JSON for a reply: ``{"ok": true, "value": ...}`` or
    ``{"ok": false, "error": {"code", "message", "retryable"}}``. A ``FanoutOutcome`` value is
    sent as its counts and failures; other values that JSON cannot hold are sent as ``repr``."""
    error = result.error
    if error is not None:
        return orjson.dumps({"ok": False, "error": {"code": error.code.value,
                                                    "message": error.message,
                                                    "retryable": error.retryable}})
    value = result.value
    if isinstance(value, FanoutOutcome):
        value = {"handlers": value.handlers, "succeeded": value.succeeded,
                 "duplicates": value.duplicates,
                 "failures": [[n, e.code.value, e.message] for n, e in value.failures]}
    return orjson.dumps({"ok": True, "value": value}, default=repr)


def decode_result(body: bytes) -> Result[Any]:
    """The ``Result`` in a reply body (see :func:`encode_result`).

    Raises:
        MalformedMessage: the body is not such a JSON object.
    """
    try:
        data = orjson.loads(body)
        if data["ok"]:
            return Result.success(data.get("value"))
        err = data["error"]
        return Result(None, Error(ErrorCode(err["code"]), str(err["message"]),
                                  bool(err.get("retryable", False))))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise MalformedMessage(f"reply is not a result: {exc!r}") from None
