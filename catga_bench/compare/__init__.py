"""``catga-bench compare``: did the candidate get slower than the baseline? Runs, not single
messages, are the samples (one P99, one achieved rate, one error ratio per run report).

Per relative metric (P99, achieved rate): the medians, the candidate/baseline ratio with a 95%
bootstrap interval, a one-sided Welch test that the ratio exceeds a margin and a one-sided
Mann-Whitney test that must agree before a regression is called; three outcomes as Chromium
Pinpoint gives them (regressed / same or better / inconclusive: run more), "same" only when the
interval's one-sided upper bound (at the tests' level) clears the margin (criterion.rs). Errors,
lost and duplicates are absolute limits. Ideas from Kayenta (Mann-Whitney with an effect-size
margin), Pinpoint and criterion.rs.

The gate's API: :func:`compare_folders` and :func:`load_runs`.
"""

from __future__ import annotations

from catga_bench.compare.config import CompareConfig, load_config
from catga_bench.compare.model import Comparison, MetricResult
from catga_bench.compare.samples import RunSample, load_runs
from catga_bench.compare.verdict import compare_folders, compare_runs

__all__ = ["CompareConfig", "Comparison", "MetricResult", "RunSample", "compare_folders",
           "compare_runs", "load_config", "load_runs"]
