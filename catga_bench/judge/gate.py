"""The SLO gate: merge what the load generators measured, judge it, and pick the exit code.

Exit codes (DESIGN.md): 0 every target met; 1 a target missed; 2 usage or configuration error;
3 the environment failed (the generator could not reach the offered rate, a load generator did
not report, the core's loop died). An environment failure wins over a missed target: the
figures of such a run cannot be trusted either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from catga_bench.errors import EXIT_ENVIRONMENT, EXIT_FAIL, EXIT_PASS
from catga_bench.generator.payload import RunPayload
from catga_bench.generator.timeline import Timeline
from catga_bench.observability.hdr import decode_hdr, new_hdr
from catga_bench.workload.slo import SLOTargets

#: the report's ``sut`` for the reference core (embedded or served)
CORE_SUT: dict[str, Any] = {"kind": "core", "spec": None, "channels": []}


@dataclass
class RunFacts:
    """What the harness knows about the run besides the measured payloads.

    Attributes:
        scenario, transport, qos: identify the run.
        offered_rate: msg/s asked for (``--rate`` or the scenario's).
        started_at_s, steady_at_s, stopped_at_s: Unix seconds: start, all users spawned, stop.
        workers: load-generator processes expected to report.
        environment_failures: reasons the run is not valid (exit 3), added by the harness.
        sut: the system under test: ``kind`` (``core``, ``asyncapi``), ``spec`` (the
            document's path, or None), ``channels`` (what the harness published to and read).
    """

    scenario: str
    transport: str
    qos: int
    offered_rate: float
    started_at_s: float
    steady_at_s: float | None
    stopped_at_s: float
    workers: int = 1
    environment_failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    sut: dict[str, Any] = field(default_factory=lambda: dict(CORE_SUT))


def _percentiles_ms(h: HdrHistogram) -> dict[str, float | None]:
    if h.get_total_count() == 0:
        return {k: None for k in ("p50", "p90", "p99", "p999", "max", "mean")}
    def q(p: float) -> float:
        return round(h.get_value_at_percentile(p) / 1000.0, 3)
    return {
        "p50": q(50), "p90": q(90), "p99": q(99), "p999": q(99.9),
        "max": round(h.get_max_value() / 1000.0, 3),
        "mean": round(h.get_mean_value() / 1000.0, 3),
    }


def _window_rates(tl: Timeline, facts: RunFacts) -> tuple[float, float, float, float, float]:
    """(duration_s, sent_rate, achieved_rate, goodput_rate, window_start_s): achieved counts every
    completed message, goodput only those that succeeded; over whole seconds of the steady
    window (after every user spawned, until stop); the whole run if that is under 2 s."""
    start = facts.steady_at_s if facts.steady_at_s is not None else facts.started_at_s
    first, last = math.ceil(start), math.floor(facts.stopped_at_s) - 1
    duration = float(last - first + 1)
    if duration < 2:
        first, last = math.floor(facts.started_at_s), math.floor(facts.stopped_at_s)
        # the rows of the partial first and last seconds hold the whole run, but the run only
        # lasted stop - start: counting whole seconds would understate short runs' rates
        duration = round(facts.stopped_at_s - facts.started_at_s, 3)
    secs = [s for s in tl.rows if first <= s <= last]
    if duration <= 0 or not secs:
        return 0.0, 0.0, 0.0, 0.0, float(first)
    sent = sum(tl.rows[s]["sent"] for s in secs)
    completed = sum(tl.rows[s]["completed"] for s in secs)
    ok = sum(tl.rows[s].get("ok", 0) for s in secs)
    return duration, sent / duration, completed / duration, ok / duration, float(first)


def build_report(merged: RunPayload, facts: RunFacts,
                 targets: SLOTargets) -> dict[str, Any]:
    """Build the report dict (docs/report.md) from the run's merged payload and judge it;
    ``report["exit_code"]`` is the verdict."""
    tl = Timeline.merge([merged.timeline])
    slo_hdr = new_hdr()
    svc_hdr = new_hdr()
    stream_rows: dict[str, Any] = {}
    lost_by_qos: dict[str, int] = {}  # QoS level ("0", "1", "2") -> lost pairs of its streams
    dups_by_qos: dict[str, int] = {}
    slo_completed = slo_failed = 0
    for name, s in merged.streams.items():
        lat = decode_hdr(s.latency_hdr)
        svc = decode_hdr(s.service_hdr)
        if s.slo:
            slo_hdr.add(lat)
            svc_hdr.add(svc)
            slo_completed += s.completed
            slo_failed += s.failed
        qos = s.qos if s.qos is not None else facts.qos
        stream_rows[name] = {"kind": s.kind, "qos": qos, "sent": s.sent,
                             "completed": s.completed, "failed": s.failed,
                             "rejected": s.rejected, "acked": s.acked,
                             "lost": s.lost, "duplicates": s.duplicates,
                             "slo": s.slo, "latency_ms": _percentiles_ms(lat)}
        key = str(qos)
        lost_by_qos[key] = lost_by_qos.get(key, 0) + s.lost
        dups_by_qos[key] = dups_by_qos.get(key, 0) + s.duplicates
    ledger = merged.ledger
    lag = decode_hdr(merged.loop_lag_hdr) if merged.loop_lag_hdr else new_hdr()
    lag_pct = _percentiles_ms(lag)
    duration, sent_rate, achieved_rate, goodput_rate, window_start = _window_rates(tl, facts)
    breaker: dict[str, Any] = (merged.breaker.model_dump(exclude={"transitions"})
                               if merged.breaker is not None else {})
    states = breaker.get("breakers", {})
    breaker["state"] = ("open" if "open" in states.values()
                        else "half_open" if "half_open" in states.values() else "closed")
    rss = _with_growth(merged.rss_mb)
    generator_rss: dict[str, Any] | None = None
    core_rss = (merged.core or {}).get("rss_mb")
    if isinstance(core_rss, dict) and "peak" in core_rss:
        # over a broker the system under test is the serving core: its memory is what a
        # bounded queue must keep flat (the generator's is reported as generator_rss_mb)
        generator_rss, rss = rss, _with_growth(core_rss)
    latency = _percentiles_ms(slo_hdr)
    report: dict[str, Any] = {
        "scenario": facts.scenario,
        "sut": facts.sut,
        "transport": facts.transport,
        "qos": facts.qos,
        "started_at": _iso(facts.started_at_s),
        "finished_at": _iso(facts.stopped_at_s),
        "duration_s": duration,
        "workers": facts.workers,
        "offered_rate": round(facts.offered_rate, 2),
        "sent_rate": round(sent_rate, 2),
        "achieved_rate": round(achieved_rate, 2),
        "goodput_rate": round(goodput_rate, 2),
        "latency_ms": latency,
        "service_time_ms": _percentiles_ms(svc_hdr),
        "streams": stream_rows,
        "sent": ledger.sent,
        "sent_per_generator": merged.sent_per_generator or [ledger.sent],
        "acked": ledger.acked,
        "handled": ledger.handled,
        "lost": ledger.lost,
        "duplicates": ledger.duplicates,
        "lost_by_qos": lost_by_qos,
        "duplicates_by_qos": dups_by_qos,
        "late": merged.outputs.late,
        "unexpected": merged.outputs.unexpected,
        "nonconformant": merged.outputs.nonconformant,
        "output_samples": [s.model_dump() for s in merged.outputs.samples],
        "failing_messages": [m.model_dump() for m in merged.failing_messages],
        "redeliveries": ledger.redeliveries,
        "undrained": ledger.undrained,
        "dead_lettered": merged.dead_lettered,
        "handlers": {n: h.model_dump() for n, h in merged.handlers.items()},
        "errors": dict(merged.errors),
        "error_ratio": round(slo_failed / slo_completed, 6) if slo_completed else 0.0,
        "rejected": merged.rejected,
        "timeouts": merged.timeouts,
        "retries": merged.retries,
        "breaker": breaker,
        "event_loop_lag_ms": {k: lag_pct[k] for k in ("p50", "p99", "max")},
        "rss_mb": rss,
        **({"generator_rss_mb": generator_rss} if generator_rss is not None else {}),
        "generator": merged.generator.model_dump(),
        "cpu_s": dict(merged.cpu_s),
        "broker": merged.transport or {},
        "core": merged.core or {},
        "timeline": tl.series(start_s=window_start if facts.steady_at_s else None),
        "notes": list(facts.notes),
        "environment": facts.environment,
    }
    report["slo"] = evaluate(report, targets)
    env = list(facts.environment_failures)
    shortfall_limit = targets.max_generator_shortfall
    if facts.offered_rate > 0 and duration > 0 and (
        sent_rate < facts.offered_rate * (1 - shortfall_limit)
    ):
        lag_p99 = lag_pct.get("p99")
        shared = (" (embedded: the core shares the generator's event loop, whose lag P99 was "
                  f"{lag_p99:,.0f} ms — a core that stalls the loop starves the generator too)"
                  if facts.transport == "embedded" and lag_p99 is not None and lag_p99 >= 50
                  else "")
        env.append(
            f"the generator issued {sent_rate:,.0f} msg/s of the {facts.offered_rate:,.0f} "
            f"offered (more than {shortfall_limit:.0%} short): this machine could not offer the "
            f"load, so the run proves nothing{shared}"
        )
    if report["sent"] == 0:
        env.append("no message was sent")
    failed_rows = [r for r in report["slo"] if not r["passed"]]
    if env:
        code = EXIT_ENVIRONMENT
        verdict = "ERROR (environment): " + "; ".join(env)
    elif failed_rows:
        code = EXIT_FAIL
        verdict = "FAIL: " + "; ".join(_describe(r) for r in failed_rows)
    else:
        code = EXIT_PASS
        verdict = f"PASS: all {len(report['slo'])} targets met"
    report["environment_failures"] = env
    report["passed"] = code == EXIT_PASS
    report["exit_code"] = code
    report["verdict"] = verdict
    return report


def _with_growth(rss: dict[str, Any]) -> dict[str, Any]:
    """``{start, peak}`` MB plus ``growth`` (peak - start)."""
    return {**rss, "growth": round(rss.get("peak", 0) - rss.get("start", 0), 1)}


def _describe(row: dict[str, Any]) -> str:
    value = "none" if row["value"] is None else row["value"]
    return f"{row['name']} {value}{row['unit']} {row['op']} {row['limit']}{row['unit']} missed"


def evaluate(report: dict[str, Any], t: SLOTargets) -> list[dict[str, Any]]:
    """Judge each enabled target; one row per target: name, limit, value, passed, unit, op,
    description. A value that could not be measured (None) fails its target."""
    rows: list[dict[str, Any]] = []
    lat = report["latency_ms"]
    qos = report["qos"]
    breaker = report["breaker"]

    def add(name: str, limit: Any, value: Any, op: str, unit: str, desc: str) -> None:
        if limit is None:
            return
        if value is None:
            passed = False
        elif op == "<=":
            passed = value <= limit
        elif op == ">=":
            passed = value >= limit
        else:  # "<"
            passed = value < limit
        rows.append({"name": name, "limit": limit, "value": value, "passed": bool(passed),
                     "unit": unit, "op": op, "description": desc})

    add("p50_latency", t.p50_ms, lat["p50"], "<", "ms", "P50 latency from intended send time")
    add("p99_latency", t.p99_ms, lat["p99"], "<", "ms", "P99 latency from intended send time")
    add("p999_latency", t.p999_ms, lat["p999"], "<", "ms",
        "P99.9 latency from intended send time")
    add("min_throughput", t.min_throughput, report["achieved_rate"], ">=", " msg/s",
        "achieved throughput in the steady window")
    add("max_error_ratio", t.max_error_ratio, report["error_ratio"], "<=", "",
        "failed / completed messages of the SLO streams")
    # per QoS level of the streams (a scenario may mix levels): loss is a target at QoS >= 1,
    # duplicates at QoS 2; QoS 0 loss is reported (lost_by_qos) but allowed
    by_lost = report.get("lost_by_qos") or {str(qos): report["lost"]}
    by_dup = report.get("duplicates_by_qos") or {str(qos): report["duplicates"]}

    def total(by: dict[str, Any], min_qos: int) -> int | None:
        values = [v for q, v in by.items() if int(q) >= min_qos]
        return None if any(v is None for v in values) else sum(values)

    if any(int(q) >= 1 for q in by_lost):
        add("lost", t.max_lost, total(by_lost, 1), "<=", "",
            "acknowledged but never handled (at-least-once)")
    if any(int(q) >= 2 for q in by_dup):
        add("duplicates", t.max_duplicates, total(by_dup, 2), "<=", "",
            "handled more than once (exactly-once)")
    if "1" in by_dup and t.max_duplicate_ratio is not None:
        dup1, handled = by_dup["1"], report.get("handled") or 0
        add("duplicate_ratio", t.max_duplicate_ratio,
            None if dup1 is None else round(dup1 / handled, 6) if handled else 0.0, "<=", "",
            "QoS 1 duplicates / handlings (at-least-once budget)")
    add("loop_lag_p99", t.max_loop_lag_p99_ms, report["event_loop_lag_ms"]["p99"], "<", "ms",
        "event-loop lag P99")
    add("min_timeouts", t.min_timeouts, report["timeouts"], ">=", "",
        "handler timeouts counted")
    add("min_rejected", t.min_rejected, report["rejected"], ">=", "",
        "backpressure rejections counted")
    add("rss_growth", t.max_rss_growth_mb, report["rss_mb"].get("growth"), "<", " MB",
        "resident memory growth during the run")
    add("breaker_opens_within", t.breaker_opens_within,
        breaker.get("failures_before_first_open"), "<=", " failures",
        "failures before the breaker first opened")
    add("breaker_closes_within", t.breaker_closes_within_s,
        breaker.get("closed_after_recovery_s"), "<=", " s",
        "recovery to breaker closed")
    add("calls_while_open", t.max_calls_while_open, breaker.get("calls_while_open"), "<=", "",
        "handler calls while its breaker was open")
    if (report.get("sut") or CORE_SUT).get("kind") != "core":  # outputs read back
        add("late", t.max_late, report.get("late"), "<=", "",
            "outputs after their message was counted lost")
        add("unexpected", t.max_unexpected, report.get("unexpected"), "<=", "",
            "outputs that match no message of the run")
        add("nonconformant", t.max_nonconformant, report.get("nonconformant"), "<=", "",
            "outputs that fail their message's schema")
    return rows


def _iso(unix_s: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="seconds")
