"""Prometheus metrics for the mediator, cheap on the hot path.

Counting happens in plain Python attributes on the mediator's routes, limiters and breakers (an
attribute increment costs ~30 ns); latency goes into :class:`~core.histogram.BucketHistogram`
(a bisect and an increment, ~0.12 us). The :class:`CatgaCollector` turns them into Prometheus
families only when scraped (~0.2 ms per scrape). Per-call instruments cost more on the hot
path: prometheus-client ``Counter.inc()`` 0.25-0.76 us and ``Histogram.observe()`` 0.56-1.7 us
(``catga-bench bench`` and shared/FIELD-NOTES.md), the OpenTelemetry SDK 14-16 us per call.
prometheus-client still does the exposition (``/metrics``).

Names and labels: docs/metrics.md is the single source of truth; names follow what .NET Catga's
OpenTelemetry exporter emits (dots to underscores, unit suffix, ``_total`` on counters).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from core.loopmon import LoopLagMonitor
    from core.mediator import Mediator


class CatgaCollector(Collector):
    """Exports one mediator's counters, gauges and histograms at scrape time.

    Register with ``prometheus_client.REGISTRY.register(CatgaCollector(mediator, monitor))``.
    Reads plain attributes only; safe to call from another thread (the GIL makes each read
    atomic; a scrape may see counters from slightly different instants).
    """

    def __init__(self, mediator: Mediator, lag_monitor: LoopLagMonitor | None = None) -> None:
        self.mediator = mediator
        self.lag_monitor = lag_monitor

    def describe(self) -> Iterable[Metric]:
        return []  # collected lazily; avoids a collect() at registration time

    def collect(self) -> Iterator[Metric]:
        m = self.mediator
        requests = list(m.request_routes())
        events = list(m.event_routes())

        published = CounterMetricFamily(
            "catga_messages_published", "Messages accepted by publish or send",
            labels=["message_type"],
        )
        failed = CounterMetricFamily(
            "catga_messages_failed", "Messages whose processing failed (any handler)",
            labels=["message_type"],
        )
        executed = CounterMetricFamily(
            "catga_commands_executed", "Requests (commands/queries) executed",
            labels=["request_type", "success"],
        )
        duration = HistogramMetricFamily(
            "catga_command_duration_milliseconds", "Request handling time", unit="",
            labels=["request_type"],
        )
        for r in requests:
            published.add_metric([r.name], r.accepted)
            failed.add_metric([r.name], r.failed)
            executed.add_metric([r.name, "true"], r.succeeded)
            executed.add_metric([r.name, "false"], r.failed)
            duration.add_metric([r.name], r.histogram.cumulative(), r.histogram.sum)
        events_published = CounterMetricFamily(
            "catga_events_published", "Events published, by number of subscribed handlers",
            labels=["event_type", "handler_count"],
        )
        event_duration = HistogramMetricFamily(
            "catga_event_duration_milliseconds", "Publish time: fan-out to every handler",
            labels=["event_type"],
        )
        handler_failures = CounterMetricFamily(
            "catga_event_handler_failures", "Event handler invocations that failed",
            labels=["event_type", "handler"],
        )
        for e in events:
            published.add_metric([e.name], e.accepted)
            failed.add_metric([e.name], e.failed)
            events_published.add_metric([e.name, str(len(e.subs))], e.accepted)
            event_duration.add_metric([e.name], e.histogram.cumulative(), e.histogram.sum)
            for s in e.subs:
                if s.failures:
                    handler_failures.add_metric([e.name, s.name], s.failures)
        yield from (published, failed, executed, duration, events_published, event_duration,
                    handler_failures)

        yield _gauge("catga_messages_active", "Messages being processed now", m.active)
        yield _counter("catga_resilience_retries", "Retries executed", m.retries)
        yield _counter("catga_resilience_timeouts", "Handler calls cut by their timeout",
                       m.timeouts)
        yield _counter("catga_deadletter_messages", "Deliveries dead-lettered",
                       m.dead_letters.total if hasattr(m.dead_letters, "total") else 0)
        store: Any = m.idempotency
        yield _counter("catga_idempotency_hits", "Duplicates suppressed (QoS 2)",
                       getattr(store, "hits", 0))
        yield _counter("catga_idempotency_misses", "First deliveries seen (QoS 2)",
                       getattr(store, "misses", 0))

        limiters = list(m.limiters())
        rejected = CounterMetricFamily(
            "catga_resilience_bulkhead_rejected", "Calls rejected by a full bulkhead queue",
            labels=["limiter"],
        )
        active = GaugeMetricFamily("catga_limiter_active", "Slots in use", labels=["limiter"])
        depth = GaugeMetricFamily("catga_limiter_queue_depth", "Callers waiting for a slot",
                                  labels=["limiter"])
        cap = GaugeMetricFamily("catga_limiter_max_concurrency", "Slots available",
                                labels=["limiter"])
        qcap = GaugeMetricFamily("catga_limiter_max_queue", "Wait-queue capacity",
                                 labels=["limiter"])
        for lim in limiters:
            rejected.add_metric([lim.name], lim.rejected)
            active.add_metric([lim.name], lim.active)
            depth.add_metric([lim.name], lim.queue_depth)
            cap.add_metric([lim.name], lim.max_concurrency)
            qcap.add_metric([lim.name], lim.max_queue)
        yield from (rejected, active, depth, cap, qcap)

        breakers = list(m.breakers.values())
        state = GaugeMetricFamily("catga_circuit_breaker_state",
                                  "0 closed, 1 open, 2 half-open", labels=["breaker"])
        opened = CounterMetricFamily("catga_resilience_circuit_opened", "Transitions to open",
                                     labels=["breaker"])
        half = CounterMetricFamily("catga_resilience_circuit_half_opened",
                                   "Transitions to half-open", labels=["breaker"])
        closed = CounterMetricFamily("catga_resilience_circuit_closed",
                                     "Transitions to closed", labels=["breaker"])
        short = CounterMetricFamily("catga_circuit_breaker_rejected",
                                    "Calls failed fast by an open breaker", labels=["breaker"])
        for b in breakers:
            state.add_metric([b.name], int(b.state))
            opened.add_metric([b.name], b.opened)
            half.add_metric([b.name], b.half_opened)
            closed.add_metric([b.name], b.closed)
            short.add_metric([b.name], b.rejected)
        yield from (state, opened, half, closed, short)

        if self.lag_monitor is not None:
            h = self.lag_monitor.histogram
            lag = HistogramMetricFamily(
                "catga_event_loop_lag_milliseconds",
                "How late the event loop woke a sampler (busy loop = starvation)",
            )
            lag.add_metric([], h.cumulative(), h.sum)
            yield lag


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)
