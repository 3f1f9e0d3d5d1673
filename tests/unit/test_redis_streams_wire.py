"""The Redis Streams wire convention of ``--sut asyncapi`` (docs/sut.md, "Redis Streams"): the
input entry's fields, an output entry read back as payload + headers, XREAD's two answer shapes,
and the target's choices (URL, a correlation header that would clash with ``payload``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from catga_bench.errors import ConfigError
from catga_bench.targets.blackbox import input_message
from catga_bench.targets.redis_streams import (
    PAYLOAD_FIELD,
    RedisStreamsTarget,
    _streams_of,
    entry_parts,
    input_fields,
)
from catga_bench.workload.asyncapi import load_spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "order-service-redis" / \
    "asyncapi.yaml"


def test_the_input_entry_has_the_payload_and_a_field_per_header() -> None:
    spec = load_spec(EXAMPLE)
    corr = spec.input_operation().messages[0].correlation
    payload, headers = input_message({"sku": "sku-{seq}"}, corr, "run.0.7", 7)
    fields = input_fields(payload, headers)
    assert fields == {"payload": b'{"sku":"sku-7"}', "Catga-Correlation-Id": "run.0.7"}


def test_a_header_named_payload_is_refused() -> None:
    with pytest.raises(ValueError, match="clashes"):
        input_fields({}, {PAYLOAD_FIELD: "x"})


def test_an_output_entry_is_payload_and_headers() -> None:
    body = orjson.dumps({"order_id": "run.0.7", "status": "confirmed"})
    assert entry_parts({b"payload": body, b"Catga-Correlation-Id": b"run.0.7"}) == (
        body, {"Catga-Correlation-Id": "run.0.7"})
    assert entry_parts({b"other": b"\xff"}) == (b"", {"other": "\ufffd"})


def test_xread_answers_in_both_protocols() -> None:
    entries = [(b"1-0", {b"payload": b"{}"})]
    assert _streams_of(None) == [] and _streams_of([]) == []
    assert _streams_of([[b"out", entries]]) == [(b"out", entries)]  # RESP2
    assert _streams_of({b"out": [entries]}) == [(b"out", entries)]  # RESP3


def _doc(tmp_path: Path, change: dict[str, Any]) -> Path:
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    doc["x-catga-bench"].pop("process")
    for pointer, value in change.items():
        node = doc
        *parents, last = pointer.split("/")
        for key in parents:
            node = node[key]
        node[last] = value
    path = tmp_path / "asyncapi.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def test_the_url_is_the_documents_redis_server_unless_given(tmp_path: Path) -> None:
    spec = load_spec(_doc(tmp_path, {"servers/broker/host": "10.0.0.9:6380"}))
    assert RedisStreamsTarget(spec).url == "redis://10.0.0.9:6380"
    assert RedisStreamsTarget(spec, "redis://h:1").url == "redis://h:1"
    target = RedisStreamsTarget(spec)
    assert (target.input_address, list(target.read_from)) == ("orders:placed", [])


def test_a_correlation_header_named_payload_is_a_config_error(tmp_path: Path) -> None:
    path = _doc(tmp_path, {"components/messages/OrderPlaced/correlationId/location":
                           "$message.header#/payload"})
    with pytest.raises(ConfigError) as info:
        RedisStreamsTarget(load_spec(path))
    assert str(info.value).startswith(f"{path}: /components/messages/OrderPlaced/correlationId/"
                                      "location: the header 'payload' is the entry field")
    assert "\n" not in str(info.value)
