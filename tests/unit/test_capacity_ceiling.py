"""Which side limited a capacity bracket (catga_bench/capacity/ceiling.py: limited_by), and how
a cached ceiling is named."""

from __future__ import annotations

import time

from catga_bench.capacity.ceiling import cached_text, limited_by
from catga_bench.capacity.model import SearchResult


def _result(lo: float, hi: float, hi_kind: str = "system") -> SearchResult:
    return SearchResult(outcome="bracket", lo=lo, hi=hi, hi_kind=hi_kind,  # type: ignore[arg-type]
                        confirmed=True)


def test_a_bracket_near_the_ceiling_is_the_generators() -> None:
    side, why = limited_by(_result(38_000, 40_000), {"lo": 40_000, "hi": 42_000}, "embedded")
    assert side == "generator" and "reaches 90% of the generator's ceiling (40,000" in why
    assert "above that ceiling" not in why


def test_a_bracket_above_a_cached_ceiling_says_the_host_was_slower_then() -> None:
    ceiling = {"lo": 38_304, "hi": 41_771, "cached": "/c/ceiling.json",
               "measured_at_unix": time.time() - 25 * 60}
    side, why = limited_by(_result(41_800, 42_786), ceiling, "embedded")
    assert side == "generator"
    assert "above that ceiling's upper end (41,771 msg/s, measured 25 min ago)" in why
    assert "the host ran faster during the search than while the ceiling was measured" in why
    assert cached_text(ceiling) == " (cached 25 min ago: /c/ceiling.json)"
    assert cached_text({"lo": 1, "hi": 2}) == ""


def test_a_system_failure_well_below_the_ceiling_is_the_systems() -> None:
    side, why = limited_by(_result(10_000, 10_500), {"lo": 40_000, "hi": 42_000}, "nats")
    assert side == "system" and "below the generator's ceiling (40,000" in why


def test_an_invalid_upper_end_well_below_the_embedded_ceiling_is_the_systems() -> None:
    side, why = limited_by(_result(10_000, 10_500, "generator"), {"lo": 40_000}, "embedded")
    assert side == "system" and "starved the event loop" in why
    side, why = limited_by(_result(10_000, 10_500, "generator"), None, "nats")
    assert side == "generator" and "could not offer 10,500" in why
