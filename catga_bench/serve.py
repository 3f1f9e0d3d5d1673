"""``catga-bench serve``: the reference core as its own process, driven over NATS or Redis.

The process connects to the broker, answers control requests from load generators (see
:mod:`catga_bench.wire`), and serves the requested scenario's handlers: one
:class:`~core.transport.endpoint.MediatorEndpoint` per message stream, at the scenario's QoS
(QoS 0 over core subjects / Pub/Sub, QoS 1 and 2 over JetStream / Redis Streams). What each
handler does is reported back to the generator that sent the message, in batches that are
flushed before the messages are acknowledged. ``/metrics`` exports the core's metrics.

A run's parameters (scenario, QoS, handler count) come from the generators: ``start`` on their
first contact, then a ``join`` keep-alive every second. A core that was killed and restarted
learns the run from the next keep-alive and picks up its durable consumer where the old one left
off (unacknowledged messages are redelivered to it), while the generators keep going.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import itertools
import logging
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from catga_bench.embedded import EmbeddedDriver
from catga_bench.scenario import Scenario
from catga_bench.wire import CTL_SUBJECT, CompletionBatch, done_subject, stream_subject, unpack_seq
from core import CircuitBreaker, ErrorCode, FanoutOutcome, IdempotencyStore, Message, QoS, Result
from core.defects import new_endpoint
from core.transport import (
    BrokerUnavailable,
    Delivery,
    MediatorEndpoint,
    Subscription,
    Transport,
    TypeRegistry,
    open_transport,
)
from core.transport.envelope import H_NATS_DEDUP

log = logging.getLogger("catga.serve")

EXIT_ENVIRONMENT = 3
EXIT_USAGE = 2


class CompletionPublisher:
    """Batches completion records per generator and publishes them every ``interval_s``.

    :meth:`commit` returns once every record added before it was published and flushed to
    the broker; the endpoint awaits it before acknowledging a message.
    """

    def __init__(self, transport: Transport, interval_s: float = 0.002,
                 max_records: int = 4_000, qos: QoS = QoS.AT_MOST_ONCE) -> None:
        self.transport = transport
        self.qos = qos
        self._prefix = f"{os.getpid()}-{time.time_ns()}-"
        self._ids = itertools.count()
        self.interval_s = interval_s
        self.max_records = max_records
        self.batches: dict[int, CompletionBatch] = {}
        self.published_batches = 0
        self.errors = 0
        self._commit: asyncio.Future[None] | None = None
        self._retry: list[tuple[int, CompletionBatch]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="completions")

    def _batch(self, generator: int) -> CompletionBatch:
        b = self.batches.get(generator)
        if b is None:
            b = self.batches[generator] = CompletionBatch()
            self._wake.set()
        return b

    def handled(self, generator: int, stream: int, handler: int, seq: int) -> None:
        self._batch(generator).handled.append([stream, handler, seq])

    def failed(self, generator: int, stream: int, handler: int, seq: int) -> None:
        self._batch(generator).failed.append([stream, handler, seq])

    def result(self, generator: int, stream: int, seq: int, code: str,
               failures: list[list[Any]]) -> None:
        self._batch(generator).results.append([stream, seq, code, failures])

    async def commit(self) -> None:
        """Wait until everything recorded so far is on the broker (raises if publishing
        failed: the caller then leaves its message unacknowledged, to be redelivered)."""
        if self._commit is None:
            self._commit = asyncio.get_running_loop().create_future()
        self._wake.set()
        await asyncio.shield(self._commit)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.interval_s)
            batches, self.batches = self.batches, {}
            fut, self._commit = self._commit, None
            # batches that failed before go first, under their old ids: if the broker did
            # store one (its ack was lost), the generator applies it once all the same
            parts, self._retry = self._retry, []
            for gen, batch in batches.items():
                for part in _split(batch, self.max_records):
                    part.batch_id = f"{self._prefix}{next(self._ids)}"
                    parts.append((gen, part))
            sent = 0
            try:
                for gen, part in parts:
                    await self.transport.publish(done_subject(gen),
                                                 {H_NATS_DEDUP: part.batch_id},
                                                 part.encode(), qos=self.qos)
                    sent += 1
                    self.published_batches += 1
                await self.transport.flush()
            except Exception as exc:
                # keep every record (a handler's report must not vanish with a dropped link);
                # the messages waiting on this commit stay unacknowledged and come back
                self._retry = parts[sent:] + self._retry
                self.errors += 1
                log.warning("could not publish completions (%d batches kept for retry): %s",
                            len(self._retry), exc)
                if fut is not None and not fut.done():
                    fut.set_exception(exc)
                    fut.exception()  # retrieved: waiters see it, the loop does not log it
                self._wake.set()
                await asyncio.sleep(0.1)
                continue
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def close(self) -> None:
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.commit(), 2.0)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _split(batch: CompletionBatch, n: int) -> list[CompletionBatch]:
    if len(batch) <= n:
        return [batch]
    out = []
    for i in range(0, max(len(batch.handled), len(batch.failed), len(batch.results)), n):
        out.append(CompletionBatch(batch.handled[i:i + n], batch.failed[i:i + n],
                                   batch.results[i:i + n]))
    return out


@dataclass
class HandlerFault:
    """A runtime fault on one handler (``"*"``: every handler), set by the ``fault`` control op:
    each call first sleeps ``latency_ms``, then fails with probability ``error_rate`` (a
    retryable ``HANDLER_FAILED`` result, as :class:`~catga_bench.profiles.Failing` gives).
    With ``outage_s`` the fault lifts by itself that many seconds after it was set."""

    handler: str = "*"
    error_rate: float = 0.0
    latency_ms: float = 0.0
    until: float | None = None  # time.monotonic() when it lifts; None: until fault_clear
    injected: int = 0

    def active(self) -> bool:
        return self.until is None or time.monotonic() < self.until

    def as_dict(self) -> dict[str, Any]:
        left = None if self.until is None else max(0.0, round(self.until - time.monotonic(), 3))
        return {"handler": self.handler, "error_rate": self.error_rate,
                "latency_ms": self.latency_ms, "remaining_s": left, "injected": self.injected}


class ServedCore(EmbeddedDriver):
    """The scenario's mediator and handlers, reporting to generators over the broker instead
    of to a local ledger (it never generates load itself)."""

    def __init__(self, scenario: Scenario, publisher: CompletionPublisher, *,
                 handler_count: int | None = None,
                 defects: frozenset[str] = frozenset(),
                 faults: dict[str, HandlerFault] | None = None) -> None:
        self.publisher = publisher
        # handler name (or "*") -> runtime fault; shared with BenchServer, which sets it
        self.faults: dict[str, HandlerFault] = {} if faults is None else faults
        # runtime fault windows of this run: [handler or "*", start, end] in elapsed seconds
        # (end None: until fault_clear); judged by _closed_after_recovery (embedded driver)
        self.fault_windows: list[list[Any]] = []
        super().__init__(scenario, handler_count=handler_count, defects=defects)
        self.registry = TypeRegistry(st.msg_type for st in self.streams)
        self.stream_of = {st.msg_type: st for st in self.streams}

    def wrap_handler(self, stream: int, handler: int, fn: Any) -> Any:
        """Every handler can be given a runtime fault (``fault`` control op); with none set
        the wrapper costs one dict lookup."""
        fn = super().wrap_handler(stream, handler, fn)
        faults = self.faults
        name: list[str] = []  # resolved on the first call (the stream is built after this)

        async def maybe_faulty(msg: Any) -> Any:
            if faults:
                if not name:
                    name.append(self.streams[stream].handlers[handler].name)
                fault = faults.get(name[0]) or faults.get("*")
                if fault is not None and fault.active():
                    if fault.latency_ms:
                        await asyncio.sleep(fault.latency_ms / 1000.0)
                    if fault.error_rate and random.random() < fault.error_rate:
                        fault.injected += 1
                        self.failed(stream, handler, msg.seq)
                        return Result.failure(ErrorCode.HANDLER_FAILED, "injected fault")
            return await fn(msg)

        return maybe_faulty

    def fault_set(self, handler: str, outage_s: float | None) -> None:
        """A runtime fault started now on ``handler`` (lifting by itself after ``outage_s``)."""
        now = self.elapsed_s()
        self.fault_windows.append([handler, now, None if outage_s is None else now + outage_s])

    def faults_cleared(self) -> None:
        """Every runtime fault lifted now (``fault_clear``)."""
        now = self.elapsed_s()
        for w in self.fault_windows:
            if w[2] is None or w[2] > now:
                w[2] = now

    def _recovered_breakers(self) -> list[tuple[CircuitBreaker, float]]:
        """With runtime faults set during the run: the breaker of every handler a fault window
        hit, with the window's end (elapsed seconds), once it has ended. Without: the
        scenario's own outage windows (embedded driver)."""
        if not self.fault_windows:
            return super()._recovered_breakers()
        now = self.elapsed_s()
        return [(breaker, end) for handler, _start, end in self.fault_windows
                if end is not None and end <= now
                for (si, hi), breaker in self._breaker_index.items()
                if handler in ("*", self.streams[si].handlers[hi].name)]

    def handled(self, stream: int, handler: int, seq: int) -> None:
        gen, local = unpack_seq(seq)
        self.publisher.handled(gen, stream, handler, local)

    def failed(self, stream: int, handler: int, seq: int) -> None:
        gen, local = unpack_seq(seq)
        self.publisher.failed(gen, stream, handler, local)

    def start(self) -> None:
        super().start()
        self._tasks[0].cancel()  # no generator on the serving side

    async def on_outcome(self, msg: Message, result: Result[Any], d: Delivery) -> None:
        """Report the message's outcome and make every record durable before the ack."""
        st = self.stream_of[type(msg)]
        gen, local = unpack_seq(msg.seq)  # type: ignore[attr-defined]
        if st.is_event:
            err = result.error
            code = "" if err is None else err.code.value
            failures: list[list[Any]] = []
            value = result.value
            if isinstance(value, FanoutOutcome):
                failures = [[st.name_to_index[n], e.code.value] for n, e in value.failures]
            st.completed += 1
            self.publisher.result(gen, st.index, local, code, failures)
        await self.publisher.commit()

    def stats(self) -> dict[str, Any]:
        """The core's side of the run payload (limiter, breakers, timeouts, loop lag, RSS)."""
        p = self._payload(0)
        keep = ("rejected", "timeouts", "retries", "dead_lettered", "breaker", "loop_lag_hdr",
                "rss_mb", "cpu_s", "timeline")
        return {k: p[k] for k in keep}


@dataclass
class _Run:
    name: str
    qos: int
    handlers: int | None
    core: ServedCore
    endpoints: list[MediatorEndpoint]
    generators: set[int] = field(default_factory=set)


class BenchServer:
    """Answers control requests and serves one scenario at a time.

    Args:
        transport: a connected transport.
        scenarios: scenarios this core may serve, by name.
        defects: seeded core defects (gate tests only).
        max_in_flight: deliveries handled at once per stream.
    """

    def __init__(self, transport: Transport, scenarios: dict[str, Scenario], *,
                 defects: frozenset[str] = frozenset(), max_in_flight: int = 1024,
                 idempotency: IdempotencyStore | None = None,
                 ack_wait_s: float | None = None) -> None:
        self.transport = transport
        self.ack_wait_s = ack_wait_s  # told to generators: how long a redelivery may take
        self.idempotency = idempotency
        self.scenarios = scenarios
        self.defects = defects
        self.max_in_flight = max_in_flight
        self.publisher = CompletionPublisher(transport)
        self.run: _Run | None = None
        self.next_generator = (os.getpid() * 1009 + int(time.time())) % 1_000_000 + 1
        self._ctl: Subscription | None = None
        self.collector: Any = None
        self.faults: dict[str, HandlerFault] = {}  # runtime handler faults (op "fault")

    async def start(self) -> None:
        """Answer control requests; a scenario is served once a generator starts or joins."""
        self.publisher.start()
        self._ctl = await self.transport.subscribe(CTL_SUBJECT, self._on_ctl,
                                                   group="catga-bench-ctl", max_in_flight=8)

    async def serve(self, name: str, qos: int, handlers: int | None) -> _Run:
        """Serve scenario ``name`` at ``qos`` (replacing what was served before)."""
        if self.run is not None:
            await self._stop_run()
        scenario = self.scenarios[name].with_overrides(qos=qos)
        core = ServedCore(scenario, self.publisher, handler_count=handlers,
                          defects=self.defects, faults=self.faults)
        # records of a run at QoS >= 1 (any stream) are stored by the broker before messages
        # are acked
        self.publisher.qos = (QoS.AT_LEAST_ONCE if int(core.max_qos) >= 1
                              else QoS.AT_MOST_ONCE)
        if self.idempotency is not None:  # e.g. Redis: survives a restart of this process
            core.mediator.idempotency = self.idempotency
        core.start()
        endpoints = []
        for st in core.streams:
            ep = new_endpoint(core.mediator, self.transport, core.registry,
                              group=f"catga-core-{st.spec.name}",
                              max_in_flight=self.max_in_flight, on_outcome=core.on_outcome)
            subject = stream_subject(scenario.name, st.spec.name)
            if st.is_event:
                await ep.serve_events(subject, st.qos)
            else:
                await ep.serve_requests(subject)
            endpoints.append(ep)
        self.run = _Run(name, qos, handlers, core, endpoints)
        if self.collector is not None:
            self.collector.mediator = core.mediator
            self.collector.lag_monitor = core.lag
        log.info("serving %s at QoS %d (%d streams, %d handlers)", name, qos, len(core.streams),
                 sum(len(st.handlers) for st in core.streams))
        # Everything allocated so far lives for the whole run: move it out of the collector's
        # reach, so a full collection does not rescan it (measured: 50-65 ms pauses without).
        gc.collect()
        gc.freeze()
        return self.run

    async def _stop_run(self) -> dict[str, Any]:
        run, self.run = self.run, None
        if run is None:
            return {}
        for ep in run.endpoints:
            await ep.close()
        await run.core.finish(drain_timeout_s=2.0)
        stats = run.core.stats()
        stats["endpoint"] = {
            "malformed": sum(sum(ep.malformed.values()) for ep in run.endpoints),
            "rejected_reported": sum(ep.rejected_reported for ep in run.endpoints),
            "rejected_redelivered": sum(ep.rejected_redelivered for ep in run.endpoints),
            "rejected_dropped": sum(ep.rejected_dropped for ep in run.endpoints),
        }
        stats["transport"] = self.transport.stats.as_dict()
        return stats

    async def _on_ctl(self, d: Delivery) -> None:
        try:
            req = orjson.loads(d.body)
            reply = await self._control(req)
        except Exception as exc:  # a bad request must not kill the server
            log.warning("bad control request: %r", exc)
            reply = {"ok": False, "error": str(exc)}
        if d.reply_to:
            await d.respond({}, orjson.dumps(reply))

    async def _control(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "ping":
            return {"ok": True, "serving": self.run.name if self.run else None}
        if op in ("start", "join"):
            name = str(req["scenario"])
            if name not in self.scenarios:
                return {"ok": False, "error": f"this core does not know scenario {name!r}; "
                        f"it serves: {', '.join(sorted(self.scenarios)) or 'none'} "
                        "(start it with --scenario FILE)"}
            qos = int(req["qos"])
            handlers = req.get("handlers")
            run = self.run
            same = (run is not None and run.name == name and run.qos == qos
                    and run.handlers == handlers)
            if run is not None and not same and run.generators:
                return {"ok": False, "error": f"this core is busy serving {run.name} at QoS "
                        f"{run.qos} for {len(run.generators)} generator(s)"}
            if run is None or not same:
                run = await self.serve(name, qos, handlers)
            if op == "start":
                gen = self.next_generator
                self.next_generator += 1
            else:  # a generator's keep-alive: a restarted core learns the run from it
                gen = int(req["generator"])
            run.generators.add(gen)
            return {"ok": True, "generator": gen,
                    "core": {"pid": os.getpid(), "ack_wait_s": self.ack_wait_s}}
        if op == "stop":
            run = self.run
            gen = int(req.get("generator", 0))
            if run is None:
                return {"ok": True, "stats": {}}
            run.generators.discard(gen)
            if run.generators:
                return {"ok": True, "stats": {}}  # the last generator gets the core's stats
            return {"ok": True, "stats": await self._stop_run()}
        if op == "fault":
            return self._set_fault(req)
        if op == "fault_clear":
            cleared = [f.as_dict() for f in self.faults.values()]
            self.faults.clear()
            if self.run is not None:
                self.run.core.faults_cleared()
            return {"ok": True, "cleared": cleared}
        return {"ok": False, "error": f"unknown op {op!r}; allowed: start, join, stop, ping, "
                "fault, fault_clear"}

    def _set_fault(self, req: dict[str, Any]) -> dict[str, Any]:
        """``{"op": "fault", "handler": NAME|"*", "error_rate": 0..1, "latency_ms": N,
        "outage_s": N}``: wrap that handler's calls with a fault (replaces its previous one).
        ``outage_s`` alone means every call fails for that long."""
        handler = str(req.get("handler", "*"))
        known = sorted({h.name for st in self.run.core.streams for h in st.handlers}) \
            if self.run is not None else None
        if handler != "*" and known is not None and handler not in known:
            return {"ok": False, "error": f"fault: unknown handler {handler!r}; this run's "
                    f"handlers: *, {', '.join(known)}"}
        outage = req.get("outage_s")
        rate = req.get("error_rate", 1.0 if outage is not None else 0.0)
        latency = req.get("latency_ms", 0.0)
        try:
            rate, latency = float(rate), float(latency)
            outage = None if outage is None else float(outage)
        except (TypeError, ValueError):
            return {"ok": False, "error": "fault: error_rate, latency_ms and outage_s must be "
                    "numbers"}
        if not 0.0 <= rate <= 1.0:
            return {"ok": False, "error": f"fault: error_rate must be within 0..1, got {rate}"}
        if latency < 0 or (outage is not None and outage <= 0):
            return {"ok": False, "error": "fault: latency_ms must be >= 0 and outage_s > 0"}
        fault = HandlerFault(handler, rate, latency,
                             None if outage is None else time.monotonic() + outage)
        self.faults[handler] = fault
        if self.run is not None:
            self.run.core.fault_set(handler, outage)
        log.warning("runtime fault on handler %s: %s", handler, fault.as_dict())
        return {"ok": True, "fault": fault.as_dict()}

    async def close(self) -> None:
        if self._ctl is not None:
            await self._ctl.stop()
        await self._stop_run()
        await self.publisher.close()


def load_scenarios(paths: list[Path]) -> dict[str, Scenario]:
    """Scenarios declared by the ``CatgaUser`` subclasses in the given files (directories are
    searched for ``*.py``). Raises ValueError naming a file that declares none."""
    os.environ.setdefault("LOCUST_SKIP_MONKEY_PATCH", "1")  # no gevent in the core process
    from catga_bench.user import CatgaUser

    files: list[Path] = []
    for p in paths:
        files += sorted(q for q in p.glob("*.py") if not q.name.startswith("_")) if p.is_dir() \
            else [p]
    out: dict[str, Scenario] = {}
    for f in files:
        spec = importlib.util.spec_from_file_location(f"catga_scenario_{f.stem}", f)
        if spec is None or spec.loader is None:
            raise ValueError(f"{f}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found = [v.scenario for v in vars(module).values()
                 if isinstance(v, type) and issubclass(v, CatgaUser) and v is not CatgaUser
                 and getattr(v, "scenario", None) is not None]
        if not found and not any(p.is_dir() for p in paths if f.parent == p):
            raise ValueError(f"{f}: declares no CatgaUser with a scenario")
        for s in found:
            out[s.name] = s
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="catga-bench serve",
        description="Run the reference core as its own process, serving a scenario's handlers "
                    "over NATS or Redis for load generators started with --transport.",
        epilog="example:\n  catga-bench serve --transport nats --scenario scenarios/"
               "high_fanout.py\n  locust -f scenarios/high_fanout.py --transport nats "
               "--headless -u 10 -r 10 -t 30s\n\nexit codes: 0 stopped cleanly, 2 usage, "
               "3 broker unreachable",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--transport", choices=("nats", "redis"), required=True,
                   help="the broker between generators and this core")
    p.add_argument("--nats-url", default=os.environ.get("CATGA_NATS_URL",
                                                        "nats://127.0.0.1:4222"),
                   help="NATS server (default: %(default)s; env CATGA_NATS_URL)")
    p.add_argument("--redis-url", default=os.environ.get("CATGA_REDIS_URL",
                                                         "redis://127.0.0.1:6379"),
                   help="Redis server (default: %(default)s; env CATGA_REDIS_URL)")
    p.add_argument("--scenario", type=Path, action="append", default=[], metavar="FILE",
                   help="scenario file this core may serve (repeatable), besides --scenarios")
    p.add_argument("--scenarios", type=Path, default=Path("scenarios"), metavar="DIR",
                   help="directory of scenario files generators may ask for (default: "
                        "%(default)s)")
    p.add_argument("--metrics-port", type=int, default=9464, metavar="PORT",
                   help="serve /metrics on this port, 0 = off (default: %(default)s)")
    p.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                   help="address for /metrics (default: %(default)s; 0.0.0.0 in containers)")
    p.add_argument("--max-in-flight", type=int, default=1024, metavar="N",
                   help="deliveries handled at once per stream (default: %(default)s)")
    p.add_argument("--idempotency", choices=("memory", "redis"), default="memory",
                   help="QoS 2 deduplication store: memory (lost when this process dies) or "
                        "redis (at --redis-url; survives a restart). Default: %(default)s")
    p.add_argument("--idempotency-lease-s", type=float, default=10.0, metavar="S",
                   help="how long a claimed message id stays claimed by a core that died "
                        "mid-message before another may run it (redis store; default: "
                        "%(default)s)")
    p.add_argument("--ack-wait-s", type=float, default=30.0, metavar="S",
                   help="seconds before an unacknowledged QoS>=1 message is redelivered "
                        "(default: %(default)s)")
    return p


async def _amain(args: argparse.Namespace, scenarios: dict[str, Scenario]) -> int:
    from catga_bench.defects import defects_from_env
    from catga_bench.slo import ConfigError

    try:
        defects = defects_from_env()
    except ConfigError as exc:
        sys.stderr.write(f"catga-bench serve: error: {exc}\n")
        return EXIT_USAGE

    url = args.nats_url if args.transport == "nats" else args.redis_url
    transport = open_transport(args.transport, url, ack_wait_s=args.ack_wait_s)
    try:
        await transport.connect()
    except BrokerUnavailable as exc:
        sys.stderr.write(f"catga-bench serve: error: {exc}\n")
        return EXIT_ENVIRONMENT
    store: Any = None
    if args.idempotency == "redis":
        import redis.asyncio as aioredis

        from core.idempotency_redis import RedisIdempotencyStore

        # Claims come from every handler of every message in flight: share a bounded pool
        # that makes callers wait for a connection instead of failing ("Too many connections")
        pool = aioredis.BlockingConnectionPool.from_url(args.redis_url, max_connections=64,
                                                        timeout=30)
        redis_client = aioredis.Redis(connection_pool=pool)
        store = RedisIdempotencyStore(redis_client, lease_s=args.idempotency_lease_s)
        try:
            await store.begin("catga-bench:probe")  # reachable? (fails fast with one line)
            store.abort("catga-bench:probe")
        except Exception as exc:
            sys.stderr.write(f"catga-bench serve: error: idempotency store {args.redis_url} "
                             f"is unreachable: {exc}\n")
            await transport.close()
            return EXIT_ENVIRONMENT
    server = BenchServer(transport, scenarios, defects=defects,
                         max_in_flight=args.max_in_flight, idempotency=store,
                         ack_wait_s=args.ack_wait_s)
    if args.metrics_port:
        from prometheus_client import CollectorRegistry, start_http_server

        from core.mediator import Mediator
        from core.metrics import CatgaCollector
        from core.transport.metrics import TransportCollector

        registry = CollectorRegistry()
        server.collector = CatgaCollector(Mediator())
        registry.register(server.collector)
        registry.register(TransportCollector(transport))
        start_http_server(args.metrics_port, args.metrics_host, registry)
        log.info("metrics on http://%s:%d/metrics", args.metrics_host, args.metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    log.info("catga-bench serve: ready: %s at %s; scenarios: %s", args.transport, url,
             ", ".join(sorted(scenarios)))
    last = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 10.0)
        if server.run is not None and time.monotonic() - last >= 10.0:
            last = time.monotonic()
            ts = transport.stats
            log.info("serving %s: received %d, acked %d, redelivered %d, dead-lettered %d, "
                     "reconnects %d", server.run.name, ts.received, ts.acked, ts.redelivered,
                     ts.dead_lettered, ts.reconnects)
    await server.close()
    await transport.close()
    if store is not None:
        await store.flush()
        await redis_client.aclose()
        await pool.aclose()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``catga-bench serve``; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                                                   "%(message)s")
    paths = list(args.scenario)
    if args.scenarios.is_dir():
        paths.append(args.scenarios)
    try:
        scenarios = load_scenarios(paths)
    except (ValueError, OSError, SyntaxError) as exc:
        sys.stderr.write(f"catga-bench serve: error: {exc}\n")
        return EXIT_USAGE
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    return int(runner(_amain(args, scenarios)))
