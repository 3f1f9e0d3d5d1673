"""The open-model load generator: schedule, ledger, HDR histograms, timeline; owns one target.

The generator issues messages at their *intended* times ``t0 + i / rate`` (an open model): it
never waits for earlier messages to finish, and latency is measured from the intended time, so a
stalled system cannot hide its stall by slowing the generator down (coordinated omission; Gil
Tene, "How NOT to Measure Latency", 2015; wrk2). When the loop is late, every message that fell
due is still issued, late, and its lateness counts in its latency.

It offers each message to its :class:`~catga_bench.targets.base.Target` and is told of outcomes
(it implements :class:`~catga_bench.targets.base.OutcomeSink`), as an httpx ``Client`` owns a
transport: swapping the system under test changes nothing here.

Everything here runs on one asyncio loop; greenlets talk to it only through
:class:`~catga_bench.harness.bridge.LoopThread` (rates in, completions out in a deque).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from catga_bench.generator.failing import FailingTracker
from catga_bench.generator.ledger import StreamLedger
from catga_bench.generator.payload import (
    GeneratorTotals,
    HandlerTotals,
    LedgerTotals,
    OutputSample,
    OutputTotals,
    RunPayload,
    StreamTotals,
)
from catga_bench.generator.timeline import Timeline
from catga_bench.observability.hdr import encode_hdr, new_hdr
from catga_bench.observability.resources import ResourceProbe
from catga_bench.targets.base import SystemFigures, Target, error_label
from catga_bench.workload.plan import RunPlan, StreamPlan, weighted_cycle
from catga_bench.workload.scenario import Stream
from core import BucketHistogram, ErrorCode, FanoutOutcome, Result

log = logging.getLogger("catga.bench")

#: outputs of a black-box system that complete nothing (docs/sut.md)
OUTPUT_CLASSES = ("late", "unexpected", "nonconformant")
#: how many such outputs the report keeps, with their reason
MAX_OUTPUT_SAMPLES = 10
#: gauges of the system under test that replace the generator's own (per second)
SYSTEM_GAUGES = ("queue_depth", "breaker_open", "loop_lag_ms")


@dataclass(slots=True)
class StreamFigures:
    """What the generator measures of one stream."""

    plan: StreamPlan
    ledger: StreamLedger
    name_to_index: dict[str, int]
    latency: HdrHistogram  # us from the intended send time (admitted messages)
    service: HdrHistogram  # us from the actual send time
    completed: int = 0
    failed_msgs: int = 0
    rejected: int = 0
    histogram: BucketHistogram = field(default_factory=BucketHistogram)  # ms, for /metrics

    @property
    def spec(self) -> Stream:
        return self.plan.spec

    @property
    def index(self) -> int:
        return self.plan.index


class Generator:
    """Offers ``plan`` to ``target`` on an open schedule and measures what comes back.

    Args:
        plan: the run plan (rates are set per producer with :meth:`set_producer_rate`).
        target: the system under test (opened by :meth:`start`, closed by :meth:`finish`).
        max_in_flight: safety cap on messages in flight from this generator.

    Call :meth:`start` on the loop, then :meth:`finish` to stop and get the mergeable payload.
    """

    def __init__(self, plan: RunPlan, target: Target, *, max_in_flight: int = 200_000) -> None:
        self.plan = plan
        self.scenario = plan.scenario
        self.target = target
        self.max_in_flight = max_in_flight
        self.timeline = Timeline()
        self.completions: deque[tuple[str, float, bool, str]] = deque(maxlen=500_000)
        self.errors: Counter[str] = Counter()
        self.rates: dict[int, float] = {}
        self.pending: dict[tuple[int, int], tuple[float, float]] = {}
        self.redeliveries = 0
        self.output_counts: Counter[str] = Counter({k: 0 for k in OUTPUT_CLASSES})
        self.output_samples: list[OutputSample] = []
        self.max_behind_s = 0.0
        self.behind_s = 0.0
        self.dropped_sends = 0
        self.t0 = time.perf_counter()
        self.last_outcome_at = self.t0
        self.probe = ResourceProbe()
        self.streams = [
            StreamFigures(st, StreamLedger(st.handler_names),
                          {n: i for i, n in enumerate(st.handler_names)}, new_hdr(), new_hdr())
            for st in plan.streams
        ]
        self.failing = FailingTracker(target.correlation_id,
                                      [st.plan.name for st in self.streams])
        self._cycle = weighted_cycle(plan.shares())
        self._cycle_pos = 0
        dup = plan.scenario.duplicate_ratio
        self._dup_every = round(1 / dup) if dup else 0
        self._stopping = False
        self._tasks: list[asyncio.Task[Any]] = []

    # ----------------------------------------------------------------- control
    async def start(self) -> None:
        """Open the target, then start the schedule and the sampler (call on the loop).

        Raises:
            TargetUnavailable, TransportError: the system under test cannot be reached.
        """
        await self.target.open(self.plan, self)
        self.t0 = time.perf_counter()
        self.last_outcome_at = self.t0
        self.probe.start()
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

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.t0

    def active_faults(self) -> dict[str, bool]:
        """Faults the scenario injects and whether each is active now (``outage:<handler>``)."""
        return self.plan.active_faults(self.elapsed_s())

    async def finish(self, drain_timeout_s: float = 15.0) -> RunPayload:
        """Stop generating, let the target settle what is in flight (bounded), close it, and
        return the payload."""
        self.end_schedule()
        figures = await self.target.close(drain_timeout_s)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return self.payload(figures)

    def end_schedule(self) -> None:
        """Stop issuing messages (call on the loop; idempotent). What fell due and was never
        sent (the generator was behind) counts in ``dropped_sends``. :meth:`finish` still
        drains and closes."""
        if self._stopping:
            return
        self._stopping = True
        self.dropped_sends += int(self.behind_s * self.total_rate)
        self.behind_s = 0.0

    # ----------------------------------------------------------------- schedule
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
            while next_t <= now and issued < max_batch and len(self.pending) < self.max_in_flight:
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
        index = cycle[self._cycle_pos]
        self._cycle_pos = (self._cycle_pos + 1) % len(cycle)
        seq = self.streams[index].ledger.record_sent()
        self.timeline.row(int(time.time()))["sent"] += 1
        self.pending[(index, seq)] = (intended, time.perf_counter())
        copies = 1
        if self._dup_every and seq % self._dup_every == self._dup_every - 1:
            self.redeliveries += 1
            copies = 2  # the same message id again
        self.target.offer(index, seq, copies)

    # ----------------------------------------------------------------- OutcomeSink
    @property
    def in_flight(self) -> int:
        return len(self.pending)

    def pending_streams(self) -> set[int]:
        return {s for s, _ in self.pending}

    def handled(self, stream: int, handler: int, seq: int) -> None:
        st = self.streams[stream]
        if st.ledger.record_handled(handler, seq) == 2:  # its first duplicate
            self.failing.duplicate(stream, st.ledger.handler_names[handler], seq,
                                   self.pending.get((stream, seq)))

    def failed(self, stream: int, handler: int, seq: int) -> None:
        self.streams[stream].ledger.record_failed(handler, seq)

    def accepted(self, stream: int, seq: int) -> None:
        self.streams[stream].ledger.record_acked(seq)

    def gauge(self, name: str, value: float) -> None:
        self.timeline.gauge(int(time.time()), name, value)

    def output_class(self, kind: str, channel: str, correlation_id: str | None,
                     reason: str, message: tuple[int, int] | None = None) -> None:
        if kind not in OUTPUT_CLASSES:
            raise ValueError(f"output class must be one of {', '.join(OUTPUT_CLASSES)}, "
                             f"got {kind!r}")
        self.output_counts[kind] += 1
        if kind == "late" and message is not None:
            self.failing.late(message[0], message[1], channel)
        if len(self.output_samples) < MAX_OUTPUT_SAMPLES:
            self.output_samples.append(OutputSample(
                kind=kind, channel=channel, correlation_id=correlation_id, reason=reason,
                at_s=round(self.elapsed_s(), 3)))

    def completed(self, stream: int, seq: int, result: Result[Any]) -> bool:
        timing = self.pending.pop((stream, seq), None)
        if timing is None:
            return False  # a redelivered copy's outcome: the first one counted
        now = time.perf_counter()
        self.last_outcome_at = now
        intended, start = timing
        self.failing.completed(stream, seq, intended, start, now)
        st = self.streams[stream]
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
            if st.plan.spec.slo:
                self.timeline.add_latency(second, latency_ms)
        ok = True
        code = ""
        if error is not None:
            ok = False
            code = error_label(error)  # an HTTP status: http_503, not handler_failed
            self.errors[code] += 1
            if error.code is ErrorCode.REJECTED:
                st.rejected += 1
                row["rejected"] += 1
            else:
                if error.code is ErrorCode.TIMEOUT:
                    row["timeouts"] += 1
                for h in range(len(st.plan.handlers)):
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
        self.completions.append((st.plan.name, latency_ms, ok, code))
        return True

    # ----------------------------------------------------------------- sampling
    async def _sample(self) -> None:
        while True:
            self.timeline.gauge(int(time.time()), "in_flight", len(self.pending))
            self.probe.sample()
            await asyncio.sleep(0.1)

    # ----------------------------------------------------------------- payload
    def payload(self, figures: SystemFigures) -> RunPayload:
        """The mergeable payload of this generator with the system's figures."""
        streams: dict[str, StreamTotals] = {}
        handlers: dict[str, HandlerTotals] = {}
        ledger = LedgerTotals(redeliveries=self.redeliveries,
                              undrained=len(self.pending) + figures.undrained)
        for st in self.streams:
            s = st.ledger.summary()
            streams[st.plan.name] = StreamTotals(
                kind=st.plan.spec.kind, slo=st.plan.spec.slo, qos=st.plan.qos, sent=s.sent,
                completed=st.completed, failed=st.failed_msgs, rejected=st.rejected,
                acked=s.acked, lost=s.lost, duplicates=s.duplicates,
                latency_hdr=encode_hdr(st.latency), service_hdr=encode_hdr(st.service))
            for name in st.ledger.handler_names:
                key = name if len(self.streams) == 1 else f"{st.plan.name}/{name}"
                handlers[key] = HandlerTotals(handled=s.handled_by[name], failed=s.failed_by[name])
            ledger.add(LedgerTotals(sent=s.sent, acked=s.acked, handled=s.handled, lost=s.lost,
                                    duplicates=s.duplicates, known_failures=s.known_failures))
        self._overlay(figures.timeline)
        return RunPayload(
            **figures.core_figures(),
            streams=streams, handlers=handlers, ledger=ledger, errors=dict(self.errors),
            timeline=self.timeline.to_dict(),
            generator=GeneratorTotals(max_behind_s=round(self.max_behind_s, 4),
                                      dropped_sends=self.dropped_sends),
            rss_mb=self.probe.rss(), cpu_s=self.probe.cpu(),
            outputs=OutputTotals(**self.output_counts, samples=list(self.output_samples)),
            failing_messages=self.failing.collect([st.ledger for st in self.streams],
                                                  self.pending))

    def _overlay(self, system_rows: dict[str, Any]) -> None:
        """Gauges measured inside the system (queue depth, open breakers, loop lag) replace
        the generator's for the seconds it has; counts stay the generator's."""
        rows = self.timeline.rows
        for second, srow in system_rows.items():
            row = rows.get(int(second))
            if row is None or not isinstance(srow, dict):
                continue
            for k in SYSTEM_GAUGES:
                if k in srow:
                    row[k] = srow[k]


__all__ = ["Generator", "StreamFigures"]
