"""The AsyncAPI 3 loader (catga_bench/workload/asyncapi/): the sample specs load into the
documented shapes, the defaults pick the input and outputs, and every problem is one ConfigError
line naming the file and the JSON pointer of the offending node."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from catga_bench.errors import ConfigError
from catga_bench.workload.asyncapi import (
    BenchExtension,
    Correlation,
    JetStreamExt,
    SpecMessage,
    SutSpec,
    load_spec,
    parse_correlation_location,
)

SPECS = Path(__file__).parent / "specs"
ORDERS = SPECS / "orders.yaml"
PAYMENTS = SPECS / "payments.yaml"


def good() -> dict[str, Any]:
    """The orders spec as a dict, for building variants."""
    return yaml.safe_load(ORDERS.read_text(encoding="utf-8"))


def write(tmp_path: Path, doc: Any, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    text = str(info.value)
    assert "\n" not in text, text
    assert text.startswith(f"{path}: "), text
    return text


# ---------------------------------------------------------------------------- the good specs


def test_orders_loads_into_the_documented_shapes() -> None:
    spec = load_spec(ORDERS)
    assert isinstance(spec, SutSpec)
    assert (spec.path, spec.title, spec.version) == (ORDERS, "Orders", "1.2.0")
    assert spec.servers["local"].protocol == "nats"
    assert spec.servers["local"].url() == "nats://127.0.0.1:4222"
    assert spec.server("nats") is spec.servers["local"]
    assert spec.server("redis") is None
    assert list(spec.channels) == ["orderPlaced", "orderConfirmed"]
    assert spec.channels["orderPlaced"].address == "orders.placed"
    assert spec.channels["orderConfirmed"].address == "orders.confirmed"
    assert list(spec.operations) == ["placeOrder", "confirmOrder"]
    assert spec.operations["placeOrder"].action == "receive"
    assert spec.operations["confirmOrder"].action == "send"
    assert spec.operations["confirmOrder"].channel.id == "orderConfirmed"
    assert spec.bench == BenchExtension(input="placeOrder", outputs=["confirmOrder"], qos=1,
                                        payload={"amount": [10, 20.5]},
                                        jetstream=JetStreamExt(stream="ORDERS"))


def test_orders_messages_and_correlations() -> None:
    spec = load_spec(ORDERS)
    placed = spec.input_operation()
    assert placed.id == "placeOrder"
    assert placed.channel.address == "orders.placed"
    assert placed.messages == [SpecMessage(
        name="OrderPlaced",
        payload_schema={"type": "object",
                        "properties": {"order_id": {"type": "string"},
                                       "amount": {"type": "number"}},
                        "required": ["order_id", "amount"]},
        correlation=Correlation(where="header", path="Catga-Correlation-Id"),
        pointer="/components/messages/OrderPlaced")]
    [confirmed] = spec.output_operations()
    assert confirmed.id == "confirmOrder"
    [message] = confirmed.messages
    assert (message.name, message.pointer) == ("OrderConfirmed",
                                               "/components/messages/OrderConfirmed")
    assert message.correlation == Correlation(where="payload", path="/order_id")
    with pytest.raises(ValueError):  # frozen
        message.correlation.path = "/x"  # type: ignore[misc]


def test_defaults_without_the_extension(tmp_path: Path) -> None:
    doc = good()
    del doc["x-catga-bench"]
    spec = load_spec(write(tmp_path, doc))
    assert spec.bench == BenchExtension()
    assert spec.bench.payload == {} and spec.bench.qos is None and spec.bench.jetstream is None
    assert spec.input_operation().id == "placeOrder"
    assert [o.id for o in spec.output_operations()] == ["confirmOrder"]


def test_payments_refs_servers_and_every_send_op() -> None:
    spec = load_spec(PAYMENTS)
    assert spec.version == "7"
    assert spec.input_operation().id == "charge"
    assert [o.id for o in spec.output_operations()] == ["settle", "refuse"]
    assert spec.servers["cache"].url() == "redis://127.0.0.1:6379"
    assert spec.servers["api"].url() == "https://payments.local:8443/v1"
    assert spec.server("http") is spec.servers["api"]
    assert spec.server("https") is spec.servers["api"]
    assert spec.server("nats") is None
    assert spec.channels["charges"].address == "payments.charges"
    [charge] = spec.input_operation().messages
    assert charge.correlation == Correlation(where="payload", path="/charge/id")
    money = charge.payload_schema["properties"]["price"]  # type: ignore[index]
    assert money["required"] == ["amount", "currency"]  # the ref inside the schema is inlined
    assert "$ref" not in json.dumps(charge.payload_schema)
    refused = spec.operations["refuse"].messages[0]
    assert refused.name == "ChargeRefused"
    assert refused.pointer == "/channels/refused/messages/refused"
    assert refused.payload_schema == charge.payload_schema  # a ref to a ref
    settled = spec.operations["settle"].messages[0]
    assert settled.correlation == Correlation(where="header", path="Catga-Correlation-Id")


def test_a_json_spec_loads(tmp_path: Path) -> None:
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(good(), indent=2), encoding="utf-8")
    spec = load_spec(str(path))
    assert spec.path == path
    assert spec.input_operation().messages[0].correlation == Correlation(
        where="header", path="Catga-Correlation-Id")
    assert spec.bench.payload == {"amount": [10, 20.5]}


def test_operation_messages_must_be_the_channels(tmp_path: Path) -> None:
    doc = good()
    doc["operations"]["placeOrder"]["messages"] = [
        {"$ref": "#/components/messages/OrderConfirmed"}]
    text = load_error(write(tmp_path, doc))
    assert "/operations/placeOrder/messages/0: " in text
    assert 'not one of channel "orderPlaced"' in text


# ------------------------------------------------------------------------ correlation location


@pytest.mark.parametrize(("location", "expected"), [
    ("$message.header#/Catga-Correlation-Id",
     Correlation(where="header", path="Catga-Correlation-Id")),
    ("$message.header#/a~1b", Correlation(where="header", path="a/b")),
    ("$message.payload#/order_id", Correlation(where="payload", path="/order_id")),
    ("$message.payload#/order/items/0/id", Correlation(where="payload",
                                                       path="/order/items/0/id")),
])
def test_parse_correlation_location(location: str, expected: Correlation) -> None:
    assert parse_correlation_location(location, "/x/location") == expected


@pytest.mark.parametrize("location", [
    "$message.body#/id", "$message.payload#", "$message.payload#order_id", "$message.header#/",
    "$message.header#/a/b", "$message.payload#/a~2", "message.payload#/id", "",
])
def test_parse_correlation_location_rejects(location: str) -> None:
    with pytest.raises(ConfigError, match=r"^/x/location: "):
        parse_correlation_location(location, "/x/location")


# ---------------------------------------------------------------------------------- the errors


def _set(*keys: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        node: Any = doc
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return change


def _drop(*keys: str | int) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        node: Any = doc
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]
    return change


def _both(*changes: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        for c in changes:
            c(doc)
    return change


def _cancel_order(doc: dict[str, Any]) -> None:
    doc["operations"]["cancelOrder"] = {"action": "receive",
                                        "channel": {"$ref": "#/channels/orderPlaced"}}


BENCH, MSGS = "x-catga-bench", ("components", "messages")

BAD: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("asyncapi 2", _set("asyncapi", value="2.6.0"),
     '/asyncapi: not an AsyncAPI 3 document (asyncapi: "2.6.0"); catga-bench reads AsyncAPI 3.x'),
    ("asyncapi missing", _drop("asyncapi"), "/asyncapi: not an AsyncAPI 3 document (missing)"),
    ("no info", _drop("info"), "/info: must be"),
    ("version a number", _set("info", "version", value=1.0), '/info/version: must be a non-'),
    ("channel ref to nothing", _set("operations", "placeOrder", "channel",
                                    value={"$ref": "#/channels/nope"}),
     '/operations/placeOrder/channel: $ref "#/channels/nope" points to nothing'),
    ("channel ref not to channels", _set("operations", "placeOrder", "channel",
                                         value={"$ref": "#/components/messages/OrderPlaced"}),
     "/operations/placeOrder/channel: $ref \"#/components/messages/OrderPlaced\" must point to "
     "a channel under #/channels"),
    ("inline channel", _set("operations", "placeOrder", "channel", value={"address": "x"}),
     "/operations/placeOrder/channel: must be a $ref to a channel under #/channels"),
    ("external ref", _set("channels", "orderPlaced", "messages", "OrderPlaced",
                          value={"$ref": "common.yaml#/components/messages/OrderPlaced"}),
     '/channels/orderPlaced/messages/OrderPlaced: external $ref "common.yaml#/components/'),
    ("ref cycle", _both(_set(*MSGS, "A", value={"$ref": "#/components/messages/B"}),
                        _set(*MSGS, "B", value={"$ref": "#/components/messages/A"}),
                        _set("channels", "orderPlaced", "messages", "OrderPlaced",
                             value={"$ref": "#/components/messages/A"})),
     "/components/messages/B: $ref cycle: #/components/messages/A -> #/components/messages/B "
     "-> #/components/messages/A"),
    ("schema ref cycle", _both(
        _set(*MSGS, "OrderPlaced", "payload", value={"$ref": "#/components/schemas/Node"}),
        _set("components", "schemas", value={"Node": {"type": "object", "properties": {
            "next": {"$ref": "#/components/schemas/Node"}}}})),
     "/components/schemas/Node/properties/next: $ref cycle"),
    ("bad location", _set(*MSGS, "OrderPlaced", "correlationId", "location",
                          value="$message.body#/id"),
     '/components/messages/OrderPlaced/correlationId/location: "$message.body#/id" is not a '
     "runtime expression of the form $message.header#/NAME or $message.payload#/json/pointer"),
    ("whole payload", _set(*MSGS, "OrderConfirmed", "correlationId", "location",
                           value="$message.payload#"),
     "/components/messages/OrderConfirmed/correlationId/location: \"$message.payload#\" names "
     "the whole payload"),
    ("input without correlationId", _drop(*MSGS, "OrderPlaced", "correlationId"),
     '/components/messages/OrderPlaced: message "OrderPlaced" has no correlationId'),
    ("output without correlationId", _drop(*MSGS, "OrderConfirmed", "correlationId"),
     '/components/messages/OrderConfirmed: message "OrderConfirmed" has no correlationId'),
    ("input names nothing", _set(BENCH, "input", value="nope"),
     '/x-catga-bench/input: no operation "nope"; operations: confirmOrder, placeOrder'),
    ("input is send", _set(BENCH, "input", value="confirmOrder"),
     '/x-catga-bench/input: operation "confirmOrder" has action send; the input must be a '
     "receive operation (the service consumes it)"),
    ("output names nothing", _set(BENCH, "outputs", value=["nope"]),
     '/x-catga-bench/outputs/0: no operation "nope"; operations: confirmOrder, placeOrder'),
    ("output is receive", _set(BENCH, "outputs", value=["confirmOrder", "placeOrder"]),
     '/x-catga-bench/outputs/1: operation "placeOrder" has action receive; an output must be a '
     "send operation (the service emits it)"),
    ("outputs empty", _set(BENCH, "outputs", value=[]),
     "/x-catga-bench/outputs: no output operation"),
    ("no send operation", _both(_drop(BENCH), _drop("operations", "confirmOrder")),
     "/operations: no output operation"),
    ("no receive operation", _both(_drop(BENCH), _drop("operations", "placeOrder")),
     "/operations: no receive operation"),
    ("two receive operations", _both(_drop(BENCH), _cancel_order),
     "/operations: more than one receive operation (placeOrder, cancelOrder): name the input "
     "with x-catga-bench.input"),
    ("unknown bench key", _set(BENCH, "inputs", value="placeOrder"),
     '/x-catga-bench/inputs: unknown key "inputs"; allowed keys: input, outputs, payload, qos, '
     "jetstream"),
    ("unknown jetstream key", _set(BENCH, "jetstream", "consumer", value="c"),
     '/x-catga-bench/jetstream/consumer: unknown key "consumer"; allowed keys: stream, durable'),
    ("payload not an object", _set(BENCH, "payload", value=[1, 2]),
     "/x-catga-bench/payload: Input should be a valid dictionary (got [1, 2]); allowed: a JSON "
     "object"),
    ("qos out of range", _set(BENCH, "qos", value=3),
     "/x-catga-bench/qos: 3 is not a QoS; allowed: 0, 1 or 2"),
    ("qos not a number", _set(BENCH, "qos", value="1"), "/x-catga-bench/qos: "),
    ("bench not a mapping", _set(BENCH, value=["placeOrder"]), "/x-catga-bench: must be a"),
    ("server protocol", _set("servers", "local", "protocol", value="amqp"),
     '/servers/local/protocol: "amqp" is not read; allowed: http, https, nats, redis'),
    ("server host with scheme", _set("servers", "local", "host", value="nats://x:4222"),
     "/servers/local/host: "),
    ("server pathname", _set("servers", "local", "pathname", value="base"),
     "/servers/local/pathname: "),
    ("address missing", _drop("channels", "orderConfirmed", "address"),
     "/channels/orderConfirmed/address: missing"),
    ("address with parameters", _set("channels", "orderPlaced", "address",
                                     value="orders.{region}.placed"),
     '/channels/orderPlaced/address: "orders.{region}.placed" has parameters'),
    ("action", _set("operations", "placeOrder", "action", value="publish"),
     '/operations/placeOrder/action: "publish" is not an action; allowed: receive, send'),
    ("invalid payload schema", _set(*MSGS, "OrderPlaced", "payload", "properties", "amount",
                                    "type", value="numbr"),
     "/components/messages/OrderPlaced/payload: not a valid JSON Schema (at /properties/amount/"
     "type): "),
    ("payload not a schema", _set(*MSGS, "OrderPlaced", "payload", value=[1]),
     "/components/messages/OrderPlaced/payload: must be a JSON Schema object"),
    ("schema format", _set(*MSGS, "OrderPlaced", "payload",
                           value={"schemaFormat": "application/vnd.apache.avro;version=1.9.0",
                                  "schema": {"type": "record"}}),
     '/components/messages/OrderPlaced/payload/schemaFormat: "application/vnd.apache.avro;'),
    ("two input messages", _both(
        _drop("operations", "placeOrder", "messages"),
        _set("channels", "orderPlaced", "messages", "Other",
             value={"$ref": "#/components/messages/OrderConfirmed"})),
     "/operations/placeOrder: the input operation carries 2 messages"),
]


@pytest.mark.parametrize(("change", "expected"), [(c, e) for _, c, e in BAD],
                         ids=[name for name, _, _ in BAD])
def test_each_problem_names_the_file_and_the_pointer(
        tmp_path: Path, change: Callable[[dict[str, Any]], None], expected: str) -> None:
    doc = copy.deepcopy(good())
    change(doc)
    path = write(tmp_path, doc)
    assert f"{path}: {expected}" in load_error(path)


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in load_error(tmp_path / "spec.yaml")


def test_unreadable_yaml_gives_the_line(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("asyncapi: 3.0.0\ninfo:\n  title: [unclosed\n  version: 1\n",
                    encoding="utf-8")
    text = load_error(path)
    assert "line 4" in text and "not valid YAML" in text


@pytest.mark.parametrize("content", ["- a\n- b\n", "just text\n", ""])
def test_the_top_must_be_a_mapping(tmp_path: Path, content: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(content, encoding="utf-8")
    assert "not a mapping" in load_error(path)
