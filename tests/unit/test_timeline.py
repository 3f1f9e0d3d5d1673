"""Timeline: per-second rows, coarse latency buckets, shipping (to_dict) and merging."""

from __future__ import annotations

import json
import math
import random

import pytest

from catga_bench.generator.timeline import BOUNDS_MS, COUNTERS, GAUGES, Timeline

T0 = 1_700_000_000


def _true_percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * p / 100.0)) - 1]


def test_row_starts_with_zero_counters_and_gauges() -> None:
    tl = Timeline()
    row = tl.row(T0)
    assert all(row[k] == 0 for k in COUNTERS)
    assert all(row[k] == 0.0 for k in GAUGES)
    assert row["lat"] == {}
    assert tl.row(T0) is row  # same row on the second call


def test_counters_and_gauges_per_second() -> None:
    tl = Timeline()
    tl.row(T0)["sent"] += 3
    tl.row(T0 + 1)["sent"] += 5
    tl.row(T0 + 1)["errors"] += 1
    tl.gauge(T0, "queue_depth", 7)
    tl.gauge(T0, "queue_depth", 4)  # gauges keep the maximum within a second
    tl.gauge(T0, "loop_lag_ms", 1.5)
    series = tl.series()
    assert series["t_s"] == [0, 1]
    assert series["sent"] == [3, 5]
    assert series["errors"] == [0, 1]
    assert series["queue_depth"] == [7, 0.0]
    assert series["loop_lag_ms"] == [1.5, 0.0]
    assert series["p50_ms"] == [None, None]  # no latency recorded


def test_series_fills_gaps_and_uses_start_s() -> None:
    tl = Timeline()
    tl.row(T0)["sent"] = 1
    tl.row(T0 + 3)["sent"] = 2
    series = tl.series(start_s=T0 - 2)
    assert series["t_s"] == [2, 3, 4, 5]
    assert series["sent"] == [1, 0, 0, 2]
    assert all(len(v) == 4 for v in series.values())


@pytest.mark.parametrize(
    "values",
    [
        [0.5 + i * 0.1 for i in range(1_000)],  # uniform 0.5 .. 100 ms
        [random.Random(7).lognormvariate(1.0, 1.2) for _ in range(5_000)],
        [2.0] * 900 + [250.0] * 100,  # bimodal: P99 in the slow mode
    ],
    ids=["uniform", "lognormal", "bimodal"],
)
def test_percentiles_within_ten_percent(values: list[float]) -> None:
    tl = Timeline()
    for v in values:
        tl.add_latency(T0, v)
    series = tl.series()
    for key, p in (("p50_ms", 50.0), ("p99_ms", 99.0), ("max_ms", 100.0)):
        estimate = series[key][0]
        truth = _true_percentile(values, p)
        assert estimate == pytest.approx(truth, rel=0.10), key


def test_latency_beyond_last_bucket_is_clamped() -> None:
    tl = Timeline()
    tl.add_latency(T0, BOUNDS_MS[-1] * 10)
    assert tl.series()["max_ms"] == [round(BOUNDS_MS[-1], 3)]


def _part(lat: list[float], **fields: float) -> dict:
    tl = Timeline()
    for k, v in fields.items():
        if k in COUNTERS:
            tl.row(T0)[k] += int(v)
        else:
            tl.gauge(T0, k, v)
    for v in lat:
        tl.add_latency(T0, v)
    tl.row(T0 + 1)["sent"] += 1
    return json.loads(json.dumps(tl.to_dict()))  # shipped as JSON between processes


def test_to_dict_merge_round_trip() -> None:
    a = _part([1.0] * 99 + [100.0], sent=10, completed=9, errors=1, queue_depth=5,
              in_flight=3, breaker_open=1, loop_lag_ms=2.0)
    b = _part([1.0] * 100, sent=20, completed=20, rejected=4, queue_depth=7, in_flight=2,
              breaker_open=1, loop_lag_ms=9.5)
    merged = Timeline.merge([a, b])
    row = merged.rows[T0]
    assert (row["sent"], row["completed"], row["errors"], row["rejected"]) == (30, 29, 1, 4)
    assert row["queue_depth"] == 12  # summed across processes
    assert row["in_flight"] == 5
    assert row["breaker_open"] == 2
    assert row["loop_lag_ms"] == 9.5  # maximum, not a sum
    assert merged.rows[T0 + 1]["sent"] == 2
    assert sum(row["lat"].values()) == 200
    series = merged.series()
    assert series["p50_ms"][0] == pytest.approx(1.0, rel=0.10)
    assert series["max_ms"][0] == pytest.approx(100.0, rel=0.10)
    # a round trip of the merged timeline changes nothing
    again = Timeline.merge([json.loads(json.dumps(merged.to_dict()))])
    assert again.series() == series


def test_merge_of_a_single_part_is_identity() -> None:
    tl = Timeline()
    tl.row(T0)["timeouts"] = 3
    tl.gauge(T0, "in_flight", 4)
    tl.add_latency(T0, 12.0)
    assert Timeline.merge([tl.to_dict()]).series() == tl.series()


def test_empty_timeline() -> None:
    assert Timeline().series() == {"t_s": []}
    assert Timeline.merge([]).series() == {"t_s": []}
    assert Timeline().to_dict() == {}
