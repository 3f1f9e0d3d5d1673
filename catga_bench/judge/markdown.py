"""report.md: the report document (:mod:`catga_bench.judge.document`) as GitHub-flavoured
Markdown: a headline with the status, exit code and verdict, then one section per heading."""

from __future__ import annotations

from typing import Any

from catga_bench.judge.document import (
    Block,
    Bullets,
    Para,
    Section,
    Table,
    exit_text,
    run_status,
    sections,
    verdict_line,
)
from catga_bench.judge.values import as_dict, one_line


def render_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown document (GitHub-flavoured tables), ending with a newline."""
    r = as_dict(report)
    return markdown_document(_md_headline(r), sections(r))


def markdown_document(headline: list[str], body: list[Section]) -> str:
    """Headline lines, then each section as ``## title`` and its blocks (any document built of
    :mod:`catga_bench.judge.document` blocks, e.g. a comparison), ending with a newline."""
    lines = list(headline)
    for section in body:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            lines += _md_block(block)
    return "\n".join(lines).rstrip("\n") + "\n"


def markdown_page(title: str, lead: list[str], secs: list[Section]) -> str:
    """Any document of sections (another command's report) as Markdown: ``# title``, the
    ``lead`` paragraphs, then one ``##`` per section (:func:`markdown_document`)."""
    headline = [f"# {_md_inline(title)}", ""]
    for text in lead:
        headline += [_md_inline(text), ""]
    return markdown_document(headline, secs)


def _md_headline(r: dict[str, Any]) -> list[str]:
    return [
        f"# catga-bench report: {_md_inline(one_line(r.get('scenario')))}", "",
        f"**{run_status(r)}**, {exit_text(r)}", "",
        f"> {_md_inline(verdict_line(r))}", "",
    ]


def _md_inline(text: str) -> str:
    return " ".join(text.split())


def _md_cell(text: str) -> str:
    return _md_inline(text).replace("|", "\\|") or " "


def _md_block(block: Block) -> list[str]:
    if isinstance(block, Para):
        return [_md_inline(block.text), ""]
    if isinstance(block, Bullets):
        return [f"- {_md_inline(item)}" for item in block.items] + [""]
    if isinstance(block, Table):
        return _md_table(block)
    return []  # Raw: HTML only


def _md_table(t: Table) -> list[str]:
    if not t.rows:
        return [f"_{t.empty}_", ""]
    lines = ["| " + " | ".join(_md_cell(h) for h in t.headers) + " |",
             "|" + "---|" * len(t.headers)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    if t.more:
        lines += ["", _md_inline(t.more)]
    return [*lines, ""]
