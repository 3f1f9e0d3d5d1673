"""One finished run's report as a document: the facts every rendering shows (status, exit
code, verdict, SLO rows, the figures line) and its sections of tables, paragraphs and bullets in
order, built once from the report dict and rendered by :mod:`catga_bench.judge.markdown` and
:mod:`catga_bench.judge.html_page`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from catga_bench.judge.values import (
    DASH,
    as_count,
    as_dict,
    as_list,
    as_number,
    fmt,
    one_line,
    with_unit,
)

#: at most this many rows of the handler and breaker tables in report.md / report.html
MAX_ROWS = 20
EXIT_MEANINGS: dict[int, str] = {
    0: "all targets met",
    1: "a target missed",
    2: "usage or configuration error",
    3: "environment failure",
}
QOS_NAMES: dict[int, str] = {0: "at-most-once", 1: "at-least-once", 2: "exactly-once"}
#: (key in latency dicts, label)
PERCENTILES: tuple[tuple[str, str], ...] = (
    ("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"), ("max", "max"),
    ("mean", "mean"),
)
LATENCY_NOTE = (
    "Latency is measured from the intended send time (coordinated omission corrected); "
    "service time from the actual send time."
)


# ============================================================================ report facts


def run_status(r: dict[str, Any]) -> str:
    """PASS or FAIL from ``passed`` (from ``exit_code`` when ``passed`` is missing)."""
    passed = r.get("passed")
    if isinstance(passed, bool):
        return "PASS" if passed else "FAIL"
    code = r.get("exit_code")
    if isinstance(code, int) and not isinstance(code, bool):
        return "PASS" if code == 0 else "FAIL"
    return "UNKNOWN"


def exit_text(r: dict[str, Any]) -> str:
    """``exit code N (what it means)``."""
    code = r.get("exit_code")
    if isinstance(code, int) and not isinstance(code, bool):
        return f"exit code {code} ({EXIT_MEANINGS.get(code, 'unknown code')})"
    return f"exit code {DASH}"


def verdict_line(r: dict[str, Any]) -> str:
    """The run's verdict on one line (a stand-in when none was recorded)."""
    verdict = r.get("verdict")
    if isinstance(verdict, str) and verdict.strip():
        return " ".join(verdict.split())
    return f"{run_status(r)}: no verdict recorded"


def slo_list(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The SLO rows that are dicts."""
    return [row for row in as_list(r.get("slo")) if isinstance(row, dict)]


def slo_cells(row: dict[str, Any]) -> tuple[str, str, str, str]:
    """(name, limit, value, result) of one SLO row; the limit shows its operator and unit."""
    unit = row.get("unit")
    limit = with_unit(row.get("limit"), unit)
    op = row.get("op")
    if isinstance(op, str) and op.strip() and limit != DASH:
        limit = f"{op.strip()} {limit}"
    passed = row.get("passed")
    result = DASH if not isinstance(passed, bool) else "PASS" if passed else "FAIL"
    return one_line(row.get("name")), limit, with_unit(row.get("value"), unit), result


def p99_limit_ms(r: dict[str, Any]) -> float | None:
    """The limit of the SLO row named "p99_latency" (ms), if numeric and positive."""
    for row in slo_list(r):
        if row.get("name") == "p99_latency":
            limit = as_number(row.get("limit"))
            return limit if limit is not None and limit > 0 else None
    return None


def figures_line(r: dict[str, Any]) -> str:
    """One line: achieved/offered msg/s, p99 (intended) ms, sent/handled/lost/duplicates."""
    lat = as_dict(r.get("latency_ms"))
    return (
        f"achieved {fmt(r.get('achieved_rate'))} / offered {fmt(r.get('offered_rate'))} msg/s "
        f"(sent {fmt(r.get('sent_rate'))} msg/s) | p99 {with_unit(lat.get('p99'), 'ms')} | "
        f"sent {fmt(r.get('sent'))}  handled {fmt(r.get('handled'))}  lost {fmt(r.get('lost'))}"
        f"  duplicates {fmt(r.get('duplicates'))}"
    )


# ============================================================================ document model


@dataclass(frozen=True)
class Table:
    """Plain-text cells; ``more`` is a trailing "… N more" line; ``empty`` shown for no rows."""

    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]
    more: str | None = None
    empty: str = "none"


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Raw:
    """Pre-rendered HTML (plots); only the HTML renderer uses it."""

    html: str


Block = Table | Para | Bullets | Raw


@dataclass(frozen=True)
class Section:
    title: str
    blocks: list[Block]


def sections(r: dict[str, Any], plots: Section | None = None) -> list[Section]:
    """The report's sections in order; ``plots`` (HTML only) goes after the figures."""
    sections = [_run_section(r)]
    failures = [one_line(f) for f in as_list(r.get("environment_failures"))]
    if failures:
        sections.append(Section("Environment failures", [Bullets(failures)]))
    sections += [_slo_section(r), _figures_section(r)]
    if plots is not None:
        sections.append(plots)
    sections += [_errors_section(r), _breaker_section(r), _streams_section(r)]
    if as_list(r.get("failing_messages")):
        sections.append(_failing_section(r))
    sections += [_handlers_section(r), _notes_section(r), _environment_section(r)]
    return sections


def _label(key: Any) -> str:
    """``closed_after_recovery_s`` -> ``closed after recovery (s)``."""
    text = str(key)
    for suffix in ("_s", "_ms", "_mb"):
        if text.endswith(suffix):
            text = f"{text[: -len(suffix)]} ({suffix[1:]})".replace("(mb)", "(MB)")
            break
    return text.replace("_", " ")


def _kv_table(pairs: Iterable[tuple[str, str]]) -> Table:
    return Table(("", "value"), [(k, v) for k, v in pairs])


def _compact(rows: list[tuple[str, ...]], noun: str) -> tuple[list[tuple[str, ...]], str | None]:
    """At most MAX_ROWS rows and a "… N more <noun>" line for the rest."""
    if len(rows) <= MAX_ROWS:
        return rows, None
    return rows[:MAX_ROWS], f"… {len(rows) - MAX_ROWS:,} more {noun}"


def _run_section(r: dict[str, Any]) -> Section:
    qos = r.get("qos")
    qos_text = fmt(qos)
    if isinstance(qos, int) and qos in QOS_NAMES:
        qos_text = f"{qos} ({QOS_NAMES[qos]})"
    return Section("Run", [_kv_table([
        ("scenario", one_line(r.get("scenario"))),
        ("transport", one_line(r.get("transport"))),
        ("qos", qos_text),
        ("started at (UTC)", one_line(r.get("started_at"))),
        ("finished at (UTC)", one_line(r.get("finished_at"))),
        ("measured duration", with_unit(r.get("duration_s"), "s")),
        ("load-generator workers", fmt(r.get("workers"))),
    ])])


def _slo_section(r: dict[str, Any]) -> Section:
    rows = [(*slo_cells(row), one_line(row.get("description"))) for row in slo_list(r)]
    table = Table(("name", "limit", "value", "result", "description"), rows,
                   empty="no SLO targets evaluated")
    return Section("SLO targets", [table])


def _figures_section(r: dict[str, Any]) -> Section:
    rates = Table(("rate", "msg/s"), [
        ("offered", fmt(r.get("offered_rate"))),
        ("sent", fmt(r.get("sent_rate"))),
        ("achieved", fmt(r.get("achieved_rate"))),
    ])
    lat, svc = as_dict(r.get("latency_ms")), as_dict(r.get("service_time_ms"))
    latency = Table(("percentile", "latency, intended time (ms)", "service time (ms)"),
                     [(label, fmt(lat.get(k)), fmt(svc.get(k))) for k, label in PERCENTILES])
    return Section("Figures", [rates, Para(LATENCY_NOTE), latency, _counts_table(r),
                                _other_table(r)])


def _counts_table(r: dict[str, Any]) -> Table:
    always = (("sent", "sent"), ("handled", "handled"), ("lost", "lost"),
              ("duplicates", "duplicates"), ("dead_lettered", "dead-lettered"),
              ("rejected", "rejected"), ("timeouts", "timeouts"))
    optional = (("acked", "acknowledged"), ("retries", "retries"),
                ("redeliveries", "redeliveries"), ("undrained", "undrained"),
                ("error_ratio", "error ratio (SLO streams)"))
    rows = [(label, fmt(r.get(key))) for key, label in always]
    rows += [(label, fmt(r.get(key))) for key, label in optional if key in r]
    return Table(("messages", "count"), rows)


def _other_table(r: dict[str, Any]) -> Table:
    lag = as_dict(r.get("event_loop_lag_ms"))
    rows = [("event-loop lag p50 / p99 / max",
             f"{fmt(lag.get('p50'))} / {fmt(lag.get('p99'))} / {fmt(lag.get('max'))} ms")]
    rss = r.get("rss_mb")
    if isinstance(rss, dict):
        rows.append(("RSS start / peak / growth", f"{fmt(rss.get('start'))} / "
                     f"{fmt(rss.get('peak'))} / {fmt(rss.get('growth'))} MB"))
    gen = r.get("generator")
    if isinstance(gen, dict) and "max_behind_s" in gen:
        rows.append(("generator max behind schedule", with_unit(gen.get("max_behind_s"), "s")))
    return Table(("measurement", "value"), rows)


def _errors_section(r: dict[str, Any]) -> Section:
    errors = as_dict(r.get("errors"))
    items = sorted(errors.items(), key=lambda kv: (-as_count(kv[1]), str(kv[0])))
    rows = [(one_line(kind), fmt(n)) for kind, n in items]
    return Section("Errors", [Table(("kind", "count"), rows, empty="no errors recorded")])


def _breaker_section(r: dict[str, Any]) -> Section:
    breaker = as_dict(r.get("breaker"))
    if not breaker:
        return Section("Circuit breakers", [Para("no breaker data")])
    first = ("state", "opened", "half_opened", "closed")
    keys = [k for k in first if k in breaker]
    keys += [k for k in breaker if k not in first and k != "breakers"
             and not isinstance(breaker[k], dict | list)]
    blocks: list[Block] = [_kv_table((_label(k), fmt(breaker[k])) for k in keys)]
    states = as_dict(breaker.get("breakers"))
    if states:
        items = sorted(states.items(), key=lambda kv: (kv[1] == "closed", str(kv[0])))
        shown, more = _compact([(one_line(n), one_line(s)) for n, s in items], "breakers")
        blocks.append(Table(("breaker", "state"), shown, more))
    return Section("Circuit breakers", blocks)


def _streams_section(r: dict[str, Any]) -> Section:
    rows = []
    for name, raw in as_dict(r.get("streams")).items():
        s = as_dict(raw)
        lat = as_dict(s.get("latency_ms"))
        rows.append((one_line(name), fmt(s.get("qos")), fmt(s.get("slo")), fmt(s.get("sent")),
                     fmt(s.get("completed")), fmt(s.get("failed")), fmt(s.get("rejected")),
                     fmt(s.get("lost")), fmt(s.get("duplicates")),
                     *(fmt(lat.get(k)) for k in ("p50", "p99", "p999", "max"))))
    headers = ("stream", "QoS", "in SLO", "sent", "completed", "failed", "rejected", "lost",
               "duplicates", "p50 ms", "p99 ms", "p99.9 ms", "max ms")
    return Section("Streams", [Table(headers, rows, empty="no streams recorded")])


def _failing_section(r: dict[str, Any]) -> Section:
    """The first lost, late or duplicated messages, to look up in the system's own logs."""
    rows = []
    for raw in as_list(r.get("failing_messages")):
        m = as_dict(raw)
        outputs = ", ".join(f"{one_line(o.get('kind'))} {one_line(o.get('output'))} at "
                            f"{one_line(o.get('at'))}" for o in map(as_dict,
                                                                     as_list(m.get("outputs"))))
        rows.append((one_line(m.get("kind")), one_line(m.get("correlation_id")),
                     one_line(m.get("stream")), one_line(m.get("intended_at")),
                     one_line(m.get("sent_at")), ", ".join(map(one_line,
                                                               as_list(m.get("handlers")))),
                     outputs or "none"))
    intro = Para("The first messages (by intended send time) that were lost, late or "
                 "duplicated; times are UTC. Search the system's logs for the correlation id.")
    headers = ("kind", "correlation id", "stream", "intended at", "sent at",
               "handlers / outputs", "outputs seen")
    return Section("Failing messages", [intro, Table(headers, rows)])


def _handlers_section(r: dict[str, Any]) -> Section:
    handlers = {str(k): as_dict(v) for k, v in as_dict(r.get("handlers")).items()}
    if not handlers:
        return Section("Handlers", [Para("no handler data")])
    items = sorted(handlers.items(), key=lambda kv: (-as_count(kv[1].get("failed")),
                                                     -as_count(kv[1].get("handled")), kv[0]))
    handled = sum(as_count(h.get("handled")) for h in handlers.values())
    failed = sum(as_count(h.get("failed")) for h in handlers.values())
    intro = Para(f"{len(handlers):,} handlers: {handled:,} handled, {failed:,} failed in total"
                  + (f"; the top {MAX_ROWS} by failed, then handled" if len(items) > MAX_ROWS
                     else ""))
    rows = [(one_line(n), fmt(h.get("handled")), fmt(h.get("failed"))) for n, h in items]
    shown, more = _compact(rows, "handlers")
    return Section("Handlers", [intro, Table(("handler", "handled", "failed"), shown, more)])


def _notes_section(r: dict[str, Any]) -> Section:
    notes = [one_line(n) for n in as_list(r.get("notes"))]
    return Section("Notes", [Bullets(notes)] if notes else [Para("none")])


def _environment_section(r: dict[str, Any]) -> Section:
    env = as_dict(r.get("environment"))
    if not env:
        return Section("Environment", [Para("no environment data")])
    return Section("Environment", [_kv_table((one_line(k), one_line(v)) for k, v in env.items())])
