"""What ``catga-bench gate`` prints: the header line, one progress line as each case or fault
cell starts and ends, the results table (rich) with each row's key figures, and the summary."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from catga_bench.errors import EXIT_ENVIRONMENT, EXIT_FAIL, EXIT_PASS
from catga_bench.suite.judging import CaseResult

SUMMARIES = {EXIT_PASS: "PASS: every case passed", EXIT_FAIL: "FAIL: a case missed a target",
             EXIT_ENVIRONMENT: "ERROR: a case could not run"}


def print_header(cases: int, cells: int | None, profile: str, transports: list[str],
                 defects: Collection[str], out_dir: Path) -> None:
    """What is about to run (``cells`` None: no fault matrix asked for) and where the reports
    go."""
    seeded = f"; seeded defects: {', '.join(sorted(defects))}" if defects else ""
    matrix = f", {cells} fault cell(s)" if cells is not None else ""
    print(f"catga-bench gate: {cases} case(s){matrix}, profile {profile}, transports "
          f"{', '.join(transports)}{seeded}; reports in {out_dir}/", flush=True)


class Progress:
    """The ``[index/total]`` lines: one when a case or cell starts, one when it ends."""

    def __init__(self, total: int) -> None:
        self.total = total

    def start(self, index: int, name: str, transport: str, seconds: int) -> None:
        print(f"[{index}/{self.total}] {name} on {transport} ({seconds} s) ...", flush=True)

    def done(self, index: int, name: str, transport: str, r: CaseResult) -> None:
        detail = r.verdict if r.status != "PASS" else _key_figures(r)
        print(f"[{index}/{self.total}] {name} on {transport}: {r.status} in "
              f"{r.wall_s:.1f} s: {detail}", flush=True)


    def run(self, index: int, k: int, r: CaseResult) -> None:
        """One run of a case run several times (``--runs``, ``--baseline``)."""
        detail = r.verdict if r.status != "PASS" else _key_figures(r)
        print(f"[{index}/{self.total}]   run {k}: {r.status} in {r.wall_s:.1f} s: {detail}",
              flush=True)


def print_outcome(code: int, wall_s: float) -> None:
    """The last line: the suite's verdict (from its exit code) and how long it took."""
    print(f"catga-bench gate: {SUMMARIES[code]} ({wall_s} s)", flush=True)


def print_table(results: list[CaseResult]) -> None:
    """The results table: case, transport, verdict, key figures, result."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="catga-bench gate")
    for col in ("case", "transport", "verdict", "key figures", "result"):
        table.add_column(col, overflow="fold")
    style = {"PASS": "bold green", "FAIL": "bold red", "ERROR": "bold yellow"}
    for r in results:
        failed = ", ".join(r.failed_targets)
        verdict = r.verdict if r.status == "ERROR" or not failed else f"missed: {failed}"
        if r.status == "PASS":
            verdict = f"{len(r.slo)} targets met"
        table.add_row(r.case, r.transport, verdict, _key_figures(r),
                      f"[{style[r.status]}]{r.status}[/]")
    Console().print(table)


def fault_key_figures(r: CaseResult) -> str:
    """The figures of a fault row: losses per QoS (QoS 0 only reported), QoS 2 duplicates,
    recovery, and the breaker (handler_outage) or rejections and P99 (overload_10x)."""
    f = r.figures
    if not f:
        return "-"
    parts = [f"QoS0 lost {_fmt(f.get('lost_qos0'))} (reported)",
             f"QoS1 lost {_fmt(f.get('lost_qos1'))}",
             f"QoS2 lost {_fmt(f.get('lost_qos2'))} dup {_fmt(f.get('duplicates_qos2'))}"]
    if "recovered_after_s" in f:
        back = f["recovered_after_s"]
        parts.append(f"back after {_fmt(back, ' s')}" if back is not None
                     else f"not back within {_fmt(f.get('recover_within_s'), ' s')}")
    name = r.case.removeprefix("fault:")
    if name == "handler_outage":
        parts.append(f"breaker opened {_fmt(f.get('breaker_opened'))} "
                     f"closed {_fmt(f.get('breaker_closed'))}")
    if name == "overload_10x":
        parts += [f"rejected {_fmt(f.get('rejected'))}", f"p99 {_fmt(f.get('p99_ms'), ' ms')}"]
    return ", ".join(parts)


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}{unit}"
    return f"{v:,}{unit}" if isinstance(v, int) else f"{v}{unit}"


def _key_figures(r: CaseResult) -> str:
    """The figures of a row that say most about its case (fault rows: :func:`fault_key_figures`)."""
    if r.case.startswith("fault:"):
        return fault_key_figures(r)
    f = r.figures
    if not f:
        return "-"
    parts = [f"p99 {_fmt(f['p99_ms'], ' ms')}", f"sent {_fmt(f['sent'])}",
             f"lost {_fmt(f['lost'])}"]
    if r.case == "exactly_once":
        parts.append(f"dup {_fmt(f['duplicates'])}")
    if r.case == "overload":
        parts += [f"rejected {_fmt(f['rejected'])}", f"RSS +{_fmt(f['rss_growth_mb'], ' MB')}"]
    if r.case == "failing_handlers":
        parts.append(f"breaker opened {_fmt(f['breaker_opened'])} after "
                     f"{_fmt(f['failures_before_first_open'])}")
    if r.case == "high_throughput":
        parts.append(f"{_fmt(f['achieved_rate'], ' msg/s')}")
    if r.case == "slow_handlers":
        parts.append(f"timeouts {_fmt(f['timeouts'])}")
    if r.comparison is not None:
        parts.append(f"vs baseline: {r.comparison['outcome']} ({r.comparison['runs']} runs)")
    return ", ".join(parts)

