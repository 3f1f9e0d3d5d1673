"""The load generator's own Prometheus metrics (``catga_bench_*``, docs/metrics.md).

Read from the generator's plain attributes at scrape time, like the core's collector:
nothing is added to the per-message path except one bucket increment per completion.
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
    from catga_bench.generator.generator import Generator


class GeneratorCollector(Collector):
    """Exports one :class:`~catga_bench.generator.generator.Generator`'s figures.

    Args:
        driver: the running generator.
        slo_targets: the run's numeric SLO targets (name -> value), exported as
            ``catga_bench_slo_target{target=...}`` for dashboard threshold lines.
    """

    def __init__(self, driver: Generator, slo_targets: dict[str, Any] | None = None) -> None:
        self.driver = driver
        self.slo_targets = {k: float(v) for k, v in (slo_targets or {}).items()
                            if isinstance(v, int | float) and not isinstance(v, bool)}

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        d = self.driver
        yield GaugeMetricFamily("catga_bench_offered_rate",
                                "Rate this generator is asked to offer (msg/s)", value=d.total_rate)
        sent = CounterMetricFamily("catga_bench_messages_sent", "Messages issued",
                                   labels=["stream"])
        done = CounterMetricFamily("catga_bench_messages_completed", "Messages completed",
                                   labels=["stream", "outcome"])
        latency = HistogramMetricFamily(
            "catga_bench_latency_milliseconds",
            "Latency from the intended send time (coordinated omission corrected)",
            labels=["stream"],
        )
        for st in list(d.streams):
            name = st.spec.name
            sent.add_metric([name], st.ledger.sent)
            done.add_metric([name, "ok"], st.completed - st.failed_msgs)
            done.add_metric([name, "error"], st.failed_msgs - st.rejected)
            done.add_metric([name, "rejected"], st.rejected)
            latency.add_metric([name], st.histogram.cumulative(), st.histogram.sum)
        yield from (sent, done, latency)
        yield GaugeMetricFamily("catga_bench_in_flight_messages", "Issued, not yet completed",
                                value=d.in_flight)
        yield GaugeMetricFamily("catga_bench_generator_behind_seconds",
                                "How far the generator is behind its schedule", value=d.behind_s)
        yield CounterMetricFamily("catga_bench_dropped_sends", "Messages due but never sent",
                                  value=d.dropped_sends)
        faults = GaugeMetricFamily("catga_bench_fault_active", "1 while a fault is injected",
                                   labels=["fault"])
        for fault, active in d.active_faults().items():
            faults.add_metric([fault], 1.0 if active else 0.0)
        yield faults
        targets = GaugeMetricFamily("catga_bench_slo_target", "The run's SLO targets",
                                    labels=["target"])
        for name, value in sorted(self.slo_targets.items()):
            targets.add_metric([name], value)
        yield targets
