"""Rendering a dashboard spec to Grafana JSON with grafana-foundation-sdk (:func:`build_dashboard`).

Two forms: ``"import"`` (``__inputs`` declaring ``DS_PROMETHEUS``, every panel and query on
``${DS_PROMETHEUS}``) and ``"provision"`` (a ``datasource`` template variable, every panel and
query on ``${datasource}``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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

from catga_bench.observability.dashboards.panels import EMPTY_UNLESS, DashboardSpec, PanelSpec

#: Grafana version the JSON is written for (the SDK build's schema), stated in ``__requires``.
GRAFANA_VERSION = "11.6.0"

IMPORT_INPUT = "DS_PROMETHEUS"
IMPORT_REF = "${DS_PROMETHEUS}"
PROVISION_VARIABLE = "datasource"
PROVISION_REF = "${datasource}"

Form = Literal["import", "provision"]


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
