"""``catga-bench bench-brokers``: the transports against the raw clients, in the same run.

Each figure is a ratio: the transport doing an operation divided by the raw client (nats-py,
redis-py) doing the same operation on the same broker moments before — absolute numbers on a
shared 2-core machine mean little, ratios do. Best of ``--repeats`` for each side.

Figures (goals from the real-brokers issue):

* ``nats_qos0_publish``: publish N messages + flush, ``NatsTransport`` / ``nc.publish`` (>= 0.5).
* ``nats_qos0_pubsub``: publish -> subscriber received all N (>= 0.5).
* ``nats_send``: ``RemoteMediator.send`` through ``MediatorEndpoint`` and a mediator, 64 in
  flight / raw ``nc.request`` to a raw responder, 64 in flight (>= 0.6).
* ``nats_qos1``: JetStream publish (256 in flight) -> durable pull consumer -> ack, until every
  message is acked, through the transport / raw nats-py (>= 0.7); lost must be 0.
* ``redis_qos0_publish`` (>= 0.5) and ``redis_qos1``: ``XADD`` -> consumer group ``XREADGROUP``
  -> ``XACK`` (reported; lost 0). The raw side sends non-transactional pipelines of 256 commands
  (redis-py at its best); the transport publishes one message per call, 64/256 in flight.

By default private brokers are started on free ports (``--nats-url`` / ``--redis-url`` use
existing ones instead). Exit code 0 when every goal is met, 1 otherwise, 3 when a broker cannot
be started or reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from catga_bench.errors import EXIT_ENVIRONMENT, EXIT_FAIL, EXIT_PASS
from core import Mediator, QoS, Request
from core.transport import (
    BrokerUnavailable,
    Delivery,
    MediatorEndpoint,
    RemoteMediator,
    TypeRegistry,
    encode,
    open_transport,
)

#: ratio goals from the real-brokers issue; None = reported without a goal (the issue sets the
#: QoS 1 goal for JetStream; Redis Streams' is measured against redis-py's best pipelining)
GOALS: dict[str, float | None] = {
    "nats_qos0_publish": 0.5, "nats_qos0_pubsub": 0.5, "nats_send": 0.6, "nats_qos1": 0.7,
    "redis_qos0_publish": 0.5, "redis_qos1": None,
}

Quote = make_dataclass("Quote", [("amount", int, 0)], bases=(Request,), slots=True)


@dataclass
class Figure:
    """One comparison: messages/s of each side (best of the repeats) and their ratio."""

    name: str
    raw_rate: float
    ours_rate: float
    goal: float | None
    raw_p99_ms: float | None = None
    ours_p99_ms: float | None = None
    lost: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.ours_rate / self.raw_rate if self.raw_rate else 0.0

    @property
    def passed(self) -> bool:
        return self.lost == 0 and (self.goal is None or self.ratio >= self.goal)


def _envelope() -> tuple[dict[str, str], bytes]:
    """Headers and body of a typical small message (what every side sends)."""
    return encode(Quote(amount=42, qos=QoS.AT_LEAST_ONCE), TypeRegistry([Quote]))


def _p99(samples: list[float]) -> float | None:
    if not samples:
        return None
    s = sorted(samples)
    return round(s[min(len(s) - 1, int(len(s) * 0.99))] * 1000, 3)


async def _concurrent(n: int, in_flight: int, op: Callable[[int], Awaitable[Any]],
                      latencies: list[float]) -> None:
    """Run ``op(i)`` for i in 0..n-1 with at most ``in_flight`` awaiting at once."""
    it = iter(range(n))

    async def worker() -> None:
        perf = time.perf_counter
        for i in it:
            t = perf()
            await op(i)
            latencies.append(perf() - t)

    await asyncio.gather(*(worker() for _ in range(in_flight)))


async def _best(repeats: int, run: Callable[[int], Awaitable[tuple[float, float | None, int]]]
                ) -> tuple[float, float | None, int]:
    best: tuple[float, float | None, int] = (0.0, None, 0)
    lost = 0
    for r in range(repeats):
        gc.collect()
        rate, p99, lost_r = await run(r)
        lost += lost_r
        if rate > best[0]:
            best = (rate, p99, 0)
    return best[0], best[1], lost


async def _transport_qos1(t: Any, subject: str, group: str, count: int, body: bytes,
                          headers_for: Callable[[int], dict[str, str]]
                          ) -> tuple[float, float | None, int]:
    """Through a transport: ``count`` QoS 1 publishes (256 in flight) to ``subject``, consumed
    by ``group`` and acked; (msg/s until every one was consumed, publish P99 ms, lost)."""
    seen: set[int] = set()
    done = asyncio.Event()
    lat: list[float] = []

    async def h(d: Delivery) -> None:
        seen.add(int(d.headers["i"]))
        await d.ack()
        if len(seen) >= count:
            done.set()

    sub = await t.subscribe(subject, h, qos=QoS.AT_LEAST_ONCE, group=group, max_in_flight=256)
    t0 = time.perf_counter()
    await _concurrent(count, 256, lambda i: t.publish(subject, headers_for(i), body,
                                                      qos=QoS.AT_LEAST_ONCE), lat)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 60)
    rate = count / (time.perf_counter() - t0)
    await sub.stop()
    return rate, _p99(lat), count - len(seen)


# ------------------------------------------------------------------------------ NATS
@dataclass(frozen=True, slots=True)
class _NatsRun:
    """What every NATS figure measures with: the raw client, the transport and the message."""

    nc: Any
    t: Any
    headers: dict[str, str]
    body: bytes
    n: int
    repeats: int


async def nats_figures(url: str, n: int, repeats: int) -> list[Figure]:
    """The NATS figures: QoS 0 publish, QoS 0 publish -> subscribe, send, JetStream QoS 1."""
    import nats

    headers, body = _envelope()
    nc = await nats.connect(url, max_reconnect_attempts=1)
    t = open_transport("nats", url)
    await t.connect()
    run = _NatsRun(nc, t, headers, body, n, repeats)
    try:
        return [
            await _nats_qos0_publish(run),
            await _nats_qos0_pubsub(run),
            await _nats_send(run),
            await _nats_qos1(run),
        ]
    finally:
        await t.close()
        await nc.close()


async def _nats_qos0_publish(run: _NatsRun) -> Figure:
    """QoS 0 publish: N publishes + flush."""
    nc, t, headers, body, n = run.nc, run.t, run.headers, run.body, run.n

    async def raw_pub(_: int) -> tuple[float, None, int]:
        t0 = time.perf_counter()
        for _i in range(n):
            await nc.publish("bench.q0", body, headers=headers)
        await nc.flush()
        return n / (time.perf_counter() - t0), None, 0

    async def our_pub(_: int) -> tuple[float, None, int]:
        t0 = time.perf_counter()
        for _i in range(n):
            await t.publish("bench.q0", headers, body)
        await t.flush()
        return n / (time.perf_counter() - t0), None, 0

    raw = await _best(run.repeats, raw_pub)
    ours = await _best(run.repeats, our_pub)
    return Figure("nats_qos0_publish", raw[0], ours[0], GOALS["nats_qos0_publish"])


async def _nats_qos0_pubsub(run: _NatsRun) -> Figure:
    """QoS 0 publish -> subscribe: until the subscriber received all N (or 30 s)."""
    nc, t, headers, body, n = run.nc, run.t, run.headers, run.body, run.n

    async def raw_pubsub(r: int) -> tuple[float, None, int]:
        got = 0
        done = asyncio.Event()

        async def cb(_m: Any) -> None:
            nonlocal got
            got += 1
            if got == n:
                done.set()

        sub = await nc.subscribe(f"bench.ps.raw.{r}", cb=cb, pending_msgs_limit=n * 2,
                                 pending_bytes_limit=-1)
        t0 = time.perf_counter()
        for _i in range(n):
            await nc.publish(f"bench.ps.raw.{r}", body, headers=headers)
        await nc.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 30)
        rate = got / (time.perf_counter() - t0)
        await sub.unsubscribe()
        return rate, None, n - got

    async def our_pubsub(r: int) -> tuple[float, None, int]:
        got = 0
        done = asyncio.Event()

        async def h(_d: Delivery) -> None:
            nonlocal got
            got += 1
            if got == n:
                done.set()

        sub = await t.subscribe(f"bench.ps.ours.{r}", h, max_in_flight=256)
        t0 = time.perf_counter()
        for _i in range(n):
            await t.publish(f"bench.ps.ours.{r}", headers, body)
        await t.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 30)
        rate = got / (time.perf_counter() - t0)
        await sub.stop()
        return rate, None, n - got

    raw = await _best(run.repeats, raw_pubsub)
    ours = await _best(run.repeats, our_pubsub)
    return Figure("nats_qos0_pubsub", raw[0], ours[0], GOALS["nats_qos0_pubsub"],
                  notes=["QoS 0 may drop (slow consumer): counted, not a goal"])


async def _nats_send(run: _NatsRun) -> Figure:
    """Request/reply, 64 in flight: raw ``nc.request`` to a raw responder vs
    ``RemoteMediator.send`` through ``MediatorEndpoint`` and a mediator."""
    nc, t, headers, body = run.nc, run.t, run.headers, run.body
    m = max(1_000, run.n // 20)

    async def echo(msg: Any) -> None:
        await msg.respond(msg.data)

    rsub = await nc.subscribe("bench.req.raw", queue="g", cb=echo)

    async def raw_req(_: int) -> tuple[float, float | None, int]:
        lat: list[float] = []
        t0 = time.perf_counter()
        await _concurrent(m, 64, lambda i: nc.request("bench.req.raw", body, timeout=5,
                                                      headers=headers), lat)
        return m / (time.perf_counter() - t0), _p99(lat), 0

    mediator = Mediator()

    async def quote(q: Any) -> int:
        return int(q.amount) * 2

    mediator.register(Quote, quote)
    registry = TypeRegistry([Quote])
    ep = MediatorEndpoint(mediator, t, registry, max_in_flight=256)
    await ep.serve_requests("bench.req.ours")
    client = RemoteMediator(t, registry, subject_for=lambda _t: "bench.req.ours")
    failures = 0

    async def send_one(_i: int) -> None:
        nonlocal failures
        res = await client.send(Quote(amount=1), timeout_s=5)
        if not res.ok:
            failures += 1

    async def our_req(_: int) -> tuple[float, float | None, int]:
        lat: list[float] = []
        t0 = time.perf_counter()
        await _concurrent(m, 64, send_one, lat)
        return m / (time.perf_counter() - t0), _p99(lat), 0

    raw = await _best(run.repeats, raw_req)
    ours = await _best(run.repeats, our_req)
    await rsub.unsubscribe()
    await ep.close()
    return Figure("nats_send", raw[0], ours[0], GOALS["nats_send"], raw[1], ours[1],
                  lost=failures)


async def _nats_qos1(run: _NatsRun) -> Figure:
    """JetStream QoS 1: publish (256 in flight) -> durable pull consumer -> ack."""
    js = run.nc.jetstream()
    headers, body = run.headers, run.body
    k = max(2_000, run.n // 10)

    async def raw_js(r: int) -> tuple[float, float | None, int]:
        stream = f"BENCHRAW{r}"
        await js.add_stream(name=stream, subjects=[f"benchraw{r}.>"])
        psub = await js.pull_subscribe(f"benchraw{r}.x", durable=f"raw{r}")
        seen: set[int] = set()
        lat: list[float] = []

        async def consume() -> None:
            while len(seen) < k:
                try:
                    msgs = await psub.fetch(256, timeout=1)
                except Exception:  # a fetch timeout: try again
                    continue
                for msg in msgs:
                    seen.add(int(msg.headers["i"]))
                    await msg.ack()

        t0 = time.perf_counter()
        consumer = asyncio.create_task(consume())
        await _concurrent(k, 256, lambda i: js.publish(
            f"benchraw{r}.x", body, headers={**headers, "Nats-Msg-Id": f"r{r}-{i}",
                                             "i": str(i)}), lat)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(consumer, 60)
        rate = k / (time.perf_counter() - t0)
        await js.delete_stream(stream)
        return rate, _p99(lat), k - len(seen)

    async def our_js(r: int) -> tuple[float, float | None, int]:
        return await _transport_qos1(
            run.t, f"catga.bench{r}.x", f"ours{r}", k, body,
            lambda i: {**headers, "Nats-Msg-Id": f"o{r}-{i}", "i": str(i)})

    raw = await _best(run.repeats, raw_js)
    ours = await _best(run.repeats, our_js)
    return Figure("nats_qos1", raw[0], ours[0], GOALS["nats_qos1"], raw[1], ours[1],
                  lost=ours[2] + raw[2], notes=["end to end: publish with ack, consume, ack"])


# ------------------------------------------------------------------------------ Redis
async def redis_figures(url: str, n: int, repeats: int) -> list[Figure]:
    import redis.asyncio as aioredis

    headers, body = _envelope()
    out: list[Figure] = []
    r = aioredis.from_url(url, max_connections=1024)
    t = open_transport("redis", url)
    await t.connect()
    try:
        frame = json.dumps({"h": headers, "b": body.decode()}).encode()
        m = max(2_000, n // 10)

        async def pipelined(count: int, add: Callable[[Any, int], None],
                            lat: list[float]) -> None:
            """The raw client at its best: non-transactional pipelines of 256 commands."""
            for start in range(0, count, 256):
                t1 = time.perf_counter()
                pipe = r.pipeline(transaction=False)
                for i in range(start, min(count, start + 256)):
                    add(pipe, i)
                await pipe.execute()
                lat.append(time.perf_counter() - t1)

        async def raw_pub(_: int) -> tuple[float, float | None, int]:
            lat: list[float] = []
            t0 = time.perf_counter()
            await pipelined(m, lambda p, _i: p.publish("bench:q0", frame), lat)
            return m / (time.perf_counter() - t0), _p99(lat), 0

        async def our_pub(_: int) -> tuple[float, float | None, int]:
            lat: list[float] = []
            t0 = time.perf_counter()
            await _concurrent(m, 64, lambda _i: t.publish("bench.q0", headers, body), lat)
            await t.flush()  # delivered to Redis, not just queued
            return m / (time.perf_counter() - t0), _p99(lat), 0

        raw = await _best(repeats, raw_pub)
        ours = await _best(repeats, our_pub)
        out.append(Figure("redis_qos0_publish", raw[0], ours[0], GOALS["redis_qos0_publish"],
                          raw[1], ours[1]))

        fields = {**headers, "body": body}

        async def raw_stream(rep: int) -> tuple[float, float | None, int]:
            key = f"benchraw:{rep}"
            await r.xgroup_create(key, "g", id="0", mkstream=True)
            seen: set[int] = set()
            lat: list[float] = []

            async def consume() -> None:
                while len(seen) < m:
                    resp = await r.xreadgroup("g", "c", {key: ">"}, count=256, block=100)
                    for _key, entries in resp or []:
                        ids = []
                        for entry_id, f in entries:
                            seen.add(int(f[b"i"]))
                            ids.append(entry_id)
                        if ids:
                            await r.xack(key, "g", *ids)

            t0 = time.perf_counter()
            consumer = asyncio.create_task(consume())
            await pipelined(m, lambda p, i: p.xadd(key, {**fields, "i": str(i)}), lat)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(consumer, 60)
            rate = m / (time.perf_counter() - t0)
            await r.delete(key)
            return rate, _p99(lat), m - len(seen)

        async def our_stream(rep: int) -> tuple[float, float | None, int]:
            return await _transport_qos1(t, f"catga.bench{rep}.x", "g", m, body,
                                         lambda i: {**headers, "i": str(i)})

        raw = await _best(repeats, raw_stream)
        ours = await _best(repeats, our_stream)
        out.append(Figure("redis_qos1", raw[0], ours[0], GOALS["redis_qos1"], raw[1], ours[1],
                          lost=raw[2] + ours[2],
                          notes=["end to end: XADD, XREADGROUP, XACK"]))
    finally:
        await t.close()
        await r.aclose()
    return out


# ------------------------------------------------------------------------------ CLI
@contextlib.asynccontextmanager
async def _brokers(args: argparse.Namespace) -> AsyncIterator[dict[str, str]]:
    from catga_bench.processes.brokers import BrokerProcess

    started: list[BrokerProcess] = []
    urls: dict[str, str] = {}
    try:
        for kind in args.transports:
            given = getattr(args, f"{kind}_url")
            if given:
                urls[kind] = given
            else:
                b = BrokerProcess(kind).start()
                started.append(b)
                urls[kind] = b.url
        yield urls
    finally:
        for b in started:
            b.cleanup()


async def run(args: argparse.Namespace) -> list[Figure]:
    figures: list[Figure] = []
    async with _brokers(args) as urls:
        if "nats" in urls:
            figures += await nats_figures(urls["nats"], args.messages, args.repeats)
        if "redis" in urls:
            figures += await redis_figures(urls["redis"], args.messages, args.repeats)
    return figures


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="catga-bench bench-brokers",
        description="Transport throughput and latency as ratios to the raw nats-py / redis-py "
                    "clients measured in the same run (goals: QoS 0 publish >= 0.5, send >= "
                    "0.6, QoS 1 end to end >= 0.7, lost 0).",
    )
    p.add_argument("--transports", default="nats,redis",
                   type=lambda s: [x for x in s.split(",") if x],
                   help="comma list of nats, redis (default: %(default)s)")
    p.add_argument("--nats-url", default=None, help="existing NATS (default: start one)")
    p.add_argument("--redis-url", default=None, help="existing Redis (default: start one)")
    p.add_argument("--messages", type=int, default=100_000,
                   help="messages per QoS 0 measurement (QoS 1 and requests use fewer; "
                        "default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="best of N (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="small counts, one repeat (smoke test)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bad = [t for t in args.transports if t not in ("nats", "redis")]
    if bad:
        sys.stderr.write(f"catga-bench bench-brokers: error: --transports: unknown {bad[0]!r}; "
                         "allowed: nats, redis\n")
        return 2
    if args.quick:
        args.messages, args.repeats = 20_000, 1
    try:
        import uvloop

        figures = uvloop.run(run(args))
    except ImportError:  # pragma: no cover
        figures = asyncio.run(run(args))
    except (BrokerUnavailable, OSError, RuntimeError) as exc:
        sys.stderr.write(f"catga-bench bench-brokers: error: {exc}\n")
        return EXIT_ENVIRONMENT
    console = Console(width=None if sys.stdout.isatty() else 120)
    table = Table(title="transports vs raw clients (same run, best of repeats)")
    for col in ("figure", "raw msg/s", "ours msg/s", "ratio", "goal", "raw p99 ms",
                "ours p99 ms", "lost", "result"):
        table.add_column(col, justify="right" if col not in ("figure",) else "left")
    for f in figures:
        table.add_row(f.name, f"{f.raw_rate:,.0f}", f"{f.ours_rate:,.0f}", f"{f.ratio:.2f}",
                      "-" if f.goal is None else f">= {f.goal:.2f}",
                      str(f.raw_p99_ms or "-"), str(f.ours_p99_ms or "-"),
                      str(f.lost), "PASS" if f.passed else "FAIL")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps([{**asdict(f), "ratio": round(f.ratio, 3),
                                          "passed": f.passed} for f in figures], indent=2))
    return EXIT_PASS if all(f.passed for f in figures) else EXIT_FAIL
