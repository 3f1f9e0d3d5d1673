"""The SLO gate: merge what the load generators measured, judge it, and pick the exit code.

Exit codes (DESIGN.md): 0 every target met; 1 a target missed; 2 usage or configuration error;
3 the environment failed (the generator could not reach the offered rate, a load generator did
not report, the core's loop died). An environment failure wins over a missed target: the
figures of such a run cannot be trusted either way.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from catga_bench.errors import EXIT_ENVIRONMENT, EXIT_FAIL, EXIT_PASS
from catga_bench.generator.timeline import Timeline
from catga_bench.observability.hdr import new_hdr
from catga_bench.workload.slo import SLOTargets


@dataclass
class RunFacts:
    """What the harness knows about the run besides the measured payloads.

    Attributes:
        scenario, transport, qos: identify the run.
        offered_rate: msg/s asked for (``--rate`` or the scenario's).
        started_at_s, steady_at_s, stopped_at_s: Unix seconds: start, all users spawned, stop.
        workers: load-generator processes expected to report.
        environment_failures: reasons the run is not valid (exit 3), added by the harness.
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


def merge_payloads(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine the payloads of several load-generator processes (counts add, histograms merge,
    timelines merge by second, breaker maxima take the worst)."""
    if len(payloads) == 1:
        return {**payloads[0], "per_generator_sent": [payloads[0].get("ledger", {}).get("sent", 0)]}
    out: dict[str, Any] = {"streams": {}, "handlers": {}, "ledger": Counter(), "errors": Counter(),
                           "breaker": {"breakers": {}, "transitions": []}}
    for p in payloads:
        for name, s in p.get("streams", {}).items():
            cur = out["streams"].setdefault(name, {"kind": s["kind"], "slo": s["slo"],
                                                   "qos": s.get("qos"), "sent": 0,
                                                   "completed": 0, "failed": 0, "rejected": 0,
                                                   "acked": 0, "lost": 0, "duplicates": 0,
                                                   "_lat": [], "_svc": []})
            for k in ("sent", "completed", "failed", "rejected", "acked", "lost", "duplicates"):
                cur[k] += s.get(k, 0)
            cur["_lat"].append(s["latency_hdr"])
            cur["_svc"].append(s["service_hdr"])
        for name, h in p.get("handlers", {}).items():
            cur = out["handlers"].setdefault(name, {"handled": 0, "failed": 0})
            cur["handled"] += h["handled"]
            cur["failed"] += h["failed"]
        out["ledger"].update(p.get("ledger", {}))
        tr = p.get("transport")
        if tr:
            cur_tr = out.setdefault("transport", {"name": tr.get("name")})
            for k, v in tr.items():
                if isinstance(v, int):
                    cur_tr[k] = cur_tr.get(k, 0) + v
        if p.get("core"):
            out["core"] = p["core"]
        out["errors"].update(p.get("errors", {}))
        for k in ("rejected", "timeouts", "retries", "dead_lettered"):
            out[k] = out.get(k, 0) + p.get(k, 0)
        b = p.get("breaker", {})
        ob = out["breaker"]
        for k in ("opened", "half_opened", "closed", "rejected", "calls_while_open"):
            ob[k] = ob.get(k, 0) + b.get(k, 0)
        # worst case across workers; "never closed after recovery" (None) is the worst there
        v = b.get("failures_before_first_open")
        if v is not None:
            ob["failures_before_first_open"] = max(ob.get("failures_before_first_open") or 0, v)
        else:
            ob.setdefault("failures_before_first_open", None)
        if "closed_after_recovery_s" in b:
            v = b["closed_after_recovery_s"]
            prev = ob.get("closed_after_recovery_s", 0.0)
            ob["closed_after_recovery_s"] = (
                None if v is None or prev is None else max(prev, v)
            )
        ob["breakers"].update(b.get("breakers", {}))
        ob["transitions"].extend(b.get("transitions", []))
        gen = p.get("generator", {})
        out["generator"] = {"max_behind_s": max(out.get("generator", {}).get("max_behind_s", 0),
                                                gen.get("max_behind_s", 0))}
        cpu = out.setdefault("cpu_s", {})
        for k, v in p.get("cpu_s", {}).items():
            cpu[k] = round(cpu.get(k, 0.0) + v, 3)
        rss = p.get("rss_mb", {})
        cur_rss = out.setdefault("rss_mb", {"start": 0.0, "peak": 0.0})
        cur_rss["start"] += rss.get("start", 0.0)
        cur_rss["peak"] += rss.get("peak", 0.0)
    for s in out["streams"].values():
        s["latency_hdr"] = _merge_hdr(s.pop("_lat"))
        s["service_hdr"] = _merge_hdr(s.pop("_svc"))
    out["loop_lag_hdr"] = _merge_hdr([p["loop_lag_hdr"] for p in payloads if "loop_lag_hdr" in p])
    out["timeline_merged"] = Timeline.merge(p.get("timeline", {}) for p in payloads)
    out["ledger"] = dict(out["ledger"])
    out["errors"] = dict(out["errors"])
    out["per_generator_sent"] = [p.get("ledger", {}).get("sent", 0) for p in payloads]
    return out


def _decode(encoded: str | HdrHistogram) -> HdrHistogram:
    if isinstance(encoded, HdrHistogram):
        return encoded
    h = new_hdr()
    h.decode_and_add(encoded)
    return h


def _merge_hdr(encoded: list[str | HdrHistogram]) -> HdrHistogram:
    total = new_hdr()
    for e in encoded:
        total.add(_decode(e))
    return total


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


def build_report(merged: dict[str, Any], facts: RunFacts,
                 targets: SLOTargets) -> dict[str, Any]:
    """Build the report dict (docs/report.md) and judge it; ``report["exit_code"]`` is the
    verdict."""
    tl: Timeline = merged.get("timeline_merged") or Timeline.merge([merged.get("timeline", {})])
    streams = merged.get("streams", {})
    slo_hdr = new_hdr()
    svc_hdr = new_hdr()
    stream_rows: dict[str, Any] = {}
    lost_by_qos: dict[str, int] = {}  # QoS level ("0", "1", "2") -> lost pairs of its streams
    dups_by_qos: dict[str, int] = {}
    slo_completed = slo_failed = 0
    for name, s in streams.items():
        lat = _decode(s["latency_hdr"])
        svc = _decode(s["service_hdr"])
        if s["slo"]:
            slo_hdr.add(lat)
            svc_hdr.add(svc)
            slo_completed += s["completed"]
            slo_failed += s["failed"]
        qos = s.get("qos", facts.qos)
        stream_rows[name] = {"kind": s["kind"], "qos": qos, "sent": s["sent"],
                             "completed": s["completed"], "failed": s["failed"],
                             "rejected": s["rejected"], "acked": s.get("acked"),
                             "lost": s.get("lost"), "duplicates": s.get("duplicates"),
                             "slo": s["slo"], "latency_ms": _percentiles_ms(lat)}
        key = str(qos)
        lost_by_qos[key] = lost_by_qos.get(key, 0) + (s.get("lost") or 0)
        dups_by_qos[key] = dups_by_qos.get(key, 0) + (s.get("duplicates") or 0)
    ledger = merged.get("ledger", {})
    if any(s.get("lost") is None for s in streams.values()):  # payloads without per-stream counts
        lost_by_qos = {str(facts.qos): ledger.get("lost", 0)}
        dups_by_qos = {str(facts.qos): ledger.get("duplicates", 0)}
    lag = _decode(merged["loop_lag_hdr"]) if "loop_lag_hdr" in merged else new_hdr()
    lag_pct = _percentiles_ms(lag)
    duration, sent_rate, achieved_rate, goodput_rate, window_start = _window_rates(tl, facts)
    breaker = {k: v for k, v in merged.get("breaker", {}).items() if k != "transitions"}
    states = breaker.get("breakers", {})
    breaker["state"] = ("open" if "open" in states.values()
                        else "half_open" if "half_open" in states.values() else "closed")
    rss = _with_growth(merged.get("rss_mb", {}))
    generator_rss: dict[str, Any] | None = None
    core_rss = (merged.get("core") or {}).get("rss_mb")
    if isinstance(core_rss, dict) and "peak" in core_rss:
        # over a broker the system under test is the serving core: its memory is what a
        # bounded queue must keep flat (the generator's is reported as generator_rss_mb)
        generator_rss, rss = rss, _with_growth(core_rss)
    latency = _percentiles_ms(slo_hdr)
    report: dict[str, Any] = {
        "scenario": facts.scenario,
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
        "sent": ledger.get("sent", 0),
        "sent_per_generator": merged.get("per_generator_sent", []),
        "acked": ledger.get("acked", 0),
        "handled": ledger.get("handled", 0),
        "lost": ledger.get("lost", 0),
        "duplicates": ledger.get("duplicates", 0),
        "lost_by_qos": lost_by_qos,
        "duplicates_by_qos": dups_by_qos,
        "redeliveries": ledger.get("redeliveries", 0),
        "undrained": ledger.get("undrained", 0),
        "dead_lettered": merged.get("dead_lettered", 0),
        "handlers": merged.get("handlers", {}),
        "errors": merged.get("errors", {}),
        "error_ratio": round(slo_failed / slo_completed, 6) if slo_completed else 0.0,
        "rejected": merged.get("rejected", 0),
        "timeouts": merged.get("timeouts", 0),
        "retries": merged.get("retries", 0),
        "breaker": breaker,
        "event_loop_lag_ms": {k: lag_pct[k] for k in ("p50", "p99", "max")},
        "rss_mb": rss,
        **({"generator_rss_mb": generator_rss} if generator_rss is not None else {}),
        "generator": merged.get("generator", {}),
        "cpu_s": merged.get("cpu_s", {}),
        "broker": merged.get("transport", {}),
        "core": merged.get("core", {}),
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
    return rows


def _iso(unix_s: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="seconds")
