"""Prometheus metrics of a transport (``catga_transport_*``, docs/metrics.md), read from its
:class:`~core.transport.base.TransportStats` at scrape time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from core.transport.base import Transport

#: counter name (without ``_total``) -> (TransportStats attribute, help)
COUNTERS: dict[str, tuple[str, str]] = {
    "catga_transport_published": ("published", "Messages published to the broker"),
    "catga_transport_publish_errors": ("publish_errors",
                                       "Publishes that failed (broker down, no ack)"),
    "catga_transport_received": ("received", "Deliveries handed to subscribers"),
    "catga_transport_acked": ("acked", "Deliveries acknowledged"),
    "catga_transport_nacked": ("nacked", "Deliveries negatively acknowledged (redelivered)"),
    "catga_transport_redelivered": ("redelivered", "Deliveries with a delivery count above 1"),
    "catga_transport_dead_lettered": ("dead_lettered",
                                      "Messages moved to the dead-letter subject/stream"),
    "catga_transport_disconnects": ("disconnects", "Connections to the broker lost"),
    "catga_transport_reconnects": ("reconnects", "Connections to the broker re-established"),
}


class TransportCollector(Collector):
    """Exports ``transport.stats`` with a ``transport`` label (``nats``, ``redis``, ...)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        stats = self.transport.stats
        for name, (attr, doc) in COUNTERS.items():
            c = CounterMetricFamily(name, doc, labels=["transport"])
            c.add_metric([self.transport.name], float(getattr(stats, attr)))
            yield c
