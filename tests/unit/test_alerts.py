"""The alerting rules: generated files match the code, promtool accepts and tests them, every
alert has a firing and a silent unit test, and every metric they use is in docs/metrics.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from _support import require_tool

from catga_bench.observability import alert_rules, alerts

ROOT = Path(__file__).resolve().parents[2]
ALERTS_DIR = ROOT / "alerts"
TESTS_DIR = ALERTS_DIR / "tests"
DOC = ROOT / "docs" / "metrics.md"
RULE_FILES = [ALERTS_DIR / alerts.FILENAMES[p] for p in alerts.PROFILES]

#: Alerts the end-to-end runs rely on: they must be unit-tested on the test profile too.
KEY_TEST_PROFILE_ALERTS = {
    "CatgaCircuitBreakerOpen",
    "CatgaBulkheadRejecting",
    "CatgaCommandLatencyP99High",
    "CatgaEventLatencyP99High",
    "CatgaBenchLatencyP99High",
}

#: The issue's tiers, by alert name.
EXPECTED_TIERS = {
    "CatgaLimiterSaturated": "critical",
    "CatgaBulkheadRejecting": "critical",
    "CatgaCommandLatencyP99High": "critical",
    "CatgaEventLatencyP99High": "critical",
    "CatgaBenchLatencyP99High": "critical",
    "CatgaLimiterUtilisationHigh": "warning",
    "CatgaLimiterQueueDeep": "warning",
    "CatgaCircuitBreakerOpen": "warning",
    "CatgaLimiterUtilisationElevated": "info",
    "CatgaFanoutChunked": "info",
    "CatgaTimeoutRetries": "info",
    "CatgaLatencyBudgetBurn1h": "critical",
    "CatgaLatencyBudgetBurn6h": "critical",
    "CatgaLatencyBudgetBurn1d": "warning",
    "CatgaLatencyBudgetBurn3d": "warning",
    "CatgaErrorBudgetBurn1h": "critical",
    "CatgaErrorBudgetBurn6h": "critical",
    "CatgaErrorBudgetBurn1d": "warning",
    "CatgaErrorBudgetBurn3d": "warning",
}


# ----------------------------------------------------------------------------- helpers
def _run(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = require_tool("promtool", "apt-get install -y prometheus")
    return subprocess.run([promtool, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240, check=False)


def _rules(profile: str) -> list[dict[str, Any]]:
    doc = yaml.safe_load(alerts.render(profile))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _alert_rules(profile: str) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for r in _rules(profile) if "alert" in r}


def _test_files() -> list[Path]:
    return sorted(TESTS_DIR.glob("*.yml"))


def _tests_for(rule_file: str) -> list[dict[str, Any]]:
    """Every ``alert_rule_test`` entry of the test files that load ``rule_file``."""
    out = []
    for path in _test_files():
        doc = yaml.safe_load(path.read_text())
        if f"../{rule_file}" not in doc["rule_files"]:
            continue
        for group in doc["tests"]:
            out.extend(group.get("alert_rule_test", []))
    return out


def _documented_metrics() -> dict[str, str]:
    """name -> type, from the tables of docs/metrics.md."""
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\| `(catga_[a-z0-9_]+)` \| (\w+) \|", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


_METRIC = re.compile(r"(?<![A-Za-z0-9_:])(catga_[a-z0-9_]+)(?![A-Za-z0-9_:])")


# ----------------------------------------------------------------------------- promtool
def test_promtool_check_rules_accepts_both_profiles() -> None:
    result = _run("check", "rules", *(str(p.relative_to(ROOT)) for p in RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    found = [int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", result.stdout)]
    assert found == [len(_rules(p)) for p in alerts.PROFILES], result.stdout


def test_promtool_unit_tests_pass() -> None:
    files = _test_files()
    assert len(files) >= 4
    result = _run("test", "rules", *(str(p.relative_to(ROOT)) for p in files))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "FAILED" not in out, out
    # promtool prints one "Unit Testing:" header and one SUCCESS per file it really ran
    tested = re.findall(r"Unit Testing:\s+(\S+)", out)
    assert sorted(Path(t).name for t in tested) == [f.name for f in files], out
    assert len(re.findall(r"^\s+SUCCESS\s*$", out, re.M)) == len(files), out


def test_promtool_catches_a_wrong_expectation(tmp_path: Path) -> None:
    """Negative control: the unit tests are not vacuous (a wrong annotation or a missing
    alert makes promtool fail)."""
    source = TESTS_DIR / "test-profile.yml"
    text = source.read_text().replace(
        "../catga-rules.test-profile.yml", str(ALERTS_DIR / "catga-rules.test-profile.yml"))
    wrong_value = tmp_path / "wrong-value.yml"
    wrong_value.write_text(text.replace("rejects 100 messages/s", "rejects 99 messages/s"))
    result = _run("test", "rules", str(wrong_value))
    assert result.returncode != 0
    assert "CatgaBulkheadRejecting" in result.stdout + result.stderr

    doc = yaml.safe_load(text)
    for group in doc["tests"]:
        for case in group.get("alert_rule_test", []):
            if case["alertname"] == "CatgaCircuitBreakerOpen" and case["exp_alerts"]:
                case["exp_alerts"] = []  # claims silence while the breaker is open
    silenced = tmp_path / "silenced.yml"
    silenced.write_text(yaml.safe_dump(doc))
    result = _run("test", "rules", str(silenced))
    assert result.returncode != 0
    assert "CatgaCircuitBreakerOpen" in result.stdout + result.stderr


def test_every_promtool_test_group_sets_interval() -> None:
    """promtool 2.42: a group without ``interval`` returns no alerts at all."""
    for path in _test_files():
        doc = yaml.safe_load(path.read_text())
        assert doc.get("evaluation_interval"), path
        for group in doc["tests"]:
            assert group.get("interval"), (path.name, group.get("name"))


def test_every_alert_fires_and_stays_silent_in_a_production_test() -> None:
    cases = _tests_for(alerts.FILENAMES["production"])
    for name in _alert_rules("production"):
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name}: no test where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{name}: no test where it is silent"


def test_key_alerts_fire_and_stay_silent_in_test_profile_tests() -> None:
    cases = _tests_for(alerts.FILENAMES["test"])
    for name in KEY_TEST_PROFILE_ALERTS:
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name}: no test-profile test where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{name}: no silent test-profile test"


# ----------------------------------------------------------------------------- generation
@pytest.mark.parametrize("profile", alerts.PROFILES)
def test_committed_rule_files_equal_render(profile: str) -> None:
    committed = (ALERTS_DIR / alerts.FILENAMES[profile]).read_text(encoding="utf-8")
    assert committed == alerts.render(profile), (
        f"alerts/{alerts.FILENAMES[profile]} is stale: run catga-bench alerts build --out alerts")


def test_build_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert alerts.main(["build", "--out", str(ALERTS_DIR), "--check"]) == 0
    assert alerts.main(["build", "--out", str(tmp_path), "--check"]) == 1  # nothing there yet
    assert alerts.main(["build", "--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(alerts.FILENAMES.values())
    assert alerts.main(["build", "--out", str(tmp_path), "--check"]) == 0
    path = tmp_path / alerts.FILENAMES["production"]
    path.write_text(path.read_text().replace("> 0.95", "> 0.9"))
    assert alerts.main(["build", "--out", str(tmp_path), "--check"]) == 1
    assert "catga-rules.yml is out of date" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        alerts.main(["nonsense"])
    assert exc.value.code == 2


def test_unknown_profile_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        alerts.render("staging")


def test_tiers_labels_and_annotations() -> None:
    for profile in alerts.PROFILES:
        rules = _alert_rules(profile)
        assert {n: r["labels"]["severity"] for n, r in rules.items()} == EXPECTED_TIERS
        for name, rule in rules.items():
            notes = rule["annotations"]
            assert set(notes) == {"summary", "description", "runbook"}, name
            assert all(v.strip() for v in notes.values()), name
            assert "{{" in notes["description"], f"{name}: description names no label/value"
            assert "<" not in notes["description"], f"{name}: unreplaced placeholder"


def test_profiles_differ_only_in_windows() -> None:
    prod, test = _rules("production"), _rules("test")
    assert len(prod) == len(test)
    window = re.compile(r"\[\d+[smhdw]\]|ratio_rate\d+[smhdw]")
    for p, t in zip(prod, test, strict=True):
        assert p.get("alert") == t.get("alert")
        assert window.sub("W", p["expr"]) == window.sub("W", t["expr"]), p.get("alert")
        if "alert" in p:
            assert p["annotations"]["summary"] == t["annotations"]["summary"]
            assert ("for" in p) == ("for" in t), p["alert"]


def test_test_profile_is_compressed() -> None:
    doc = yaml.safe_load(alerts.render("test"))
    assert all(g["interval"] == "1s" for g in doc["groups"])
    for rule in _rules("test"):
        for d in re.findall(r"\[(\d+[smhdw])\]", rule["expr"]):
            assert d.endswith("s") and 10 <= int(d[:-1]) <= 40, (rule, d)
        if "for" in rule:
            assert rule["for"].endswith("s") and int(rule["for"][:-1]) <= 5, rule["alert"]


def test_production_burn_rate_windows_follow_the_sre_workbook() -> None:
    rules = _alert_rules("production")
    for prefix in ("CatgaLatency", "CatgaError"):
        pairs = {(r["labels"]["long_window"], r["labels"]["short_window"],
                  float(r["expr"].split(">")[1].split()[0]))
                 for n, r in rules.items() if n.startswith(prefix + "BudgetBurn")}
        assert pairs == {("1h", "5m", 14.4), ("6h", "30m", 6.0), ("1d", "2h", 3.0),
                         ("3d", "6h", 1.0)}
    assert rules["CatgaBulkheadRejecting"]["for"] == "5m"


def test_every_metric_in_the_rules_is_documented() -> None:
    documented = _documented_metrics()
    assert len(documented) >= 30
    allowed = set(documented)
    for name, kind in documented.items():
        if kind == "histogram":
            allowed |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    used: set[str] = set()
    for profile in alerts.PROFILES:
        for rule in _rules(profile):
            used |= set(_METRIC.findall(rule["expr"]))
    assert used, "no metric names found"
    assert used <= allowed, f"not in docs/metrics.md: {sorted(used - allowed)}"
    # the limiter, breaker, rejection, fan-out and all three latency histograms are covered
    assert {"catga_limiter_active", "catga_limiter_max_concurrency", "catga_limiter_queue_depth",
            "catga_circuit_breaker_state", "catga_resilience_bulkhead_rejected_total",
            "catga_events_published_total", "catga_command_duration_milliseconds_bucket",
            "catga_event_duration_milliseconds_bucket",
            "catga_bench_latency_milliseconds_bucket"} <= used


def test_label_keys_in_the_rules_exist_on_their_metrics() -> None:
    """``by (...)`` and selector label keys are documented labels (or target/le labels)."""
    labels: dict[str, set[str]] = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\| `(catga_[a-z0-9_]+)` \| \w+ \| [^|]+ \| ([^|]+) \|", line)
        if m:
            labels[m.group(1)] = set(re.findall(r"`([a-z_]+)`", m.group(2)))
    known = set().union(*labels.values()) | {"job", "instance", "le", "slo"}
    for rule in _rules("production"):
        keys = set(re.findall(r"\b([a-z_]+)\s*(?:=~|!=|=)\s*\"", rule["expr"]))
        for group in re.findall(r"by \(([^)]*)\)", rule["expr"]):
            keys |= {k.strip() for k in group.split(",")}
        assert keys <= known, (rule.get("alert") or rule.get("record"), keys - known)


@pytest.mark.parametrize("n", [1, 5, 9, 10, 99, 100, 101, 256, 1000, 1999])
def test_at_least_regex(n: int) -> None:
    pattern = re.compile(alert_rules._at_least_regex(n))
    for x in range(0, 3000):
        assert bool(pattern.fullmatch(str(x))) == (x >= n), (n, x)
    assert not pattern.fullmatch("0" + str(n))  # no leading zeros in handler_count
