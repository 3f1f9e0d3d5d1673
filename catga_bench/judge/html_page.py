"""report.html: the report document (:mod:`catga_bench.judge.document`) as one self-contained
page (inline CSS, no scripts, no external assets) with the timeline plots of
:mod:`catga_bench.judge.plots` after the figures."""

from __future__ import annotations

from typing import Any

from catga_bench.judge.document import (
    Block,
    Bullets,
    Para,
    Raw,
    Section,
    Table,
    exit_text,
    run_status,
    sections,
    verdict_line,
)
from catga_bench.judge.plots import plots_html
from catga_bench.judge.values import as_dict, esc, one_line

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


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page: inline CSS, no scripts, no external assets.

    Four timeline plots (latency, throughput, breaker state, queue depth) are embedded as inline
    SVG; with an empty timeline the page says "no timeline data" instead.
    """
    r = as_dict(report)
    plots = Section("Timeline", [Raw(plots_html(r))])
    title = f"catga-bench: {one_line(r.get('scenario'))} — {run_status(r)}"
    return html_document(title, _html_headline(r), sections(r, plots=plots))


def html_document(title: str, header_html: str, secs: list[Section]) -> str:
    """Any document of sections (another command's report) as one self-contained page with
    the report's style: ``header_html`` (already escaped) first, then one section each."""
    body = [header_html]
    for section in secs:
        body.append(f"<section>\n<h2>{esc(section.title)}</h2>")
        body += [_html_block(block) for block in section.blocks]
        body.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )


def _html_headline(r: dict[str, Any]) -> str:
    status = run_status(r)
    css = "pass" if status == "PASS" else "fail"
    return (
        f'<header class="banner {css}">\n'
        f"<h1>catga-bench report: {esc(one_line(r.get('scenario')))}</h1>\n"
        f'<p><span class="badge">{esc(status)}</span> {esc(exit_text(r))}</p>\n'
        f'<p class="verdict">{esc(verdict_line(r))}</p>\n</header>'
    )


def _html_block(block: Block) -> str:
    if isinstance(block, Para):
        return f"<p>{esc(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Table):
        return _html_table(block)
    return block.html


def _html_table(t: Table) -> str:
    if not t.rows:
        return f'<p class="muted">{esc(t.empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in t.headers)
    body = "\n".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in t.rows)
    more = f'\n<p class="more">{esc(t.more)}</p>' if t.more else ""
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>{more}"


def _html_cell(text: str) -> str:
    css = {"PASS": ' class="pass"', "FAIL": ' class="fail"'}.get(text, "")
    return f"<td{css}>{esc(text)}</td>"
