"""The statistics of one relative metric (P99, achieved rate): two small samples of per-run
values, baseline and candidate. Every test is scipy's; nothing here is a hand-written test.

Orientation: values are turned so that *higher is worse* (a rate is negated on the log scale),
so ``ratio > 1`` always means "the candidate is worse by ``ratio - 1``": for P99 it is
median(candidate) / median(baseline), for an achieved rate median(baseline) / median(candidate).

- **Interval**: a 95% percentile bootstrap (``scipy.stats.bootstrap``, two independent samples,
  statistic = that ratio of medians, fixed seed: the same samples give the same interval), and
  from the same bootstrap distribution the one-sided upper bound at ``1 - alpha`` (``upper``):
  "same or better" is decided on it — the non-inferiority bound at the tests' own level (a
  one-sided 95% bound is the upper end of a two-sided 90% interval). Deciding on the two-sided
  95% end would test at 2.5% and, with 5 runs of 2% noise, never call two equal builds "same".
- **Margin test**: one-sided Welch t-test on log values (``scipy.stats.ttest_ind``,
  ``equal_var=False``, ``alternative="greater"``) of the candidate against the baseline shifted
  by ``log(1 + margin)``: small p = the candidate is worse by more than the margin.
- **Mann-Whitney**: one-sided ``scipy.stats.mannwhitneyu(candidate, baseline,
  alternative="greater")`` on the oriented values (rank based, no shift: is the candidate worse
  at all?); it must agree with the margin test before a regression is called (Kayenta).
- **Smallest detectable change** (normal approximation of the margin test): with the pooled
  standard deviation ``s`` of the log values (about the run-to-run CV) and ``n_b``, ``n_c`` runs,
  ``exp(log(1 + margin) + (z_{1-alpha} + z_{0.8}) * s * sqrt(1/n_b + 1/n_c)) - 1``: the true
  slowdown caught with 80% power. **Runs needed** for an observed ratio ``r``: per side
  ``2 * ((z_{1-alpha} + z_{0.8}) * s / |log r - log(1 + margin)|)^2``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

#: the power the smallest detectable change and the runs needed are given for
POWER = 0.8
#: the bootstrap interval's confidence level
CONFIDENCE = 0.95
#: cap of the runs-needed estimate (a ratio right at the margin needs "infinitely" many)
MAX_RUNS_NEEDED = 1000


@dataclass(frozen=True, slots=True)
class RelativeStats:
    """Medians in the metric's unit; CVs as fractions (sample sd / mean); ``ratio``,
    ``ci_low``, ``ci_high`` (95%) and ``upper`` (one-sided ``1 - alpha`` bound) oriented
    (> 1 = worse); ``detectable`` a fraction (0.05 = 5%) or
    ``None`` (no spread known: a side with one run); ``sd_log`` the pooled sd of log values."""

    median_baseline: float
    median_candidate: float
    n_baseline: int
    n_candidate: int
    cv_baseline: float | None
    cv_candidate: float | None
    ratio: float
    ci_low: float | None
    ci_high: float | None
    upper: float | None
    p_margin: float | None
    p_mannwhitney: float | None
    sd_log: float | None
    detectable: float | None


def cv(values: Sequence[float]) -> float | None:
    """Coefficient of variation (sample sd / mean, ``scipy.stats.variation`` with ddof=1);
    ``None`` for fewer than 2 values."""
    if len(values) < 2:
        return None
    return float(stats.variation(np.asarray(values, dtype=float), ddof=1))


def oriented_log(values: Sequence[float], worse: Literal["higher", "lower"]) -> np.ndarray:
    """Log values turned so that higher is worse (all values must be > 0)."""
    y = np.log(np.asarray(values, dtype=float))
    return y if worse == "higher" else -y


def pooled_sd(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pooled sample standard deviation of two samples (``None`` with no degrees of freedom)."""
    dof = len(a) + len(b) - 2
    if dof <= 0:
        return None
    ss = sum(float(np.var(x, ddof=1)) * (len(x) - 1) for x in (a, b) if len(x) > 1)
    return math.sqrt(ss / dof)


def detectable_change(sd_log: float | None, n_b: int, n_c: int, margin: float,
                      alpha: float, power: float = POWER) -> float | None:
    """The smallest true change (a fraction) the margin test catches with ``power``."""
    if sd_log is None or n_b < 1 or n_c < 1:
        return None
    z = stats.norm.ppf(1 - alpha) + stats.norm.ppf(power)
    return math.exp(math.log1p(margin) + z * sd_log * math.sqrt(1 / n_b + 1 / n_c)) - 1


def runs_needed(sd_log: float | None, ratio: float, margin: float, alpha: float,
                power: float = POWER) -> int | None:
    """Runs per side for the margin test to tell ``ratio`` from ``1 + margin`` with ``power``
    (at most :data:`MAX_RUNS_NEEDED`); ``None`` when the spread is unknown."""
    if sd_log is None:
        return None
    distance = abs(math.log(ratio) - math.log1p(margin))
    z = stats.norm.ppf(1 - alpha) + stats.norm.ppf(power)
    if distance <= 0 or sd_log == 0:
        return MAX_RUNS_NEEDED if distance <= 0 else 2
    return min(MAX_RUNS_NEEDED, max(2, math.ceil(2 * (z * sd_log / distance) ** 2)))


def _ratio_of_medians(worse: str):  # type: ignore[no-untyped-def]
    def statistic(c: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        mc, mb = np.median(c, axis=axis), np.median(b, axis=axis)
        return mc / mb if worse == "higher" else mb / mc
    return statistic


def bootstrap_interval(baseline: Sequence[float], candidate: Sequence[float],
                       worse: Literal["higher", "lower"], seed: int,
                       alpha: float = 0.05) -> tuple[float, float, float] | None:
    """(low, high) of the 95% percentile-bootstrap interval of the oriented ratio of medians and
    the one-sided ``1 - alpha`` upper bound from the same resamples; ``None`` when a side has
    fewer than 2 runs."""
    if len(baseline) < 2 or len(candidate) < 2:
        return None
    res = stats.bootstrap((np.asarray(candidate, float), np.asarray(baseline, float)),
                          _ratio_of_medians(worse), paired=False, vectorized=True,
                          confidence_level=CONFIDENCE, n_resamples=9999, method="percentile",
                          rng=np.random.default_rng(seed))
    upper = float(np.quantile(res.bootstrap_distribution, 1 - alpha))
    return float(res.confidence_interval.low), float(res.confidence_interval.high), upper


def margin_test(yb: np.ndarray, yc: np.ndarray, margin: float) -> float | None:
    """One-sided Welch p-value that the (oriented log) candidate exceeds the baseline by more
    than ``log(1 + margin)``; ``None`` with fewer than 2 runs a side."""
    if len(yb) < 2 or len(yc) < 2:
        return None
    shifted = yb + math.log1p(margin)
    if np.ptp(yb) == 0 and np.ptp(yc) == 0:  # no spread at all: the difference is exact
        return 0.0 if float(yc[0]) > float(shifted[0]) else 1.0
    with warnings.catch_warnings():  # near-equal values (a rate held exactly): a valid p anyway
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        res = stats.ttest_ind(yc, shifted, equal_var=False, alternative="greater")
    return float(res.pvalue)


def mann_whitney(yb: np.ndarray, yc: np.ndarray) -> float | None:
    """One-sided Mann-Whitney p-value that the candidate is worse (``None``: an empty side)."""
    if len(yb) < 1 or len(yc) < 1:
        return None
    return float(stats.mannwhitneyu(yc, yb, alternative="greater").pvalue)


def relative_stats(baseline: Sequence[float], candidate: Sequence[float],
                   worse: Literal["higher", "lower"], margin: float, alpha: float,
                   seed: int) -> RelativeStats:
    """All the figures of one relative metric (values must be > 0).

    Raises:
        ValueError: an empty side or a value <= 0.
    """
    if not baseline or not candidate:
        raise ValueError("both sides need at least one run")
    if min(baseline) <= 0 or min(candidate) <= 0:
        raise ValueError("a ratio needs values > 0")
    yb, yc = oriented_log(baseline, worse), oriented_log(candidate, worse)
    mb, mc = float(np.median(baseline)), float(np.median(candidate))
    ci = bootstrap_interval(baseline, candidate, worse, seed, alpha)
    sd = pooled_sd(yb, yc)
    return RelativeStats(
        median_baseline=mb, median_candidate=mc, n_baseline=len(baseline),
        n_candidate=len(candidate), cv_baseline=cv(baseline), cv_candidate=cv(candidate),
        ratio=mc / mb if worse == "higher" else mb / mc,
        ci_low=ci[0] if ci else None, ci_high=ci[1] if ci else None,
        upper=ci[2] if ci else None,
        p_margin=margin_test(yb, yc, margin), p_mannwhitney=mann_whitney(yb, yc),
        sd_log=sd, detectable=detectable_change(sd, len(baseline), len(candidate), margin, alpha),
    )
