"""Render one finished load-test run: report.json, report.md, report.html and a terminal summary.

The input is the report dict built by :mod:`catga_bench.judge.gate` (its keys are documented in
``docs/report.md``). Any key may be missing, ``None`` or of an unexpected type, because a report
must still be written when a run fails early: missing values render as "—" and an empty timeline
as "no timeline data". Nothing here raises on a partial dict.

matplotlib (plots) and rich (terminal) are imported inside the functions that use them, so
importing this module stays fast.
"""

from __future__ import annotations

import html
import io
import json
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

log = logging.getLogger(__name__)

DASH = "—"
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
NO_TIMELINE = "no timeline data"
FILE_NAMES: dict[str, str] = {"json": "report.json", "md": "report.md", "html": "report.html"}


# ============================================================================ public API


def write_reports(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Create ``out_dir`` (parents too) and write report.json, report.md and report.html.

    Args:
        report: the run's report dict (any key may be missing).
        out_dir: directory for the three files; existing files are overwritten.

    Returns:
        ``{"json": path, "md": path, "html": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = _as_dict(report)
    paths = {kind: out / name for kind, name in FILE_NAMES.items()}
    paths["json"].write_text(_to_json(data) + "\n", encoding="utf-8")
    paths["md"].write_text(render_markdown(data), encoding="utf-8")
    paths["html"].write_text(render_html(data), encoding="utf-8")
    return paths


def _to_json(report: dict[str, Any]) -> str:
    """The report as strictly valid JSON (indent 2, keys in the given order).

    NaN and ±inf become ``null``; values JSON cannot hold (paths, dates) become strings.
    """
    return json.dumps(_json_safe(report), indent=2, sort_keys=False, allow_nan=False,
                      default=str)


def render_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown document (GitHub-flavoured tables), ending with a newline."""
    r = _as_dict(report)
    lines = _md_headline(r)
    for section in _sections(r):
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            lines += _md_block(block)
    return "\n".join(lines).rstrip("\n") + "\n"


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page: inline CSS, no scripts, no external assets.

    Four timeline plots (latency, throughput, breaker state, queue depth) are embedded as inline
    SVG; with an empty timeline the page says "no timeline data" instead.
    """
    r = _as_dict(report)
    plots = _Section("Timeline", [_Raw(_plots_html(r))])
    body = [_html_headline(r)]
    for section in _sections(r, plots=plots):
        body.append(f"<section>\n<h2>{_esc(section.title)}</h2>")
        body += [_html_block(block) for block in section.blocks]
        body.append("</section>")
    title = f"catga-bench: {_text(r.get('scenario'))} — {_status(r)}"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )


def print_summary(report: dict[str, Any], console: Console | None = None) -> None:
    """Print a short terminal summary: the SLO table (name, limit, value, PASS/FAIL), one line
    of figures (achieved/offered msg/s, p99 ms, sent/handled/lost/duplicates) and the verdict.

    Args:
        report: the run's report dict (any key may be missing).
        console: where to print; default a new ``rich.console.Console()`` (stdout).
    """
    from rich.console import Console

    r = _as_dict(report)
    con = console if console is not None else Console()
    rows = _slo_list(r)
    if rows:
        con.print(_rich_slo_table(rows, _text(r.get("scenario"))))
    else:
        con.print("no SLO targets evaluated", style="dim")
    con.print(_figures_line(r), highlight=False, soft_wrap=True)
    con.print(_rich_verdict(r))


# ============================================================================ value helpers


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _number(value: Any) -> float | None:
    """A finite real number as float; None for None, bools, strings, NaN and ±inf."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _count(value: Any) -> int:
    """A count for sorting and summing: non-numbers count as 0."""
    v = _number(value)
    return int(v) if v is not None else 0


def _fmt(value: Any) -> str:
    """Format a value for a table cell: "—" for None/NaN, thousands separators for large
    numbers, at most ~3 significant decimals for small ones, "yes"/"no" for bools."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return _fmt_float(value)
    if isinstance(value, str):
        return value if value.strip() else DASH
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value) if value else DASH
    if isinstance(value, dict):
        return json.dumps(_json_safe(value), default=str) if value else DASH
    return str(value)


def _fmt_float(v: float) -> str:
    if math.isnan(v):
        return DASH
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a == 0:
        return "0"
    text = f"{v:.1f}" if a >= 100 else f"{v:.2f}" if a >= 1 else f"{v:.3g}"
    if "." in text and "e" not in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _with_unit(value: Any, unit: Any) -> str:
    text = _fmt(value)
    u = unit.strip() if isinstance(unit, str) else ""
    return f"{text} {u}" if u and text != DASH else text


def _text(value: Any) -> str:
    """A one-line string for free text (newlines folded)."""
    return " ".join(_fmt(value).split()) or DASH


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_json_key(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    return value


def _json_key(key: Any) -> Any:
    return key if isinstance(key, str | int | float | bool) or key is None else str(key)


# ============================================================================ report facts


def _status(r: dict[str, Any]) -> str:
    """PASS or FAIL from ``passed`` (from ``exit_code`` when ``passed`` is missing)."""
    passed = r.get("passed")
    if isinstance(passed, bool):
        return "PASS" if passed else "FAIL"
    code = r.get("exit_code")
    if isinstance(code, int) and not isinstance(code, bool):
        return "PASS" if code == 0 else "FAIL"
    return "UNKNOWN"


def _exit_text(r: dict[str, Any]) -> str:
    code = r.get("exit_code")
    if isinstance(code, int) and not isinstance(code, bool):
        return f"exit code {code} ({EXIT_MEANINGS.get(code, 'unknown code')})"
    return f"exit code {DASH}"


def _verdict(r: dict[str, Any]) -> str:
    verdict = r.get("verdict")
    if isinstance(verdict, str) and verdict.strip():
        return " ".join(verdict.split())
    return f"{_status(r)}: no verdict recorded"


def _slo_list(r: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for row in _as_list(r.get("slo")) if isinstance(row, dict)]


def _slo_cells(row: dict[str, Any]) -> tuple[str, str, str, str]:
    """(name, limit, value, result) of one SLO row; the limit shows its operator and unit."""
    unit = row.get("unit")
    limit = _with_unit(row.get("limit"), unit)
    op = row.get("op")
    if isinstance(op, str) and op.strip() and limit != DASH:
        limit = f"{op.strip()} {limit}"
    passed = row.get("passed")
    result = DASH if not isinstance(passed, bool) else "PASS" if passed else "FAIL"
    return _text(row.get("name")), limit, _with_unit(row.get("value"), unit), result


def _p99_limit_ms(r: dict[str, Any]) -> float | None:
    """The limit of the SLO row named "p99_latency" (ms), if numeric and positive."""
    for row in _slo_list(r):
        if row.get("name") == "p99_latency":
            limit = _number(row.get("limit"))
            return limit if limit is not None and limit > 0 else None
    return None


def _figures_line(r: dict[str, Any]) -> str:
    """One line: achieved/offered msg/s, p99 (intended) ms, sent/handled/lost/duplicates."""
    lat = _as_dict(r.get("latency_ms"))
    return (
        f"achieved {_fmt(r.get('achieved_rate'))} / offered {_fmt(r.get('offered_rate'))} msg/s "
        f"(sent {_fmt(r.get('sent_rate'))} msg/s) | p99 {_with_unit(lat.get('p99'), 'ms')} | "
        f"sent {_fmt(r.get('sent'))}  handled {_fmt(r.get('handled'))}  lost {_fmt(r.get('lost'))}"
        f"  duplicates {_fmt(r.get('duplicates'))}"
    )


# ============================================================================ document model


@dataclass(frozen=True)
class _Table:
    """Plain-text cells; ``more`` is a trailing "… N more" line; ``empty`` shown for no rows."""

    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]
    more: str | None = None
    empty: str = "none"


@dataclass(frozen=True)
class _Para:
    text: str


@dataclass(frozen=True)
class _Bullets:
    items: list[str]


@dataclass(frozen=True)
class _Raw:
    """Pre-rendered HTML (plots); only the HTML renderer uses it."""

    html: str


_Block = _Table | _Para | _Bullets | _Raw


@dataclass(frozen=True)
class _Section:
    title: str
    blocks: list[_Block]


def _sections(r: dict[str, Any], plots: _Section | None = None) -> list[_Section]:
    """The report's sections in order; ``plots`` (HTML only) goes after the figures."""
    sections = [_run_section(r)]
    failures = [_text(f) for f in _as_list(r.get("environment_failures"))]
    if failures:
        sections.append(_Section("Environment failures", [_Bullets(failures)]))
    sections += [_slo_section(r), _figures_section(r)]
    if plots is not None:
        sections.append(plots)
    sections += [_errors_section(r), _breaker_section(r), _streams_section(r),
                 _handlers_section(r), _notes_section(r), _environment_section(r)]
    return sections


def _label(key: Any) -> str:
    """``closed_after_recovery_s`` -> ``closed after recovery (s)``."""
    text = str(key)
    for suffix in ("_s", "_ms", "_mb"):
        if text.endswith(suffix):
            text = f"{text[: -len(suffix)]} ({suffix[1:]})".replace("(mb)", "(MB)")
            break
    return text.replace("_", " ")


def _kv_table(pairs: Iterable[tuple[str, str]]) -> _Table:
    return _Table(("", "value"), [(k, v) for k, v in pairs])


def _compact(rows: list[tuple[str, ...]], noun: str) -> tuple[list[tuple[str, ...]], str | None]:
    """At most MAX_ROWS rows and a "… N more <noun>" line for the rest."""
    if len(rows) <= MAX_ROWS:
        return rows, None
    return rows[:MAX_ROWS], f"… {len(rows) - MAX_ROWS:,} more {noun}"


def _run_section(r: dict[str, Any]) -> _Section:
    qos = r.get("qos")
    qos_text = _fmt(qos)
    if isinstance(qos, int) and qos in QOS_NAMES:
        qos_text = f"{qos} ({QOS_NAMES[qos]})"
    return _Section("Run", [_kv_table([
        ("scenario", _text(r.get("scenario"))),
        ("transport", _text(r.get("transport"))),
        ("qos", qos_text),
        ("started at (UTC)", _text(r.get("started_at"))),
        ("finished at (UTC)", _text(r.get("finished_at"))),
        ("measured duration", _with_unit(r.get("duration_s"), "s")),
        ("load-generator workers", _fmt(r.get("workers"))),
    ])])


def _slo_section(r: dict[str, Any]) -> _Section:
    rows = [(*_slo_cells(row), _text(row.get("description"))) for row in _slo_list(r)]
    table = _Table(("name", "limit", "value", "result", "description"), rows,
                   empty="no SLO targets evaluated")
    return _Section("SLO targets", [table])


def _figures_section(r: dict[str, Any]) -> _Section:
    rates = _Table(("rate", "msg/s"), [
        ("offered", _fmt(r.get("offered_rate"))),
        ("sent", _fmt(r.get("sent_rate"))),
        ("achieved", _fmt(r.get("achieved_rate"))),
    ])
    lat, svc = _as_dict(r.get("latency_ms")), _as_dict(r.get("service_time_ms"))
    latency = _Table(("percentile", "latency, intended time (ms)", "service time (ms)"),
                     [(label, _fmt(lat.get(k)), _fmt(svc.get(k))) for k, label in PERCENTILES])
    return _Section("Figures", [rates, _Para(LATENCY_NOTE), latency, _counts_table(r),
                                _other_table(r)])


def _counts_table(r: dict[str, Any]) -> _Table:
    always = (("sent", "sent"), ("handled", "handled"), ("lost", "lost"),
              ("duplicates", "duplicates"), ("dead_lettered", "dead-lettered"),
              ("rejected", "rejected"), ("timeouts", "timeouts"))
    optional = (("acked", "acknowledged"), ("retries", "retries"),
                ("redeliveries", "redeliveries"), ("undrained", "undrained"),
                ("error_ratio", "error ratio (SLO streams)"))
    rows = [(label, _fmt(r.get(key))) for key, label in always]
    rows += [(label, _fmt(r.get(key))) for key, label in optional if key in r]
    return _Table(("messages", "count"), rows)


def _other_table(r: dict[str, Any]) -> _Table:
    lag = _as_dict(r.get("event_loop_lag_ms"))
    rows = [("event-loop lag p50 / p99 / max",
             f"{_fmt(lag.get('p50'))} / {_fmt(lag.get('p99'))} / {_fmt(lag.get('max'))} ms")]
    rss = r.get("rss_mb")
    if isinstance(rss, dict):
        rows.append(("RSS start / peak / growth", f"{_fmt(rss.get('start'))} / "
                     f"{_fmt(rss.get('peak'))} / {_fmt(rss.get('growth'))} MB"))
    gen = r.get("generator")
    if isinstance(gen, dict) and "max_behind_s" in gen:
        rows.append(("generator max behind schedule", _with_unit(gen.get("max_behind_s"), "s")))
    return _Table(("measurement", "value"), rows)


def _errors_section(r: dict[str, Any]) -> _Section:
    errors = _as_dict(r.get("errors"))
    items = sorted(errors.items(), key=lambda kv: (-_count(kv[1]), str(kv[0])))
    rows = [(_text(kind), _fmt(n)) for kind, n in items]
    return _Section("Errors", [_Table(("kind", "count"), rows, empty="no errors recorded")])


def _breaker_section(r: dict[str, Any]) -> _Section:
    breaker = _as_dict(r.get("breaker"))
    if not breaker:
        return _Section("Circuit breakers", [_Para("no breaker data")])
    first = ("state", "opened", "half_opened", "closed")
    keys = [k for k in first if k in breaker]
    keys += [k for k in breaker if k not in first and k != "breakers"
             and not isinstance(breaker[k], dict | list)]
    blocks: list[_Block] = [_kv_table((_label(k), _fmt(breaker[k])) for k in keys)]
    states = _as_dict(breaker.get("breakers"))
    if states:
        items = sorted(states.items(), key=lambda kv: (kv[1] == "closed", str(kv[0])))
        shown, more = _compact([(_text(n), _text(s)) for n, s in items], "breakers")
        blocks.append(_Table(("breaker", "state"), shown, more))
    return _Section("Circuit breakers", blocks)


def _streams_section(r: dict[str, Any]) -> _Section:
    rows = []
    for name, raw in _as_dict(r.get("streams")).items():
        s = _as_dict(raw)
        lat = _as_dict(s.get("latency_ms"))
        rows.append((_text(name), _fmt(s.get("qos")), _fmt(s.get("slo")), _fmt(s.get("sent")),
                     _fmt(s.get("completed")), _fmt(s.get("failed")), _fmt(s.get("rejected")),
                     _fmt(s.get("lost")), _fmt(s.get("duplicates")),
                     *(_fmt(lat.get(k)) for k in ("p50", "p99", "p999", "max"))))
    headers = ("stream", "QoS", "in SLO", "sent", "completed", "failed", "rejected", "lost",
               "duplicates", "p50 ms", "p99 ms", "p99.9 ms", "max ms")
    return _Section("Streams", [_Table(headers, rows, empty="no streams recorded")])


def _handlers_section(r: dict[str, Any]) -> _Section:
    handlers = {str(k): _as_dict(v) for k, v in _as_dict(r.get("handlers")).items()}
    if not handlers:
        return _Section("Handlers", [_Para("no handler data")])
    items = sorted(handlers.items(), key=lambda kv: (-_count(kv[1].get("failed")),
                                                     -_count(kv[1].get("handled")), kv[0]))
    handled = sum(_count(h.get("handled")) for h in handlers.values())
    failed = sum(_count(h.get("failed")) for h in handlers.values())
    intro = _Para(f"{len(handlers):,} handlers: {handled:,} handled, {failed:,} failed in total"
                  + (f"; the top {MAX_ROWS} by failed, then handled" if len(items) > MAX_ROWS
                     else ""))
    rows = [(_text(n), _fmt(h.get("handled")), _fmt(h.get("failed"))) for n, h in items]
    shown, more = _compact(rows, "handlers")
    return _Section("Handlers", [intro, _Table(("handler", "handled", "failed"), shown, more)])


def _notes_section(r: dict[str, Any]) -> _Section:
    notes = [_text(n) for n in _as_list(r.get("notes"))]
    return _Section("Notes", [_Bullets(notes)] if notes else [_Para("none")])


def _environment_section(r: dict[str, Any]) -> _Section:
    env = _as_dict(r.get("environment"))
    if not env:
        return _Section("Environment", [_Para("no environment data")])
    return _Section("Environment", [_kv_table((_text(k), _text(v)) for k, v in env.items())])


# ============================================================================ Markdown


def _md_headline(r: dict[str, Any]) -> list[str]:
    return [
        f"# catga-bench report: {_md_inline(_text(r.get('scenario')))}", "",
        f"**{_status(r)}**, {_exit_text(r)}", "",
        f"> {_md_inline(_verdict(r))}", "",
    ]


def _md_inline(text: str) -> str:
    return " ".join(text.split())


def _md_cell(text: str) -> str:
    return _md_inline(text).replace("|", "\\|") or " "


def _md_block(block: _Block) -> list[str]:
    if isinstance(block, _Para):
        return [_md_inline(block.text), ""]
    if isinstance(block, _Bullets):
        return [f"- {_md_inline(item)}" for item in block.items] + [""]
    if isinstance(block, _Table):
        return _md_table(block)
    return []  # _Raw: HTML only


def _md_table(t: _Table) -> list[str]:
    if not t.rows:
        return [f"_{t.empty}_", ""]
    lines = ["| " + " | ".join(_md_cell(h) for h in t.headers) + " |",
             "|" + "---|" * len(t.headers)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    if t.more:
        lines += ["", _md_inline(t.more)]
    return [*lines, ""]


# ============================================================================ HTML


_CSS = """
body{margin:0;background:#fafafa;color:#222;line-height:1.45;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
main{max-width:1040px;margin:0 auto;padding:1.5rem}
h1{font-size:1.6rem;margin:0 0 .4rem}
h2{font-size:1.2rem;margin:2rem 0 .6rem;padding-bottom:.2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6rem 0;background:#fff;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ddd;padding:.25rem .65rem;text-align:left;vertical-align:top}
th{background:#f0f0f0;font-weight:600}
td.pass{color:#1b5e20;font-weight:600}
td.fail{color:#b71c1c;font-weight:600}
.banner{padding:1rem 1.2rem;border-left:6px solid #999;border-radius:4px;background:#f3f3f3}
.banner.pass{border-color:#2e7d32;background:#edf7ee}
.banner.fail{border-color:#c62828;background:#fdecea}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:3px;color:#fff;
background:#777;font-weight:700}
.pass .badge{background:#2e7d32}
.fail .badge{background:#c62828}
.verdict{font-size:1.05rem;margin:.5rem 0 0}
.muted,.more{color:#666}
figure{margin:1rem 0;padding:.5rem;background:#fff;border:1px solid #ddd}
figcaption{font-weight:600;margin-bottom:.3rem}
figure svg{max-width:100%;height:auto}
"""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_headline(r: dict[str, Any]) -> str:
    status = _status(r)
    css = "pass" if status == "PASS" else "fail"
    return (
        f'<header class="banner {css}">\n'
        f"<h1>catga-bench report: {_esc(_text(r.get('scenario')))}</h1>\n"
        f'<p><span class="badge">{_esc(status)}</span> {_esc(_exit_text(r))}</p>\n'
        f'<p class="verdict">{_esc(_verdict(r))}</p>\n</header>'
    )


def _html_block(block: _Block) -> str:
    if isinstance(block, _Para):
        return f"<p>{_esc(block.text)}</p>"
    if isinstance(block, _Bullets):
        return "<ul>" + "".join(f"<li>{_esc(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, _Table):
        return _html_table(block)
    return block.html


def _html_table(t: _Table) -> str:
    if not t.rows:
        return f'<p class="muted">{_esc(t.empty)}</p>'
    head = "".join(f"<th>{_esc(h)}</th>" for h in t.headers)
    body = "\n".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in t.rows)
    more = f'\n<p class="more">{_esc(t.more)}</p>' if t.more else ""
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>{more}"


def _html_cell(text: str) -> str:
    css = {"PASS": ' class="pass"', "FAIL": ' class="fail"'}.get(text, "")
    return f"<td{css}>{_esc(text)}</td>"


# ============================================================================ plots

_Draw = Callable[["Figure", list[float], dict[str, Any], int, dict[str, Any]], None]


def _timeline_length(tl: dict[str, Any]) -> int:
    """Seconds in the timeline: len(t_s), or the longest series when t_s is missing."""
    t_s = tl.get("t_s")
    if isinstance(t_s, list | tuple):
        return len(t_s)
    return max((len(v) for v in tl.values() if isinstance(v, list | tuple)), default=0)


def _x_values(tl: dict[str, Any], n: int) -> list[float]:
    t_s = _as_list(tl.get("t_s"))
    return [v if (v := _number(t_s[i] if i < len(t_s) else None)) is not None else float(i)
            for i in range(n)]


def _y_values(tl: dict[str, Any], key: str, n: int, positive: bool = False) -> list[float]:
    """Series ``key`` as n floats: NaN (a gap) for missing entries, None and non-numbers; with
    ``positive`` also for values <= 0 (for log axes)."""
    raw = _as_list(tl.get(key))
    out: list[float] = []
    for i in range(n):
        v = _number(raw[i]) if i < len(raw) else None
        out.append(math.nan if v is None or (positive and v <= 0) else v)
    return out


def _has_data(values: list[float]) -> bool:
    return any(not math.isnan(v) for v in values)


def _plots_html(r: dict[str, Any]) -> str:
    """The four timeline plots as <figure> elements with inline SVG, or "no timeline data"."""
    tl = _as_dict(r.get("timeline"))
    n = _timeline_length(tl)
    if n == 0:
        return f'<p class="muted">{NO_TIMELINE}</p>'
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        return f'<p class="muted">plots unavailable: {_esc(exc)}</p>'
    x = _x_values(tl, n)
    plots: tuple[tuple[str, _Draw], ...] = (
        ("Latency over time (from intended send time)", _draw_latency),
        ("Throughput", _draw_throughput),
        ("Circuit breakers, rejections and timeouts", _draw_breakers),
        ("Queue depth and in-flight messages", _draw_queue),
    )
    return "\n".join(_plot_figure(title, draw, x, tl, n, r) for title, draw in plots)


def _plot_figure(title: str, draw: _Draw, x: list[float], tl: dict[str, Any], n: int,
                 r: dict[str, Any]) -> str:
    try:
        svg = _render_svg(draw, x, tl, n, r)
    except Exception as exc:  # one broken plot must not lose the report
        log.exception("catga-bench: could not draw plot %r", title)
        return f'<p class="muted">{_esc(title)}: plot failed ({_esc(exc)})</p>'
    return f"<figure>\n<figcaption>{_esc(title)}</figcaption>\n{svg}\n</figure>"


def _render_svg(draw: _Draw, x: list[float], tl: dict[str, Any], n: int,
                r: dict[str, Any]) -> str:
    """Draw on a fresh Agg-canvas figure (no pyplot, no global figure registry) and return the
    SVG markup without its XML prolog. The figure is cleared after saving."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    try:
        with matplotlib.rc_context({"svg.fonttype": "none"}):
            draw(fig, x, tl, n, r)
            fig.savefig(buf, format="svg", metadata={"Date": None})
    finally:
        fig.clear()
    text = buf.getvalue().decode("utf-8")
    start = text.find("<svg")
    return text[start:].strip() if start >= 0 else ""


def _style_axes(ax: Any, ylabel: str) -> None:
    ax.set_xlabel("seconds since start")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def _no_data(ax: Any) -> None:
    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center",
            color="gray")


def _legend(fig: Figure, handles: list[Any], labels: list[str]) -> None:
    """One legend row above the axes, so it never hides data."""
    fig.legend(handles, labels, loc="outside upper right", ncols=len(labels), fontsize="small",
               frameon=False)


def _marker(n: int) -> str | None:
    return "." if n <= 60 else None


def _draw_latency(fig: Figure, x: list[float], tl: dict[str, Any], n: int,
                  r: dict[str, Any]) -> None:
    """p50 / p99 / max latency per second (ms, log y) and the p99 SLO limit, dashed."""
    ax = fig.add_subplot()
    drawn = False
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")):
        y = _y_values(tl, key, n, positive=True)
        if _has_data(y):
            ax.plot(x, y, label=label, marker=_marker(n), linewidth=1.2)
            drawn = True
    limit = _p99_limit_ms(r)
    if limit is not None:
        ax.axhline(limit, linestyle="--", color="tab:red", linewidth=1,
                   label=f"p99 SLO {_fmt(limit)} ms")
        drawn = True
    if drawn:
        ax.set_yscale("log")
        _legend(fig, *ax.get_legend_handles_labels())
    else:
        _no_data(ax)
    _style_axes(ax, "latency (ms, log)")


def _draw_throughput(fig: Figure, x: list[float], tl: dict[str, Any], n: int,
                     r: dict[str, Any]) -> None:
    """Sent and completed messages per second, and the offered rate, dashed."""
    ax = fig.add_subplot()
    drawn = False
    for key, label in (("sent", "sent"), ("completed", "completed")):
        y = _y_values(tl, key, n)
        if _has_data(y):
            ax.plot(x, y, label=label, marker=_marker(n), linewidth=1.2)
            drawn = True
    offered = _number(r.get("offered_rate"))
    if offered is not None:
        ax.axhline(offered, linestyle="--", color="gray", linewidth=1,
                   label=f"offered {_fmt(offered)} msg/s")
        drawn = True
    if drawn:
        ax.set_ylim(bottom=0)
        _legend(fig, *ax.get_legend_handles_labels())
    else:
        _no_data(ax)
    _style_axes(ax, "msg/s")


def _draw_breakers(fig: Figure, x: list[float], tl: dict[str, Any], n: int,
                   r: dict[str, Any]) -> None:
    """Breakers open (step, left axis); rejected and timeouts per second (right axis)."""
    from matplotlib.ticker import MaxNLocator

    ax = fig.add_subplot()
    opened = _y_values(tl, "breaker_open", n)
    if _has_data(opened):
        ax.step(x, opened, where="post", color="tab:red", label="breakers open")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _style_axes(ax, "breakers open")
    twin = ax.twinx()
    for key, color in (("rejected", "tab:orange"), ("timeouts", "tab:purple")):
        y = _y_values(tl, key, n)
        if _has_data(y):
            twin.plot(x, y, color=color, label=f"{key} /s", linewidth=1.2, marker=_marker(n))
    twin.set_ylabel("per second")
    ax.set_ylim(bottom=0)
    twin.set_ylim(bottom=0)
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = twin.get_legend_handles_labels()
    if handles or more_handles:
        _legend(fig, handles + more_handles, labels + more_labels)
    else:
        _no_data(ax)


def _draw_queue(fig: Figure, x: list[float], tl: dict[str, Any], n: int,
                r: dict[str, Any]) -> None:
    """Limiter wait-queue depth (max per second) and messages in flight."""
    ax = fig.add_subplot()
    drawn = False
    for key, label in (("queue_depth", "queue depth"), ("in_flight", "in flight")):
        y = _y_values(tl, key, n)
        if _has_data(y):
            ax.plot(x, y, label=label, marker=_marker(n), linewidth=1.2)
            drawn = True
    if drawn:
        ax.set_ylim(bottom=0)
        _legend(fig, *ax.get_legend_handles_labels())
    else:
        _no_data(ax)
    _style_axes(ax, "messages")


# ============================================================================ terminal


def _rich_slo_table(rows: list[dict[str, Any]], scenario: str) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"SLO targets: {scenario}", title_justify="left")
    table.add_column("name")
    table.add_column("limit", justify="right")
    table.add_column("value", justify="right")
    table.add_column("result", justify="center")
    for row in rows:
        name, limit, value, result = _slo_cells(row)
        style = {"PASS": "bold green", "FAIL": "bold red"}.get(result, "dim")
        table.add_row(Text(name), Text(limit), Text(value), Text(result, style=style))
    return table


def _rich_verdict(r: dict[str, Any]) -> Text:
    from rich.text import Text

    status = _status(r)
    style = {"PASS": "bold white on green", "FAIL": "bold white on red"}.get(status, "bold")
    return Text.assemble((f" {status} ", style), f" {_exit_text(r)}: ", (_verdict(r), "bold"))
