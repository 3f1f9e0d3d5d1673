"""The served core: the plan's mediator and handlers, reporting to generators over a broker.

What each handler does goes into completion batches (:class:`CompletionPublisher`) instead of
a local ledger; every handler can be given a runtime fault by the ``fault`` control op
(:class:`HandlerFault`), and the breaker recovery of such faults is judged from their windows.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

from catga_bench.observability.resources import ResourceProbe
from catga_bench.targets.core_under_test import CoreUnderTest
from catga_bench.targets.served.publisher import CompletionPublisher
from catga_bench.targets.wire import unpack_seq
from catga_bench.workload.plan import RunPlan
from core import CircuitBreaker, ErrorCode, FanoutOutcome, Message, Result
from core.transport import Delivery, TypeRegistry


@dataclass
class HandlerFault:
    """A runtime fault on one handler (``"*"``: every handler), set by the ``fault`` control op:
    each call first sleeps ``latency_ms``, then fails with probability ``error_rate`` (a
    retryable ``HANDLER_FAILED`` result, as :class:`~catga_bench.workload.profiles.Failing` gives).
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


class _ToPublisher:
    """The served core's :class:`~catga_bench.targets.core_under_test.Reporter`: handler
    records go to the publisher (routed by the generator id in ``seq``), gauges to per-second
    rows (``{second: {gauge: max}}``) shipped with the core's statistics."""

    def __init__(self, publisher: CompletionPublisher) -> None:
        self.publisher = publisher
        self.gauges: dict[str, dict[str, float]] = {}

    def handled(self, stream: int, handler: int, seq: int) -> None:
        gen, local = unpack_seq(seq)
        self.publisher.handled(gen, stream, handler, local)

    def failed(self, stream: int, handler: int, seq: int) -> None:
        gen, local = unpack_seq(seq)
        self.publisher.failed(gen, stream, handler, local)

    def gauge(self, name: str, value: float) -> None:
        row = self.gauges.setdefault(str(int(time.time())), {})
        if value > row.get(name, 0.0):
            row[name] = value


class ServedCore(CoreUnderTest):
    """The scenario's mediator and handlers for ``catga-bench serve`` (see the module
    docstring). ``faults`` is shared with the server, which sets and clears them."""

    def __init__(self, plan: RunPlan, publisher: CompletionPublisher, *,
                 defects: frozenset[str] = frozenset(),
                 faults: dict[str, HandlerFault] | None = None) -> None:
        # handler name (or "*") -> runtime fault; shared with BenchServer, which sets it
        self.faults: dict[str, HandlerFault] = {} if faults is None else faults
        # runtime fault windows of this run: [handler or "*", start, end] in elapsed seconds
        # (end None: until fault_clear); judged by recovered_breakers
        self.fault_windows: list[list[Any]] = []
        self.publisher = publisher
        self.to_publisher = _ToPublisher(publisher)
        super().__init__(plan, self.to_publisher, defects=defects, local_delivery=False,
                         probe=ResourceProbe())
        self.registry = TypeRegistry(st.msg_type for st in self.streams)
        self.stream_of = {st.msg_type: st for st in self.streams}

    def wrap_handler(self, stream: int, handler: int, fn: Any) -> Any:
        """Every handler can be given a runtime fault (``fault`` control op); with none set
        the wrapper costs one dict lookup."""
        fn = super().wrap_handler(stream, handler, fn)
        faults = self.faults
        name = self.plan.streams[stream].handlers[handler].name
        failed = self.to_publisher.failed

        async def maybe_faulty(msg: Any) -> Any:
            if faults:
                fault = faults.get(name) or faults.get("*")
                if fault is not None and fault.active():
                    if fault.latency_ms:
                        await asyncio.sleep(fault.latency_ms / 1000.0)
                    if fault.error_rate and random.random() < fault.error_rate:
                        fault.injected += 1
                        failed(stream, handler, msg.seq)
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

    def recovered_breakers(self) -> list[tuple[CircuitBreaker, float]]:
        """With runtime faults set during the run: the breaker of every handler a fault window
        hit, with the window's end (elapsed seconds), once it has ended. Without: the
        scenario's own outage windows."""
        if not self.fault_windows:
            return super().recovered_breakers()
        now = self.elapsed_s()
        return [(breaker, end) for handler, _start, end in self.fault_windows
                if end is not None and end <= now
                for breaker in self.breakers_of(handler)]

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
            self.publisher.result(gen, st.plan.index, local, code, failures)
        await self.publisher.commit()

    async def finish(self, drain_timeout_s: float = 2.0) -> None:
        """Wait (bounded) for the mediator's background work, then stop sampling."""
        await self.drain(drain_timeout_s)
        await self.stop()

    def stats(self) -> dict[str, Any]:
        """The core's side of the run payload (limiter, breakers, timeouts, loop lag, RSS)."""
        f = self.figures()
        probe = self.probe
        assert probe is not None
        return {"rejected": f.rejected, "timeouts": f.timeouts, "retries": f.retries,
                "dead_lettered": f.dead_lettered,
                "breaker": None if f.breaker is None else f.breaker.model_dump(),
                "loop_lag_hdr": f.loop_lag_hdr, "rss_mb": probe.rss(), "cpu_s": probe.cpu(),
                "timeline": self.to_publisher.gauges}


__all__ = ["HandlerFault", "ServedCore"]
