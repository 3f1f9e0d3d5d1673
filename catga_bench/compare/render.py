"""A comparison's reports: report.json (``kind: comparison``), report.md and report.html, built
of the run report's document blocks (:mod:`catga_bench.judge.document`) and rendered by its
Markdown and HTML renderers: the outcome, per metric the medians, run counts, CVs, the ratio and
its interval, the margin or limit, both p-values, the smallest detectable change, the verdict
and its reason, then a per-run table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from catga_bench.compare.model import Comparison, MetricResult
from catga_bench.compare.samples import RunSample
from catga_bench.judge.document import Bullets, Para, Section, Table
from catga_bench.judge.html_page import html_document
from catga_bench.judge.markdown import markdown_document
from catga_bench.judge.values import esc, json_safe

FILE_NAMES: dict[str, str] = {"json": "report.json", "md": "report.md", "html": "report.html"}
DASH = "—"
METHOD = (
    "Samples are runs (one value per run report). Relative metrics: ratio of medians oriented so "
    "that > 1 is worse (P99: candidate/baseline; achieved rate: baseline/candidate), a 95% "
    "percentile-bootstrap interval (scipy.stats.bootstrap, fixed seed), a one-sided Welch t-test "
    "on log values against the baseline shifted by the margin and a one-sided Mann-Whitney test; "
    "regressed when both p-values are below alpha, same or better when the one-sided upper "
    "bound is below 1 + margin (criterion.rs), otherwise inconclusive (Pinpoint: run more). "
    "Smallest detectable change: the true change caught with 80% power at this noise and run "
    "count (normal approximation). Absolute metrics: no candidate run over the limit (default: "
    "the worst baseline run)."
)


def _num(v: float | None, digits: int = 4) -> str:
    return DASH if v is None else f"{v:.{digits}g}"


def _pct(v: float | None) -> str:
    return DASH if v is None else f"{v * 100:.1f}%"


def _change(ratio: float | None) -> str:
    return DASH if ratio is None else f"{(ratio - 1) * 100:+.1f}%"


def _side(median: float | None, n: int, cv: float | None, unit: str) -> str:
    return f"{_num(median)} {unit} (n={n}, CV {_pct(cv)})".replace("  ", " ")


def metric_rows(c: Comparison) -> list[tuple[str, ...]]:
    """One row per metric (shared by the Markdown/HTML table and the terminal table)."""
    rows = []
    for m in c.metrics:
        if m.kind == "absolute":
            rows.append((m.metric, f"worst {_num(m.worst_baseline)} (n={m.n_baseline})",
                         f"worst {_num(m.worst_candidate)} (n={m.n_candidate})", DASH, DASH,
                         f"limit {_num(m.limit)}", DASH, DASH, DASH, m.verdict))
            continue
        ci = DASH if m.ci_low is None else f"{_change(m.ci_low)}..{_change(m.ci_high)}"
        rows.append((m.metric, _side(m.median_baseline, m.n_baseline, m.cv_baseline, m.unit),
                     _side(m.median_candidate, m.n_candidate, m.cv_candidate, m.unit),
                     _change(m.ratio), ci, f"margin {_pct(m.margin)}", _num(m.p_margin, 3),
                     _num(m.p_mannwhitney, 3), _pct(m.detectable), m.verdict))
    return rows


METRIC_HEADERS = ("metric", "baseline", "candidate", "worse by", "95% CI", "allowed",
                  "p (Welch, margin)", "p (Mann-Whitney)", "detectable", "verdict")


def _run_rows(side: str, runs: list[RunSample]) -> list[tuple[str, ...]]:
    return [(side, str(i), r.path, _num(r.p99_ms), _num(r.achieved_rate), _num(r.error_ratio),
             str(r.lost), str(r.duplicates), DASH if r.exit_code is None else str(r.exit_code))
            for i, r in enumerate(runs, 1)]


def sections(c: Comparison) -> list[Section]:
    """The comparison document's sections in order."""
    settings = Table(("setting", "value"), [
        ("scenario", c.scenario), ("transport", c.transport),
        ("baseline", c.baseline_source or DASH), ("candidate", c.candidate_source or DASH),
        ("runs", f"{len(c.baseline)} baseline, {len(c.candidate)} candidate"),
        ("margin", _pct(c.margin)), ("alpha", f"{c.alpha:g}"),
    ])
    reasons = Bullets([f"{m.metric}: {m.verdict} — {m.reason}" for m in c.metrics])
    runs = Table(("side", "#", "report", "p99 ms", "achieved msg/s", "error ratio", "lost",
                  "duplicates", "exit"),
                 _run_rows("baseline", c.baseline) + _run_rows("candidate", c.candidate))
    out = [Section("Comparison", [Para(c.summary()), settings]),
           Section("Metrics", [Table(METRIC_HEADERS, metric_rows(c)), reasons])]
    if c.notes:
        out.append(Section("Notes", [Bullets(list(c.notes))]))
    out += [Section("Runs", [runs]), Section("Method", [Para(METHOD)])]
    return out


def _title(c: Comparison) -> str:
    return f"catga-bench compare: {c.scenario} ({c.transport})"


def render_markdown(c: Comparison) -> str:
    """report.md of a comparison."""
    head = [f"# {_title(c)}", "", f"**{c.outcome.upper()}**, exit code {c.exit_code}", "",
            f"> {c.summary()}", ""]
    return markdown_document(head, sections(c))


def render_html(c: Comparison) -> str:
    """report.html of a comparison (self-contained)."""
    css = {"same": "pass", "regressed": "fail"}.get(c.outcome, "")
    header = (f'<header class="banner {css}">\n<h1>{esc(_title(c))}</h1>\n'
              f'<p><span class="badge">{esc(c.outcome.upper())}</span> exit code '
              f"{c.exit_code}</p>\n"
              f'<p class="verdict">{esc(c.summary())}</p>\n</header>')
    return html_document(f"{_title(c)} — {c.outcome}", header, sections(c))


def to_json(c: Comparison, extra: dict[str, Any] | None = None) -> str:
    """report.json of a comparison (strict JSON; ``extra`` keys added at the top level)."""
    data = {**c.to_dict(), **(extra or {})}
    return json.dumps(json_safe(data), indent=2, allow_nan=False)


def write_comparison(c: Comparison, out_dir: Path,
                     extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write report.json, report.md and report.html of ``c`` into ``out_dir`` (created).

    Returns:
        ``{"json": path, "md": path, "html": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / n for k, n in FILE_NAMES.items()}
    paths["json"].write_text(to_json(c, extra) + "\n", encoding="utf-8")
    paths["md"].write_text(render_markdown(c), encoding="utf-8")
    paths["html"].write_text(render_html(c), encoding="utf-8")
    return paths


def describe(m: MetricResult) -> str:
    """``metric: verdict — reason`` on one line."""
    return f"{m.metric}: {m.verdict} — {m.reason}"
