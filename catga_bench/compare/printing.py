"""The terminal view of a comparison: one table of the metrics (rich) and the outcome line."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from catga_bench.compare.model import Comparison
from catga_bench.compare.render import METRIC_HEADERS, metric_rows

STYLES = {"regressed": "bold red", "same_or_better": "green", "inconclusive": "yellow",
          "same": "bold green"}


def print_comparison(c: Comparison, title: str = "", console: Console | None = None) -> None:
    """Print the metric table and the outcome line."""
    console = console or Console(width=160)
    table = Table(title=title or f"compare: {c.scenario} ({c.transport})")
    for header in METRIC_HEADERS:
        table.add_column(header, overflow="fold")
    for row in metric_rows(c):
        table.add_row(*row[:-1], f"[{STYLES.get(row[-1], '')}]{row[-1]}[/]")
    console.print(table)
    for m in c.metrics:
        console.print(f"  {m.metric}: [{STYLES[m.verdict]}]{m.verdict}[/] — {m.reason}",
                      highlight=False, markup=True)
    console.print(f"[{STYLES.get(c.outcome, 'yellow')}]{c.summary()}[/] (exit {c.exit_code})",
                  highlight=False)
