"""The wire envelope: round trips, and every malformed input gives a reason (for the DLQ)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from core import DeliveryMode, Event, QoS, Request
from core.transport import MalformedMessage, TypeRegistry, decode, encode
from core.transport.envelope import H_CORRELATION, H_ID, H_NATS_DEDUP, H_QOS, H_TYPE


@dataclass(slots=True)
class OrderPlaced(Event):
    order_id: int = 0
    lines: list[str] = field(default_factory=list)


@dataclass(slots=True)
class GetPrice(Request):
    sku: str = ""


REGISTRY = TypeRegistry([OrderPlaced, GetPrice])


def test_round_trip_keeps_every_field() -> None:
    msg = OrderPlaced(order_id=7, lines=["a", "b"], correlation_id=99, qos=QoS.EXACTLY_ONCE,
                      delivery_mode=DeliveryMode.ASYNC)
    headers, body = encode(msg, REGISTRY, traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    assert headers[H_ID] == headers[H_NATS_DEDUP] == str(msg.message_id)
    assert headers[H_TYPE] == "OrderPlaced" and headers[H_QOS] == "2"
    assert headers["traceparent"].startswith("00-")
    back = decode(headers, body, REGISTRY)
    assert back == msg
    assert type(back) is OrderPlaced


def test_envelope_fields_are_not_in_the_body() -> None:
    headers, body = encode(GetPrice(sku="x1"), REGISTRY)
    assert body == b'{"sku":"x1"}'
    assert H_CORRELATION not in headers


def _valid() -> tuple[dict[str, str], bytes]:
    return encode(GetPrice(sku="x"), REGISTRY)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h, b: ({k: v for k, v in h.items() if k != H_TYPE}, b), "missing header"),
        (lambda h, b: ({**h, H_TYPE: "Nope"}, b), "unknown message type 'Nope'"),
        (lambda h, b: ({k: v for k, v in h.items() if k != H_ID}, b), "missing header"),
        (lambda h, b: ({**h, H_ID: "abc"}, b), "must be an integer"),
        (lambda h, b: ({**h, H_ID: str(2**64)}, b), "out of range"),
        (lambda h, b: ({**h, H_QOS: "5"}, b), "must be 0, 1 or 2"),
        (lambda h, b: (h, b"{not json"), "body is not JSON"),
        (lambda h, b: (h, b"[1, 2]"), "must be a JSON object"),
        (lambda h, b: (h, b'{"sku": "x", "extra": 1}'), "unknown field 'extra'"),
    ],
)
def test_malformed_input_names_the_reason(mutate, reason) -> None:
    headers, body = mutate(*_valid())
    with pytest.raises(MalformedMessage) as info:
        decode(headers, body, REGISTRY)
    assert reason in info.value.reason


def test_registry_rejects_name_clashes_and_non_messages() -> None:
    reg = TypeRegistry([GetPrice])
    with pytest.raises(ValueError, match="already registered"):
        reg.register(OrderPlaced, name="GetPrice")
    with pytest.raises(ValueError, match="not a dataclass subclass of Message"):
        reg.register(dict)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        encode(OrderPlaced(), reg)
