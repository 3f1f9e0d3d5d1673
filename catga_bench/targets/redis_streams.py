"""A black-box system under test described by an AsyncAPI 3 document, over Redis Streams
(``--sut asyncapi`` when :meth:`~catga_bench.workload.asyncapi.SutSpec.input_broker` is
``redis``; docs/sut.md, "Redis Streams").

A channel's ``address`` is a stream key. Redis Streams entries have fields and no headers, so
the wire convention is:

* the JSON payload goes in the field ``payload`` (:data:`PAYLOAD_FIELD`);
* a header-located correlation id (``$message.header#/NAME``) goes in the field ``NAME``; any
  other field of an output entry is read as a header too;
* a payload-located one (``$message.payload#/json/pointer``) is inside the JSON, as on NATS.

**Input.** ``XADD <input stream> * payload <json> [NAME <correlation id>]``, whatever the QoS:
the entry is stored once ``XADD`` returns its id, and that counts as *accepted*. A stream
stores every entry, so QoS 0 is at-least-once on the wire here too (the ledger still judges
the run at the QoS asked for: a lost message is reported, not gated, at QoS 0). Inputs are
queued and written by one task, in the order offered, in pipelines of up to :data:`BATCH`
``XADD`` s (one round trip each; no task per message).

**Outputs.** Every output stream is read with ``XREAD BLOCK`` from the last entry id it held at
:meth:`RedisStreamsTarget.open` (``XREVRANGE key + - COUNT 1``; ``0-0`` for an empty or missing
stream), read before the first input goes out: nothing written earlier is read and nothing
written after is missed. Each entry goes to :meth:`~catga_bench.targets.blackbox.OutputReader.
receive`, the same classification as NATS (handled, duplicate, unexpected, late,
nonconformant; lost when none came).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson

from catga_bench.errors import ConfigError
from catga_bench.targets.base import OutcomeSink, SystemFigures, TargetUnavailable
from catga_bench.targets.base import wait_for_outcomes as _wait
from catga_bench.targets.blackbox import (
    LATE_GRACE_S,
    BlackBoxTarget,
)
from catga_bench.workload.asyncapi import SutSpec
from catga_bench.workload.plan import RunPlan
from core import ErrorCode, Result

log = logging.getLogger("catga.bench")

#: the entry field that holds the JSON payload (input and outputs)
PAYLOAD_FIELD = "payload"
#: XADDs per pipeline (one round trip) at most
BATCH = 512
#: entries per XREAD call at most, and how long one blocks (ms)
READ_COUNT = 1000
BLOCK_MS = 500
#: the id before every entry: where an empty or missing stream is read from
START_ID = b"0-0"

#: an entry's fields as redis-py returns them (``decode_responses=False``)
Fields = Mapping[bytes, bytes]


def input_fields(payload: dict[str, Any], headers: Mapping[str, str]) -> dict[str, bytes | str]:
    """The fields of one input entry: ``payload`` (the JSON payload, bytes) and one field per
    header (a header-located correlation id: ``{"Catga-Correlation-Id": "<run>.0.17"}``).

    Raises:
        ValueError: a header is named ``payload`` (the field is the payload's).
    """
    if PAYLOAD_FIELD in headers:
        raise ValueError(f"a header named {PAYLOAD_FIELD!r} clashes with the entry field that "
                         "holds the payload")
    return {PAYLOAD_FIELD: orjson.dumps(payload), **headers}


def entry_parts(fields: Fields) -> tuple[bytes, dict[str, str]]:
    """An output entry's payload bytes (``b""`` when it has no ``payload`` field) and its other
    fields as headers (names and values decoded as UTF-8, undecodable bytes replaced)."""
    body = b""
    headers: dict[str, str] = {}
    for name, value in fields.items():
        key = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        if key == PAYLOAD_FIELD:
            body = value if isinstance(value, bytes) else str(value).encode()
        else:
            headers[key] = (value.decode("utf-8", "replace") if isinstance(value, bytes)
                            else str(value))
    return body, headers


async def connect_redis(url: str, what: str) -> Any:
    """A ``redis.asyncio.Redis`` client for ``url`` that answered ``PING``. ``what`` names the
    server in the error.

    Raises:
        TargetUnavailable: the server cannot be reached, or ``url`` is not a Redis URL (one
            line naming ``url``).
    """
    import redis.asyncio as aioredis
    import redis.exceptions

    client: Any = None
    try:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)
        await asyncio.wait_for(client.ping(), timeout=8.0)
    except (OSError, redis.exceptions.RedisError, TimeoutError, ValueError) as exc:
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()
        detail = str(exc).replace("\n", " ")
        raise TargetUnavailable(f"{what} {url} cannot be reached: {type(exc).__name__}: "
                                f"{detail}") from None
    return client


class RedisStreamsTarget(BlackBoxTarget):
    """The service ``spec`` describes, driven over Redis Streams (see the module docstring).

    Args:
        spec: the loaded AsyncAPI document.
        url: the Redis server (``--redis-url``); default: the document's redis server
            (:meth:`~catga_bench.workload.asyncapi.SutSpec.broker_server`).
        late_grace_s: how long outputs are still read after the drain deadline (and counted
            late, their messages staying lost).
        run: the id a distributed run's master shares with every generator (their
            correlation ids start ``<run>-``; a sibling's outputs are left to it); None for a
            run with one generator.

    Raises:
        ConfigError: the input's correlation id is a header named ``payload``.

    Raises from :meth:`open`: TargetUnavailable (the server cannot be reached, or the document
    has no redis server and no URL was given).
    """

    name = "asyncapi"

    def __init__(self, spec: SutSpec, url: str | None = None, *,
                 late_grace_s: float = LATE_GRACE_S, run: str | None = None) -> None:
        self._bind_spec(spec, run)
        server = spec.broker_server() if spec.input_broker() == "redis" else spec.server("redis")
        self.url = url or (server.url() if server is not None else None)
        self.late_grace_s = late_grace_s
        self.publish_errors = 0
        self.read_errors = 0
        op = spec.input_operation()
        corr = self.input_correlation
        if corr is not None and corr.where == "header" and corr.path == PAYLOAD_FIELD:
            raise ConfigError(f"{spec.path}: {op.messages[0].pointer}/correlationId/location: "
                              f"the header {PAYLOAD_FIELD!r} is the entry field that holds the "
                              "payload over Redis Streams; allowed: another header name, or "
                              "$message.payload#/json/pointer")
        #: output stream key -> its output operations (two operations may share a stream)
        self._by_stream: dict[str, list[Any]] = {}
        for out in self.outputs.outputs:
            self._by_stream.setdefault(out.channel, []).append(out)
        #: output stream key -> the id of the last entry read (XREAD reads after it)
        self.read_from: dict[str, bytes] = {}
        self._client: Any = None
        self._sink: OutcomeSink | None = None
        self._queue: list[tuple[int, int, int, dict[str, bytes | str]]] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # ----------------------------------------------------------------- opening
    async def open(self, plan: RunPlan, sink: OutcomeSink) -> None:
        self._sink = sink
        if self.qos is None:
            self.qos = plan.qos
        if self.url is None:
            raise TargetUnavailable(f"{self.spec.path}: no redis server in the document; give "
                                    "one with --redis-url")
        self._client = await connect_redis(self.url, "the system under test's Redis server")
        self.outputs.bind(plan, sink)
        for key in self._by_stream:  # before the first input: nothing older, nothing missed
            last = await self._client.xrevrange(key, "+", "-", count=1)
            self.read_from[key] = last[0][0] if last else START_ID
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read(), name="outputs-redis"),
                       loop.create_task(self._write(), name="inputs-redis")]

    # ----------------------------------------------------------------- sending
    def offer(self, stream: int, seq: int, copies: int = 1) -> None:
        payload, headers = self.input_for(stream, seq)
        self._queue.append((stream, seq, copies, input_fields(payload, headers)))
        self._wake.set()

    async def _write(self) -> None:
        """XADD the queued inputs in the order offered, up to :data:`BATCH` a round trip; each
        copy is accepted once its XADD returned an id, a known failure when it failed."""
        client, key = self._client, self.input_address
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
                pipe = client.pipeline(transaction=False)
                for _, _, copies, fields in batch:
                    for _ in range(copies):
                        pipe.xadd(key, fields)
                results: list[Any]
                try:
                    results = await pipe.execute(raise_on_error=False)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    results = [exc] * sum(copies for _, _, copies, _ in batch)
                i = 0
                for stream, seq, copies, _ in batch:
                    for copy in range(copies):
                        result = results[i]
                        i += 1
                        self._settle(stream, seq, copy == 0,
                                     result if isinstance(result, BaseException) else None)

    def _settle(self, stream: int, seq: int, record: bool, exc: BaseException | None) -> None:
        """One copy of an input was stored (``exc`` None) or not."""
        sink = self._sink
        if sink is None:
            return
        if exc is not None:
            self.publish_errors += 1
            if record and sink.completed(stream, seq, Result.failure(
                    ErrorCode.HANDLER_FAILED, f"XADD failed: {exc!r}")):
                for column in range(self.outputs.columns):
                    sink.failed(stream, column, seq)  # never stored: a known failure
            return
        if record:
            sink.accepted(stream, seq)

    # ----------------------------------------------------------------- reading
    async def _read(self) -> None:
        """XREAD BLOCK every output stream after the last id read; each entry to
        :meth:`OutputReader.receive` for each output operation on its stream."""
        client = self._client
        while True:
            try:
                response = await client.xread(self.read_from, count=READ_COUNT, block=BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server went away: retry, each failure counted
                self.read_errors += 1
                log.warning("the system under test's Redis server: XREAD failed: %r", exc)
                await asyncio.sleep(0.5)
                continue
            for name, entries in _streams_of(response):
                key = name.decode() if isinstance(name, bytes) else str(name)
                outs = self._by_stream.get(key, [])
                for entry_id, fields in entries:
                    self.read_from[key] = entry_id
                    body, headers = entry_parts(fields or {})
                    for out in outs:
                        self.outputs.receive(out, body, headers)

    # ----------------------------------------------------------------- closing
    async def close(self, drain_timeout_s: float) -> SystemFigures:
        """Wait for outputs still due (up to ``drain_timeout_s``, or 3 s with none arriving),
        read stragglers for ``late_grace_s`` more (counted late), then disconnect."""
        sink = self._sink
        assert sink is not None
        await _wait(sink, time.perf_counter() + drain_timeout_s, idle_limit_s=3.0)
        self.outputs.late = True
        await asyncio.sleep(self.late_grace_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
        return SystemFigures(transport={"name": "redis", "publish_errors": self.publish_errors,
                                        "read_errors": self.read_errors,
                                        "outputs_received": self.outputs_received,
                                        "outputs_of_siblings": self.outputs.outputs_of_siblings})


def _streams_of(response: Any) -> list[tuple[Any, list[tuple[bytes, Fields]]]]:
    """XREAD's answer as ``[(stream key, [(entry id, fields), ...]), ...]`` (RESP2 gives a
    list of pairs, RESP3 a mapping; no entry: ``None`` or empty)."""
    if not response:
        return []
    if isinstance(response, dict):
        return [(k, v[0] if v and isinstance(v[0], list) else v) for k, v in response.items()]
    return [(k, v) for k, v in response]


async def purge_redis_input(spec: SutSpec, url: str) -> int | None:
    """``x-catga-bench.redis.purge``: trim the input stream to nothing before a run
    (``XTRIM key MAXLEN 0``) and, with ``redis.group``, acknowledge the group's pending
    entries (a killed consumer's leftovers would otherwise be claimed in this run). Returns
    how many entries were removed, or None when nothing is to be purged.

    Raises:
        TargetUnavailable: the Redis server at ``url`` cannot be reached.
    """
    import redis.exceptions

    ext = spec.bench.redis
    if ext is None or not ext.purge:
        return None
    key = spec.input_operation().channel.address
    client = await connect_redis(url, f"the system under test's Redis server (to purge stream "
                                      f"{key})")
    try:
        removed = int(await client.xtrim(key, maxlen=0, approximate=False))
        if ext.group:
            try:
                while pending := await client.xpending_range(key, ext.group, min="-",
                                                             max="+", count=1000):
                    await client.xack(key, ext.group, *[p["message_id"] for p in pending])
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc):  # no group yet: the service creates it
                    raise
        return removed
    finally:
        await client.aclose()


__all__ = ["BATCH", "PAYLOAD_FIELD", "RedisStreamsTarget", "connect_redis", "entry_parts",
           "input_fields", "purge_redis_input"]
