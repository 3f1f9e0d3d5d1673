"""The fault proxy's data model: Toxiproxy's JSON shapes, their validation and its API errors.

Everything here follows Toxiproxy v2's HTTP API (Shopify/toxiproxy, README "HTTP API" and
``api.go`` / ``toxic_collection.go``): the same field names, defaults, error messages and
status codes, so that a client written for Toxiproxy cannot tell the difference.

Units of the toxic attributes (Toxiproxy README, "Toxics"):

============  ==================================================================
latency       ``latency`` ms, ``jitter`` ms (delay = latency +/- jitter)
bandwidth     ``rate`` KB/s (1 KB = 1000 bytes)
slow_close    ``delay`` ms
timeout       ``timeout`` ms (0: drop data and never close until removed)
reset_peer    ``timeout`` ms (TCP RST that long after the first data)
slicer        ``average_size`` bytes, ``size_variation`` bytes, ``delay`` µs
limit_data    ``bytes`` bytes
============  ==================================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

UPSTREAM = "upstream"
DOWNSTREAM = "downstream"
STREAMS = (UPSTREAM, DOWNSTREAM)

#: Attribute names and defaults of each toxic type (Toxiproxy's toxics/*.go structs; every
#: attribute is an integer and is always present in the toxic's JSON, defaults filled in).
TOXIC_ATTRIBUTES: dict[str, dict[str, int]] = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "limit_data": {"bytes": 0},
}


class ApiError(Exception):
    """An API failure answered as ``{"error": message, "status": status}`` (Toxiproxy's
    ``ApiError`` in ``api.go``)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def joined(self, detail: str) -> ApiError:
        """This error with ``": detail"`` appended, as Toxiproxy's ``joinError`` does."""
        return ApiError(f"{self.message}: {detail}", self.status)

    def to_json(self) -> dict[str, Any]:
        """The response body of this error."""
        return {"error": self.message, "status": self.status}


# The error values of Toxiproxy's api.go, same text and status.
ERR_BAD_REQUEST_BODY = ApiError("bad request body", 400)
ERR_MISSING_FIELD = ApiError("missing required field", 400)
ERR_PROXY_NOT_FOUND = ApiError("proxy not found", 404)
ERR_PROXY_ALREADY_EXISTS = ApiError("proxy already exists", 409)
ERR_INVALID_STREAM = ApiError("stream was invalid, can be either upstream or downstream", 400)
ERR_INVALID_TOXIC_TYPE = ApiError("invalid toxic type", 400)
ERR_TOXIC_ALREADY_EXISTS = ApiError("toxic already exists", 409)
ERR_TOXIC_NOT_FOUND = ApiError("toxic not found", 404)


def decode_json(body: bytes) -> Any:
    """The JSON value of a request body; 400 ``bad request body: ...`` when it is not JSON."""
    try:
        return json.loads(body.decode("utf-8") if body else "")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ERR_BAD_REQUEST_BODY.joined(str(exc)) from exc


def _expect_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ERR_BAD_REQUEST_BODY.joined(f"{what} must be a JSON object")
    return value


def _expect_str(obj: dict[str, Any], key: str, default: str) -> str:
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ERR_BAD_REQUEST_BODY.joined(f"field {key!r} must be a string")
    return value


def _expect_bool(obj: dict[str, Any], key: str, default: bool) -> bool:
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ERR_BAD_REQUEST_BODY.joined(f"field {key!r} must be a boolean")
    return value


def _expect_toxicity(obj: dict[str, Any], default: float) -> float:
    value = obj.get("toxicity", default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ERR_BAD_REQUEST_BODY.joined("field 'toxicity' must be a number")
    return float(value)


def parse_attributes(toxic_type: str, raw: Any, base: dict[str, int]) -> dict[str, int]:
    """Validated attributes of a ``toxic_type`` toxic: ``base`` overlaid with ``raw``.

    Integers only (Toxiproxy decodes them into Go ``int``/``int64`` fields, which refuse
    strings, booleans and fractions); unknown keys are ignored, as Go's JSON decoder does.
    Negative values are refused with 400 (Toxiproxy accepts them, with odd effects).
    """
    attrs = dict(base)
    if raw is None:
        return attrs
    raw = _expect_object(raw, "attributes")
    for key in TOXIC_ATTRIBUTES[toxic_type]:
        if key not in raw:
            continue
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ERR_BAD_REQUEST_BODY.joined(
                f"attribute {key!r} of a {toxic_type} toxic must be an integer, not {value!r}"
            )
        if value < 0:
            raise ERR_BAD_REQUEST_BODY.joined(
                f"attribute {key!r} of a {toxic_type} toxic must be >= 0, not {value}"
            )
        attrs[key] = value
    return attrs


@dataclass(slots=True)
class ToxicSpec:
    """A toxic as the API shows it: ``{"attributes", "name", "type", "stream", "toxicity"}``.

    ``toxicity`` is the probability (0..1) that the toxic applies to a connection, drawn once
    per connection (Toxiproxy: ``rand.Float32() < toxicity`` when the toxic starts on a link).
    """

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The toxic's JSON, field order as Toxiproxy marshals it."""
        return {
            "attributes": dict(self.attributes),
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
        }


def parse_new_toxic(body: bytes, exists: Any) -> ToxicSpec:
    """A new toxic from a ``POST /proxies/{proxy}/toxics`` body.

    Checks in Toxiproxy's order (``AddToxicJson``): body is JSON (400), stream is
    upstream/downstream (400, default downstream), name defaults to ``<type>_<stream>``, type
    is known (400 ``invalid toxic type``), name is free (409 ``toxic already exists``, via the
    ``exists(name) -> bool`` callback), attributes are valid (400).
    """
    obj = _expect_object(decode_json(body), "toxic")
    toxic_type = _expect_str(obj, "type", "")
    stream = _expect_str(obj, "stream", "") or DOWNSTREAM
    name = _expect_str(obj, "name", "")
    toxicity = _expect_toxicity(obj, 1.0)
    if stream.lower() not in STREAMS:
        raise ERR_INVALID_STREAM
    stream = stream.lower()
    if not name:
        name = f"{toxic_type}_{stream}"
    if toxic_type not in TOXIC_ATTRIBUTES:
        raise ERR_INVALID_TOXIC_TYPE
    if exists(name):
        raise ERR_TOXIC_ALREADY_EXISTS
    attributes = parse_attributes(toxic_type, obj.get("attributes"), TOXIC_ATTRIBUTES[toxic_type])
    return ToxicSpec(name, toxic_type, stream, toxicity, attributes)


def parse_toxic_update(body: bytes, current: ToxicSpec) -> ToxicSpec:
    """``current`` updated by a ``POST/PATCH /proxies/{proxy}/toxics/{toxic}`` body.

    Only ``attributes`` (merged over the current ones) and ``toxicity`` change, as in
    Toxiproxy's ``UpdateToxicJson``; name, type and stream stay.
    """
    obj = _expect_object(decode_json(body), "toxic")
    toxicity = _expect_toxicity(obj, current.toxicity)
    attributes = parse_attributes(current.type, obj.get("attributes"), current.attributes)
    return ToxicSpec(current.name, current.type, current.stream, toxicity, attributes)


@dataclass(slots=True)
class ProxyInput:
    """The fields of a proxy in a create, update or populate request."""

    name: str
    listen: str
    upstream: str
    enabled: bool


def parse_new_proxy(obj: Any, where: str = "") -> ProxyInput:
    """A proxy to create, from a ``POST /proxies`` body or a ``/populate`` item.

    ``name`` and ``upstream`` are required (400 ``missing required field: name``), ``enabled``
    defaults to true, ``listen`` to ``127.0.0.1:0`` (Toxiproxy: all interfaces; see
    docs/faultproxy.md). ``where`` is appended to missing-field messages (`` at proxy 2``).
    """
    obj = _expect_object(obj, "proxy")
    name = _expect_str(obj, "name", "")
    upstream = _expect_str(obj, "upstream", "")
    listen = _expect_str(obj, "listen", "") or "127.0.0.1:0"
    enabled = _expect_bool(obj, "enabled", True)
    if not name:
        raise ERR_MISSING_FIELD.joined(f"name{where}")
    if not upstream:
        raise ERR_MISSING_FIELD.joined(f"upstream{where}")
    return ProxyInput(name, listen, upstream, enabled)


def parse_proxy_update(body: bytes, current: ProxyInput) -> ProxyInput:
    """``current`` overlaid with a ``POST/PATCH /proxies/{proxy}`` body (absent fields keep
    their value, as in Toxiproxy's ``ProxyUpdate``; the name cannot change)."""
    obj = _expect_object(decode_json(body), "proxy")
    return ProxyInput(
        current.name,
        _expect_str(obj, "listen", current.listen) or current.listen,
        _expect_str(obj, "upstream", current.upstream) or current.upstream,
        _expect_bool(obj, "enabled", current.enabled),
    )


def parse_populate(body: bytes) -> list[ProxyInput]:
    """The proxies of a ``POST /populate`` body (a JSON array), all validated before any is
    applied; a name given twice is a 400 (Toxiproxy: ``duplicate proxy name``)."""
    data = decode_json(body)
    if not isinstance(data, list):
        raise ERR_BAD_REQUEST_BODY.joined("populate expects a JSON array of proxies")
    out: list[ProxyInput] = []
    seen: set[str] = set()
    for i, item in enumerate(data, start=1):
        proxy = parse_new_proxy(item, where=f" at proxy {i}")
        if proxy.name in seen:
            raise ERR_BAD_REQUEST_BODY.joined(f"duplicate proxy name {proxy.name!r}")
        seen.add(proxy.name)
        out.append(proxy)
    return out


def split_host_port(address: str) -> tuple[str, int]:
    """``("127.0.0.1", 8474)`` from ``"127.0.0.1:8474"``; IPv6 as ``"[::1]:8474"``.

    Raises ValueError when there is no port or it is not 0..65535.
    """
    host, sep, port_text = address.rpartition(":")
    if not sep:
        raise ValueError(f"address {address!r}: missing port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"address {address!r}: invalid port {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"address {address!r}: port out of range")
    return host, port


def join_host_port(host: str, port: int) -> str:
    """``"host:port"``, with brackets around an IPv6 host (Go's ``net.JoinHostPort``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
