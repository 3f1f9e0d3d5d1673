"""catga-bench compare's statistics and verdicts on synthetic run samples: identical builds come
out same, a 10% slowdown at 2% noise regressed, huge noise inconclusive, absolute limits fail at
once, and both metric directions are read the right way."""

from __future__ import annotations

import numpy as np
import pytest

from catga_bench.compare.config import CompareConfig
from catga_bench.compare.model import Comparison
from catga_bench.compare.samples import RunSample
from catga_bench.compare.stats import detectable_change, relative_stats, runs_needed
from catga_bench.compare.verdict import compare_runs
from catga_bench.errors import EXIT_ENVIRONMENT, EXIT_FAIL, EXIT_PASS, ConfigError


def _runs(p99: list[float] | np.ndarray, rate: float | list[float] = 500.0,
          errors: float = 0.0, lost: int = 0, scenario: str = "s") -> list[RunSample]:
    rates = rate if isinstance(rate, list) else [rate] * len(p99)
    return [RunSample(path=f"r{i}", scenario=scenario, transport="embedded", sut="core",
                      p99_ms=float(p), p50_ms=None, p999_ms=None, achieved_rate=r,
                      offered_rate=500.0, error_ratio=errors, lost=lost, duplicates=0,
                      exit_code=0) for i, (p, r) in enumerate(zip(p99, rates, strict=True))]


def _noisy(center: float, cv: float, n: int, seed: int) -> np.ndarray:
    return center * (1 + cv * np.random.default_rng(seed).standard_normal(n))


def _metric(c: Comparison, name: str):  # type: ignore[no-untyped-def]
    return next(m for m in c.metrics if m.metric == name)


def test_identical_runs_are_the_same() -> None:
    runs = _runs([25.0, 25.5, 24.8, 25.2, 25.1])
    c = compare_runs(runs, list(runs), CompareConfig())
    p99 = _metric(c, "p99_ms")
    assert p99.verdict == "same_or_better"
    assert p99.ratio == pytest.approx(1.0)
    assert p99.upper is not None and p99.upper < 1.03
    assert c.outcome == "same" and c.exit_code == EXIT_PASS


@pytest.mark.parametrize("seed", range(5))
def test_ten_percent_slower_at_two_percent_noise_with_five_runs_is_regressed(seed: int) -> None:
    base = _runs(_noisy(25.0, 0.02, 5, seed))
    cand = _runs(_noisy(27.5, 0.02, 5, seed + 100))
    c = compare_runs(base, cand, CompareConfig())
    p99 = _metric(c, "p99_ms")
    assert p99.verdict == "regressed", p99.reason
    assert p99.p_margin is not None and p99.p_margin < 0.05
    assert p99.p_mannwhitney is not None and p99.p_mannwhitney < 0.05
    assert p99.ci_low is not None and p99.ci_low > 1.0
    assert c.outcome == "regressed" and c.exit_code == EXIT_FAIL
    assert "worse by +" in p99.reason


def test_huge_noise_is_inconclusive_and_says_how_many_runs() -> None:
    base = _runs(_noisy(25.0, 0.30, 5, 1))
    cand = _runs(_noisy(26.0, 0.30, 5, 2))
    c = compare_runs(base, cand, CompareConfig())
    p99 = _metric(c, "p99_ms")
    assert p99.verdict == "inconclusive"
    assert p99.runs_needed is not None and p99.runs_needed > 5
    assert c.outcome == "inconclusive" and c.exit_code == EXIT_ENVIRONMENT
    assert f"need >= {c.runs_needed()} runs" in c.summary()


def test_a_small_slowdown_inside_the_margin_is_not_a_regression() -> None:
    base = _runs(_noisy(25.0, 0.005, 8, 3))
    cand = _runs(_noisy(25.25, 0.005, 8, 4))  # +1%, margin 3%
    p99 = _metric(compare_runs(base, cand, CompareConfig()), "p99_ms")
    assert p99.verdict == "same_or_better", p99.reason


def test_faster_candidate_is_same_or_better() -> None:
    base = _runs(_noisy(25.0, 0.02, 6, 5))
    cand = _runs(_noisy(20.0, 0.02, 6, 6))
    p99 = _metric(compare_runs(base, cand, CompareConfig()), "p99_ms")
    assert p99.verdict == "same_or_better"
    assert p99.ratio is not None and p99.ratio < 0.9


def test_achieved_rate_lower_is_worse_and_higher_is_fine() -> None:
    p99 = list(_noisy(25.0, 0.01, 5, 7))
    base = _runs(p99, rate=list(_noisy(1000.0, 0.01, 5, 8)))
    slower = _runs(p99, rate=list(_noisy(850.0, 0.01, 5, 9)))
    faster = _runs(p99, rate=list(_noisy(1150.0, 0.01, 5, 10)))
    down = _metric(compare_runs(base, slower, CompareConfig()), "achieved_rate")
    up = _metric(compare_runs(base, faster, CompareConfig()), "achieved_rate")
    assert down.verdict == "regressed" and down.ratio is not None and down.ratio > 1.1
    assert up.verdict == "same_or_better" and up.ratio is not None and up.ratio < 0.9


def test_error_ratio_zero_to_one_percent_fails_at_once_with_one_run_a_side() -> None:
    c = compare_runs(_runs([25.0]), _runs([25.0], errors=0.01), CompareConfig())
    err = _metric(c, "error_ratio")
    assert err.verdict == "regressed"
    assert err.limit == 0.0 and err.worst_candidate == pytest.approx(0.01)
    assert c.outcome == "regressed" and c.exit_code == EXIT_FAIL


def test_absolute_limit_defaults_to_the_worst_baseline_run_and_can_be_set() -> None:
    base = _runs([25.0, 25.0], errors=0.02)
    assert _metric(compare_runs(base, _runs([25.0, 25.0], errors=0.02), CompareConfig()),
                   "error_ratio").verdict == "same_or_better"
    strict = CompareConfig(limits={"error_ratio": 0.001})
    assert _metric(compare_runs(base, _runs([25.0, 25.0], errors=0.02), strict),
                   "error_ratio").verdict == "regressed"
    assert _metric(compare_runs(_runs([25.0, 25.0]), _runs([25.0, 25.0], lost=1),
                                CompareConfig()), "lost").verdict == "regressed"


def test_one_run_a_side_gives_no_interval_for_a_relative_metric() -> None:
    p99 = _metric(compare_runs(_runs([25.0]), _runs([30.0]), CompareConfig()), "p99_ms")
    assert p99.verdict == "inconclusive" and p99.ci_low is None
    assert "need >= 2 runs" in p99.reason


def test_the_interval_is_reproducible() -> None:
    base, cand = _noisy(25.0, 0.03, 5, 11), _noisy(26.0, 0.03, 5, 12)
    a = relative_stats(list(base), list(cand), "higher", 0.03, 0.05, seed=7)
    b = relative_stats(list(base), list(cand), "higher", 0.03, 0.05, seed=7)
    assert (a.ci_low, a.ci_high, a.upper) == (b.ci_low, b.ci_high, b.upper)
    assert a.ci_low is not None and a.ci_high is not None and a.ci_low < a.ratio < a.ci_high


def test_detectable_change_shrinks_with_runs_and_grows_with_noise() -> None:
    d5 = detectable_change(0.02, 5, 5, 0.03, 0.05)
    d10 = detectable_change(0.02, 10, 10, 0.03, 0.05)
    noisy = detectable_change(0.05, 5, 5, 0.03, 0.05)
    assert d5 is not None and d10 is not None and noisy is not None
    assert 0.03 < d10 < d5 < noisy
    assert detectable_change(None, 5, 5, 0.03, 0.05) is None


def test_runs_needed_grows_as_the_ratio_nears_the_margin() -> None:
    far = runs_needed(0.03, 1.10, 0.03, 0.05)
    near = runs_needed(0.03, 1.04, 0.03, 0.05)
    assert far is not None and near is not None and far < near


def test_different_scenarios_across_sides_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="different scenarios"):
        compare_runs(_runs([25.0]), _runs([25.0], scenario="other"), CompareConfig())


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"margin": 0.0}, "margin"), ({"margin": 1.0}, "margin"), ({"alpha": 0.7}, "alpha"),
    ({"metrics": ("p98",)}, "unknown metric 'p98'"), ({"limits": {"p99_ms": 1}}, "limits"),
    ({"limits": {"lost": -1}}, "limits.lost"),
])
def test_bad_settings_name_the_field(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CompareConfig(**kwargs)
