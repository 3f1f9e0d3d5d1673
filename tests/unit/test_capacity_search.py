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
        self.stops: list[int | None] = []

    def clock(self) -> float:
        return self.now

    def trial(self, rate: float, seconds: float, phase: Phase,
              stop_after_s: int | None = None) -> Trial:
        self.calls.append((rate, seconds, phase))
        self.stops.append(stop_after_s)
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
    # 3 x 20 s at the lower bound, then at the upper bound until it is decided against:
    # 2 x 20 s all breached > 0.5 x 60 s
    assert finals == [(result.lo, 20.0)] * 3 + [(result.hi, 20.0)] * 2
    assert (result.final_passes, result.final_count, result.exceed_ratio) == (3, 3, 0.0)
    assert result.hi_confirmed and result.hi_exceed_ratio == pytest.approx(1.0)


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
    final_rates = list(dict.fromkeys(r for r, _, phase in system.calls if phase == "final"))
    assert len(final_rates) >= 2  # stepped down at least once
    # each rejection steps down, by the width and then by twice the last step (RFC 9971's
    # external search), until a load holds; then final trials bisect to the width
    steps = [hi / lo for hi, lo in itertools.pairwise(final_rates) if lo < hi]
    assert steps[:2] == [pytest.approx(1.05), pytest.approx(1.10)]
    assert result.hi_confirmed
    # a rejected confirmation stops as soon as it is decided: 0.8 x 20 s > 0.5 x 60 s after 2
    first = [p for r, _, p in system.calls if p == "final" and r == final_rates[0]]
    assert len(first) == 2


def test_a_confirmed_bracket_wider_than_the_width_when_the_budget_ends_is_no_answer() -> None:
    # far off: the short trials pass up to 10,000, the long ones hold only below 6,000
    system = FakeSystem(capacity=10_000, final_breach=lambda r: 0.0 if r < 6000 else 0.8)
    full = search(FakeSystem(capacity=10_000,
                             final_breach=lambda r: 0.0 if r < 6000 else 0.8)).run()
    assert full.outcome == "bracket" and full.width is not None and full.width <= 0.05 + 1e-9
    assert full.lo is not None and full.lo < 6000 <= (full.hi or 0)
    # stop the same search once the first load held (its bracket still wider than 5 %)
    first_held = next(i for i, t in enumerate(full.trials)
                      if t.phase == "final" and t.rate < 6000)
    cost = sum(t.planned_s + 2 for t in full.trials[:first_held + 3])
    result = search(system, max_time_s=cost + 5).run()
    assert result.outcome == "budget" and result.confirmed and result.hi_confirmed
    assert result.width is not None and result.width > 0.05


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


def test_an_upper_bound_that_holds_its_final_trials_steps_up() -> None:
    # one short trial at 10,000 fails (a spike), but the load holds through the goal up to
    # 10,800: hi is not taken from the short trial alone
    system = FakeSystem(capacity=10_000, final_breach=lambda r: 0.0 if r < 10_800 else 0.9)
    result = search(system).run()
    assert result.outcome == "bracket" and result.confirmed and result.hi_confirmed
    assert result.lo is not None and result.hi is not None
    assert result.lo < 10_800 <= result.hi
    assert result.hi / result.lo == pytest.approx(1.05)
    final_rates = [r for r, _, phase in system.calls if phase == "final"]
    assert len(set(final_rates)) >= 3  # lo, the first hi (held, became lo), the next hi


def test_a_rejected_lower_bound_is_a_confirmed_upper_bound_without_more_trials() -> None:
    system = FakeSystem(capacity=10_000, final_breach=lambda r: 0.0 if r < 9000 else 0.8)
    result = search(system).run()
    assert result.hi_confirmed and result.hi_exceed_ratio is not None
    assert result.hi_exceed_ratio > 0.5
    finals_at_hi = [r for r, _, p in system.calls if p == "final" and r == result.hi]
    assert len(finals_at_hi) == 2  # those that rejected it as a lower bound, no more


def test_budget_out_before_the_upper_bound_is_confirmed_keeps_the_confirmed_lower() -> None:
    system = FakeSystem(capacity=10_000)
    full = search(FakeSystem(capacity=10_000)).run()
    # room for the search and the 3 finals at lo, not for a final trial at hi
    lo_done = sum(s + 2 for r, s, p in [(t.rate, t.planned_s, t.phase) for t in full.trials]
                  if not (p == "final" and r == full.hi))
    result = search(system, max_time_s=lo_done + 10).run()
    assert result.outcome == "bracket" and result.confirmed and not result.hi_confirmed
    assert (result.lo, result.hi) == (full.lo, full.hi)
    assert "hi rests on a search trial" in result.note


def test_a_final_trial_may_end_early_only_once_its_confirmation_is_decided() -> None:
    # 0.4 of each final trial's seconds breach: 8 of 20; the goal allows 30 of 60
    system = FakeSystem(capacity=10_000, final_breach=lambda r: 0.4)
    search(system).run()
    finals = [stop for (_, _, p), stop in zip(system.calls, system.stops, strict=True)
              if p == "final"]
    # before each: 30 - 0, 30 - 8, 30 - 16 breached seconds may still come; one more decides
    assert finals[:3] == [31, 23, 15]
    searches = [stop for (_, _, p), stop in zip(system.calls, system.stops, strict=True)
                if p == "search"]
    assert set(searches) == {None}  # search trials: the runner's own --stop-on-breach-s


def test_an_invalid_upper_end_is_confirmed_and_bisected_like_any_other() -> None:
    # the generator cannot offer 8,000 for a whole final trial: the search's first lo (from a
    # short trial) is rejected as invalid, the step down doubles, and the confirmed bracket
    # is bisected to the width although its upper end is the generator's
    class Saturating(FakeSystem):
        def trial(self, rate: float, seconds: float, phase: Phase,
                  stop_after_s: int | None = None) -> Trial:
            if phase == "final" and rate >= 7000:
                self.calls.append((rate, seconds, phase))
                self.stops.append(stop_after_s)
                self.now += seconds + self.overhead_s
                return Trial(rate=rate, phase=phase, planned_s=seconds, verdict="INVALID",
                             seconds=int(seconds), wall_s=seconds + self.overhead_s)
            return super().trial(rate, seconds, phase, stop_after_s)

    result = search(Saturating(capacity=10_000)).run()
    assert result.outcome == "bracket" and result.confirmed and result.hi_confirmed
    assert result.hi_kind == "generator"
    assert result.width is not None and result.width <= 0.05 + 1e-9
    assert result.lo is not None and result.lo < 7000 <= (result.hi or 0)


def test_budget_out_after_a_step_up_knows_nothing_above_lo() -> None:
    # hi held its final trials and became lo; the step up's rate never ran: no upper end
    system = FakeSystem(capacity=10_000, final_breach=lambda r: 0.0 if r < 10_800 else 0.9)
    full = search(FakeSystem(capacity=10_000,
                             final_breach=lambda r: 0.0 if r < 10_800 else 0.9)).run()
    finals = [t for t in full.trials if t.phase == "final"]
    stepped = next(i for i, t in enumerate(full.trials)
                   if t.phase == "final" and t.rate > finals[0].rate * 1.06)
    cost = sum(t.planned_s + 2 for t in full.trials[:stepped])
    result = search(system, max_time_s=cost + 5).run()
    assert result.outcome == "budget" and result.confirmed
    assert result.hi is None and result.lo is not None and result.lo > finals[0].rate
    assert "capacity >= lo" in result.note


def test_a_lower_bound_the_generator_could_not_offer_steps_below_what_it_did_offer() -> None:
    # the short trials pass up to 10,000; for the length of final trials the generator
    # manages only 7,000 msg/s (INVALID above, having offered 7,000); the system holds anything
    calls: list[tuple[float, Phase]] = []
    now = [0.0]

    def trial(rate: float, seconds: float, phase: Phase, stop: int | None = None) -> Trial:
        calls.append((rate, phase))
        now[0] += seconds + 2
        if phase == "final" and rate > 7000:
            return Trial(rate=rate, phase=phase, planned_s=seconds, verdict="INVALID",
                         seconds=int(seconds), breached=int(seconds), sent_rate=7000.0)
        verdict: Verdict = "PASS" if phase == "final" or rate < 10_000 else "FAIL"
        return Trial(rate=rate, phase=phase, planned_s=seconds, verdict=verdict,
                     seconds=int(seconds), breached=0 if verdict == "PASS" else int(seconds),
                     sent_rate=rate)

    settings = SearchSettings(start_rate=1000.0, max_time_s=10_000.0)
    result = CapacitySearch(settings, trial, lambda: now[0]).run()
    finals = list(dict.fromkeys(r for r, phase in calls if phase == "final"))
    first = finals[0]
    assert first > 9000  # the search's lower bound, rejected as invalid
    # the next lower bound is the first of the doubling steps (5 %, 10 %, 20 %, 40 % ...)
    # that is not above the 7,000 offered: the steps above it are skipped, not tried
    steps = [first / (1 + 0.05 * 2 ** j) for j in range(8)]
    assert finals[1] == pytest.approx(next(r for r in steps if r <= 7000))
    assert finals[1] < 7000 and first / finals[1] > 1.15
    assert result.outcome == "bracket" and result.confirmed and result.hi_confirmed
    assert result.lo is not None and result.hi is not None
    assert result.lo <= 7000 < result.hi and result.hi_kind == "generator"
    assert result.hi / result.lo - 1 <= 0.05 + 1e-9
