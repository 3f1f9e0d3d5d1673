"""``catga-bench compare --self-test``: can this host tell a 10% slower handler path?

Two comparisons of one scenario, both sides commands run interleaved on this host:

1. baseline vs baseline (the same command twice): must come out "same" (exit 0); its runs give
   the host's noise (CV of P99 per run);
2. baseline vs the seeded slowdown (``CATGA_BENCH_SLOWDOWN=1.10`` in the candidate's
   environment: the Io/Cpu handlers' service time x 1.10, :mod:`catga_bench.workload.seeds`):
   must come out "regressed" (exit 1); when it does not, the smallest change this host can
   detect at this run count is said.

Exit 0 only when both hold; 1 when either does not; 2 bad options; 3 a run gave no verdict.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catga_bench.compare.config import CompareConfig
from catga_bench.compare.model import Comparison
from catga_bench.compare.runner import CommandSide
from catga_bench.compare.session import run_comparison
from catga_bench.errors import EXIT_FAIL, EXIT_PASS
from catga_bench.workload.seeds import SLOWDOWN_VAR

DEFAULT_SCENARIO = "scenarios/service_time.py"
SLOWDOWN = "1.10"


@dataclass(frozen=True)
class SelfTest:
    """Both comparisons and what they mean."""

    same: Comparison
    slower: Comparison

    @property
    def passed(self) -> bool:
        return self.same.outcome == "same" and self.slower.outcome == "regressed"

    @property
    def exit_code(self) -> int:
        return EXIT_PASS if self.passed else EXIT_FAIL

    def p99_noise(self) -> dict[str, float | None]:
        """CV of P99 per run on each side of the baseline-vs-baseline comparison."""
        p99 = next((m for m in self.same.metrics if m.metric == "p99_ms"), None)
        return {"baseline": p99.cv_baseline if p99 else None,
                "candidate": p99.cv_candidate if p99 else None}

    def lines(self) -> list[str]:
        """The verdict in a few lines (what held, the noise, what this host can detect)."""
        noise = ", ".join(f"{k} {v:.1%}" for k, v in self.p99_noise().items() if v is not None)
        out = [f"host noise (CV of P99 per run, baseline vs baseline): {noise or '—'}"]
        out.append(f"baseline vs baseline: {self.same.outcome} "
                   f"({'ok' if self.same.outcome == 'same' else 'expected same'})")
        out.append(f"baseline vs x{SLOWDOWN} handler service time: {self.slower.outcome} "
                   f"({'ok' if self.slower.outcome == 'regressed' else 'expected regressed'})")
        p99 = next((m for m in self.slower.metrics if m.metric == "p99_ms"), None)
        if p99 is not None and p99.ratio is not None:
            ci = ("" if p99.ci_low is None else
                  f", 95% CI {(p99.ci_low - 1):+.1%}..{(p99.ci_high or 0) - 1:+.1%}")
            out.append(f"  P99 {p99.ratio - 1:+.1%}{ci}, Welch p={_p(p99.p_margin)}, "
                       f"Mann-Whitney p={_p(p99.p_mannwhitney)}, {p99.n_baseline}+"
                       f"{p99.n_candidate} runs")
        if p99 is not None and p99.detectable is not None and self.slower.outcome != "regressed":
            out.append(f"the smallest P99 change this host can detect at {p99.n_baseline} runs "
                       f"per side: {p99.detectable:.1%} (80% power, margin "
                       f"{self.slower.margin:.0%})")
        out.append("SELF-TEST PASSED" if self.passed else "SELF-TEST FAILED")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "compare-self-test", "passed": self.passed, "exit_code": self.exit_code,
                "p99_cv": self.p99_noise(), "slowdown": float(SLOWDOWN),
                "same": self.same.to_dict(), "slower": self.slower.to_dict(),
                "lines": self.lines()}


def _p(p: float | None) -> str:
    return "—" if p is None else f"{p:.3g}"


def scenario_command(scenario: str, seconds: int, users: int) -> tuple[str, ...]:
    """The Locust run of ``scenario`` (this interpreter) without its ``--report-dir``."""
    return (sys.executable, "-m", "locust", "-f", scenario, "--headless", "-u", str(users),
            "-r", str(users), "-t", f"{seconds}s", "--only-summary")


def self_test(scenario: str, config: CompareConfig, *, runs: int, max_runs: int, seconds: int,
              users: int, out_dir: Path,
              progress: Callable[[str], None] = print,
              show: Callable[[Comparison, str], None] | None = None) -> SelfTest:
    """Run both comparisons (see the module doc); ``show`` prints each when it is done.

    Raises:
        ConfigError: the scenario's usage error; RunFailed: a run gave no verdict.
    """
    argv = scenario_command(scenario, seconds, users)
    base = CommandSide("baseline", argv)
    results = []
    for label, candidate in (
        ("same", CommandSide("candidate", argv)),
        ("slower", CommandSide("candidate", argv, {SLOWDOWN_VAR: SLOWDOWN})),
    ):
        progress(f"== {label}: baseline vs {candidate.text if candidate.env else 'baseline'}")
        comp = run_comparison(base, candidate, config, runs=runs, max_runs=max_runs,
                              out_dir=out_dir / label, progress=progress)
        if show is not None:
            show(comp, f"self-test {label}: {shlex.join(argv[3:5])}")
        results.append(comp)
    return SelfTest(same=results[0], slower=results[1])
