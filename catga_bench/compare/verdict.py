"""Judge a comparison: per metric a verdict and its reason, from the run samples of both sides.

Relative metric (:mod:`catga_bench.compare.stats`): **regressed** when both one-sided tests
(Welch against the margin, Mann-Whitney) are below ``alpha``; **same or better** when the
one-sided ``1 - alpha`` upper bound of the ratio is below ``1 + margin`` (criterion.rs: the
interval must clear the threshold; one-sided, at the tests' level: see
:mod:`catga_bench.compare.stats`); otherwise **inconclusive** (Pinpoint: run more).
Absolute metric (errors, lost, duplicates): **regressed** as soon as one candidate run exceeds
the limit (default: the worst baseline run, so a clean baseline allows nothing), even with one
run a side.
"""

from __future__ import annotations

from pathlib import Path

from catga_bench.compare.config import CompareConfig
from catga_bench.compare.metrics import METRICS, Metric
from catga_bench.compare.model import Comparison, MetricResult
from catga_bench.compare.samples import RunSample, load_runs
from catga_bench.compare.stats import relative_stats, runs_needed
from catga_bench.errors import ConfigError


def compare_folders(baseline_dir: Path, candidate_dir: Path,
                    config: CompareConfig | None = None) -> Comparison:
    """Compare the run reports under two folders (the gate's entry point).

    Raises:
        ConfigError: a folder missing or without runs, runs of different scenarios or
            transports (within a side or across the sides).
    """
    baseline = load_runs(Path(baseline_dir), "baseline")
    candidate = load_runs(Path(candidate_dir), "candidate")
    return compare_runs(baseline, candidate, config or CompareConfig(),
                        str(baseline_dir), str(candidate_dir))


def compare_runs(baseline: list[RunSample], candidate: list[RunSample], config: CompareConfig,
                 baseline_source: str = "", candidate_source: str = "") -> Comparison:
    """Compare two lists of run samples under ``config``.

    Raises:
        ConfigError: an empty side, or the sides ran different scenarios or transports.
    """
    if not baseline or not candidate:
        raise ConfigError(f"{'baseline' if not baseline else 'candidate'}: no runs")
    for field in ("scenario", "transport"):
        b, c = getattr(baseline[0], field), getattr(candidate[0], field)
        if b != c:
            raise ConfigError(f"baseline and candidate ran different {field}s ({b} vs {c})")
    results = [judge_metric(METRICS[name], baseline, candidate, config)
               for name in config.metrics]
    return Comparison(scenario=baseline[0].scenario, transport=baseline[0].transport,
                      margin=config.margin, alpha=config.alpha, metrics=results,
                      baseline=baseline, candidate=candidate, baseline_source=baseline_source,
                      candidate_source=candidate_source)


def judge_metric(metric: Metric, baseline: list[RunSample], candidate: list[RunSample],
                 config: CompareConfig) -> MetricResult:
    """One metric's result (relative or absolute)."""
    if metric.kind == "absolute":
        return _absolute(metric, baseline, candidate, config)
    return _relative(metric, baseline, candidate, config)


def _values(runs: list[RunSample], name: str) -> list[float]:
    return [v for r in runs if (v := r.value(name)) is not None]


def _absolute(metric: Metric, baseline: list[RunSample], candidate: list[RunSample],
              config: CompareConfig) -> MetricResult:
    b, c = _values(baseline, metric.name), _values(candidate, metric.name)
    worst_b, worst_c = max(b, default=0.0), max(c, default=0.0)
    limit = config.limits.get(metric.name, worst_b)
    source = "set" if metric.name in config.limits else "the worst baseline run"
    over = [r for r in candidate if (r.value(metric.name) or 0.0) > limit]
    if over:
        verdict, reason = "regressed", (
            f"{len(over)} of {len(candidate)} candidate runs over the limit {limit:g} ({source}); "
            f"worst {worst_c:g}")
    else:
        verdict, reason = "same_or_better", (
            f"every candidate run within the limit {limit:g} ({source}); worst {worst_c:g}")
    return MetricResult(metric=metric.name, kind="absolute", unit=metric.unit, verdict=verdict,
                        reason=reason, n_baseline=len(b), n_candidate=len(c), limit=limit,
                        worst_baseline=worst_b, worst_candidate=worst_c)


def _pct(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.1f}%"


def _relative(metric: Metric, baseline: list[RunSample], candidate: list[RunSample],
              config: CompareConfig) -> MetricResult:
    b, c = _values(baseline, metric.name), _values(candidate, metric.name)
    base = MetricResult(metric=metric.name, kind="relative", unit=metric.unit,
                        verdict="inconclusive", reason="", n_baseline=len(b), n_candidate=len(c),
                        margin=config.margin)
    if not b or not c or min(b + c) <= 0:
        return _replace(base, reason=f"no ratio: a side has no {metric.name} values > 0 "
                                     "(did a run fail early?)")
    s = relative_stats(b, c, metric.worse, config.margin, config.alpha, config.seed)
    limit = 1 + config.margin
    fields = dict(median_baseline=s.median_baseline, median_candidate=s.median_candidate,
                  cv_baseline=s.cv_baseline, cv_candidate=s.cv_candidate, ratio=s.ratio,
                  ci_low=s.ci_low, ci_high=s.ci_high, upper=s.upper, p_margin=s.p_margin,
                  p_mannwhitney=s.p_mannwhitney, detectable=s.detectable)
    ps = f"Welch p={_p(s.p_margin)}, Mann-Whitney p={_p(s.p_mannwhitney)}"
    if s.upper is None or s.p_margin is None or s.p_mannwhitney is None:
        return _replace(base, **fields, runs_needed=2,
                        reason=f"worse by {_pct(s.ratio)} from one run on a side; "
                               "need >= 2 runs per side for an interval")
    ci = f"95% CI {_pct(s.ci_low)}..{_pct(s.ci_high)}"
    if s.p_margin < config.alpha and s.p_mannwhitney < config.alpha:
        return _replace(base, **fields, verdict="regressed",
                        reason=f"worse by {_pct(s.ratio)} ({ci}), beyond the "
                               f"{config.margin:.0%} margin: {ps} (both < {config.alpha:g})")
    bound = f"{1 - config.alpha:.0%} upper bound {_pct(s.upper)}"
    if s.upper < limit:
        return _replace(base, **fields, verdict="same_or_better",
                        reason=f"{_pct(s.ratio)} ({ci}; {bound} is below the "
                               f"{config.margin:.0%} margin)")
    why = ("the tests disagree" if min(s.p_margin, s.p_mannwhitney) < config.alpha
           else f"the {bound} reaches past the {config.margin:.0%} margin but the tests do "
                "not show a regression")
    need = runs_needed(s.sd_log, s.ratio, config.margin, config.alpha)
    need = max(need or 0, max(s.n_baseline, s.n_candidate) + 2)
    return _replace(base, **fields, runs_needed=need,
                    reason=f"{_pct(s.ratio)} ({ci}): {why} ({ps})")


def _p(p: float | None) -> str:
    return "—" if p is None else f"{p:.3g}"


def _replace(result: MetricResult, **changes: object) -> MetricResult:
    from dataclasses import replace

    return replace(result, **changes)  # type: ignore[arg-type]
