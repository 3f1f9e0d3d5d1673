"""The capacity search (catga_bench/capacity/search.py) against fake systems: a trial function
whose verdict is a pure function of the rate, and a fake clock that advances by each trial's
length plus a fixed start-up cost."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest

from catga_bench.capacity.model import Phase, SearchSettings, Trial, Verdict
from catga_bench.capacity.search import CapacitySearch


class FakeSystem:
    """Passes below ``capacity``, fails at or above it; INVALID at or above ``generator``.
    ``final_breach(rate)`` gives the breached share of a final trial's seconds."""

    def __init__(self, capacity: float, generator: float = math.inf, overhead_s: float = 2.0,
                 final_breach: Callable[[float], float] | None = None) -> None:
        self.capacity = capacity
        self.generator = generator
        self.overhead_s = overhead_s
        self.final_breach = final_breach or (lambda rate: 0.0 if rate < capacity else 1.0)
        self.now = 0.0
        self.calls: list[tuple[float, float, Phase]] = []

    def clock(self) -> float:
        return self.now

    def trial(self, rate: float, seconds: float, phase: Phase) -> Trial:
        self.calls.append((rate, seconds, phase))
        self.now += seconds + self.overhead_s
        verdict: Verdict
        if rate >= self.generator:
            verdict, breached = "INVALID", 0
        elif phase == "final":
            breached = round(self.final_breach(rate) * seconds)
            verdict = "PASS" if breached == 0 else "FAIL"
        else:
            verdict = "PASS" if rate < self.capacity else "FAIL"
            breached = 0 if verdict == "PASS" else int(seconds)
        return Trial(rate=rate, phase=phase, planned_s=seconds, verdict=verdict,
                     seconds=int(seconds), breached=breached, wall_s=seconds + self.overhead_s)


def search(system: FakeSystem, **over: float) -> CapacitySearch:
    settings = SearchSettings(**{"start_rate": 1000.0, "max_time_s": 10_000.0, **over})
    return CapacitySearch(settings, system.trial, system.clock)


def test_doubles_then_bisects_to_the_width_and_confirms() -> None:
    system = FakeSystem(capacity=10_000)
    result = search(system).run()
    search_rates = [r for r, _, phase in system.calls if phase == "search"]
    assert search_rates[:5] == [1000, 2000, 4000, 8000, 16000]  # doubling until a failure
    assert result.outcome == "bracket" and result.confirmed
    assert result.lo is not None and result.hi is not None
    assert result.lo < 10_000 <= result.hi
    assert result.width is not None and result.width <= 0.05 + 1e-9
    assert result.hi_kind == "system"
    finals = [(r, s) for r, s, phase in system.calls if phase == "final"]
    assert finals == [(result.lo, 20.0)] * 3  # 3 x 20 s at the lower bound
    assert (result.final_passes, result.final_count, result.exceed_ratio) == (3, 3, 0.0)


def test_bisection_is_geometric() -> None:
    system = FakeSystem(capacity=3000)
    search(system, start_rate=2000, final_trials=0).run()
    rates = [r for r, _, _ in system.calls]
    assert rates[:3] == [2000, 4000, pytest.approx(math.sqrt(2000 * 4000))]


def test_first_failure_halves_down() -> None:
    system = FakeSystem(capacity=300)
    result = search(system, final_trials=0).run()
    assert [r for r, _, _ in system.calls][:3] == [1000, 500, 250]
    assert result.lo is not None and result.lo < 300 <= (result.hi or 0)


def test_final_trials_accept_up_to_the_exceed_ratio() -> None:
    # 40% of every final trial's seconds breach: <= 0.5, accepted
    system = FakeSystem(capacity=10_000, final_breach=lambda r: 0.4)
    result = search(system).run()
    assert result.confirmed and result.exceed_ratio == pytest.approx(0.4)
    assert result.final_passes == 0 and result.final_count == 3  # each trial failed alone


def test_failed_confirmation_steps_down_and_confirms_again() -> None:
    # the short trials pass up to 10,000 but the long ones only hold below 9,000
    system = FakeSystem(capacity=10_000, final_breach=lambda r: 0.0 if r < 9000 else 0.8)
    result = search(system).run()
    assert result.confirmed and result.lo is not None and result.hi is not None
    assert result.lo < 9000 <= result.hi
    assert result.hi / result.lo - 1 <= 0.05 + 1e-9
    final_rates = sorted({r for r, _, phase in system.calls if phase == "final"}, reverse=True)
    assert len(final_rates) >= 2  # stepped down at least once
    for higher, lower in itertools.pairwise(final_rates):
        assert higher / lower == pytest.approx(1.05)
    # a rejected confirmation stops as soon as it is decided: 0.8 x 20 s > 0.5 x 60 s after 2
    first = [p for r, _, p in system.calls if p == "final" and r == final_rates[0]]
    assert len(first) == 2


def test_invalid_trials_mark_the_upper_end_as_the_generators() -> None:
    system = FakeSystem(capacity=1e9, generator=20_000)
    result = search(system).run()
    assert result.outcome == "bracket" and result.confirmed
    assert result.hi_kind == "generator"
    assert result.lo is not None and result.lo < 20_000 <= (result.hi or 0)


def test_generator_that_cannot_offer_the_lowest_rate() -> None:
    system = FakeSystem(capacity=1e9, generator=5)
    result = search(system, min_rate=100).run()
    assert result.outcome == "generator" and result.lo is None
    assert all(r >= 100 for r, _, _ in system.calls)


def test_below_min_rate() -> None:
    system = FakeSystem(capacity=50)
    result = search(system, min_rate=200).run()
    assert result.outcome == "below_min_rate" and result.lo is None
    assert min(r for r, _, _ in system.calls) >= 200


def test_holds_at_max_rate() -> None:
    system = FakeSystem(capacity=1e9)
    result = search(system, max_rate=5000).run()
    assert result.outcome == "at_max_rate" and result.lo == 5000 and result.hi is None
    assert max(r for r, _, _ in system.calls) == 5000
    assert result.confirmed


def test_budget_stops_before_a_trial_that_would_not_fit() -> None:
    system = FakeSystem(capacity=10_000, overhead_s=2.0)
    result = search(system, max_time_s=40).run()  # 7 s per search trial: 5 fit
    assert result.outcome == "budget" and not result.confirmed
    assert system.now <= 40
    assert len(system.calls) == 5
    assert result.lo == 8000 and result.hi == 16000  # the best bracket so far
