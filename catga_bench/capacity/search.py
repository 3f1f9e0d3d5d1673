"""The capacity search, after FD.io CSIT's MLRsearch (RFC 9971), as pure logic: it calls a
trial function and a clock and never runs anything itself, so it is tested with fakes.

1. **Grow**: from ``start_rate``, double while trials pass (up to ``max_rate``); when the first
   trial fails, halve until one passes (down to ``min_rate``).
2. **Narrow**: bisect ``[lo, hi)`` on a log scale (the geometric mean) until
   ``hi / lo - 1 <= width``.
3. **Confirm** ``lo`` with final trials whose lengths sum to the goal duration (default
   3 x 20 s). The *exceed ratio* is breached trial-seconds / trial-seconds over them
   (:attr:`Trial.exceeded_s`); ``lo`` is accepted when it is <= ``exceed_ratio`` (RFC 9971's
   default 0.5). Otherwise ``lo`` becomes the new ``hi`` and the lower bound steps down by the
   width (``[hi / (1 + width), hi)``) and is confirmed again. The confirmation stops as soon as
   its outcome is decided against it (breached seconds already over the ratio of the goal).

An *invalid* trial (the generator did not offer the rate) is an upper end that says
"generator": the search cannot look above it, and the result says so (``hi_kind``), never
counting it as the system's failure.

The budget (``max_time_s``) is checked before each trial with the trial's expected cost (its
length plus the measured start-up overhead): a trial that would not fit is not started, and
the result is the best bracket so far (outcome ``budget``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from catga_bench.capacity.model import Phase, SearchResult, SearchSettings, Trial

#: no search offers more than this, whatever --max-rate says
HARD_MAX_RATE = 10_000_000.0
#: the comparisons of widths allow this much floating-point slack
EPS = 1e-9

TrialFn = Callable[[float, float, Phase], Trial]


class BudgetExhausted(Exception):
    """The next trial would not fit in the budget."""


@dataclass
class _State:
    lo: float | None = None
    hi: float | None = None
    hi_kind: str | None = None
    #: the last confirmation: exceed ratio, final trials passed, final trials run
    ratio: float | None = None
    passes: int = 0
    count: int = 0

    def failed(self, trial: Trial) -> None:
        if self.hi is None or trial.rate <= self.hi:
            self.hi = trial.rate
            self.hi_kind = "generator" if trial.verdict == "INVALID" else "system"


class CapacitySearch:
    """Runs the search with ``trial(rate, seconds, phase) -> Trial`` and ``clock() -> seconds
    elapsed since the search began``.

    Raises (from :meth:`run`): whatever ``trial`` raises (an environment failure ends the
    search; the caller reports it).
    """

    def __init__(self, settings: SearchSettings, trial: TrialFn, clock: Callable[[], float],
                 phase: Phase = "search") -> None:
        if settings.start_rate <= 0 or settings.width <= 0:
            raise ValueError("start_rate and width must be > 0")
        self.s = settings
        self._trial = trial
        self._clock = clock
        self._phase: Phase = phase
        self.trials: list[Trial] = []
        self.state = _State()

    # ----------------------------------------------------------------- running trials
    def _overhead(self) -> float:
        costs = [t.wall_s - t.planned_s for t in self.trials if not t.stopped_early
                 and t.wall_s > 0]
        return max(0.0, sum(costs) / len(costs)) if costs else self.s.overhead_s

    def _run(self, rate: float, seconds: float, phase: Phase) -> Trial:
        if self._clock() + seconds + self._overhead() > self.s.max_time_s:
            raise BudgetExhausted
        trial = self._trial(rate, seconds, phase)
        self.trials.append(trial)
        return trial

    @property
    def _max(self) -> float:
        return min(self.s.max_rate or HARD_MAX_RATE, HARD_MAX_RATE)

    def _narrow_enough(self) -> bool:
        st = self.state
        assert st.lo is not None and st.hi is not None
        return st.hi / st.lo - 1 <= self.s.width + EPS

    # ----------------------------------------------------------------- the search
    def run(self) -> SearchResult:
        """Search, then confirm; returns the result (never raises BudgetExhausted)."""
        try:
            end = self._grow()
            if end is not None:
                return end
            self._narrow()
            return self._confirm()
        except BudgetExhausted:
            return self._result("budget", note="the budget (--max-time) ran out: the bracket "
                                               "is the best found so far")

    def _grow(self) -> SearchResult | None:
        st = self.state
        rate = min(max(self.s.start_rate, self.s.min_rate), self._max)
        while True:
            t = self._run(rate, self.s.trial_s, self._phase)
            if t.verdict != "PASS":
                st.failed(t)
                break
            st.lo = rate
            if rate >= self._max:
                return self._confirm(at_max=True)
            rate = min(rate * 2, self._max)
        if st.lo is not None:
            return None
        rate = st.hi / 2 if st.hi is not None else self.s.min_rate
        while rate >= self.s.min_rate - EPS:
            t = self._run(rate, self.s.trial_s, self._phase)
            if t.verdict == "PASS":
                st.lo = rate
                return None
            st.failed(t)
            rate /= 2
        if st.hi_kind == "generator":
            return self._result("generator", note=f"the generator could not offer even "
                                                  f"{st.hi:,.0f} msg/s: no system figure")
        return self._result("below_min_rate", note=f"the SLO failed even at {st.hi:,.0f} "
                                                   f"msg/s (--min-rate {self.s.min_rate:g})")

    def _narrow(self) -> None:
        st = self.state
        while not self._narrow_enough():
            assert st.lo is not None and st.hi is not None
            mid = math.sqrt(st.lo * st.hi)
            t = self._run(mid, self.s.trial_s, self._phase)
            if t.verdict == "PASS":
                st.lo = mid
            else:
                st.failed(t)

    def _confirm(self, at_max: bool = False) -> SearchResult:
        st = self.state
        outcome = "at_max_rate" if at_max else "bracket"
        if self.s.final_trials <= 0:
            return self._result(outcome, note="no final trials asked: the lower bound is "
                                              "unconfirmed")
        while True:
            assert st.lo is not None
            ratio, passes, count = self._final_trials(st.lo)
            st.ratio, st.passes, st.count = ratio, passes, count
            if ratio <= self.s.exceed_ratio + EPS:
                return self._result(outcome, confirmed=True,
                                    note=f"{passes} of {count} final trials passed; exceed "
                                         f"ratio {ratio:.2f} <= {self.s.exceed_ratio:g}")
            finals = self.trials[-count:]
            invalid = any(t.verdict == "INVALID" for t in finals)
            st.hi, st.hi_kind = st.lo, "generator" if invalid else "system"
            outcome = "bracket"
            lower = st.hi / (1 + self.s.width)
            if lower < self.s.min_rate - EPS:
                return self._result("below_min_rate",
                                    note=f"the final trials failed down to {st.hi:,.0f} msg/s")
            st.lo = lower

    def _final_trials(self, rate: float) -> tuple[float, int, int]:
        """Run the final trials at ``rate``: (exceed ratio, passed, ran); stops once the
        breached seconds exceed the ratio of the goal duration (decided against)."""
        goal = self.s.final_trials * self.s.final_trial_s
        exceeded = counted = 0.0
        passes = count = 0
        for _ in range(self.s.final_trials):
            t = self._run(rate, self.s.final_trial_s, "final")
            count += 1
            passes += t.verdict == "PASS"
            exceeded += t.exceeded_s
            counted += t.counted_s
            if exceeded > self.s.exceed_ratio * goal:
                return max(exceeded / max(counted, 1e-9), exceeded / goal), passes, count
        return exceeded / max(counted, 1e-9), passes, count

    def _result(self, outcome: str, *, confirmed: bool = False, note: str = "") -> SearchResult:
        st = self.state
        return SearchResult(outcome=outcome,  # type: ignore[arg-type]
                            lo=st.lo, hi=st.hi,
                            hi_kind=st.hi_kind,  # type: ignore[arg-type]
                            confirmed=confirmed, exceed_ratio=st.ratio, final_passes=st.passes,
                            final_count=st.count, trials=list(self.trials), note=note)
