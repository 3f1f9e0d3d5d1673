"""The SLO gate: evaluate() rows, build_report() exit codes on real payloads, merge_payloads()."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest

from catga_bench import profiles
from catga_bench.errors import EXIT_ENVIRONMENT, EXIT_FAIL, EXIT_PASS
from catga_bench.generator.generator import Generator
from catga_bench.generator.payload import RunPayload
from catga_bench.generator.timeline import Timeline
from catga_bench.judge import gate
from catga_bench.judge.gate import RunFacts, evaluate
from catga_bench.observability.hdr import decode_hdr as _decode
from catga_bench.targets.embedded import EmbeddedTarget
from catga_bench.workload.plan import RunPlan
from catga_bench.workload.profiles import HandlerSpec
from catga_bench.workload.scenario import Scenario, Stream
from catga_bench.workload.slo import SLOTargets

RATE = 500.0
PERMISSIVE = SLOTargets(p99_ms=60_000)  # the other defaults (no errors, lost, dups) stay on


# ------------------------------------------------------------------ evaluate()
def _report(**over: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "qos": 2,
        "latency_ms": {"p50": 2.0, "p90": 5.0, "p99": 10.0, "p999": 20.0, "max": 30.0},
        "achieved_rate": 500.0,
        "error_ratio": 0.01,
        "lost": 0,
        "duplicates": 0,
        "event_loop_lag_ms": {"p50": 0.1, "p99": 4.0, "max": 9.0},
        "timeouts": 3,
        "rejected": 5,
        "rss_mb": {"start": 50.0, "peak": 60.0, "growth": 10.0},
        "breaker": {"failures_before_first_open": 5, "closed_after_recovery_s": 2.0,
                    "calls_while_open": 0},
    }
    report.update(over)
    return report


def _row(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (row,) = [r for r in rows if r["name"] == name]
    return row


# name, target field, value in the report (path), passing limit, failing limit
CASES = [
    ("p50_latency", "p50_ms", ("latency_ms", "p50"), 2.5, 2.0),  # "<": equal fails
    ("p99_latency", "p99_ms", ("latency_ms", "p99"), 11.0, 9.0),
    ("p999_latency", "p999_ms", ("latency_ms", "p999"), 21.0, 19.0),
    ("min_throughput", "min_throughput", ("achieved_rate",), 500.0, 501.0),  # ">=": equal passes
    ("max_error_ratio", "max_error_ratio", ("error_ratio",), 0.01, 0.005),
    ("lost", "max_lost", ("lost",), 0, None),
    ("duplicates", "max_duplicates", ("duplicates",), 0, None),
    ("loop_lag_p99", "max_loop_lag_p99_ms", ("event_loop_lag_ms", "p99"), 5.0, 4.0),
    ("min_timeouts", "min_timeouts", ("timeouts",), 3, 4),
    ("min_rejected", "min_rejected", ("rejected",), 1, 6),
    ("rss_growth", "max_rss_growth_mb", ("rss_mb", "growth"), 11.0, 10.0),
    ("breaker_opens_within", "breaker_opens_within",
     ("breaker", "failures_before_first_open"), 5, 4),
    ("breaker_closes_within", "breaker_closes_within_s",
     ("breaker", "closed_after_recovery_s"), 2.0, 1.5),
    ("calls_while_open", "max_calls_while_open", ("breaker", "calls_while_open"), 0, None),
]


def _with_value(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    report = _report()
    if len(path) == 1:
        report[path[0]] = value
    else:
        report[path[0]] = {**report[path[0]], path[1]: value}
    return report


@pytest.mark.parametrize(("name", "field", "path", "ok", "bad"), CASES,
                         ids=[c[0] for c in CASES])
def test_evaluate_each_target(name: str, field: str, path: tuple[str, ...], ok: Any,
                              bad: Any) -> None:
    off = {f: None for f in SLOTargets.model_fields if f != "max_generator_shortfall"}
    rows = evaluate(_report(), SLOTargets(**{**off, field: ok}))
    assert len(rows) == 1
    row = _row(rows, name)
    assert row["passed"] is True
    assert row["limit"] == ok
    assert {"name", "limit", "value", "passed", "unit", "op", "description"} <= set(row)
    if bad is not None:
        assert _row(evaluate(_report(), SLOTargets(**{**off, field: bad})), name)["passed"] is False
    else:  # a limit of 0: fail by making the value 1
        failing = _with_value(path, 1)
        assert _row(evaluate(failing, SLOTargets(**{**off, field: ok})), name)["passed"] is False
    unmeasured = _with_value(path, None)
    row = _row(evaluate(unmeasured, SLOTargets(**{**off, field: ok})), name)
    assert row["value"] is None
    assert row["passed"] is False  # a value that could not be measured fails its target


def test_evaluate_skips_disabled_and_qos_dependent_targets() -> None:
    targets = SLOTargets(p99_ms=None, max_error_ratio=None, max_lost=0, max_duplicates=0)
    assert [r["name"] for r in evaluate(_report(qos=2), targets)] == ["lost", "duplicates"]
    assert [r["name"] for r in evaluate(_report(qos=1), targets)] == ["lost"]
    assert evaluate(_report(qos=0, lost=10, duplicates=10), targets) == []


# ------------------------------------------------------------------ real payloads
def build_report(payload: dict[str, Any] | RunPayload, facts: RunFacts,
                 targets: SLOTargets) -> dict[str, Any]:
    """The judge on a payload as a worker ships it (``to_dict``), or on a merged one."""
    if isinstance(payload, dict):
        payload = RunPayload.from_dict(payload)
    return gate.build_report(payload, facts, targets)


def merge_payloads(shipped: list[dict[str, Any]]) -> RunPayload:
    """What the master does with its workers' payloads."""
    return RunPayload.merge([RunPayload.from_dict(p) for p in shipped])


class Runs:
    def __init__(self, a: dict[str, Any], b: dict[str, Any], started: float,
                 stopped: float) -> None:
        self.a, self.b, self.started, self.stopped = a, b, started, stopped

    def facts(self, offered: float = RATE, **kw: Any) -> RunFacts:
        return RunFacts("gate", "embedded", 1, offered, self.started, None, self.stopped, **kw)


@pytest.fixture(scope="module")
def runs() -> Runs:
    """Two real generators (two "load generators") on one loop, 1.5 s at 500 msg/s each."""
    scenario = Scenario(name="gate", rate=RATE, qos=1, streams=[Stream("Ev", handlers=[
        HandlerSpec("fast", profiles.Fast()), HandlerSpec("io", profiles.Io(1))])])

    async def main() -> Runs:
        drivers = [Generator(RunPlan.of(scenario), EmbeddedTarget()) for _ in range(2)]
        started = time.time()
        for d in drivers:
            await d.start()
            d.set_producer_rate(1, RATE)
        await asyncio.sleep(1.5)
        stopped = time.time()
        a, b = await asyncio.gather(*(d.finish() for d in drivers))
        return Runs(a.to_dict(), b.to_dict(), started, stopped)

    return asyncio.run(main())


REPORT_KEYS = {"scenario", "transport", "qos", "duration_s", "offered_rate", "achieved_rate",
               "latency_ms", "sent", "handled", "lost", "duplicates", "handlers", "errors",
               "rejected", "timeouts", "breaker", "slo", "passed"}


def test_report_has_the_stable_keys(runs: Runs) -> None:
    report = build_report(runs.a, runs.facts(), PERMISSIVE)
    assert set(report) >= REPORT_KEYS
    assert {"p50", "p90", "p99", "p999", "max"} <= set(report["latency_ms"])
    assert {"opened", "closed", "state"} <= set(report["breaker"])
    assert report["breaker"]["state"] == "closed"
    assert (report["scenario"], report["transport"], report["qos"]) == ("gate", "embedded", 1)
    assert report["sent"] == runs.a["ledger"]["sent"]
    assert report["handled"] == 2 * report["sent"]
    assert report["handlers"] == runs.a["handlers"]


def test_permissive_targets_pass(runs: Runs) -> None:
    report = build_report(runs.a, runs.facts(), PERMISSIVE)
    assert report["exit_code"] == EXIT_PASS, report["verdict"]
    assert report["passed"] is True
    assert report["environment_failures"] == []
    assert all(r["passed"] for r in report["slo"])
    assert report["duration_s"] == pytest.approx(runs.stopped - runs.started, abs=0.01)
    assert report["sent_rate"] == pytest.approx(RATE, rel=0.05)
    assert report["achieved_rate"] == pytest.approx(RATE, rel=0.05)


def test_tiny_p99_target_fails(runs: Runs) -> None:
    report = build_report(runs.a, runs.facts(), PERMISSIVE.merged({"p99_ms": 0.001}))
    assert report["exit_code"] == EXIT_FAIL
    assert report["passed"] is False
    assert [r["name"] for r in report["slo"] if not r["passed"]] == ["p99_latency"]
    assert report["verdict"].startswith("FAIL: p99_latency")


def test_generator_shortfall_is_an_environment_failure(runs: Runs) -> None:
    report = build_report(runs.a, runs.facts(offered=10 * RATE), PERMISSIVE)
    assert report["exit_code"] == EXIT_ENVIRONMENT
    assert report["passed"] is False
    assert "could not offer the load" in report["environment_failures"][0]


def test_environment_failure_wins_over_a_missed_target(runs: Runs) -> None:
    tiny = PERMISSIVE.merged({"p99_ms": 0.001})
    report = build_report(runs.a, runs.facts(offered=10 * RATE), tiny)
    assert report["exit_code"] == EXIT_ENVIRONMENT
    assert report["verdict"].startswith("ERROR (environment)")
    assert not _row(report["slo"], "p99_latency")["passed"]  # still reported
    reported = build_report(runs.a, runs.facts(environment_failures=["worker 2 did not report"]),
                            tiny)
    assert reported["exit_code"] == EXIT_ENVIRONMENT
    assert "worker 2 did not report" in reported["verdict"]


def test_no_message_sent_is_an_environment_failure(runs: Runs) -> None:
    empty = {**runs.a, "ledger": {**runs.a["ledger"], "sent": 0}}
    report = build_report(empty, runs.facts(offered=0.0), PERMISSIVE)
    assert report["exit_code"] == EXIT_ENVIRONMENT
    assert "no message was sent" in report["environment_failures"]


def test_merge_payloads_adds_up(runs: Runs) -> None:
    a, b = runs.a, runs.b
    merged = merge_payloads([a, b]).to_dict()  # the typed merge, read in the shipped form
    for k in ("sent", "acked", "handled", "lost", "duplicates"):
        assert merged["ledger"][k] == a["ledger"][k] + b["ledger"][k], k
    assert merged["streams"]["Ev"]["sent"] == a["ledger"]["sent"] + b["ledger"]["sent"]
    for name in ("fast", "io"):
        assert merged["handlers"][name]["handled"] == (
            a["handlers"][name]["handled"] + b["handlers"][name]["handled"])
    for key in ("latency_hdr", "service_hdr"):
        total = _decode(merged["streams"]["Ev"][key]).get_total_count()
        parts = [_decode(p["streams"]["Ev"][key]).get_total_count() for p in (a, b)]
        assert parts[0] > 0
        assert total == sum(parts), key
    lag_parts = [_decode(p["loop_lag_hdr"]).get_total_count() for p in (a, b)]
    assert _decode(merged["loop_lag_hdr"]).get_total_count() == sum(lag_parts)
    tl: Timeline = Timeline.merge([merged["timeline"]])
    assert sum(r["sent"] for r in tl.rows.values()) == merged["ledger"]["sent"]
    assert sum(r["completed"] for r in tl.rows.values()) == merged["ledger"]["sent"]
    single = [Timeline.merge([p["timeline"]]) for p in (a, b)]
    for second, row in tl.rows.items():
        lat = sum(sum(t.rows[second]["lat"].values()) for t in single if second in t.rows)
        assert sum(row["lat"].values()) == lat


def test_report_of_merged_payloads(runs: Runs) -> None:
    merged = merge_payloads([runs.a, runs.b])
    facts = replace(runs.facts(offered=2 * RATE), workers=2)
    report = build_report(merged, facts, PERMISSIVE)
    assert report["exit_code"] == EXIT_PASS, report["verdict"]
    assert report["sent"] == runs.a["ledger"]["sent"] + runs.b["ledger"]["sent"]
    assert report["achieved_rate"] == pytest.approx(2 * RATE, rel=0.05)
    assert report["workers"] == 2
    assert sum(report["timeline"]["sent"]) == report["sent"]
    # each generator alone offered only half of it
    assert build_report(runs.a, facts, PERMISSIVE)["exit_code"] == EXIT_ENVIRONMENT


def test_merge_of_one_payload_keeps_its_figures(runs: Runs) -> None:
    one = merge_payloads([runs.a]).to_dict()
    assert one["ledger"] == runs.a["ledger"]
    assert one["handlers"] == runs.a["handlers"]
    report = build_report(one, runs.facts(), PERMISSIVE)
    assert report["exit_code"] == EXIT_PASS, report["verdict"]
    assert report["sent"] == runs.a["ledger"]["sent"]
