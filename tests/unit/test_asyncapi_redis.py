"""Redis Streams in the AsyncAPI loader: ``x-catga-bench.redis`` (its defaults, every bad value
as one ConfigError line naming the file and the JSON pointer), a channel's ``servers`` list, and
the broker ``--sut asyncapi`` picks for the input (docs/sut.md, "Redis Streams")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from catga_bench.errors import ConfigError
from catga_bench.workload.asyncapi import RedisExt, SutSpec, load_spec

ORDERS = Path(__file__).parent / "specs" / "orders.yaml"
NATS = {"host": "127.0.0.1:4222", "protocol": "nats"}
REDIS = {"host": "127.0.0.1:6379", "protocol": "redis"}


def doc_with(*, redis: Any = None, servers: dict[str, Any] | None = None,
             input_servers: Any = None) -> dict[str, Any]:
    """The unit orders document with ``x-catga-bench.redis``, ``servers`` and the input
    channel's ``servers`` replaced (None: left as they are / absent)."""
    doc: dict[str, Any] = yaml.safe_load(ORDERS.read_text(encoding="utf-8"))
    doc["x-catga-bench"].pop("jetstream")
    if redis is not None:
        doc["x-catga-bench"]["redis"] = redis
    if servers is not None:
        doc["servers"] = servers
    if input_servers is not None:
        doc["channels"]["orderPlaced"]["servers"] = input_servers
    return doc


def load(tmp_path: Path, doc: dict[str, Any]) -> SutSpec:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return load_spec(path)


def load_error(tmp_path: Path, doc: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, doc)
    text = str(info.value)
    assert "\n" not in text, text
    assert text.startswith(f"{tmp_path / 'spec.yaml'}: "), text
    return text


def test_redis_defaults(tmp_path: Path) -> None:
    assert load(tmp_path, doc_with()).bench.redis is None
    spec = load(tmp_path, doc_with(redis={"group": "order-service"}))
    assert spec.bench.redis == RedisExt(group="order-service", purge=False)
    spec = load(tmp_path, doc_with(redis={"purge": True}))
    assert spec.bench.redis == RedisExt(group=None, purge=True)


@pytest.mark.parametrize(("redis", "expected"), [
    ({"purge": "yes"}, "/x-catga-bench/redis/purge: Input should be a valid boolean (got "
                       "\"yes\"); allowed: true or false"),
    ({"purge": 1}, "/x-catga-bench/redis/purge: "),
    ({"purge": None}, "/x-catga-bench/redis/purge: "),
    ({"group": 5}, "/x-catga-bench/redis/group: Input should be a valid string (got 5); "
                   "allowed: the service's consumer group name (a non-empty string)"),
    ({"group": ""}, "/x-catga-bench/redis/group: empty; allowed: the service's consumer group "
                    "name (a non-empty string), or leave group out"),
    ({"group": "g", "stream": "s"}, "/x-catga-bench/redis/stream: unknown key \"stream\"; "
                                    "allowed keys: group, purge"),
    ("order-service", "/x-catga-bench/redis: "),
], ids=["purge-str", "purge-int", "purge-null", "group-int", "group-empty", "unknown-key",
        "not-a-mapping"])
def test_each_bad_redis_value_is_one_line_with_the_pointer(
        tmp_path: Path, redis: Any, expected: str) -> None:
    assert expected in load_error(tmp_path, doc_with(redis=redis))


def test_a_redis_value_that_is_not_a_mapping_says_what_is(tmp_path: Path) -> None:
    assert "allowed: a mapping with group, purge" in load_error(
        tmp_path, doc_with(redis="order-service"))


@pytest.mark.parametrize(("servers", "input_servers", "broker", "host"), [
    ({"local": NATS}, None, "nats", "127.0.0.1:4222"),
    ({"cache": REDIS}, None, "redis", "127.0.0.1:6379"),
    ({}, None, "nats", None),  # no server: NATS, the URL from --nats-url
    ({"bus": NATS, "cache": REDIS}, None, "nats", "127.0.0.1:4222"),
    ({"bus": NATS, "cache": REDIS}, [{"$ref": "#/servers/cache"}], "redis", "127.0.0.1:6379"),
    ({"cache": REDIS, "bus": NATS}, [{"$ref": "#/servers/bus"}], "nats", "127.0.0.1:4222"),
    ({"web": {"host": "127.0.0.1:8080", "protocol": "http"}, "cache": REDIS,
      "cache2": {"host": "10.0.0.2:6380", "protocol": "redis"}},
     [{"$ref": "#/servers/web"}, {"$ref": "#/servers/cache2"}], "redis", "10.0.0.2:6380"),
], ids=["nats-only", "redis-only", "none", "both", "channel-names-redis", "channel-names-nats",
        "channel-names-second-redis"])
def test_the_input_broker(tmp_path: Path, servers: dict[str, Any], input_servers: Any,
                          broker: str, host: str | None) -> None:
    spec = load(tmp_path, doc_with(servers=servers, input_servers=input_servers))
    assert spec.input_broker() == broker
    server = spec.broker_server()
    assert (server.host if server is not None else None) == host


def test_channel_servers_are_read(tmp_path: Path) -> None:
    spec = load(tmp_path, doc_with(servers={"bus": NATS, "cache": REDIS},
                                   input_servers=[{"$ref": "#/servers/cache"}]))
    assert spec.channels["orderPlaced"].servers == ["cache"]
    assert spec.channels["orderConfirmed"].servers == []


@pytest.mark.parametrize(("input_servers", "expected"), [
    ("cache", "/channels/orderPlaced/servers: must be a list of $refs to servers under "
              "#/servers; got a string"),
    (["cache"], "/channels/orderPlaced/servers/0: must be a $ref to a server under #/servers"),
    ([{"$ref": "#/servers/nope"}], "/channels/orderPlaced/servers/0: $ref \"#/servers/nope\" "
                                   "must point to a server under #/servers "
                                   "(\"#/servers/NAME\"); servers: cache"),
    ([{"$ref": "#/channels/orderPlaced"}], "/channels/orderPlaced/servers/0: $ref "),
], ids=["not-a-list", "not-a-ref", "unknown-server", "not-a-server"])
def test_bad_channel_servers_are_one_line_with_the_pointer(
        tmp_path: Path, input_servers: Any, expected: str) -> None:
    doc = doc_with(servers={"cache": REDIS}, input_servers=input_servers)
    assert expected in load_error(tmp_path, doc)
