"""The release gate against the last release: ``catga-bench gate --baseline DIR``.

Each scenario case runs ``--runs`` times (default 5 with a baseline); every run is judged by its
SLO gate as always, and then the case's runs are compared with the baseline's runs of the same
case and transport (``catga-bench compare``'s statistics, :mod:`catga_bench.compare`): a
regression fails the case (exit 1), "cannot tell at this noise" after ``--max-runs`` makes it an
ERROR (exit 3, as ``compare`` does), same or better leaves it as its runs made it.

The baseline is a folder holding ``<case>-<transport>/`` run folders: an earlier gate's
``--report-dir`` (run with ``--runs``), or a history folder (``--history``), whose latest
release is taken.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from catga_bench.compare import CompareConfig, Comparison, RunSample, compare_runs, load_runs
from catga_bench.compare.history import is_history, latest_release
from catga_bench.compare.render import write_comparison
from catga_bench.compare.samples import load_run
from catga_bench.errors import ConfigError
from catga_bench.suite.cases import Case
from catga_bench.suite.judging import CaseResult

#: runs per case when comparing with a baseline (a spread needs several)
DEFAULT_RUNS = 5
#: while inconclusive, this many more runs per case
STEP = 2


@dataclass(frozen=True)
class Baseline:
    """Where the baseline's case folders are, how it was named, and the comparison's
    settings (``max_runs``: the most runs of a case before "cannot tell")."""

    root: Path
    label: str
    config: CompareConfig
    max_runs: int


def resolve(raw: str, config: CompareConfig, max_runs: int) -> Baseline:
    """``--baseline``: a folder of case folders, or a history (its latest release).

    Raises:
        ConfigError: no such folder.
    """
    path = Path(raw)
    if not path.is_dir():
        raise ConfigError(f"--baseline: no such directory: {path}")
    if is_history(path):
        rel = latest_release(path)
        return Baseline(rel.path.resolve(), f"release {rel.label} of {path}", config, max_runs)
    return Baseline(path.resolve(), str(path), config, max_runs)


def case_folder(case: str, transport: str) -> str:
    """The folder of a case's runs: ``<case>-<transport>``."""
    return f"{case}-{transport}"


def baseline_runs(baseline: Baseline, case: str, transport: str) -> list[RunSample]:
    """The baseline's runs of one case.

    Raises:
        ConfigError: it has none (one line naming the case and the folder).
    """
    folder = baseline.root / case_folder(case, transport)
    if not folder.is_dir():
        raise ConfigError(f"--baseline: no runs of case {case} over {transport} in "
                          f"{baseline.label} (no folder {folder.name}/)")
    return load_runs(folder, f"baseline {folder.name}")


def check(baseline: Baseline, runs: list[tuple[Case, str]]) -> None:
    """Every planned case has baseline runs (before anything runs).

    Raises:
        ConfigError: a case has none.
    """
    for case, transport in runs:
        baseline_runs(baseline, case.name, transport)


def compare_case(baseline: Baseline, case: str, transport: str,
                 candidate_reports: list[Path]) -> Comparison:
    """Compare a case's runs (their report.json paths) with the baseline's."""
    candidate = [s for p in candidate_reports if (s := load_run(p)) is not None]
    return compare_runs(baseline_runs(baseline, case, transport), candidate, baseline.config,
                        str(baseline.root / case_folder(case, transport)), "this gate's runs")


def worst(results: list[CaseResult]) -> CaseResult:
    """The run that speaks for a case of several runs: the first ERROR, else the first FAIL,
    else the last run."""
    for status in ("ERROR", "FAIL"):
        for r in results:
            if r.status == status:
                return r
    return results[-1]


def judged(result: CaseResult, comparison: Comparison, runs: int, case_dir: Path) -> CaseResult:
    """The case's row with the comparison added: regressed -> FAIL with ``regression:<metric>``
    targets; inconclusive -> ERROR ("cannot tell"); same -> unchanged. Writes the comparison's
    report.json/md/html to ``case_dir/compare/``."""
    paths = write_comparison(comparison, case_dir / "compare")
    summary = {"outcome": comparison.outcome, "summary": comparison.summary(), "runs": runs,
               "baseline_runs": len(comparison.baseline), "report": str(paths["html"]),
               "metrics": {m.metric: {"verdict": m.verdict, "ratio": m.ratio,
                                      "reason": m.reason} for m in comparison.metrics}}
    out = replace(result, report_dir=str(case_dir), comparison=summary)
    if comparison.outcome == "regressed":
        bad = [f"regression:{m.metric}" for m in comparison.metrics if m.verdict == "regressed"]
        verdict = comparison.summary()
        if result.status == "FAIL":
            verdict = f"{result.verdict}; {verdict}"
        return replace(out, status="FAIL" if result.status != "ERROR" else "ERROR",
                       verdict=verdict, failed_targets=result.failed_targets + bad)
    if comparison.outcome == "inconclusive" and result.status == "PASS":
        need = comparison.runs_needed()
        return replace(out, status="ERROR",
                       verdict="cannot tell at this noise against the baseline after "
                               f"{runs} runs" + (f"; need >= {need} runs per side" if need
                                                 else ""))
    return out

