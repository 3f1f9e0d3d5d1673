"""Bulk feeding of Locust's statistics (catga_bench/harness/locust_stats.py) adds exactly what
one ``request`` event per completion would: counts, sums, min/max, response-time buckets, the
per-second counts, on the name's entry and on the total."""

from __future__ import annotations

from locust.stats import RequestStats

from catga_bench.harness.locust_stats import log_successes

LATENCIES_MS = [0.4, 3.2, 3.4, 47.0, 147.3, 3432.0, 58_760.0, 99.6, 12.0]


def test_bulk_equals_one_event_per_completion() -> None:
    one_by_one, bulk = RequestStats(), RequestStats()
    for ms in LATENCIES_MS:
        one_by_one.log_request("catga", "PriceTick", ms, 0)  # what a request event does
    log_successes(bulk, "catga", "PriceTick", LATENCIES_MS[:4])
    log_successes(bulk, "catga", "PriceTick", LATENCIES_MS[4:])
    for a, b in ((one_by_one.get("PriceTick", "catga"), bulk.get("PriceTick", "catga")),
                 (one_by_one.total, bulk.total)):
        assert b.num_requests == a.num_requests == len(LATENCIES_MS)
        assert b.num_failures == 0
        assert b.total_response_time == sum(LATENCIES_MS) == a.total_response_time
        assert (b.min_response_time, b.max_response_time) == (0.4, 58_760.0)
        assert dict(b.response_times) == dict(a.response_times)
        assert sum(b.num_reqs_per_sec.values()) == len(LATENCIES_MS)
        assert b.get_response_time_percentile(0.99) == a.get_response_time_percentile(0.99)


def test_nothing_to_log_changes_nothing() -> None:
    stats = RequestStats()
    log_successes(stats, "catga", "PriceTick", [])
    assert stats.total.num_requests == 0 and not stats.entries
