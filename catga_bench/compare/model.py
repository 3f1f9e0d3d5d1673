"""The result of a comparison: one :class:`MetricResult` per metric and the overall outcome.

Outcomes (Chromium Pinpoint's three): ``regressed`` (exit 1) when an absolute limit is broken
or a relative metric regressed; else ``inconclusive`` (exit 3: run more) when any metric is;
else ``same`` (exit 0: same or better).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from catga_bench.compare.samples import COMPARISON_KIND, RunSample
from catga_bench.errors import EXIT_ENVIRONMENT, EXIT_FAIL, EXIT_PASS

Verdict = Literal["regressed", "same_or_better", "inconclusive"]
Outcome = Literal["regressed", "same", "inconclusive"]
EXIT_CODES: dict[str, int] = {"same": EXIT_PASS, "regressed": EXIT_FAIL,
                              "inconclusive": EXIT_ENVIRONMENT}


@dataclass(frozen=True)
class MetricResult:
    """One metric's figures and verdict.

    Relative metrics: medians (metric unit), run counts, CVs (fractions), ``ratio`` and its 95%
    interval oriented so that > 1 is worse, ``upper`` the one-sided ``1 - alpha`` bound that
    decides "same or better", ``margin`` (fraction), both one-sided p-values,
    ``detectable`` (the smallest change caught at this noise and run count, a fraction) and
    ``runs_needed`` (per side, when inconclusive). Absolute metrics: ``limit`` and the worst
    value of each side in ``worst_baseline`` / ``worst_candidate``; the statistics are ``None``.
    """

    metric: str
    kind: Literal["relative", "absolute"]
    unit: str
    verdict: Verdict
    reason: str
    n_baseline: int
    n_candidate: int
    median_baseline: float | None = None
    median_candidate: float | None = None
    cv_baseline: float | None = None
    cv_candidate: float | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    upper: float | None = None
    margin: float | None = None
    p_margin: float | None = None
    p_mannwhitney: float | None = None
    detectable: float | None = None
    runs_needed: int | None = None
    limit: float | None = None
    worst_baseline: float | None = None
    worst_candidate: float | None = None


@dataclass(frozen=True)
class Comparison:
    """A whole comparison: its settings, per-metric results, the runs of both sides."""

    scenario: str
    transport: str
    margin: float
    alpha: float
    metrics: list[MetricResult]
    baseline: list[RunSample]
    candidate: list[RunSample]
    baseline_source: str = ""
    candidate_source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> Outcome:
        verdicts = {m.verdict for m in self.metrics}
        if "regressed" in verdicts:
            return "regressed"
        return "inconclusive" if "inconclusive" in verdicts else "same"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def runs_needed(self) -> int | None:
        """The most runs per side an inconclusive metric needs (``None``: unknown)."""
        needs = [m.runs_needed for m in self.metrics
                 if m.verdict == "inconclusive" and m.runs_needed is not None]
        return max(needs) if needs else None

    def summary(self) -> str:
        """The outcome in one line."""
        if self.outcome == "regressed":
            bad = [f"{m.metric} ({m.reason})" for m in self.metrics if m.verdict == "regressed"]
            return "REGRESSED: " + "; ".join(bad)
        if self.outcome == "inconclusive":
            need = self.runs_needed()
            tail = f"; need >= {need} runs per side" if need else ""
            return "INCONCLUSIVE: cannot tell at this noise" + tail
        return (f"SAME OR BETTER: no metric worse by more than the {self.margin:.0%} margin, "
                "no absolute limit broken")

    def to_dict(self) -> dict[str, Any]:
        """The comparison as JSON-ready data (``kind: comparison``, never read back as a run)."""
        return {
            "kind": COMPARISON_KIND, "scenario": self.scenario, "transport": self.transport,
            "outcome": self.outcome, "exit_code": self.exit_code, "summary": self.summary(),
            "margin": self.margin, "alpha": self.alpha,
            "runs_needed": self.runs_needed() if self.outcome == "inconclusive" else None,
            "baseline_source": self.baseline_source, "candidate_source": self.candidate_source,
            "metrics": [asdict(m) for m in self.metrics],
            "baseline_runs": [r.to_dict() for r in self.baseline],
            "candidate_runs": [r.to_dict() for r in self.candidate],
            "notes": list(self.notes),
        }
