"""Grafana dashboards for Catga, generated from code (``catga-bench dashboards build``).

Three dashboards, each in two forms:

* ``dashboards/<name>.json`` — *importable* (Dashboards → Import, or ``POST
  /api/dashboards/import``): what Grafana's "Export for sharing externally" produces, with
  ``__inputs`` declaring ``DS_PROMETHEUS`` and every panel and query pointing at
  ``${DS_PROMETHEUS}``.
* ``dashboards/provisioning/<name>.json`` — *provisionable* from files: Grafana's file
  provisioning does not resolve ``__inputs``, so these use a ``datasource`` template variable
  instead, and every panel and query points at ``${datasource}``.

Plus ``dashboards/provisioning/dashboards.yml`` (a dashboard provider) and
``dashboards/provisioning/datasource.yml`` (Prometheus at ``http://prometheus:9090``) for the
docker-compose stack. Every query uses only the metrics listed in docs/metrics.md.

The dashboards are built with grafana-foundation-sdk (an 11.x build) and encoded with its JSON
encoder; the committed files must equal what :func:`build_all` returns (``--check``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus as prom_b
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import statetimeline as timeline_b
from grafana_foundation_sdk.builders import timeseries as ts_b
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import prometheus as prom_m

__all__ = [
    "DASHBOARDS",
    "EMPTY_UNLESS",
    "GRAFANA_VERSION",
    "build_all",
    "build_dashboard",
    "empty_unless",
    "main",
    "panel_queries",
    "write",
]

#: Grafana version the JSON is written for (the SDK build's schema), stated in ``__requires``.
GRAFANA_VERSION = "11.6.0"
#: Sentence a panel's description starts its caveat with when its queries can return no series
#: in a healthy run (e.g. no breaker configured); see :func:`empty_unless`.
EMPTY_UNLESS = "Empty unless "

IMPORT_INPUT = "DS_PROMETHEUS"
IMPORT_REF = "${DS_PROMETHEUS}"
PROVISION_VARIABLE = "datasource"
PROVISION_REF = "${datasource}"

Form = Literal["import", "provision"]

# ------------------------------------------------------------------------------ PromQL helpers
RI = "$__rate_interval"


def _rate(metric: str, selector: str = "") -> str:
    return f"rate({metric}{selector}[{RI}])"


def _quantile(q: float, buckets: str, by: str = "") -> str:
    """``histogram_quantile`` over ``buckets`` (a vector of bucket *rates*)."""
    group = ", ".join(["le", *([by] if by else [])])
    return f"histogram_quantile({q}, sum by ({group}) ({buckets}))"


def _kinded_buckets() -> str:
    """Event and command duration bucket rates, labelled ``kind`` (events or commands), so one
    query returns data whichever of the two a service handles."""
    return (
        f'label_replace({_rate("catga_event_duration_milliseconds_bucket")}, '
        f'"kind", "events", "", "") or '
        f'label_replace({_rate("catga_command_duration_milliseconds_bucket")}, '
        f'"kind", "commands", "", "")'
    )


def _zero_if_absent(expr: str) -> str:
    """``expr`` or a zero when it has no series: only for sums whose absence means zero."""
    return f"{expr} or on() vector(0)"


PUBLISHED_RATE = f"sum({_rate('catga_messages_published_total')})"
FAILED_RATE = f"sum({_rate('catga_messages_failed_total')})"
COMPLETED_RATE = f"sum({_rate('catga_bench_messages_completed_total')})"
COMPLETED_RATE_OF = (
    'sum(rate(catga_bench_messages_completed_total{{outcome="{outcome}"}}[$__rate_interval]))'
)
SLO_P99 = 'max(catga_bench_slo_target{target="p99_ms"})'
BREAKER_OPEN_REJECTS = _zero_if_absent(f"sum({_rate('catga_circuit_breaker_rejected_total')})")
HANDLER_FAILURES = _zero_if_absent(f"sum({_rate('catga_event_handler_failures_total')})")


# --------------------------------------------------------------------------------- the model
@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str = ""


@dataclass(frozen=True, slots=True)
class PanelSpec:
    """A panel, independent of the datasource form it is rendered in."""

    kind: Literal["timeseries", "stat", "state-timeline"]
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None
    #: (value, color) threshold steps; the first value is the base (None).
    thresholds: tuple[tuple[float | None, str], ...] = ()
    #: value -> (text, color) for stat and state-timeline panels.
    mappings: tuple[tuple[int, str, str], ...] = ()
    #: legends drawn as dashed red threshold lines (SLO targets).
    slo_lines: tuple[str, ...] = ()
    #: when set, the panel may rightly show no data in a healthy run, unless this holds.
    empty_unless: str | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """A titled group of panels."""

    title: str
    panels: tuple[PanelSpec, ...]


@dataclass(frozen=True, slots=True)
class DashboardSpec:
    """A dashboard: uid (also the file name), title, description and rows of panels."""

    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    fault_annotations: bool = False
    tags: tuple[str, ...] = ("catga",)


BREAKER_STATES = ((0, "closed", "green"), (1, "open", "red"), (2, "half-open", "orange"))
FAULT_STATES = ((0, "off", "transparent"), (1, "FAULT", "red"))
LATENCY_THRESHOLDS = ((None, "green"), (100.0, "red"))


def _ts(title: str, description: str, *queries: Query, **kw: Any) -> PanelSpec:
    return PanelSpec("timeseries", title, description, tuple(queries), **kw)


def _stat(title: str, description: str, *queries: Query, **kw: Any) -> PanelSpec:
    kw.setdefault("width", 4)
    kw.setdefault("height", 4)
    return PanelSpec("stat", title, description, tuple(queries), **kw)


def _timeline(title: str, description: str, *queries: Query, **kw: Any) -> PanelSpec:
    kw.setdefault("width", 24)
    kw.setdefault("height", 6)
    return PanelSpec("state-timeline", title, description, tuple(queries), **kw)


def _breaker_state(title: str) -> PanelSpec:
    return _timeline(
        title,
        "Each circuit breaker's state (catga_circuit_breaker_state): closed, open (calls fail "
        "fast), half-open (probing).",
        Query("max by (breaker) (catga_circuit_breaker_state)", "{{breaker}}"),
        mappings=BREAKER_STATES,
        empty_unless="a handler has a circuit breaker",
    )


OVERVIEW = DashboardSpec(
    uid="catga-overview",
    title="Catga overview",
    description="Throughput, latency, errors, backpressure and resilience of a Catga mediator "
                "(metrics of docs/metrics.md; also emitted by .NET Catga).",
    rows=(
        Row("Now", (
            _stat("Throughput now", "Messages admitted per second (send + publish).",
                  Query(PUBLISHED_RATE, "msg/s"), unit="ops"),
            _stat("P99 latency now", "P99 of event fan-out and command handling time.",
                  Query(_quantile(0.99, _kinded_buckets()), "P99"), unit="ms",
                  thresholds=LATENCY_THRESHOLDS),
            _stat("Error ratio now", "Failed messages / admitted messages.",
                  Query(f"{FAILED_RATE} / {PUBLISHED_RATE}", "errors"), unit="percentunit",
                  thresholds=((None, "green"), (0.01, "red"))),
            _stat("Open breakers", "Circuit breakers open now (0 when none is configured).",
                  Query(_zero_if_absent("count(catga_circuit_breaker_state == 1)"), "open"),
                  thresholds=((None, "green"), (1.0, "red"))),
            _stat("Dead letters (total)", "Deliveries dead-lettered since the process started.",
                  Query("sum(catga_deadletter_messages_total)", "dead letters"),
                  thresholds=((None, "green"), (1.0, "red"))),
            _stat("Duplicates suppressed (total)",
                  "Idempotency hits since the process started (QoS 2).",
                  Query("sum(catga_idempotency_hits_total)", "hits")),
        )),
        Row("Traffic", (
            _ts("Throughput by message type",
                "Messages admitted by send/publish per second, in total and by message type.",
                Query(PUBLISHED_RATE, "all"),
                Query(f"sum by (message_type) ({_rate('catga_messages_published_total')})",
                      "{{message_type}}"),
                unit="ops", min=0),
            _ts("Error ratio",
                "Failed messages (a request failed, or an event handler finally failed) / "
                "admitted messages.",
                Query(f"{FAILED_RATE} / {PUBLISHED_RATE}", "error ratio"),
                unit="percentunit", min=0),
        )),
        Row("Latency", (
            _ts("Latency P50 / P99 / P999",
                "Event fan-out time (every handler, with retries) and command handling time, "
                "from the duration histograms. The red line is the design's 100 ms P99 "
                "objective.",
                Query(_quantile(0.5, _kinded_buckets(), "kind"), "P50 {{kind}}"),
                Query(_quantile(0.99, _kinded_buckets(), "kind"), "P99 {{kind}}"),
                Query(_quantile(0.999, _kinded_buckets(), "kind"), "P999 {{kind}}"),
                unit="ms", min=0, thresholds=LATENCY_THRESHOLDS),
            _ts("Event-loop lag",
                "How late the event loop woke a 50 ms sampler: a busy loop delays every "
                "message.",
                Query(_quantile(0.5, _rate("catga_event_loop_lag_milliseconds_bucket")), "P50"),
                Query(_quantile(0.99, _rate("catga_event_loop_lag_milliseconds_bucket")), "P99"),
                unit="ms", min=0),
        )),
        Row("Backpressure", (
            _ts("Active and queued",
                "Messages being processed, bulkhead slots in use and callers waiting for one.",
                Query("sum(catga_messages_active)", "active messages"),
                Query("sum by (limiter) (catga_limiter_active)", "{{limiter}} slots in use"),
                Query("sum by (limiter) (catga_limiter_queue_depth)", "{{limiter}} queued"),
                min=0),
            _ts("Rejected",
                "Calls rejected at once by a full bulkhead queue, and calls failed fast by an "
                "open breaker, per second.",
                Query(f"sum by (limiter) ({_rate('catga_resilience_bulkhead_rejected_total')})",
                      "bulkhead {{limiter}}"),
                Query(BREAKER_OPEN_REJECTS, "open breakers"),
                unit="ops", min=0),
        )),
        Row("Resilience", (
            _breaker_state("Circuit breaker state"),
            _ts("Timeouts", "Handler calls cut by their timeout, per second.",
                Query(f"sum({_rate('catga_resilience_timeouts_total')})", "timeouts"),
                unit="ops", min=0, width=6),
            _ts("Retries", "Retries (before each backoff sleep), per second.",
                Query(f"sum({_rate('catga_resilience_retries_total')})", "retries"),
                unit="ops", min=0, width=6),
            _ts("Idempotency hits", "Duplicates suppressed and first deliveries (QoS 2), "
                "per second.",
                Query(f"sum({_rate('catga_idempotency_hits_total')})", "hits (duplicates)"),
                Query(f"sum({_rate('catga_idempotency_misses_total')})", "misses (first seen)"),
                unit="ops", min=0, width=6),
            _ts("Dead letters and failed handler calls",
                "Deliveries dead-lettered after their last attempt, and event handler calls "
                "that failed, per second.",
                Query(f"sum({_rate('catga_deadletter_messages_total')})", "dead-lettered"),
                Query(HANDLER_FAILURES, "handler call failures"),
                unit="ops", min=0, width=6),
        )),
    ),
)

CHAOS_RUN = DashboardSpec(
    uid="catga-chaos-run",
    title="Catga chaos run",
    description="What a fault did: the injected faults (catga_bench_fault_active, exported by the "
                "harness) against latency with its SLO line, throughput, breakers and "
                "rejections.",
    fault_annotations=True,
    rows=(
        Row("Fault injection", (
            _timeline("Faults",
                      "1 while a fault is injected (handler outage, proxy toxic, broker pause); "
                      "'none' when the run declares no fault.",
                      Query("max by (fault) (catga_bench_fault_active) or on() "
                            'label_replace(vector(0), "fault", "none", "", "")', "{{fault}}"),
                      mappings=FAULT_STATES, height=5),
        )),
        Row("Service level", (
            _ts("P99 latency vs SLO",
                "P99 latency from the intended send time (coordinated omission corrected), per "
                "stream; the dashed red line is the run's P99 target.",
                Query(_quantile(0.99, _rate("catga_bench_latency_milliseconds_bucket"),
                                "stream"), "P99 {{stream}}"),
                Query(SLO_P99, "SLO P99"),
                unit="ms", min=0, slo_lines=("SLO P99",)),
            _ts("Throughput",
                "Offered rate and completions per second by outcome (ok, error, rejected).",
                Query("sum(catga_bench_offered_rate)", "offered"),
                Query(f"sum by (outcome) ({_rate('catga_bench_messages_completed_total')})",
                      "{{outcome}}"),
                unit="ops", min=0),
        )),
        Row("Resilience", (
            _breaker_state("Breaker state"),
            _ts("Rejections",
                "Calls rejected by a full bulkhead, calls failed fast by an open breaker, and "
                "messages the generator saw rejected, per second.",
                Query(f"sum by (limiter) ({_rate('catga_resilience_bulkhead_rejected_total')})",
                      "bulkhead {{limiter}}"),
                Query(BREAKER_OPEN_REJECTS, "open breakers"),
                Query(COMPLETED_RATE_OF.format(outcome="rejected"), "rejected (generator)"),
                unit="ops", min=0),
            _ts("Errors and timeouts",
                "Messages completed with an error, event handler calls that failed and handler "
                "calls cut by their timeout, per second.",
                Query(COMPLETED_RATE_OF.format(outcome="error"), "errors (generator)"),
                Query(HANDLER_FAILURES, "handler call failures"),
                Query(f"sum({_rate('catga_resilience_timeouts_total')})", "timeouts"),
                unit="ops", min=0),
        )),
    ),
)

LATENCY_BUCKETS = _rate("catga_bench_latency_milliseconds_bucket")
LOAD_GENERATOR = DashboardSpec(
    uid="catga-load-generator",
    title="Catga load generator",
    description="Is the test itself healthy? Offered vs achieved rate, dropped sends, schedule "
                "lag and latency from the intended send time (catga_bench_* metrics).",
    rows=(
        Row("Now", (
            _stat("Offered rate now", "The rate the generators are asked to offer.",
                  Query("sum(catga_bench_offered_rate)", "offered"), unit="ops"),
            _stat("Achieved rate now", "Messages completed per second.",
                  Query(COMPLETED_RATE, "achieved"), unit="ops"),
            _stat("Achieved / offered", "Below 100% the generator or the system cannot keep up.",
                  Query(f"{COMPLETED_RATE} / sum(catga_bench_offered_rate)", "ratio"),
                  unit="percentunit", thresholds=((None, "red"), (0.95, "orange"),
                                                  (0.99, "green"))),
            _stat("Dropped sends (total)", "Messages due but never sent, since the run started.",
                  Query("sum(catga_bench_dropped_sends_total)", "dropped"),
                  thresholds=((None, "green"), (1.0, "red"))),
            _stat("Behind schedule now", "How far the slowest generator is behind its schedule.",
                  Query("max(catga_bench_generator_behind_seconds)", "behind"), unit="s",
                  thresholds=((None, "green"), (0.1, "orange"), (1.0, "red"))),
            _stat("In flight now", "Messages issued and not yet completed.",
                  Query("sum(catga_bench_in_flight_messages)", "in flight")),
        )),
        Row("Rate", (
            _ts("Offered vs achieved rate",
                "Offered rate (gauge) against messages sent and completed per second.",
                Query("sum(catga_bench_offered_rate)", "offered"),
                Query(f"sum({_rate('catga_bench_messages_sent_total')})", "sent"),
                Query(COMPLETED_RATE, "achieved (completed)"),
                unit="ops", min=0),
            _ts("Dropped sends", "Messages due but never sent (in-flight cap reached), per second.",
                Query(f"sum({_rate('catga_bench_dropped_sends_total')})", "dropped"),
                unit="ops", min=0),
        )),
        Row("Latency", (
            _ts("Latency from intended send time",
                "P50/P99/P999 measured from each message's intended send time (coordinated "
                "omission corrected); the dashed red line is the run's P99 target.",
                Query(_quantile(0.5, LATENCY_BUCKETS), "P50"),
                Query(_quantile(0.99, LATENCY_BUCKETS), "P99"),
                Query(_quantile(0.999, LATENCY_BUCKETS), "P999"),
                Query(SLO_P99, "SLO P99"),
                unit="ms", min=0, slo_lines=("SLO P99",)),
            _ts("Generator behind schedule", "How far the slowest generator is behind its "
                "schedule (0 when on time).",
                Query("max(catga_bench_generator_behind_seconds)", "behind"), unit="s", min=0),
        )),
        Row("Messages", (
            _ts("In-flight messages", "Messages issued and not yet completed.",
                Query("sum(catga_bench_in_flight_messages)", "in flight"), min=0),
            _ts("Completions by outcome", "Messages completed per second: ok, error, rejected.",
                Query(f"sum by (outcome) ({_rate('catga_bench_messages_completed_total')})",
                      "{{outcome}}"),
                unit="ops", min=0),
        )),
    ),
)

#: Every dashboard, keyed by its uid (which is also its file name).
DASHBOARDS: dict[str, DashboardSpec] = {d.uid: d for d in (OVERVIEW, CHAOS_RUN, LOAD_GENERATOR)}


# ------------------------------------------------------------------------------ SDK rendering
def _thresholds(steps: Sequence[tuple[float | None, str]]) -> dash_b.ThresholdsConfig:
    return (dash_b.ThresholdsConfig()
            .mode(dash_m.ThresholdsMode.ABSOLUTE)
            .steps([dash_m.Threshold(value=v, color=c) for v, c in steps]))


def _mappings(values: Sequence[tuple[int, str, str]]) -> list[dash_m.ValueMapping]:
    options = {str(v): dash_m.ValueMappingResult(text=text, color=color, index=i)
               for i, (v, text, color) in enumerate(values)}
    return [dash_m.ValueMap(options=options)]


def _slo_line_style() -> list[dash_m.DynamicConfigValue]:
    return [
        dash_m.DynamicConfigValue(id_val="color",
                                  value={"mode": "fixed", "fixedColor": "red"}),
        dash_m.DynamicConfigValue(id_val="custom.lineStyle",
                                  value={"fill": "dash", "dash": [10, 10]}),
        dash_m.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
    ]


def _description(spec: PanelSpec) -> str:
    if spec.empty_unless is None:
        return spec.description
    return f"{spec.description} {EMPTY_UNLESS}{spec.empty_unless}."


Panel = ts_b.Panel | stat_b.Panel | timeline_b.Panel


def _panel(spec: PanelSpec, ds: dash_m.DataSourceRef, panel_id: int) -> Panel:
    panel: Panel
    if spec.kind == "timeseries":
        ts = (ts_b.Panel()
              .line_width(1).fill_opacity(10).show_points(common_m.VisibilityMode.NEVER)
              .legend(common_b.VizLegendOptions().show_legend(True)
                      .display_mode(common_m.LegendDisplayMode.LIST)
                      .placement(common_m.LegendPlacement.BOTTOM))
              .tooltip(common_b.VizTooltipOptions().mode(common_m.TooltipDisplayMode.MULTI)
                       .sort(common_m.SortOrder.DESCENDING)))
        if spec.thresholds:
            ts = ts.thresholds_style(common_b.GraphThresholdsStyleConfig()
                                     .mode(common_m.GraphThresholdsStyleMode.DASHED))
        for legend in spec.slo_lines:
            ts = ts.override_by_name(legend, _slo_line_style())
        panel = ts
    elif spec.kind == "stat":
        panel = (stat_b.Panel()
                 .graph_mode(common_m.BigValueGraphMode.AREA)
                 .color_mode(common_m.BigValueColorMode.VALUE)
                 .reduce_options(common_b.ReduceDataOptions().values(False)
                                 .calcs(["lastNotNull"])))
    else:
        panel = (timeline_b.Panel()
                 .show_value(common_m.VisibilityMode.NEVER)
                 .merge_values(True).row_height(0.8).fill_opacity(80)
                 .color_scheme(dash_b.FieldColor()
                               .mode(dash_m.FieldColorModeId.THRESHOLDS)))
    panel = (panel.id(panel_id).title(spec.title).description(_description(spec))
             .datasource(ds).unit(spec.unit).span(spec.width).height(spec.height))
    if spec.min is not None:
        panel = panel.min(spec.min)
    if spec.max is not None:
        panel = panel.max(spec.max)
    if spec.thresholds:
        panel = panel.thresholds(_thresholds(spec.thresholds))
    elif spec.kind == "state-timeline":
        panel = panel.thresholds(_thresholds(((None, "green"),)))
    if spec.mappings:
        panel = panel.mappings(_mappings(spec.mappings))
    for i, q in enumerate(spec.queries):
        target = (prom_b.Dataquery().ref_id(chr(ord("A") + i)).datasource(ds).expr(q.expr)
                  .editor_mode(prom_m.QueryEditorMode.CODE).range())
        if q.legend:
            target = target.legend_format(q.legend)
        panel = panel.with_target(target)
    return panel


def _fault_annotation(ds: dash_m.DataSourceRef) -> dash_b.AnnotationQuery:
    return (dash_b.AnnotationQuery().name("Faults").datasource(ds).enable(True)
            .icon_color("red").expr("max by (fault) (catga_bench_fault_active) == 1"))


def _builtin_annotation() -> dash_b.AnnotationQuery:
    return (dash_b.AnnotationQuery().name("Annotations & Alerts").built_in(1).enable(True)
            .hide(True).icon_color("rgba(0, 211, 255, 1)").type("dashboard")
            .datasource(dash_m.DataSourceRef(type_val="grafana", uid="-- Grafana --")))


def build_dashboard(spec: DashboardSpec, form: Form) -> dict[str, Any]:
    """Render ``spec`` with the SDK in one form: ``"import"`` (``__inputs``/``DS_PROMETHEUS``)
    or ``"provision"`` (a ``datasource`` template variable); returns the JSON object."""
    ref = IMPORT_REF if form == "import" else PROVISION_REF
    ds = dash_m.DataSourceRef(type_val="prometheus", uid=ref)
    builder = (dash_b.Dashboard(spec.title).uid(spec.uid).description(spec.description)
               .tags(list(spec.tags)).refresh("5s").time("now-15m", "now")
               .timezone("browser").editable().tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
               .annotation(_builtin_annotation()))
    if spec.fault_annotations:
        builder = builder.annotation(_fault_annotation(ds))
    if form == "provision":
        builder = builder.with_variable(
            dash_b.DatasourceVariable(PROVISION_VARIABLE).label("Data source").type("prometheus")
        )
    next_id = 1
    for row in spec.rows:
        builder = builder.with_row(dash_b.Row(row.title).id(next_id))
        next_id += 1
        for panel_spec in row.panels:
            builder = builder.with_panel(_panel(panel_spec, ds, next_id))
            next_id += 1
    # The SDK's encoder turns the model into JSON-ready objects; round-trip to plain data.
    obj: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    obj["templating"].setdefault("list", [])
    for annotation in obj["annotations"]["list"]:
        if annotation["datasource"]["type"] == "prometheus":
            # Not modelled by the SDK: the Prometheus annotation's query step (Grafana's
            # default, 60 s, would blur a few-second fault) and the event title.
            annotation.update(step="5s", titleFormat="{{fault}}")
    if form == "import":
        obj["__inputs"] = [{
            "name": IMPORT_INPUT,
            "label": "Prometheus",
            "description": "",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }]
        obj["__elements"] = {}
        obj["__requires"] = _requires(spec)
        obj["id"] = None
    return obj


_PANEL_NAMES = {"timeseries": "Time series", "stat": "Stat", "state-timeline": "State timeline"}


def _requires(spec: DashboardSpec) -> list[dict[str, str]]:
    kinds = sorted({p.kind for row in spec.rows for p in row.panels})
    return [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        *({"type": "panel", "id": k, "name": _PANEL_NAMES[k], "version": ""} for k in kinds),
    ]


def _dump(obj: Any) -> str:
    return json.dumps(obj, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


PROVIDER_YML = """\
# Grafana dashboard provider (generated by `catga-bench dashboards build`; do not edit).
# Mount as /etc/grafana/provisioning/dashboards/catga.yml, and this directory (its *.json)
# at /var/lib/grafana/dashboards/catga.
apiVersion: 1
providers:
  - name: catga
    orgId: 1
    folder: Catga
    type: file
    disableDeletion: false
    allowUiUpdates: false
    updateIntervalSeconds: 30
    options:
      path: /var/lib/grafana/dashboards/catga
      foldersFromFilesStructure: false
"""

DATASOURCE_YML = """\
# Grafana datasource (generated by `catga-bench dashboards build`; do not edit).
# Mount as /etc/grafana/provisioning/datasources/catga.yml. timeInterval must match
# Prometheus's scrape_interval: Grafana derives $__rate_interval from it.
apiVersion: 1
datasources:
  - name: Prometheus
    uid: prometheus
    type: prometheus
    access: proxy
    url: http://prometheus:9090
    isDefault: true
    editable: false
    jsonData:
      timeInterval: 5s
"""


def build_all() -> dict[Path, str]:
    """Every generated file: path relative to the dashboards directory -> its text.

    Deterministic (sorted keys, two-space indent, trailing newline), so ``--check`` can compare
    byte for byte.
    """
    out: dict[Path, str] = {}
    for uid, spec in DASHBOARDS.items():
        out[Path(f"{uid}.json")] = _dump(build_dashboard(spec, "import"))
        out[Path("provisioning") / f"{uid}.json"] = _dump(build_dashboard(spec, "provision"))
    out[Path("provisioning/dashboards.yml")] = PROVIDER_YML
    out[Path("provisioning/datasource.yml")] = DATASOURCE_YML
    return out


def write(out_dir: Path | str) -> list[Path]:
    """Write every generated file under ``out_dir``; returns the paths written."""
    root = Path(out_dir)
    written = []
    for rel, text in build_all().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _differences(out_dir: Path) -> list[str]:
    problems = []
    expected = build_all()
    for rel, text in expected.items():
        path = out_dir / rel
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from the generator's output")
    for pattern in ("*.json", "provisioning/*.json"):
        for path in sorted(out_dir.glob(pattern)):
            if path.relative_to(out_dir) not in expected:
                problems.append(f"{path}: not produced by the generator (stale?)")
    return problems


# ---------------------------------------------------------------------------- query extraction
def _walk_panels(panels: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _walk_panels(panel.get("panels") or [])


#: Grafana's built-in interval variables, and what ``panel_queries`` puts in their place.
DEFAULT_SUBSTITUTIONS = {
    "__rate_interval": "30s",
    "__interval": "15s",
    "__range": "15m",
}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def panel_queries(
    dashboard_json: dict[str, Any] | str,
    substitutions: dict[str, str] | None = None,
) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every panel query, with template variables replaced by values
    usable against Prometheus directly (``$__rate_interval`` -> ``30s``, ``$__interval`` ->
    ``15s``; override through ``substitutions``, keyed by variable name without ``$``).

    Raises ValueError on a variable it has no value for.
    """
    dash = json.loads(dashboard_json) if isinstance(dashboard_json, str) else dashboard_json
    values = {**DEFAULT_SUBSTITUTIONS, **(substitutions or {})}

    def replace(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise ValueError(f"no value for template variable ${name} in {m.string!r}")
        return values[name]

    out = []
    for panel in _walk_panels(dash.get("panels") or []):
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if expr:
                out.append((panel.get("title", ""), _VARIABLE.sub(replace, expr)))
    return out


def empty_unless(dashboard_json: dict[str, Any] | str) -> dict[str, str]:
    """Panels whose queries may rightly return no series in a healthy run: title -> the
    condition under which they return data (from the panel description's caveat)."""
    dash = json.loads(dashboard_json) if isinstance(dashboard_json, str) else dashboard_json
    out = {}
    for panel in _walk_panels(dash.get("panels") or []):
        desc = panel.get("description") or ""
        if EMPTY_UNLESS in desc:
            out[panel["title"]] = desc.split(EMPTY_UNLESS, 1)[1].rstrip(".")
    return out


# ---------------------------------------------------------------------------------- command
def main(argv: Sequence[str] | None = None) -> int:
    """``catga-bench dashboards build [--out DIR] [--check]``; returns the exit code (0 ok,
    1 ``--check`` found differences, 2 usage error)."""
    parser = argparse.ArgumentParser(
        prog="catga-bench dashboards",
        description="Generate the Grafana dashboards (importable and provisionable JSON).",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="write dashboards/*.json and dashboards/provisioning/*")
    build.add_argument("--out", default="dashboards", type=Path,
                       help="output directory (default: ./dashboards)")
    build.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if the files in --out differ from the "
                            "generator's output")
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:
        return int(exc.code or 0)
    out_dir: Path = args.out
    if args.check:
        problems = _differences(out_dir)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run `catga-bench dashboards build` and commit the result", file=sys.stderr)
            return 1
        print(f"{out_dir}: dashboards up to date")
        return 0
    for path in write(out_dir):
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
