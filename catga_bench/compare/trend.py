"""``catga-bench trend HISTORY``: change points in a history of releases, found by Apache Otava.

Every run of every release in the history (:mod:`catga_bench.compare.history`) is one point of
a series per metric, in release order (runs in their order inside a release); one series per
scenario and transport. Otava (the ``apache-otava`` package; E-divisive means with a Student
t-test, as in Fleming et al., "Hunter: Using Change Point Detection to Hunt for Performance
Regressions", ICPE 2023, and MongoDB's signal processing) finds where a series' mean moved.

This is **advice beside the gate's verdict**, never a verdict: the exit code is 0 whatever it
finds (2 for bad input). A change point says "from this release on, the metric sits X% higher",
which a run-to-run comparison (``catga-bench compare``) of two neighbouring releases may miss
when the change came in small steps.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from catga_bench.compare.history import Release, load_history
from catga_bench.errors import EXIT_PASS, EXIT_USAGE, ConfigError

#: metric -> (how it is read from a report.json, +1 higher is better / -1 lower is better, unit)
METRICS: dict[str, tuple[tuple[str, ...], int, str]] = {
    "p99_ms": (("latency_ms", "p99"), -1, "ms"),
    "achieved_rate": (("achieved_rate",), 1, "msg/s"),
    "error_ratio": (("error_ratio",), -1, ""),
}
#: fewer points than this and Otava cannot split a series into two meaningful halves
MIN_POINTS = 6


@dataclass(frozen=True)
class ChangePoint:
    """Where a metric's mean moved: the first run after the change (its release and run
    folder), the means and standard deviations before and after (in the metric's unit), the
    change in percent (after vs before), the t-test's p-value, and whether it is worse."""

    scenario: str
    transport: str
    metric: str
    release: str
    previous_release: str
    run: str
    mean_before: float
    mean_after: float
    stddev_before: float
    stddev_after: float
    change_percent: float
    pvalue: float
    worse: bool


def _value(doc: dict[str, Any], path: tuple[str, ...]) -> float | None:
    cur: Any = doc
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return float(cur) if isinstance(cur, int | float) and not isinstance(cur, bool) else None


Point = tuple[str, Path, dict[str, Any]]  # (release, run folder, report)


def _points(releases: list[Release]) -> dict[tuple[str, str], list[Point]]:
    """(scenario, transport) -> its points in release order."""
    series: dict[tuple[str, str], list[Point]] = {}
    for rel in releases:
        for run in rel.runs:
            try:
                doc = json.loads((run / "report.json").read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{run / 'report.json'}: not a readable report ({exc})") from None
            key = (str(doc.get("scenario") or "?"), str(doc.get("transport") or "?"))
            series.setdefault(key, []).append((rel.label, run, doc))
    return series


def find_change_points(history: Path, metrics: list[str], *, max_pvalue: float = 0.001,
                       min_magnitude: float = 0.0) -> tuple[list[ChangePoint], list[str]]:
    """Change points of ``metrics`` in the history at ``history``.

    Args:
        history: a history folder (:mod:`catga_bench.compare.history`).
        metrics: names from :data:`METRICS`.
        max_pvalue: Otava's significance level for a change point (its default, 0.001).
        min_magnitude: the smallest relative change reported (0.05 = 5%).

    Returns:
        The change points, and notes (series too short to analyse, missing values).

    Raises:
        ConfigError: no history there, or an unknown metric.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"--metrics: unknown metric {unknown[0]!r}; allowed: "
                          f"{', '.join(METRICS)}")
    try:
        from otava.series import AnalysisOptions, Metric, Series  # heavy: numpy, scipy
    except ImportError:
        raise ConfigError("catga-bench trend needs Apache Otava: pip install "
                          "'catga-bench[trend]' (the apache-otava package)") from None

    releases = load_history(history)
    found: list[ChangePoint] = []
    notes: list[str] = []
    for (scenario, transport), pts in _points(releases).items():
        if len(pts) < MIN_POINTS:
            notes.append(f"{scenario} [{transport}]: {len(pts)} runs in the history; change "
                         f"points need >= {MIN_POINTS}")
            continue
        data: dict[str, list[float]] = {}
        for m in metrics:
            values = [_value(doc, METRICS[m][0]) for _, _, doc in pts]
            if any(v is None for v in values):
                notes.append(f"{scenario} [{transport}]: {m} missing in some runs; left out")
                continue
            data[m] = [float(v) for v in values if v is not None]
        if not data:
            continue
        options = AnalysisOptions()
        options.max_pvalue = max_pvalue
        options.min_magnitude = min_magnitude
        labels = [r for r, _, _ in pts]
        series = Series(f"{scenario}-{transport}", None, time=list(range(len(pts))),
                        metrics={m: Metric(METRICS[m][1]) for m in data}, data=data,
                        attributes={"release": labels})
        analysed = series.analyze(options)
        for m, cps in analysed.change_points.items():
            for cp in cps:
                i = cp.index
                change = cp.forward_change_percent()
                found.append(ChangePoint(
                    scenario, transport, m, labels[i], labels[i - 1], str(pts[i][1]),
                    float(cp.mean_before()), float(cp.mean_after()),
                    float(cp.stddev_before()), float(cp.stddev_after()), round(float(change), 2),
                    float(cp.pvalue()), bool((change > 0) == (METRICS[m][1] < 0))))
    return found, notes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="catga-bench trend",
        description="Report change points in a history of releases (Apache Otava's E-divisive "
                    "means): advice beside the gate's verdict; exit 0 whatever is found.",
        epilog="the history is the folder `catga-bench compare --history DIR` (or `catga-bench "
               "gate --baseline ... --history DIR`) writes: DIR/<release>/run-K/report.json.\n"
               "exit codes: 0 the report was made (change points or none), 2 bad input",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("history", metavar="DIR", help="the history folder")
    p.add_argument("--metrics", default=",".join(METRICS), metavar="LIST",
                   help="comma list of %(default)s")
    p.add_argument("--max-pvalue", type=float, default=0.001, metavar="P",
                   help="significance of a change point (default: %(default)s, Otava's)")
    p.add_argument("--min-magnitude", type=float, default=0.0, metavar="RATIO",
                   help="smallest relative change reported, e.g. 0.05 (default: %(default)s)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the result as JSON")
    return p


def _print(points: list[ChangePoint], notes: list[str], history: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    if not points:
        console.print(f"no change point in {history}")
        return
    table = Table(title=f"change points in {history} (advice, not a verdict)")
    for col in ("scenario", "metric", "from release", "before", "after", "change", "p",
                "worse"):
        table.add_column(col)
    for cp in points:
        table.add_row(f"{cp.scenario} [{cp.transport}]", cp.metric,
                      f"{cp.previous_release} -> {cp.release}", f"{cp.mean_before:.4g}",
                      f"{cp.mean_after:.4g}", f"{cp.change_percent:+.1f}%", f"{cp.pvalue:.2g}",
                      "yes" if cp.worse else "no")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    """``catga-bench trend``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        if not 0 < args.max_pvalue < 1:
            raise ConfigError(f"--max-pvalue: must be in (0, 1), got {args.max_pvalue}")
        if args.min_magnitude < 0:
            raise ConfigError(f"--min-magnitude: must be >= 0, got {args.min_magnitude}")
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
        points, notes = find_change_points(Path(args.history), metrics,
                                           max_pvalue=args.max_pvalue,
                                           min_magnitude=args.min_magnitude)
    except ConfigError as exc:
        sys.stderr.write(f"catga-bench trend: error: {exc}\n")
        return EXIT_USAGE
    _print(points, notes, Path(args.history))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"history": args.history, "advice_only": True, "notes": notes,
             "change_points": [asdict(cp) for cp in points]}, indent=2) + "\n")
    return EXIT_PASS
