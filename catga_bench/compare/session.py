"""A comparison session: load the folder sides, run the command sides interleaved
(A B A B ...), judge, and while the outcome is inconclusive run 2 more per command side up to
the maximum (Pinpoint's "run more")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from catga_bench.compare.config import CompareConfig
from catga_bench.compare.model import Comparison
from catga_bench.compare.runner import CommandSide, run_once
from catga_bench.compare.samples import RunSample, check_one_setup, load_runs
from catga_bench.compare.verdict import compare_runs

Side = Path | CommandSide
#: runs added per command side each time the outcome is inconclusive
STEP = 2


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.4g}"


class Session:
    """Both sides' runs so far; ``progress`` gets one line per finished run."""

    def __init__(self, baseline: Side, candidate: Side, out_dir: Path, timeout_s: float,
                 progress: Callable[[str], None]) -> None:
        self.sides = {"baseline": baseline, "candidate": candidate}
        self.runs: dict[str, list[RunSample]] = {
            name: load_runs(s, name) if isinstance(s, Path) else [] for name, s in
            self.sides.items()}
        self.out_dir, self.timeout_s, self.progress = out_dir, timeout_s, progress
        self.done = 0

    @property
    def commands(self) -> list[CommandSide]:
        return [s for s in self.sides.values() if isinstance(s, CommandSide)]

    def run_rounds(self, count: int, planned: int) -> None:
        """``count`` more runs of each command side, interleaved A B A B."""
        for _ in range(count):
            for side in self.commands:
                n = len(self.runs[side.name]) + 1
                sample, wall = run_once(side, self.out_dir / side.name / f"run-{n:02d}",
                                        self.timeout_s)
                self.runs[side.name].append(sample)
                self.done += 1
                self.progress(f"[{self.done}/{planned}] {side.name} run {n}: p99 "
                              f"{_fmt(sample.p99_ms)} ms, achieved {_fmt(sample.achieved_rate)} "
                              f"msg/s, error ratio {_fmt(sample.error_ratio)}, lost "
                              f"{sample.lost}, exit {sample.exit_code} ({wall:.1f} s)")

    def judge(self, config: CompareConfig) -> Comparison:
        for name, runs in self.runs.items():
            check_one_setup(runs, name)
        src = {n: str(s) if isinstance(s, Path) else s.text for n, s in self.sides.items()}
        return compare_runs(self.runs["baseline"], self.runs["candidate"], config,
                            src["baseline"], src["candidate"])


def run_comparison(baseline: Side, candidate: Side, config: CompareConfig, *, runs: int,
                   max_runs: int, out_dir: Path, timeout_s: float = 600.0,
                   progress: Callable[[str], None] = print) -> Comparison:
    """Compare two sides (folders or commands); command sides run ``runs`` times each, then 2
    more each while inconclusive, up to ``max_runs`` each.

    Raises:
        ConfigError: a folder side without runs, mixed scenarios/transports, a command's usage
            error.
        RunFailed: a command run gave no verdict (environment failure).
    """
    session = Session(baseline, candidate, out_dir, timeout_s, progress)
    sides = len(session.commands)
    session.run_rounds(runs, runs * sides)
    comparison = session.judge(config)
    have = runs
    while comparison.outcome == "inconclusive" and sides and have < max_runs:
        more = min(STEP, max_runs - have)
        progress(f"inconclusive at {have} runs per side: {more} more per side "
                 f"(up to {max_runs})")
        session.run_rounds(more, session.done + more * sides)
        have += more
        comparison = session.judge(config)
    return comparison
