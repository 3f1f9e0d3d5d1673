"""Judging the release gate's runs: a case from its Locust run (exit code, ``report.json``,
and what happened to its core), a fault cell from its chaos run (exit code and journal); both
become a :class:`CaseResult`. Pure functions: :mod:`catga_bench.suite.run` runs and reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from catga_bench.errors import EXIT_ENVIRONMENT, EXIT_FAIL, EXIT_PASS


@dataclass
class CaseResult:
    """One row of the gate's results: a case, or a fault cell (``case`` is ``fault:<name>``),
    on one transport."""

    case: str
    transport: str
    status: str  # PASS | FAIL | ERROR
    exit_code: int | None
    verdict: str
    seconds: int
    wall_s: float
    report_dir: str
    failed_targets: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    slo: list[dict[str, Any]] = field(default_factory=list)
    #: with ``gate --baseline``: the comparison with the baseline's runs of this case
    comparison: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --------------------------------------------------------------------------- cases
@dataclass
class CaseJudgement:
    """A case judged from its Locust run: see :func:`judge_case`."""

    status: str  # PASS | FAIL | ERROR
    exit_code: int | None
    verdict: str
    report: dict[str, Any] | None = None


def judge_case(code: int | None, report: dict[str, Any] | None, log_tail: str, *,
               timeout_s: int, problems: list[str]) -> CaseJudgement:
    """Judge one case's Locust run (pure: its exit code, its report, the tail of its log).

    ``code`` None: Locust did not finish within ``timeout_s`` -> ERROR; no report -> ERROR;
    ``problems`` (the core did not restart, or was never killed) -> ERROR with exit code 3;
    else the SLO gate's exit code: 0 -> PASS, 1 -> FAIL, anything else -> ERROR."""
    if code is None:
        return CaseJudgement("ERROR", None, f"Locust did not finish within {timeout_s} s")
    if report is None:
        return CaseJudgement("ERROR", code, f"no report (exit {code}): {log_tail}")
    verdict = str(report.get("verdict", ""))
    if problems:
        return CaseJudgement("ERROR", EXIT_ENVIRONMENT, "; ".join(problems), report)
    if code == EXIT_PASS:
        return CaseJudgement("PASS", code, verdict, report)
    if code == EXIT_FAIL:
        return CaseJudgement("FAIL", code, verdict, report)
    return CaseJudgement("ERROR", code, verdict or f"exit {code}: {log_tail}", report)


def case_result(case: str, transport: str, seconds: int, wall_s: float, report_dir: str,
                j: CaseJudgement) -> CaseResult:
    """The result row of a judged case: its SLO rows, the targets it missed, its figures."""
    rows = (j.report or {}).get("slo", [])
    return CaseResult(case, transport, j.status, j.exit_code, j.verdict, seconds, wall_s,
                      report_dir, [r["name"] for r in rows if not r["passed"]],
                      _figures(j.report) if j.report else {}, rows)


def _figures(r: dict[str, Any]) -> dict[str, Any]:
    b = r.get("breaker", {})
    return {
        "p99_ms": r.get("latency_ms", {}).get("p99"),
        "achieved_rate": r.get("achieved_rate"),
        "sent": r.get("sent"),
        "lost": r.get("lost"),
        "duplicates": r.get("duplicates"),
        "rejected": r.get("rejected"),
        "timeouts": r.get("timeouts"),
        "breaker_opened": b.get("opened"),
        "failures_before_first_open": b.get("failures_before_first_open"),
        "rss_growth_mb": r.get("rss_mb", {}).get("growth"),
        "loop_lag_max_ms": r.get("event_loop_lag_ms", {}).get("max"),
    }


# --------------------------------------------------------------------------- fault cells
#: the cell figures (CaseResult.figures key -> the load_report probe's figures key)
FAULT_FIGURES = {
    "lost_qos0": "lost_by_qos.0", "lost_qos1": "lost_by_qos.1", "lost_qos2": "lost_by_qos.2",
    "duplicates_qos2": "duplicates_by_qos.2", "rejected": "rejected",
    "p99_ms": "latency_ms.p99", "breaker_opened": "breaker.opened",
    "breaker_closed": "breaker.closed",
}


@dataclass
class FaultJudgement:
    """A fault cell judged from its chaos run: see :func:`judge_fault_cell`."""

    status: str  # PASS | FAIL | ERROR
    verdict: str
    failed_targets: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    slo: list[dict[str, Any]] = field(default_factory=list)


def _label(entry: dict[str, Any]) -> str:
    a = entry.get("activity") or {}
    return str(a.get("name") or a.get("type") or "?")


def _exception(entry: dict[str, Any]) -> str:
    return "".join(entry.get("exception") or []).strip()


def _load_report_entry(journal: dict[str, Any]) -> dict[str, Any] | None:
    after: dict[str, Any] = (journal.get("steady_states") or {}).get("after") or {}
    probes: list[dict[str, Any]] = after.get("probes") or []
    return next((e for e in probes if (e.get("activity") or {}).get("type") == "load_report"),
                None)


def judge_fault_cell(code: int | None, journal: dict[str, Any] | None,
                     log_tail: str) -> FaultJudgement:
    """Judge one chaos run (pure: its exit code, its journal, the tail of its log).

    Exit 0 and status ``completed`` -> PASS; exit 1 and status ``failed`` (a probe missed,
    or the after steady state deviated) -> FAIL; anything else (aborted, interrupted, a
    timeout (``code`` None), no journal) -> ERROR. ``slo`` has one row per target judged
    (``name``, ``limit``, ``value``, ``passed``): the ``load_report`` probe's checks, its
    recovery (``recovery``), the other steady-state probes before and after and the method's
    probes, and the rollbacks; ``failed_targets`` names the rows that did not pass."""
    if journal is None:
        what = "timed out" if code is None else f"exit {code}"
        return FaultJudgement("ERROR", f"no journal ({what}): {log_tail}")
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    lr = _load_report_entry(journal)
    out = lr.get("output") if lr is not None else None
    if isinstance(out, dict):
        figs = out.get("figures") or {}
        figures = {k: figs.get(src) for k, src in FAULT_FIGURES.items()}
        for c in out.get("checks") or []:
            rows.append({"name": str(c.get("path")), "limit": c.get("expected"),
                         "value": c.get("actual"), "passed": bool(c.get("passed"))})
        rec = out.get("recovery")
        if isinstance(rec, dict):
            figures["recovered_after_s"] = rec.get("recovered_after_s")
            figures["recover_within_s"] = rec.get("within_s")
            rows.append({"name": "recovery", "limit": rec.get("within_s"),
                         "value": rec.get("recovered_after_s"),
                         "passed": bool(rec.get("passed"))})
    elif lr is not None:  # the probe raised (no report, no timeline, ...)
        rows.append({"name": _label(lr), "limit": None, "value": _exception(lr) or None,
                     "passed": bool(lr.get("tolerance_met"))})
    states = journal.get("steady_states") or {}
    probes = [p for phase in ("before", "after") for p in (states.get(phase) or {}).get(
        "probes") or [] if p is not lr]
    probes += [e for e in journal.get("run") or []
               if (e.get("activity") or {}).get("kind") == "probe"]
    for p in probes:
        if (p.get("activity") or {}).get("type") == "load_report" and p.get("status") == "skipped":
            continue  # before: recorded as skipped, judged after
        rows.append({"name": _label(p), "limit": True, "value": p.get("tolerance_met"),
                     "passed": bool(p.get("tolerance_met"))})
    for rb in journal.get("rollbacks") or []:
        rows.append({"name": _label(rb), "limit": "succeeded", "value": rb.get("status"),
                     "passed": rb.get("status") != "failed"})
    failed = list(dict.fromkeys(r["name"] for r in rows if not r["passed"]))
    status = journal.get("status")
    deviated = " (deviated)" if journal.get("deviated") else ""
    if code == 0 and status == "completed":
        return FaultJudgement("PASS", f"completed: {len(rows)} targets met", failed, figures,
                              rows)
    if code == 1 and status == "failed":
        verdict = f"failed{deviated}" + (f": missed {', '.join(failed)}" if failed else "")
        return FaultJudgement("FAIL", verdict, failed, figures, rows)
    why = (journal.get("environment") or {}).get("error") or next(
        (f"{_label(e)}: {_exception(e)}" for e in journal.get("run") or []
         if e.get("status") == "failed" and _exception(e)), None)
    what = "timed out" if code is None else f"exit {code}"
    return FaultJudgement("ERROR", f"{status or 'no status'}{deviated} ({what}): "
                                   f"{str(why).strip() if why else log_tail}",
                          failed, figures, rows)

