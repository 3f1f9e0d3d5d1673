"""The wire layout of RedisTransport: frames, stream fields, key names and the QoS 0 script.

See the package docstring (:mod:`core.transport.redis`) for how they are used on the broker.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

try:
    from hiredis import pack_command as hiredis_pack
except ImportError:  # pragma: no cover - redis[hiredis] is the declared extra
    hiredis_pack = None

from core.transport.base import TransportError

F_BODY = "body"
F_REPLY = b"~reply"
F_TOKEN = b"~token"
F_DEADLINE = b"~deadline"
QOS0_STREAM_LEN = 100_000
_LEN = struct.Struct("!I")


# KEYS[1] group marker, KEYS[2] grouped-QoS-0 stream; ARGV channel, frame, maxlen.
QOS0_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'f', ARGV[2])
end
return redis.call('PUBLISH', ARGV[1], ARGV[2])
"""
QOS0_SHA = hashlib.sha1(QOS0_SCRIPT.encode()).hexdigest()
LOAD_SCRIPT = ("SCRIPT", "LOAD", QOS0_SCRIPT)
LOAD_SCRIPT_PACKED = hiredis_pack(LOAD_SCRIPT) if hiredis_pack is not None else b""


def pack_frame(meta: bytes, body: bytes) -> bytes:
    return _LEN.pack(len(meta)) + meta + bytes(body)


def unpack_frame(frame: bytes) -> tuple[Any, bytes]:
    """``(decoded JSON meta, body)``; raises ValueError on a frame that is not ours."""
    if len(frame) < _LEN.size:
        raise ValueError("frame shorter than its length prefix")
    (n,) = _LEN.unpack_from(frame)
    end = _LEN.size + n
    if end > len(frame):
        raise ValueError("frame length prefix exceeds the frame")
    return orjson.loads(frame[_LEN.size:end]), frame[end:]


def check_subject(subject: str) -> None:
    if not isinstance(subject, str) or not subject or any(c.isspace() for c in subject):
        raise ValueError(f"subject must be a non-empty string without spaces, got {subject!r}")
    tokens = subject.split(".")
    if "" in tokens:
        raise ValueError(f"subject {subject!r} has an empty token")
    if "*" in tokens or ">" in tokens:
        raise ValueError(f"wildcard subjects are not supported by RedisTransport: {subject!r}")


def flat_fields(headers: Mapping[str, str], body: bytes) -> list[Any]:
    out: list[Any] = []
    for k, v in headers.items():
        if k == F_BODY or k.startswith("~"):
            raise TransportError(f"header name {k!r} is reserved by RedisTransport")
        out.append(k)
        out.append(v)
    out.append(F_BODY)
    out.append(body if type(body) is bytes else bytes(body))
    return out


def split_fields(
    fields: Mapping[bytes, bytes],
) -> tuple[dict[str, str], bytes, dict[bytes, bytes]]:
    """Stream entry fields -> (headers, body, reserved ``~`` fields)."""
    headers: dict[str, str] = {}
    body = b""
    meta: dict[bytes, bytes] = {}
    for k, v in fields.items():
        if k == b"body":
            body = v
        elif k[:1] == b"~":
            meta[k] = v
        else:
            headers[k.decode(errors="replace")] = v.decode(errors="replace")
    return headers, body, meta


@dataclass(frozen=True, slots=True)
class Keys:
    stream: str
    channel: str
    req: str
    s0: str
    marker: str
