"""The console output of ``catga-bench bench``: one rich table per benchmark, and the verdicts.

:func:`print_section` prints a mediator benchmark's :class:`~catga_bench.bench.timing.Section`
(the breaker and metrics sections have their own layouts), :func:`print_embedded` the embedded
step search and :func:`print_limits` the closing PASS/FAIL line of every judged figure.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from catga_bench.bench.embedded import EMBEDDED_MIN_ACHIEVED, EMBEDDED_P99_MS, EmbeddedResult
from catga_bench.bench.timing import Figure, Section


def _us(ns: float) -> str:
    return f"{ns / 1000.0:.3f}"


def _ns(ns: float) -> str:
    return f"{ns:,.0f}"


def _verdict(f: Figure) -> str:
    if f.passed is None:
        return "[dim]info[/dim]"
    return "[green]PASS[/green]" if f.passed else "[bold red]FAIL[/bold red]"


def _print_figures(console: Console, section: Section) -> None:
    table = Table(title=section.title, title_justify="left", show_lines=False)
    table.add_column("figure")
    table.add_column("ns/op", justify="right")
    table.add_column("floor")
    table.add_column("floor ns/op", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("limit", justify="right")
    table.add_column("", justify="center")
    for f in section.figures:
        table.add_row(f.label, _ns(f.ns), f.floor_label, _ns(f.floor_ns), f"{f.ratio:.2f}x",
                      "-" if f.limit is None else f"<= {f.limit:g}x", _verdict(f))
    console.print(table)
    if section.skipped:
        console.print(f"  {section.skipped}")
    for k, v in section.info.items():
        if k.endswith("_samples_us"):
            continue
        console.print(f"  {k}: {v}")
    for note in section.notes:
        console.print(f"  [dim]note: {note}[/dim]")


def _print_breaker(console: Console, section: Section) -> None:
    table = Table(title=section.title, title_justify="left")
    table.add_column("breaker")
    table.add_column("µs/call", justify="right")
    table.add_column("floor")
    table.add_column("floor µs", justify="right")
    table.add_column("ratio", justify="right")
    for f in section.figures:
        table.add_row(f.label, _us(f.ns), f.floor_label, _us(f.floor_ns), f"{f.ratio:.2f}x")
    console.print(table)
    if section.skipped:
        console.print(f"  purgatory: {section.skipped}")
    for k, v in section.info.items():
        console.print(f"  {k}: {v}")
    for note in section.notes:
        console.print(f"  [dim]note: {note}[/dim]")


def _print_metrics(console: Console, section: Section) -> None:
    table = Table(title=section.title, title_justify="left")
    table.add_column("figure")
    table.add_column("ns/op", justify="right")
    table.add_column("floor")
    table.add_column("floor ns/op", justify="right")
    table.add_column("ratio", justify="right")
    for f in section.figures:
        table.add_row(f.label, _ns(f.ns), f.floor_label, _ns(f.floor_ns), f"{f.ratio:.2f}x")
    console.print(table)
    for note in section.notes:
        console.print(f"  [dim]note: {note}[/dim]")


def print_embedded(console: Console, result: EmbeddedResult) -> None:
    """The embedded benchmark's steps and its maximum sustainable rate."""
    table = Table(title=f"embedded core: maximum sustainable rate ({result.step_s:g} s/step)",
                  title_justify="left")
    for col in ("offered msg/s", "achieved msg/s", "achieved %", "p50 ms", "p99 ms", "max ms",
                "loop CPU %", "sustained"):
        table.add_column(col, justify="right")
    for s in result.steps:
        table.add_row(
            f"{s.offered:,.0f}", f"{s.achieved:,.0f}", f"{100 * s.achieved / s.offered:.1f}",
            "-" if s.p50_ms is None else f"{s.p50_ms:.3f}",
            "-" if s.p99_ms is None else f"{s.p99_ms:.3f}",
            "-" if s.max_ms is None else f"{s.max_ms:.1f}",
            "-" if s.loop_cpu is None else f"{100 * s.loop_cpu:.0f}",
            "[green]yes[/green]" if s.sustained else "[red]no[/red]",
        )
    console.print(table)
    best = result.max_sustainable
    if best is None:
        console.print("  maximum sustainable rate: [red]none[/red] (the first step failed)")
    elif result.capped:
        console.print(f"  maximum sustainable rate: >= {best:,.0f} msg/s "
                      "(every step sustained; the ceiling is higher)")
    else:
        console.print(f"  maximum sustainable rate: [bold]{best:,.0f} msg/s[/bold]")
    console.print(
        f"  [dim]note: sustained = achieved >= {EMBEDDED_MIN_ACHIEVED:.0%} of offered and "
        f"P99 < {EMBEDDED_P99_MS:g} ms (latency from the intended send time). The generator "
        "runs on the same loop as the core (no Locust, no bridge): this is the core's own "
        "ceiling, informational.[/dim]"
    )


def print_section(console: Console, section: Section) -> None:
    """One benchmark's table, in the layout of its kind (breaker, metrics or the rest)."""
    if section.name == "breaker":
        _print_breaker(console, section)
    elif section.name == "metrics":
        _print_metrics(console, section)
    else:
        _print_figures(console, section)


def print_limits(console: Console, limits: Sequence[Figure]) -> None:
    """PASS/FAIL and the ratio against its limit of every judged figure (nothing when none)."""
    if limits:
        console.print()
        for f in limits:
            verdict = "[green]PASS[/green]" if f.passed else "[bold red]FAIL[/bold red]"
            console.print(f"{verdict}  {f.name}: {f.ratio:.2f}x <= {f.limit:g}x "
                          f"({_ns(f.ns)} ns vs floor {_ns(f.floor_ns)} ns)")
