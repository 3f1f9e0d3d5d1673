"""Catga's alerting rules as data, written once with production windows.

:data:`ALERTS` (every alert but the SLO burn-rate ones), the two objectives :data:`SLOS` and
the multi-window multi-burn-rate pairs :data:`BURN_WINDOWS` from which :func:`burn_rate_alerts`
derives the burn-rate alerts; :func:`all_alerts` is both. ``alerts.py`` renders them to the
production and test rule files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["critical", "warning", "info"]

#: Events published to at least this many handlers count as a chunked (high) fan-out.
FANOUT_CHUNK_HANDLERS = 100

#: The SLO period the error budgets are defined over.
SLO_PERIOD = "30d"


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """One alerting rule, written with production windows.

    Args:
        name: the ``alertname``.
        severity: tier: ``critical``, ``warning`` or ``info`` (the ``severity`` label).
        expr: PromQL with production range windows (``[5m]``); the test profile rewrites them.
        for_: production ``for`` duration (None: fire on the first evaluation).
        summary: one line, may use ``{{ $labels.x }}``.
        description: what is happening, with ``{{ $labels.x }}`` / ``{{ $value }}``.
        runbook: one line: what to check and what to do.
        labels: extra static labels besides ``severity``. Annotations cannot read them through
            ``$labels`` (that holds the query result's labels), so ``<key>`` in the annotation
            text is replaced by the label's value in the rendered profile.
    """

    name: str
    severity: Severity
    expr: str
    for_: str | None
    summary: str
    description: str
    runbook: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SLOSpec:
    """A service-level objective with a ratio SLI (bad events / all events).

    Args:
        name: short name, the ``slo`` label of the recorded series and alerts (``latency``).
        title: the objective's name in annotations (``latency SLO``).
        alert_prefix: burn-rate alerts are named ``<alert_prefix>BudgetBurn<long window>``.
        objective: the target good ratio over :data:`SLO_PERIOD` (0.99 = 99% good).
        meaning: the objective in words, for annotations.
        bad: PromQL rate of bad events, with ``$window`` for the range window.
        total: PromQL rate of all events, with ``$window`` (same aggregation labels as ``bad``).
        runbook: one line: what to check and what to do.
    """

    name: str
    title: str
    alert_prefix: str
    objective: float
    meaning: str
    bad: str
    total: str
    runbook: str

    @property
    def budget(self) -> str:
        """The error budget ``1 - objective`` as PromQL literal text (``0.01``)."""
        return f"{1 - self.objective:.6g}"


@dataclass(frozen=True, slots=True)
class BurnWindow:
    """One multi-window pair: alert when both windows burn faster than ``factor``."""

    long: str
    short: str
    factor: float
    severity: Severity


#: SRE workbook / Sloth windows: 2% of a 30-day budget in 1 h, 5% in 6 h (page); 10% in 1 d,
#: 10% in 3 d (ticket).
BURN_WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow("1h", "5m", 14.4, "critical"),
    BurnWindow("6h", "30m", 6.0, "critical"),
    BurnWindow("1d", "2h", 3.0, "warning"),
    BurnWindow("3d", "6h", 1.0, "warning"),
)

#: Name of the recorded SLI error ratio, per window: ``catga:slo_sli_error:ratio_rate<window>``.
SLI_RECORD = "catga:slo_sli_error:ratio_rate"


def _at_least_regex(n: int) -> str:
    """An RE2 pattern matching the decimal integers >= ``n`` (no leading zeros)."""
    if n < 1:
        return "[0-9]+"
    digits = str(n)
    d = len(digits)
    if digits == "1" + "0" * (d - 1):  # a power of ten: any number with >= d digits
        return f"[1-9][0-9]{{{d - 1},}}" if d > 1 else "[1-9][0-9]*"
    parts = [f"[1-9][0-9]{{{d},}}"]  # more digits than n
    for i, ch in enumerate(digits):  # same length: equal prefix, then a bigger digit
        if ch == "9":
            continue
        low = int(ch) + 1
        rest = d - i - 1
        tail = f"[0-9]{{{rest}}}" if rest > 1 else ("[0-9]" if rest == 1 else "")
        parts.append(f"{digits[:i]}[{low}-9]{tail}")
    parts.append(digits)
    return "|".join(parts)


def _hist_p99(metric: str, by: str) -> str:
    return (
        f"histogram_quantile(0.99,\n"
        f"  sum by (job, {by}, le) (rate({metric}_bucket[5m]))\n"
        f") > 1000"
    )


_UTIL = "catga_limiter_active / catga_limiter_max_concurrency"

_UTIL_RUNBOOK = (
    "Compare catga_limiter_active with catga_limiter_max_concurrency and check handler "
    "latency (slow handlers hold slots); if the handlers' dependencies have headroom raise "
    "max_concurrency, otherwise add instances or shed load upstream."
)

#: Every alert except the SLO burn-rate alerts (those are built from :data:`SLOS`).
ALERTS: tuple[AlertSpec, ...] = (
    # ------------------------------------------------------------------ critical
    AlertSpec(
        name="CatgaLimiterSaturated",
        severity="critical",
        expr=f"{_UTIL} > 0.95",
        for_="2m",
        summary="Limiter {{ $labels.limiter }} is saturated (> 95% of its slots in use)",
        description=(
            "Limiter {{ $labels.limiter }} on {{ $labels.instance }} has "
            "{{ $value | humanizePercentage }} of its slots in use: new messages queue and, "
            "once the wait queue is full, are rejected."
        ),
        runbook=_UTIL_RUNBOOK,
    ),
    AlertSpec(
        name="CatgaBulkheadRejecting",
        severity="critical",
        expr="sum by (job, limiter) (rate(catga_resilience_bulkhead_rejected_total[1m])) > 0",
        for_="5m",
        summary="Limiter {{ $labels.limiter }} keeps rejecting messages (backpressure)",
        description=(
            "The bulkhead {{ $labels.limiter }} ({{ $labels.job }}) rejects "
            "{{ $value | humanize }} messages/s: its wait queue stays full, so senders get "
            "REJECTED instead of being served."
        ),
        runbook=(
            "Check catga_limiter_queue_depth and handler latency for this limiter; the offered "
            "load exceeds capacity: scale out, raise max_concurrency/max_queue only with memory "
            "and dependency headroom, or slow the producers."
        ),
    ),
    AlertSpec(
        name="CatgaCommandLatencyP99High",
        severity="critical",
        expr=_hist_p99("catga_command_duration_milliseconds", "request_type"),
        for_="2m",
        summary="P99 handling time of {{ $labels.request_type }} is above 1 s",
        description=(
            "Requests of type {{ $labels.request_type }} ({{ $labels.job }}) take "
            "{{ $value | printf \"%.0f\" }} ms at the 99th percentile (objective: 100 ms)."
        ),
        runbook=(
            "Look for retries and timeouts (catga_resilience_retries_total, "
            "catga_resilience_timeouts_total), an open breaker, a saturated limiter and "
            "event-loop lag (catga_event_loop_lag_milliseconds); then the handler's dependency."
        ),
    ),
    AlertSpec(
        name="CatgaEventLatencyP99High",
        severity="critical",
        expr=_hist_p99("catga_event_duration_milliseconds", "event_type"),
        for_="2m",
        summary="P99 fan-out time of {{ $labels.event_type }} is above 1 s",
        description=(
            "Publishing {{ $labels.event_type }} ({{ $labels.job }}) to every handler takes "
            "{{ $value | printf \"%.0f\" }} ms at the 99th percentile (objective: 100 ms)."
        ),
        runbook=(
            "Find the slow handler (catga_event_handler_failures_total, timeouts, retries); "
            "check the fan-out width (catga_events_published_total{handler_count}) and "
            "event-loop lag; give slow handlers a timeout or their own bulkhead."
        ),
    ),
    AlertSpec(
        name="CatgaBenchLatencyP99High",
        severity="critical",
        expr=_hist_p99("catga_bench_latency_milliseconds", "stream"),
        for_="2m",
        summary="P99 latency of stream {{ $labels.stream }} (from intended send) is above 1 s",
        description=(
            "Messages of stream {{ $labels.stream }} complete {{ $value | printf \"%.0f\" }} ms "
            "after their intended send time at the 99th percentile (coordinated omission "
            "corrected; objective: 100 ms)."
        ),
        runbook=(
            "Check catga_bench_generator_behind_seconds (a late generator is the test's fault), "
            "then the core's command/event P99, limiter queue depth and event-loop lag."
        ),
    ),
    # ------------------------------------------------------------------ warning
    AlertSpec(
        name="CatgaLimiterUtilisationHigh",
        severity="warning",
        expr=f"{_UTIL} > 0.8",
        for_="5m",
        summary="Limiter {{ $labels.limiter }} is above 80% utilisation",
        description=(
            "Limiter {{ $labels.limiter }} on {{ $labels.instance }} has "
            "{{ $value | humanizePercentage }} of its slots in use."
        ),
        runbook=_UTIL_RUNBOOK,
    ),
    AlertSpec(
        name="CatgaLimiterQueueDeep",
        severity="warning",
        expr="catga_limiter_queue_depth > 1000",
        for_="2m",
        summary="More than 1000 callers wait for limiter {{ $labels.limiter }}",
        description=(
            "{{ $value | humanize }} callers wait for a slot of limiter {{ $labels.limiter }} "
            "on {{ $labels.instance }}: every queued message adds its wait to its latency."
        ),
        runbook=(
            "Check handler latency and catga_limiter_active for this limiter; a deep queue "
            "means capacity is short: scale out or lower max_queue so excess load is rejected "
            "early instead of timing out late."
        ),
    ),
    AlertSpec(
        name="CatgaCircuitBreakerOpen",
        severity="warning",
        expr="catga_circuit_breaker_state > 0",
        for_="1m",
        summary="Circuit breaker {{ $labels.breaker }} is open",
        description=(
            "Breaker {{ $labels.breaker }} on {{ $labels.instance }} is not closed (state "
            "{{ $value }}: 1 open, 2 half-open probing): calls to its handler fail fast."
        ),
        runbook=(
            "The protected handler or its dependency is failing: check "
            "catga_event_handler_failures_total and logs for {{ $labels.breaker }}, fix or "
            "fail over the dependency; the breaker closes by itself after a successful probe."
        ),
    ),
    # ------------------------------------------------------------------ info
    AlertSpec(
        name="CatgaLimiterUtilisationElevated",
        severity="info",
        expr=f"{_UTIL} > 0.6",
        for_="15m",
        summary="Limiter {{ $labels.limiter }} is above 60% utilisation",
        description=(
            "Limiter {{ $labels.limiter }} on {{ $labels.instance }} has "
            "{{ $value | humanizePercentage }} of its slots in use: headroom is shrinking."
        ),
        runbook="Capacity planning: compare the trend with the expected peak load.",
    ),
    AlertSpec(
        name="CatgaFanoutChunked",
        severity="info",
        expr=(
            "sum by (job, event_type, handler_count) (\n"
            "  rate(catga_events_published_total{handler_count=~"
            f'"{_at_least_regex(FANOUT_CHUNK_HANDLERS)}"'
            "}[5m])\n"
            ") > 0"
        ),
        for_="5m",
        summary="Chunked fan-out: {{ $labels.event_type }} goes to {{ $labels.handler_count }} "
                "handlers",
        description=(
            "{{ $labels.event_type }} ({{ $labels.job }}) is published at "
            "{{ $value | humanize }}/s to {{ $labels.handler_count }} handlers "
            f"(>= {FANOUT_CHUNK_HANDLERS}): each publish dispatches its handlers in bounded "
            "chunks (fanout_concurrency) and its latency is the slowest handler's."
        ),
        runbook=(
            "Expected for wide events; watch catga_event_duration_milliseconds for this event "
            "and consider splitting it or moving slow handlers behind a queue."
        ),
    ),
    AlertSpec(
        name="CatgaTimeoutRetries",
        severity="info",
        expr=(
            "rate(catga_resilience_timeouts_total[5m]) > 0\n"
            "and\n"
            "rate(catga_resilience_retries_total[5m]) > 0"
        ),
        for_="5m",
        summary="Handlers time out and are retried",
        description=(
            "{{ $labels.instance }} cuts {{ $value | humanize }} handler calls/s at their "
            "timeout and retries them: each retry adds a timeout plus backoff to the latency."
        ),
        runbook=(
            "Find the slow handler (catga_event_duration_milliseconds, handler logs); raise its "
            "timeout only if the slowness is legitimate, otherwise fix the dependency."
        ),
    ),
)

_LE_100 = 'le=~"100|100\\\\.0"'  # Prometheus 3 writes the bucket edge as "100.0"

#: The two objectives, on the load generator's view of every message (docs/metrics.md).
SLOS: tuple[SLOSpec, ...] = (
    SLOSpec(
        name="latency",
        title="latency SLO",
        alert_prefix="CatgaLatency",
        objective=0.99,
        meaning="99% of messages complete within 100 ms of their intended send time",
        bad=(
            "sum by (job, stream) (rate(catga_bench_latency_milliseconds_count[$window]))\n"
            f"- sum by (job, stream) (rate(catga_bench_latency_milliseconds_bucket{{{_LE_100}}}"
            "[$window]))"
        ),
        total="sum by (job, stream) (rate(catga_bench_latency_milliseconds_count[$window]))",
        runbook=(
            "Check the P99 alerts and the latency panels: limiter queue depth, retries and "
            "timeouts, event-loop lag, generator_behind_seconds; fix the slowest stage first."
        ),
    ),
    SLOSpec(
        name="errors",
        title="error-ratio SLO",
        alert_prefix="CatgaError",
        objective=0.999,
        meaning="99.9% of messages complete ok (not error, not rejected)",
        bad=(
            "sum by (job, stream) (rate(catga_bench_messages_completed_total"
            '{outcome!="ok"}[$window]))'
        ),
        total="sum by (job, stream) (rate(catga_bench_messages_completed_total[$window]))",
        runbook=(
            "Split by outcome (catga_bench_messages_completed_total): rejected means overload "
            "(see the limiter alerts), error means failing handlers (breakers, dead letters)."
        ),
    ),
)


def slo_windows() -> list[str]:
    """Every window of :data:`BURN_WINDOWS` (long and short), shortest first."""
    seen: dict[str, None] = {}
    for w in BURN_WINDOWS:
        seen.setdefault(w.short, None)
        seen.setdefault(w.long, None)
    return sorted(seen, key=_seconds)


def _seconds(duration: str) -> int:
    m = re.fullmatch(r"(\d+)([smhdw])", duration)
    if m is None:
        raise ValueError(f"unsupported duration {duration!r}")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def burn_rate_alerts() -> list[AlertSpec]:
    """The multi-window multi-burn-rate alerts for every SLO in :data:`SLOS` (production)."""
    out = []
    for slo in SLOS:
        for w in BURN_WINDOWS:
            sel = f'{{slo="{slo.name}"}}'
            out.append(AlertSpec(
                name=f"{slo.alert_prefix}BudgetBurn{w.long}",
                severity=w.severity,
                expr=(
                    f"{SLI_RECORD}{w.long}{sel} / {slo.budget} > {w.factor:g}\n"
                    f"and\n"
                    f"{SLI_RECORD}{w.short}{sel} / {slo.budget} > {w.factor:g}"
                ),
                for_=None,
                summary=(
                    f"Stream {{{{ $labels.stream }}}} burns its {slo.title} error budget "
                    f"{w.factor:g}x too fast"
                ),
                description=(
                    f"Objective: {slo.meaning} over {SLO_PERIOD}. Stream "
                    "{{ $labels.stream }} ({{ $labels.job }}) spends its error budget at "
                    "{{ $value | printf \"%.1f\" }}x the sustainable rate over the last "
                    f"<long_window> and is still above {w.factor:g}x over the last <short_window>."
                ),
                runbook=slo.runbook,
                labels={"long_window": w.long, "short_window": w.short},
            ))
    return out


def all_alerts() -> list[AlertSpec]:
    """Every alert, production windows: :data:`ALERTS` then :func:`burn_rate_alerts`."""
    return [*ALERTS, *burn_rate_alerts()]
