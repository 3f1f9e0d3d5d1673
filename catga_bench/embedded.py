"""The embedded driver: the reference core and an open-model load generator on one asyncio loop.

The generator issues messages at their *intended* times ``t0 + i / rate`` (an open model): it
never waits for earlier messages to finish, and latency is measured from the intended time, so a
stalled system cannot hide its stall by slowing the generator down (coordinated omission; Gil
Tene, "How NOT to Measure Latency", 2015; wrk2). When the loop is late, every message that fell
due is still issued, late, and its lateness counts in its latency.

Everything here runs on the core's loop thread; greenlets talk to it only through
:class:`~catga_bench.bridge.LoopThread` (rates in, completions out in a deque).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field, make_dataclass
from functools import partial
from typing import Any

import psutil
from hdrh.histogram import HdrHistogram

from catga_bench.ledger import StreamLedger
from catga_bench.profiles import Failing, HandlerSpec
from catga_bench.scenario import Scenario, Stream
from catga_bench.timeline import Timeline
from core import (
    BucketHistogram,
    CircuitBreaker,
    CircuitState,
    DeliveryMode,
    ErrorCode,
    Event,
    FanoutOutcome,
    HandlerOptions,
    LoopLagMonitor,
    QoS,
    Request,
    Result,
    RetryPolicy,
)
from core._eager import resume
from core.defects import new_limiter, new_mediator

log = logging.getLogger("catga.bench")

#: HDR histogram range: 1 us .. 1 hour, 3 significant digits (values in microseconds)
HDR_MAX_US = 3_600_000_000


def new_hdr() -> HdrHistogram:
    """An empty latency histogram in microseconds."""
    return HdrHistogram(1, HDR_MAX_US, 3)


@dataclass(slots=True)
class _StreamState:
    index: int
    spec: Stream
    msg_type: type
    make: Any
    handlers: list[HandlerSpec]
    ledger: StreamLedger
    name_to_index: dict[str, int]
    latency: HdrHistogram
    service: HdrHistogram
    is_event: bool
    qos: QoS = QoS.AT_LEAST_ONCE
    completed: int = 0
    failed_msgs: int = 0
    rejected: int = 0
    histogram: BucketHistogram = field(default_factory=BucketHistogram)  # ms, for /metrics


class EmbeddedDriver:
    """Runs ``scenario`` against an in-process :class:`~core.Mediator`.

    Args:
        scenario: the workload (rate is set per producer with :meth:`set_producer_rate`).
        handler_count: ``--handlers`` override for streams built by a factory.
        max_in_flight: safety cap on messages in flight from this generator.
        defects: seeded defects to inject (gate tests only; the catalogue and what each one
            breaks: :mod:`catga_bench.defects`). ``block_loop`` is applied here
            (:meth:`wrap_handler`); ``unbounded_queue`` goes to the limiters;
            ``breaker_disabled``, ``dedup_off`` and ``ack_before_handling`` to the mediator.
            The embedded analogue of ``ack_before_handling``: a QoS >= 1 publish reports
            success before any handler ran, and handler failures are then dropped (not
            retried, not dead-lettered, not reported), so messages a breaker rejected during
            an outage are acknowledged yet never handled: the ledger counts them lost.

    Call :meth:`start` on the loop, then :meth:`finish` to stop and get the mergeable payload.
    """

    #: False in a driver whose handlers run elsewhere (the remote driver).
    serves_locally = True
    #: high bits of every message's ``seq`` (the remote driver's generator id; 0 here)
    seq_base = 0

    def __init__(
        self,
        scenario: Scenario,
        *,
        handler_count: int | None = None,
        max_in_flight: int = 200_000,
        defects: frozenset[str] = frozenset(),
    ) -> None:
        self.scenario = scenario
        self.max_in_flight = max_in_flight
        self.defects = defects
        self.qos = QoS(scenario.qos)
        b = scenario.bulkhead
        # seeded defects (catga_bench.defects) go to the core objects explicitly; each picks
        # its behaviour once, here, so the clean build does no extra work per message
        self.limiter = new_limiter(b.max_concurrency, b.max_queue, name="mediator",
                                   defects=defects)
        self.mediator = new_mediator(
            defects,
            limiter=self.limiter,
            retry=RetryPolicy(max_attempts=3, base_delay_s=0.005, max_delay_s=0.1),
        )
        self.lag = LoopLagMonitor(interval_s=0.05)
        self.lag_hdr = new_hdr()
        self.timeline = Timeline()
        self.completions: deque[tuple[str, float, bool, str]] = deque(maxlen=500_000)
        self.errors: Counter[str] = Counter()
        self.rates: dict[int, float] = {}
        self.in_flight = 0
        self.redeliveries = 0
        self.calls_while_open = 0
        self.max_behind_s = 0.0
        self.behind_s = 0.0
        self.dropped_sends = 0
        self.t0 = time.perf_counter()
        self._breaker_index: dict[tuple[int, int], CircuitBreaker] = {}
        self._first_open: dict[str, int] = {}
        self._transitions: list[tuple[float, str, str]] = []
        self._stopping = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._proc = psutil.Process(os.getpid())
        self.rss_start_mb = self._proc.memory_info().rss / 2**20
        self.rss_peak_mb = self.rss_start_mb
        self.streams = [self._build_stream(i, s, handler_count)
                        for i, s in enumerate(scenario.streams)]
        self._cycle = _weighted_cycle([s.spec.share for s in self.streams])
        self._cycle_pos = 0
        self._dup_every = round(1 / scenario.duplicate_ratio) if scenario.duplicate_ratio else 0

    @property
    def max_qos(self) -> QoS:
        """The highest QoS of any stream (what the run's settlement must provide for)."""
        return max((st.qos for st in self.streams), default=self.qos)

    # ----------------------------------------------------------------- building
    def _build_stream(self, index: int, spec: Stream, count: int | None) -> _StreamState:
        handlers = spec.handler_specs(count)
        if spec.kind == "request" and len(handlers) != 1:
            raise ValueError(f"request stream {spec.name!r} needs exactly one handler")
        base = Event if spec.kind == "event" else Request
        msg_type = make_dataclass(spec.name, [("seq", int, 0)], bases=(base,), slots=True)
        delivery = DeliveryMode.ASYNC if spec.delivery == "async" else DeliveryMode.WAIT_FOR_RESULT
        qos = self.qos if spec.qos is None else QoS(spec.qos)
        make = partial(msg_type, qos=qos, delivery_mode=delivery)
        limiter = None
        if spec.bulkhead is not None:
            limiter = new_limiter(spec.bulkhead.max_concurrency, spec.bulkhead.max_queue,
                                  name=spec.name, defects=self.defects)
        for h_index, h in enumerate(handlers):
            if not self.serves_locally:
                break
            fn = self.wrap_handler(index, h_index, h.profile.build(self, index, h_index))
            opts = HandlerOptions(timeout_s=h.timeout_s, breaker=h.breaker)
            if spec.kind == "event":
                self.mediator.subscribe(msg_type, fn, name=h.name, options=opts)
            else:
                self.mediator.register(msg_type, fn, name=h.name, options=opts)
            if h.breaker is not None:
                breaker = list(self.mediator.breakers.values())[-1]
                breaker.add_listener(self._on_transition)
                self._breaker_index[(index, h_index)] = breaker
        if limiter is not None and self.serves_locally:
            self.mediator.use_limiter(msg_type, limiter)
        names = [h.name for h in handlers]
        return _StreamState(
            index, spec, msg_type, make, handlers, StreamLedger(names),
            {n: i for i, n in enumerate(names)}, new_hdr(), new_hdr(), spec.kind == "event",
            qos,
        )

    def wrap_handler(self, stream: int, handler: int, fn: Any) -> Any:
        """The handler the core registers for ``fn`` (subclasses add runtime faults here;
        the ``block_loop`` defect wraps the first handler)."""
        if "block_loop" in self.defects and stream == 0 and handler == 0:
            return _blocking(fn)
        return fn

    # ----------------------------------------------------------------- HandlerContext
    def handled(self, stream: int, handler: int, seq: int) -> None:
        self.streams[stream].ledger.record_handled(handler, seq)

    def failed(self, stream: int, handler: int, seq: int) -> None:
        self.streams[stream].ledger.record_failed(handler, seq)

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.t0

    def breaker_state(self, stream: int, handler: int) -> CircuitState | None:
        b = self._breaker_index.get((stream, handler))
        return b.state if b is not None else None

    def called_while_open(self, stream: int, handler: int) -> None:
        self.calls_while_open += 1

    def _on_transition(self, b: CircuitBreaker, old: CircuitState, new: CircuitState) -> None:
        self._transitions.append((self.elapsed_s(), b.name, new.name.lower()))
        if new is CircuitState.OPEN and b.name not in self._first_open:
            self._first_open[b.name] = b.failures

    # ----------------------------------------------------------------- control (loop thread)
    def start(self) -> None:
        """Start the generator, the sampler and the loop-lag monitor (call on the loop)."""
        self.t0 = time.perf_counter()
        self._cpu0_thread = time.thread_time()
        t = self._proc.cpu_times()
        self._cpu0_process = t.user + t.system
        self.lag.listeners.append(self._on_lag)
        self.lag.start()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._generate(), name="generator"),
                       loop.create_task(self._sample(), name="sampler")]

    def set_producer_rate(self, producer: int, rate: float) -> None:
        """Set (rate > 0) or remove (rate <= 0) one producer's share of the offered rate."""
        if rate > 0:
            self.rates[producer] = rate
        else:
            self.rates.pop(producer, None)

    @property
    def total_rate(self) -> float:
        return sum(self.rates.values())

    async def finish(self, drain_timeout_s: float = 15.0) -> dict[str, Any]:
        """Stop generating, wait for in-flight messages (bounded), and return the payload."""
        self._stopping = True
        # messages that fell due but were never sent (the generator was behind when stopped)
        self.dropped_sends += int(self.behind_s * self.total_rate)
        deadline = time.perf_counter() + drain_timeout_s
        while self.in_flight and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        undrained = self.in_flight
        try:
            await asyncio.wait_for(self.mediator.drain(), max(0.1, deadline - time.perf_counter()))
        except TimeoutError:
            undrained += 1
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.lag.stop()
        return self._payload(undrained)

    # ----------------------------------------------------------------- generator
    async def _generate(self) -> None:
        perf = time.perf_counter
        next_t = perf()
        max_batch = 4_000
        while not self._stopping:
            rate = self.total_rate
            now = perf()
            if rate <= 0:
                next_t = now
                self.behind_s = 0.0
                await asyncio.sleep(0.005)
                continue
            interval = 1.0 / rate
            issued = 0
            while next_t <= now and issued < max_batch and self.in_flight < self.max_in_flight:
                self._issue(next_t)
                next_t += interval
                issued += 1
            behind = now - next_t
            self.behind_s = behind if behind > 0 else 0.0
            if behind > self.max_behind_s:
                self.max_behind_s = behind
            delay = next_t - perf()
            # Tick at most once a millisecond: messages due within the tick go out together
            # (their latency still counts from their own intended time). Only a backlog (more
            # due than one batch) runs the next batch at once.
            await asyncio.sleep(0 if delay < -0.001 else max(delay, 0.001))

    def _issue(self, intended: float) -> None:
        cycle = self._cycle
        st = self.streams[cycle[self._cycle_pos]]
        self._cycle_pos = (self._cycle_pos + 1) % len(cycle)
        seq = st.ledger.record_sent()
        msg = st.make(seq=self.seq_base | seq)
        self.timeline.row(int(time.time()))["sent"] += 1
        self._dispatch(st, msg, seq, intended, True)
        if self._dup_every and seq % self._dup_every == self._dup_every - 1:
            self.redeliveries += 1
            self._dispatch(st, msg, seq, intended, False)  # same message id again

    def _dispatch(self, st: _StreamState, msg: Any, seq: int, intended: float,
                  record: bool) -> None:
        start = time.perf_counter()
        coro = self.mediator.publish(msg) if st.is_event else self.mediator.send(msg)
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            if record:
                self._done(st, seq, intended, start, stop.value)
            return
        self.in_flight += 1
        task = asyncio.get_running_loop().create_task(_finish(coro, yielded))
        task.add_done_callback(partial(self._task_done, st, seq, intended, start, record))

    def _task_done(self, st: _StreamState, seq: int, intended: float, start: float,
                   record: bool, task: asyncio.Task[Result[Any]]) -> None:
        self.in_flight -= 1
        if not record:
            return
        if task.cancelled():
            result: Result[Any] = Result.failure(ErrorCode.HANDLER_FAILED, "cancelled")
        elif task.exception() is not None:
            exc = task.exception()
            log.error("publish/send raised (a core bug): %r", exc)
            result = Result.failure(ErrorCode.HANDLER_FAILED, repr(exc))
        else:
            result = task.result()
        self._done(st, seq, intended, start, result)

    def _done(self, st: _StreamState, seq: int, intended: float, start: float,
              result: Result[Any]) -> None:
        now = time.perf_counter()
        latency_ms = (now - intended) * 1000.0
        error = result.error
        st.completed += 1
        second = int(time.time())
        row = self.timeline.row(second)
        row["completed"] += 1
        # latency is that of *admitted* messages: a rejection (backpressure) is counted in
        # ``rejected`` and kept out of the percentiles, where its fast answer would hide the
        # latency of what was admitted (at 90% rejected, "P99" would be the admitted P90)
        if error is None or error.code is not ErrorCode.REJECTED:
            st.latency.record_value(max(1, int(latency_ms * 1000.0)))
            st.service.record_value(max(1, int((now - start) * 1000_000.0)))
            st.histogram.observe(latency_ms)
            if st.spec.slo:
                self.timeline.add_latency(second, latency_ms)
        ok = True
        code = ""
        if error is not None:
            ok = False
            code = error.code.value
            self.errors[code] += 1
            if error.code is ErrorCode.REJECTED:
                st.rejected += 1
                row["rejected"] += 1
            else:
                if error.code is ErrorCode.TIMEOUT:
                    row["timeouts"] += 1
                for h in range(len(st.handlers)):
                    st.ledger.record_failed(h, seq)
                st.ledger.record_acked(seq)
        else:
            st.ledger.record_acked(seq)
            value = result.value
            if isinstance(value, FanoutOutcome) and value.failures:
                ok = False
                for name, err in value.failures:
                    self.errors[err.code.value] += 1
                    if err.code is ErrorCode.TIMEOUT:
                        row["timeouts"] += 1
                    st.ledger.record_failed(st.name_to_index[name], seq)
                code = value.failures[0][1].code.value
        if ok:
            row["ok"] += 1
        else:
            st.failed_msgs += 1
            row["errors"] += 1
        self.completions.append((st.spec.name, latency_ms, ok, code))

    # ----------------------------------------------------------------- sampling
    def _on_lag(self, lag_ms: float) -> None:
        self.lag_hdr.record_value(max(1, int(lag_ms * 1000.0)))
        self.timeline.gauge(int(time.time()), "loop_lag_ms", round(lag_ms, 3))

    async def _sample(self) -> None:
        limiters = list(self.mediator.limiters())
        breakers = list(self.mediator.breakers.values())
        while True:
            second = int(time.time())
            tl = self.timeline
            tl.gauge(second, "queue_depth", sum(lim.queue_depth for lim in limiters))
            tl.gauge(second, "in_flight", self.in_flight)
            tl.gauge(second, "breaker_open",
                     sum(1 for b in breakers if b.state is not CircuitState.CLOSED))
            rss = self._proc.memory_info().rss / 2**20
            if rss > self.rss_peak_mb:
                self.rss_peak_mb = rss
            await asyncio.sleep(0.1)

    # ----------------------------------------------------------------- payload
    def _payload(self, undrained: int) -> dict[str, Any]:
        streams: dict[str, Any] = {}
        handlers: dict[str, Any] = {}
        totals = Counter[str]()
        for st in self.streams:
            s = st.ledger.summary()
            streams[st.spec.name] = {
                "kind": st.spec.kind,
                "slo": st.spec.slo,
                "sent": s.sent,
                "completed": st.completed,
                "failed": st.failed_msgs,
                "rejected": st.rejected,
                "qos": int(st.qos),
                "acked": s.acked,
                "lost": s.lost,
                "duplicates": s.duplicates,
                "latency_hdr": _enc(st.latency),
                "service_hdr": _enc(st.service),
            }
            for name in st.ledger.handler_names:
                key = name if len(self.streams) == 1 else f"{st.spec.name}/{name}"
                handlers[key] = {"handled": s.handled_by[name], "failed": s.failed_by[name]}
            totals.update(sent=s.sent, acked=s.acked, handled=s.handled, lost=s.lost,
                          duplicates=s.duplicates, known_failures=s.known_failures)
        breakers = self.mediator.breakers
        closed_after = self._closed_after_recovery()
        return {
            "streams": streams,
            "handlers": handlers,
            "ledger": {**dict(totals), "redeliveries": self.redeliveries,
                       "undrained": undrained},
            "errors": dict(self.errors),
            "rejected": sum(lim.rejected for lim in self.mediator.limiters()),
            "timeouts": self.mediator.timeouts,
            "retries": self.mediator.retries,
            "dead_lettered": getattr(self.mediator.dead_letters, "total", 0),
            "breaker": {
                "opened": sum(b.opened for b in breakers.values()),
                "half_opened": sum(b.half_opened for b in breakers.values()),
                "closed": sum(b.closed for b in breakers.values()),
                "rejected": sum(b.rejected for b in breakers.values()),
                "breakers": {n: b.state.name.lower() for n, b in breakers.items()},
                "failures_before_first_open": max(self._first_open.values(), default=None),
                "closed_after_recovery_s": closed_after,
                "calls_while_open": self.calls_while_open,
                "transitions": self._transitions[-200:],
            },
            "loop_lag_hdr": _enc(self.lag_hdr),
            "timeline": self.timeline.to_dict(),
            "generator": {"max_behind_s": round(self.max_behind_s, 4),
                          "dropped_sends": self.dropped_sends},
            "rss_mb": {"start": round(self.rss_start_mb, 1), "peak": round(self.rss_peak_mb, 1)},
            "cpu_s": self._cpu(),
        }

    def _cpu(self) -> dict[str, float]:
        """CPU seconds since start: the core's loop thread (core + generator + recording) and
        the whole process; the rest is Locust, the bridge and the metrics server."""
        t = self._proc.cpu_times()
        process = t.user + t.system - getattr(self, "_cpu0_process", 0.0)
        loop = time.thread_time() - getattr(self, "_cpu0_thread", 0.0)
        return {"loop_thread": round(loop, 3), "process": round(process, 3),
                "other_threads": round(max(0.0, process - loop), 3)}

    def active_faults(self) -> dict[str, bool]:
        """Injected faults and whether each is active now: handler outage windows of
        :class:`~catga_bench.profiles.Failing` handlers (``outage:<handler>``)."""
        now = self.elapsed_s()
        out: dict[str, bool] = {}
        for st in self.streams:
            for h in st.handlers:
                p = h.profile
                if isinstance(p, Failing) and p.outage_start_s is not None:
                    end = p.outage_end_s if p.outage_end_s is not None else float("inf")
                    out[f"outage:{h.name}"] = p.outage_start_s <= now < end
        return out

    def _recovered_breakers(self) -> list[tuple[CircuitBreaker, float]]:
        """(breaker, end of its handler's outage in elapsed seconds) for every breaker whose
        handler's outage window (the scenario's :class:`Failing` profiles) has ended."""
        now = self.elapsed_s()
        out: list[tuple[CircuitBreaker, float]] = []
        for (si, hi), breaker in self._breaker_index.items():
            prof = self.streams[si].handlers[hi].profile
            if isinstance(prof, Failing) and prof.outage_end_s is not None \
                    and prof.outage_end_s <= now:
                out.append((breaker, prof.outage_end_s))
        return out

    def _closed_after_recovery(self) -> float | None:
        """Seconds from the end of a handler's outage to its breaker closing (max over the
        recovered breakers that opened; None if one never closed after its outage)."""
        worst: float | None = None
        for breaker, end in self._recovered_breakers():
            if breaker.opened == 0:
                continue
            closes = [t for t, name, state in self._transitions
                      if name == breaker.name and state == "closed" and t >= end]
            if not closes:
                return None
            delta = round(closes[0] - end, 3)
            worst = delta if worst is None else max(worst, delta)
        return worst


async def _finish(coro: Any, yielded: Any) -> Any:
    return await resume(coro, yielded)


def _enc(h: HdrHistogram) -> str:
    data = h.encode()
    return data.decode() if isinstance(data, bytes) else str(data)


def _weighted_cycle(shares: list[float], length: int = 100) -> list[int]:
    """Stream indices in a smooth weighted round-robin order (deterministic mix)."""
    if len(shares) == 1:
        return [0]
    total = sum(shares)
    acc = [0.0] * len(shares)
    out: list[int] = []
    for _ in range(length):
        for i, s in enumerate(shares):
            acc[i] += s / total
        pick = max(range(len(shares)), key=acc.__getitem__)
        acc[pick] -= 1.0
        out.append(pick)
    return out


def _blocking(fn: Any) -> Any:
    """Defect ``block_loop``: the handler blocks the event loop for 200 ms once a second."""
    try:
        from gevent import monkey

        sleep = monkey.get_original("time", "sleep")
    except ImportError:  # pragma: no cover
        sleep = time.sleep
    last = [0.0]

    async def blocking(msg: Any) -> Any:
        now = time.perf_counter()
        if now - last[0] >= 1.0:
            last[0] = now
            sleep(0.2)
        return await fn(msg)

    return blocking

