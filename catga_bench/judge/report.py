"""Render one finished load-test run: report.json, report.md, report.html and a terminal summary.

The input is the report dict built by :mod:`catga_bench.judge.gate` (its keys are documented in
``docs/report.md``). Any key may be missing, ``None`` or of an unexpected type, because a report
must still be written when a run fails early: missing values render as "—" and an empty timeline
as "no timeline data". Nothing here raises on a partial dict.

This module is the public API (:func:`write_reports`, :func:`render_markdown`,
:func:`render_html`, :func:`print_summary`); the document they render is
:mod:`catga_bench.judge.document`, the renderers :mod:`catga_bench.judge.markdown`,
:mod:`catga_bench.judge.html_page` and :mod:`catga_bench.judge.plots`.

matplotlib (plots) and rich (terminal) are imported inside the functions that use them, so
importing this module stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catga_bench.judge.document import (
    exit_text,
    figures_line,
    run_status,
    slo_cells,
    slo_list,
    verdict_line,
)
from catga_bench.judge.html_page import render_html
from catga_bench.judge.markdown import render_markdown
from catga_bench.judge.values import as_dict, json_safe, one_line

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

__all__ = ["print_summary", "render_html", "render_markdown", "write_reports"]

FILE_NAMES: dict[str, str] = {"json": "report.json", "md": "report.md", "html": "report.html"}


# ============================================================================ public API


def write_reports(report: dict[str, Any], out_dir: Path,
                  formats: Iterable[str] = tuple(FILE_NAMES)) -> dict[str, Path]:
    """Create ``out_dir`` (parents too) and write report.json and, as ``formats`` asks,
    report.md and report.html.

    Args:
        report: the run's report dict (any key may be missing).
        out_dir: directory for the files; existing files are overwritten.
        formats: any of ``json``, ``md``, ``html`` (json is always written).

    Returns:
        ``{"json": path, "md": path, "html": path}`` for the files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = as_dict(report)
    wanted = {"json", *formats}
    paths = {kind: out / name for kind, name in FILE_NAMES.items() if kind in wanted}
    paths["json"].write_text(_to_json(data) + "\n", encoding="utf-8")
    if "md" in paths:
        paths["md"].write_text(render_markdown(data), encoding="utf-8")
    if "html" in paths:
        paths["html"].write_text(render_html(data), encoding="utf-8")
    return paths


def _to_json(report: dict[str, Any]) -> str:
    """The report as strictly valid JSON (indent 2, keys in the given order).

    NaN and ±inf become ``null``; values JSON cannot hold (paths, dates) become strings.
    """
    return json.dumps(json_safe(report), indent=2, sort_keys=False, allow_nan=False,
                      default=str)


def print_summary(report: dict[str, Any], console: Console | None = None) -> None:
    """Print a short terminal summary: the SLO table (name, limit, value, PASS/FAIL), one line
    of figures (achieved/offered msg/s, p99 ms, sent/handled/lost/duplicates) and the verdict.

    Args:
        report: the run's report dict (any key may be missing).
        console: where to print; default a new ``rich.console.Console()`` (stdout).
    """
    from rich.console import Console

    r = as_dict(report)
    con = console if console is not None else Console()
    rows = slo_list(r)
    if rows:
        con.print(_rich_slo_table(rows, one_line(r.get("scenario"))))
    else:
        con.print("no SLO targets evaluated", style="dim")
    con.print(figures_line(r), highlight=False, soft_wrap=True)
    con.print(_rich_verdict(r))


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
        name, limit, value, result = slo_cells(row)
        style = {"PASS": "bold green", "FAIL": "bold red"}.get(result, "dim")
        table.add_row(Text(name), Text(limit), Text(value), Text(result, style=style))
    return table


def _rich_verdict(r: dict[str, Any]) -> Text:
    from rich.text import Text

    status = run_status(r)
    style = {"PASS": "bold white on green", "FAIL": "bold white on red"}.get(status, "bold")
    return Text.assemble((f" {status} ", style), f" {exit_text(r)}: ", (verdict_line(r), "bold"))
