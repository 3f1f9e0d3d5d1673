"""Fault proxy model: Toxiproxy's JSON shapes, defaults and validation errors, and the slicer's
cut points — without sockets."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from catga_bench.faultproxy.model import (
    TOXIC_ATTRIBUTES,
    ApiError,
    ProxyInput,
    join_host_port,
    parse_new_proxy,
    parse_new_toxic,
    parse_populate,
    parse_proxy_update,
    parse_toxic_update,
    split_host_port,
)
from catga_bench.faultproxy.toxics import TOXIC_TYPES, Slicer


def _body(value: object) -> bytes:
    return json.dumps(value).encode()


def _never(name: str) -> bool:
    return False


def test_toxic_defaults_follow_toxiproxy() -> None:
    spec = parse_new_toxic(_body({"type": "latency", "attributes": {"latency": 100}}), _never)
    assert spec.to_json() == {
        "attributes": {"latency": 100, "jitter": 0},
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
    }
    up = parse_new_toxic(_body({"type": "timeout", "stream": "upstream", "toxicity": 0.5}), _never)
    assert (up.name, up.stream, up.toxicity, up.attributes) == (
        "timeout_upstream", "upstream", 0.5, {"timeout": 0})


def test_every_toxic_type_has_a_class_and_attributes() -> None:
    assert set(TOXIC_TYPES) == set(TOXIC_ATTRIBUTES) == {
        "latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data"}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{nope", 400, "bad request body"),
        (_body({"type": "latency", "stream": "sideways"}), 400,
         "stream was invalid, can be either upstream or downstream"),
        (_body({"type": "corrupt"}), 400, "invalid toxic type"),
        (_body({"type": "latency", "attributes": {"latency": "100"}}), 400, "bad request body"),
        (_body({"type": "latency", "attributes": {"latency": 1.5}}), 400, "bad request body"),
        (_body({"type": "latency", "attributes": {"latency": -1}}), 400, "bad request body"),
        (_body({"type": "latency", "attributes": [1]}), 400, "bad request body"),
        (_body({"type": "latency", "toxicity": "all"}), 400, "bad request body"),
    ],
)
def test_bad_toxics_are_refused(body: bytes, status: int, message: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_new_toxic(body, _never)
    assert info.value.status == status
    assert info.value.message.startswith(message)
    assert info.value.to_json() == {"error": info.value.message, "status": status}


def test_toxic_name_taken_is_409_and_checked_after_the_type() -> None:
    with pytest.raises(ApiError) as info:
        parse_new_toxic(_body({"type": "latency"}), lambda name: name == "latency_downstream")
    assert (info.value.status, info.value.message) == (409, "toxic already exists")
    with pytest.raises(ApiError) as info:
        parse_new_toxic(_body({"type": "bogus"}), lambda name: True)
    assert info.value.status == 400


def test_unknown_attributes_are_ignored_like_go() -> None:
    spec = parse_new_toxic(_body({"type": "bandwidth", "attributes": {"rate": 5, "x": 1}}), _never)
    assert spec.attributes == {"rate": 5}


def test_toxic_update_merges_attributes_and_keeps_identity() -> None:
    spec = parse_new_toxic(_body({"type": "slicer", "name": "s", "attributes": {
        "average_size": 10, "size_variation": 2, "delay": 5}}), _never)
    new = parse_toxic_update(_body({"attributes": {"delay": 50}, "toxicity": 0.25,
                                    "type": "latency", "name": "other"}), spec)
    assert (new.name, new.type, new.stream) == ("s", "slicer", "downstream")
    assert new.attributes == {"average_size": 10, "size_variation": 2, "delay": 50}
    assert new.toxicity == 0.25


def test_proxy_fields_defaults_and_missing_fields() -> None:
    proxy = parse_new_proxy({"name": "db", "upstream": "127.0.0.1:5432"})
    assert proxy == ProxyInput("db", "127.0.0.1:0", "127.0.0.1:5432", True)
    with pytest.raises(ApiError) as info:
        parse_new_proxy({"upstream": "x:1"})
    assert (info.value.status, info.value.message) == (400, "missing required field: name")
    with pytest.raises(ApiError) as info:
        parse_new_proxy({"name": "db"})
    assert info.value.message == "missing required field: upstream"
    with pytest.raises(ApiError):
        parse_new_proxy({"name": "db", "upstream": "x:1", "enabled": "yes"})


def test_proxy_update_keeps_absent_fields() -> None:
    current = ProxyInput("db", "127.0.0.1:1000", "127.0.0.1:5432", True)
    assert parse_proxy_update(_body({"enabled": False}), current) == ProxyInput(
        "db", "127.0.0.1:1000", "127.0.0.1:5432", False)


def test_populate_validates_every_item_first() -> None:
    items = parse_populate(_body([{"name": "a", "upstream": "x:1"},
                                  {"name": "b", "upstream": "x:2", "enabled": False}]))
    assert [(p.name, p.enabled) for p in items] == [("a", True), ("b", False)]
    with pytest.raises(ApiError) as info:
        parse_populate(_body([{"name": "a", "upstream": "x:1"}, {"upstream": "x:2"}]))
    assert info.value.message == "missing required field: name at proxy 2"
    with pytest.raises(ApiError) as info:
        parse_populate(_body({"name": "a", "upstream": "x:1"}))
    assert info.value.status == 400
    with pytest.raises(ApiError):
        parse_populate(_body([{"name": "a", "upstream": "x:1"}, {"name": "a", "upstream": "y:1"}]))


def test_host_port_round_trip() -> None:
    assert split_host_port("127.0.0.1:8474") == ("127.0.0.1", 8474)
    assert split_host_port("[::1]:80") == ("::1", 80)
    assert join_host_port("::1", 80) == "[::1]:80"
    assert join_host_port("localhost", 0) == "localhost:0"
    for bad in ("nocolon", "h:port", "h:70000"):
        with pytest.raises(ValueError):
            split_host_port(bad)


class _NoLink:
    def close(self) -> None:
        raise AssertionError("not expected")

    def reset(self) -> None:
        raise AssertionError("not expected")


@pytest.mark.parametrize(("average", "variation"), [(10, 0), (10, 4), (1, 0), (0, 0), (3, 50)])
def test_slicer_cut_points_cover_the_chunk_in_small_pieces(average: int, variation: int) -> None:
    async def cuts() -> list[list[int]]:
        spec = parse_new_toxic(_body({"type": "slicer", "attributes": {
            "average_size": average, "size_variation": variation}}), _never)
        slicer = Slicer(spec, _NoLink(), random.Random(7))
        return [slicer.cut_points(size) for size in (0, 1, 9, 100, 4096)]

    for size, ends in zip((0, 1, 9, 100, 4096), asyncio.run(cuts()), strict=True):
        assert ends[-1] == size
        pieces = [b - a for a, b in zip([0, *ends], ends, strict=False)]
        assert sum(pieces) == size
        assert all(p > 0 for p in pieces) or size == 0
        assert max(pieces) <= max(average + variation, 1)
