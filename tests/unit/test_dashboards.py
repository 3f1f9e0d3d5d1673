"""The Grafana dashboards: committed JSON equals the generator's output, both forms reference
their datasource correctly, every query uses documented metrics and is valid PromQL."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from _support import require_tool

from catga_bench.observability import dashboards
from catga_bench.observability.dashboards import build_all, empty_unless, main, panel_queries, write

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "dashboards"
METRICS_DOC = ROOT / "docs" / "metrics.md"
UIDS = sorted(dashboards.DASHBOARDS)
TITLES = {
    "catga-overview": "Catga overview",
    "catga-chaos-run": "Catga chaos run",
    "catga-load-generator": "Catga load generator",
}
GENERATED = build_all()
PROM_IMPORT = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
PROM_PROVISION = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_BUILTIN = {"type": "grafana", "uid": "-- Grafana --"}


def _importable(uid: str) -> dict[str, Any]:
    return json.loads(GENERATED[Path(f"{uid}.json")])


def _provisioned(uid: str) -> dict[str, Any]:
    return json.loads(GENERATED[Path("provisioning") / f"{uid}.json"])


def _all_forms() -> Iterator[tuple[str, dict[str, Any]]]:
    for uid in UIDS:
        yield f"{uid}.json", _importable(uid)
        yield f"provisioning/{uid}.json", _provisioned(uid)


def _panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel except rows (rows hold no queries), including panels nested in rows."""
    out = []
    stack = list(dash.get("panels") or [])
    while stack:
        panel = stack.pop(0)
        stack.extend(panel.get("panels") or [])
        if panel.get("type") != "row":
            out.append(panel)
    return out


def _datasource_refs(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from _datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasource_refs(item)


def _all_exprs(dash: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(dash) for t in p.get("targets") or [] if "expr" in t]
    exprs += [a["expr"] for a in dash["annotations"]["list"] if "expr" in a]
    return exprs


def _documented_series() -> set[str]:
    """Series names docs/metrics.md allows: each documented name, plus a histogram's
    ``_bucket``/``_sum``/``_count`` (a counter is documented with its ``_total``)."""
    names: set[str] = set()
    for line in METRICS_DOC.read_text().splitlines():
        m = re.match(r"\| `(catga_[a-z0-9_]+)` \| (\w+) \|", line)
        if not m:
            continue
        name, kind = m.groups()
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


# ------------------------------------------------------------------------- generated == committed
@pytest.mark.parametrize("rel", sorted(GENERATED, key=str), ids=str)
def test_committed_file_equals_generator_output(rel: Path) -> None:
    path = DASHBOARD_DIR / rel
    assert path.is_file(), f"{path} missing: run `catga-bench dashboards build`"
    assert path.read_text(encoding="utf-8") == GENERATED[rel], (
        f"{path} differs from the generator: run `catga-bench dashboards build`"
    )


def test_check_passes_on_the_committed_directory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--check", "--out", str(DASHBOARD_DIR)]) == 0, capsys.readouterr().err


def test_generator_is_deterministic_and_newline_terminated() -> None:
    again = build_all()
    assert again == GENERATED
    assert all(text.endswith("\n") for text in again.values())


def test_build_writes_and_check_detects_drift(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--out", str(tmp_path)]) == 0
    for rel, text in GENERATED.items():
        assert (tmp_path / rel).read_text(encoding="utf-8") == text
    assert main(["build", "--check", "--out", str(tmp_path)]) == 0

    edited = tmp_path / "catga-overview.json"
    edited.write_text(edited.read_text().replace("Catga overview", "Edited by hand"))
    assert main(["build", "--check", "--out", str(tmp_path)]) == 1
    assert "catga-overview.json" in capsys.readouterr().err

    write(tmp_path)
    (tmp_path / "provisioning" / "catga-chaos-run.json").unlink()
    assert main(["build", "--check", "--out", str(tmp_path)]) == 1
    assert "missing" in capsys.readouterr().err

    write(tmp_path)
    (tmp_path / "old-dashboard.json").write_text("{}\n")
    assert main(["build", "--check", "--out", str(tmp_path)]) == 1
    assert "stale" in capsys.readouterr().err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert main([]) == 2
    capsys.readouterr()


def test_sdk_is_an_11x_build() -> None:
    # An unpinned install resolves to the Grafana 10.1 build (FIELD-NOTES.md).
    assert version("grafana-foundation-sdk").split("!")[-1].startswith("11.")


# ------------------------------------------------------------------------------- both forms
@pytest.mark.parametrize("uid", UIDS)
def test_dashboard_identity_and_settings(uid: str) -> None:
    for dash in (_importable(uid), _provisioned(uid)):
        assert dash["uid"] == uid
        assert dash["title"] == TITLES[uid]
        assert "catga" in dash["tags"]
        assert dash["refresh"] == "5s"
        assert dash["time"] == {"from": "now-15m", "to": "now"}


@pytest.mark.parametrize("uid", UIDS)
def test_importable_form_declares_and_uses_only_ds_prometheus(uid: str) -> None:
    dash = _importable(uid)
    assert dash["__inputs"] == [{
        "name": "DS_PROMETHEUS", "label": "Prometheus", "description": "",
        "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus",
    }]
    requires = {(r["type"], r["id"]) for r in dash["__requires"]}
    assert {("grafana", "grafana"), ("datasource", "prometheus")} <= requires
    assert {("panel", p["type"]) for p in _panels(dash)} <= requires
    refs = list(_datasource_refs(dash))
    assert refs
    for ref in refs:
        assert ref in (PROM_IMPORT, GRAFANA_BUILTIN), ref
    for panel in _panels(dash):
        assert panel["datasource"] == PROM_IMPORT
        assert all(t["datasource"] == PROM_IMPORT for t in panel["targets"])
    text = GENERATED[Path(f"{uid}.json")]
    assert set(re.findall(r"\$\{(\w+)\}", text)) == {"DS_PROMETHEUS"}
    assert dash["templating"]["list"] == []


@pytest.mark.parametrize("uid", UIDS)
def test_provisioning_form_uses_a_datasource_variable(uid: str) -> None:
    dash = _provisioned(uid)
    assert not {"__inputs", "__requires", "__elements"} & set(dash)
    variables = dash["templating"]["list"]
    assert [v["name"] for v in variables] == ["datasource"]
    assert variables[0]["type"] == "datasource"
    assert variables[0]["query"] == "prometheus"
    for ref in _datasource_refs(dash):
        assert ref in (PROM_PROVISION, GRAFANA_BUILTIN), ref
    for panel in _panels(dash):
        assert panel["datasource"] == PROM_PROVISION
        assert all(t["datasource"] == PROM_PROVISION for t in panel["targets"])
    text = GENERATED[Path("provisioning") / f"{uid}.json"]
    assert "DS_PROMETHEUS" not in text
    assert set(re.findall(r"\$\{(\w+)\}", text)) == {"datasource"}


@pytest.mark.parametrize("uid", UIDS)
def test_forms_differ_only_in_how_they_name_the_datasource(uid: str) -> None:
    importable = GENERATED[Path(f"{uid}.json")].replace("${DS_PROMETHEUS}", "${datasource}")
    imported = json.loads(importable)
    for key in ("__inputs", "__requires", "__elements", "id"):
        del imported[key]
    provisioned = _provisioned(uid)
    provisioned["templating"]["list"] = []
    assert imported == provisioned


# ----------------------------------------------------------------------------------- panels
@pytest.mark.parametrize(("name", "dash"), list(_all_forms()), ids=[n for n, _ in _all_forms()])
def test_every_panel_has_queries_and_a_place(name: str, dash: dict[str, Any]) -> None:
    panels = _panels(dash)
    assert len(panels) >= 6
    titles = [p["title"] for p in panels]
    assert len(titles) == len(set(titles)), f"{name}: duplicate panel titles"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
    for panel in panels:
        targets = panel.get("targets") or []
        assert targets, f"{name}: {panel['title']} has no target"
        assert all(t.get("expr", "").strip() for t in targets), panel["title"]
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]


def test_panels_cover_what_the_issue_lists() -> None:
    def exprs(uid: str) -> str:
        return "\n".join(_all_exprs(_importable(uid)))

    overview = exprs("catga-overview")
    for needle in ("sum(rate(catga_messages_published_total[$__rate_interval]))",
                   "catga_event_duration_milliseconds_bucket",
                   "catga_command_duration_milliseconds_bucket",
                   "histogram_quantile(0.5,", "histogram_quantile(0.99,",
                   "histogram_quantile(0.999,", "catga_messages_failed_total",
                   "catga_limiter_active", "catga_limiter_queue_depth",
                   "catga_resilience_bulkhead_rejected_total", "catga_circuit_breaker_state",
                   "catga_resilience_timeouts_total", "catga_resilience_retries_total",
                   "catga_event_loop_lag_milliseconds_bucket", "catga_idempotency_hits_total",
                   "catga_deadletter_messages_total"):
        assert needle in overview, needle
    chaos = exprs("catga-chaos-run")
    for needle in ("catga_bench_fault_active", "catga_bench_latency_milliseconds_bucket",
                   'catga_bench_slo_target{target="p99_ms"}', "catga_circuit_breaker_state",
                   "catga_resilience_bulkhead_rejected_total"):
        assert needle in chaos, needle
    load = exprs("catga-load-generator")
    for needle in ("catga_bench_offered_rate",
                   "sum(rate(catga_bench_messages_completed_total[$__rate_interval]))",
                   "rate(catga_bench_dropped_sends_total[$__rate_interval])",
                   "catga_bench_generator_behind_seconds",
                   "catga_bench_latency_milliseconds_bucket", "catga_bench_in_flight_messages"):
        assert needle in load, needle
    kinds = {uid: {p["type"] for p in _panels(_importable(uid))} for uid in UIDS}
    assert "state-timeline" in kinds["catga-chaos-run"]
    assert "state-timeline" in kinds["catga-overview"]


@pytest.mark.parametrize("uid", ["catga-overview", "catga-chaos-run"])
def test_breaker_state_is_mapped_to_names(uid: str) -> None:
    panel = next(p for p in _panels(_importable(uid))
                 if "catga_circuit_breaker_state" in p["targets"][0]["expr"]
                 and p["type"] == "state-timeline")
    options = panel["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {k: v["text"] for k, v in options.items()} == {
        "0": "closed", "1": "open", "2": "half-open"}


def test_only_configuration_dependent_panels_are_marked_possibly_empty() -> None:
    marked = {uid: empty_unless(_importable(uid)) for uid in UIDS}
    assert marked == {
        "catga-overview": {"Circuit breaker state": "a handler has a circuit breaker"},
        "catga-chaos-run": {"Breaker state": "a handler has a circuit breaker"},
        "catga-load-generator": {},
    }
    assert empty_unless(GENERATED[Path("catga-overview.json")]) == marked["catga-overview"]


@pytest.mark.parametrize(("name", "dash"), list(_all_forms()), ids=[n for n, _ in _all_forms()])
def test_every_metric_in_a_query_is_documented(name: str, dash: dict[str, Any]) -> None:
    documented = _documented_series()
    assert "catga_bench_fault_active" in documented  # the doc's load-generator table is read
    used = {m for expr in _all_exprs(dash) for m in re.findall(r"\bcatga_[a-z0-9_]+", expr)}
    assert used
    assert used <= documented, f"{name}: undocumented metrics {sorted(used - documented)}"


# ----------------------------------------------------------------------------- panel_queries
@pytest.mark.parametrize(("name", "dash"), list(_all_forms()), ids=[n for n, _ in _all_forms()])
def test_panel_queries_substitute_every_variable(name: str, dash: dict[str, Any]) -> None:
    queries = panel_queries(dash)
    assert len(queries) == sum(len(p["targets"]) for p in _panels(dash))
    assert {t for t, _ in queries} == {p["title"] for p in _panels(dash)}
    for title, expr in queries:
        assert "$" not in expr, (title, expr)
        assert expr.strip(), title
    assert any("[30s]" in expr for _, expr in queries)


def test_panel_queries_options() -> None:
    dash = GENERATED[Path("catga-overview.json")]
    assert panel_queries(dash) == panel_queries(json.loads(dash))
    custom = panel_queries(dash, {"__rate_interval": "1m"})
    assert any("[1m]" in expr for _, expr in custom)
    assert not any("[30s]" in expr for _, expr in custom)
    made_up = {"panels": [{"title": "t", "targets": [
        {"expr": "rate(x[$__interval]) + rate(x[${__interval}]) + y{a=~\"$job\"}"}]}]}
    with pytest.raises(ValueError, match="job"):
        panel_queries(made_up)
    assert panel_queries(made_up, {"job": ".*"}) == [
        ("t", 'rate(x[15s]) + rate(x[15s]) + y{a=~".*"}')]


def _check_rules(promtool: str, exprs: list[str], path: Path) -> subprocess.CompletedProcess[str]:
    rules = [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]
    path.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}))
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    promtool = require_tool("promtool", "apt-get install -y prometheus")
    exprs = []
    for _, dash in _all_forms():
        exprs += [expr for _, expr in panel_queries(dash)]
        exprs += [a["expr"] for a in dash["annotations"]["list"] if "expr" in a]
    done = _check_rules(promtool, exprs, tmp_path / "dashboard-queries.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(exprs)} rules found" in done.stdout
    # The check must really parse PromQL: a broken query fails it.
    broken = _check_rules(promtool, ["sum(rate(catga_resilience_retries_total[30s])"],
                          tmp_path / "broken.yml")
    assert broken.returncode != 0


# ------------------------------------------------------------------------------ provisioning
def test_provisioning_files() -> None:
    provider = yaml.safe_load(GENERATED[Path("provisioning/dashboards.yml")])
    assert provider["apiVersion"] == 1
    [entry] = provider["providers"]
    assert entry["type"] == "file"
    assert entry["options"]["path"]
    source = yaml.safe_load(GENERATED[Path("provisioning/datasource.yml")])
    [ds] = source["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090"
    assert ds["isDefault"] is True
