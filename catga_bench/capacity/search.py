"""The capacity search, after FD.io CSIT's MLRsearch (RFC 9971), as pure logic: it calls a
trial function and a clock and never runs anything itself, so it is tested with fakes.

1. **Grow**: from ``start_rate``, double while trials pass (up to ``max_rate``); when the first
   trial fails, halve until one passes (down to ``min_rate``).
2. **Narrow**: bisect ``[lo, hi)`` on a log scale (the geometric mean) until
   ``hi / lo - 1 <= width``.
3. **Confirm** ``lo`` with final trials whose lengths sum to the goal duration (default
   3 x 20 s). The *exceed ratio* is breached trial-seconds / trial-seconds over them
   (:attr:`Trial.exceeded_s`); ``lo`` is accepted when it is <= ``exceed_ratio`` (RFC 9971's
   default 0.5). Otherwise ``lo`` becomes the new (confirmed) ``hi`` and the lower bound steps
   down by the width (``[hi / (1 + width), hi)``), then by twice the last step after each
   further rejection, and is confirmed again; when the generator could not offer the rate
   (INVALID final trials), steps to rates above the most it did offer are skipped. The
   confirmation stops as soon as its outcome is decided against it (breached seconds already
   over the ratio of the goal), and a final trial may end early only then (see
   :meth:`CapacitySearch._final_trials`).
4. **Confirm** ``hi`` the same way (RFC 9971 backs both bounds by the goal duration): final
   trials at ``hi`` whose exceed ratio is over the limit make it a confirmed upper bound (a
   ``hi`` that came from a rejected confirmation of ``lo`` already is one). When ``hi`` holds
   through all of them it becomes the (confirmed) ``lo`` and the upper bound steps up by the
   width. Without this, ``hi`` rests on one short search trial, and one spiky second there
   puts the bracket low; brackets of repeated searches then need not overlap. When the budget
   runs out first, ``lo`` stays confirmed and ``hi`` is reported as unconfirmed. A confirmed
   bracket wider than the width (after a doubled step down) is bisected with final trials.

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

#: ``trial(rate, seconds, phase, stop_after_s)``: run one trial; ``stop_after_s`` (None: the
#: runner's own setting) is how many consecutive breached seconds may end it early
TrialFn = Callable[[float, float, Phase, int | None], Trial]


def _offered_when_invalid(finals: list[Trial]) -> float | None:
    """The most the generator offered in the INVALID trials among ``finals`` (msg/s), or None
    when none was invalid or none measured it."""
    offered = [t.sent_rate for t in finals if t.verdict == "INVALID" and t.sent_rate]
    return max(offered) if offered else None


class BudgetExhausted(Exception):
    """The next trial would not fit in the budget."""


@dataclass
class _State:
    lo: float | None = None
    hi: float | None = None
    hi_kind: str | None = None
    #: the last confirmation at lo: exceed ratio, final trials passed, final trials run
    ratio: float | None = None
    passes: int = 0
    count: int = 0
    #: hi was backed by final trials (exceed ratio over the limit), and their ratio
    hi_confirmed: bool = False
    hi_ratio: float | None = None
    #: hi is a rate a search trial failed (else a step up's rate, not yet decided)
    hi_failed_search: bool = False

    def failed(self, trial: Trial) -> None:
        if self.hi is None or trial.rate <= self.hi:
            self.hi = trial.rate
            self.hi_kind = "generator" if trial.verdict == "INVALID" else "system"
            self.hi_confirmed, self.hi_ratio = False, None
            self.hi_failed_search = True

    def upper_bound(self, rate: float, ratio: float, finals: list[Trial]) -> None:
        """``rate`` failed its final trials (exceed ratio ``ratio``): a confirmed hi."""
        invalid = any(t.verdict == "INVALID" for t in finals)
        self.hi, self.hi_kind = rate, "generator" if invalid else "system"
        self.hi_confirmed, self.hi_ratio = True, ratio


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

    def _run(self, rate: float, seconds: float, phase: Phase,
             stop_after_s: int | None = None) -> Trial:
        if self._clock() + seconds + self._overhead() > self.s.max_time_s:
            raise BudgetExhausted
        trial = self._trial(rate, seconds, phase, stop_after_s)
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
        step = self.s.width
        while True:
            assert st.lo is not None
            ratio, passes, count = self._final_trials(st.lo)
            st.ratio, st.passes, st.count = ratio, passes, count
            if ratio <= self.s.exceed_ratio + EPS:
                if outcome == "at_max_rate":
                    return self._result(outcome, confirmed=True, note=self._lo_note())
                return self._confirm_hi()
            st.upper_bound(st.lo, ratio, self.trials[-count:])
            outcome = "bracket"
            # step down by the width, doubling the step after each further rejection (RFC
            # 9971's external search): a short trial's lucky pass may sit well above the load
            # that holds for the goal duration
            offered = _offered_when_invalid(self.trials[-count:])
            while True:
                lower = st.hi / (1 + step)
                step *= 2
                # the generator could not offer the rate: a step to a rate above what it did
                # offer would only be invalid again, at a final trial's cost; skipped (the
                # steps stay the doubling ones, whose brackets bisect to the width cleanly)
                if offered is None or lower <= offered or lower < self.s.min_rate:
                    break
            if lower < self.s.min_rate - EPS:
                return self._result("below_min_rate",
                                    note=f"the final trials failed down to {st.hi:,.0f} msg/s")
            st.lo = lower

    def _lo_note(self) -> str:
        st = self.state
        return (f"{st.passes} of {st.count} final trials at lo held; exceed ratio "
                f"{st.ratio:.2f} <= {self.s.exceed_ratio:g}")

    def _confirm_hi(self) -> SearchResult:
        """Back ``hi`` by final trials too (``lo`` is confirmed): step up while it holds;
        then bisect with final trials while the bracket is wider than the width (after a
        doubled step down)."""
        st = self.state
        while st.hi is not None:
            assert st.lo is not None
            if st.hi_confirmed and self._narrow_enough():
                break
            rate = st.hi if not st.hi_confirmed else math.sqrt(st.lo * st.hi)
            try:
                ratio, passes, count = self._final_trials(rate)
            except BudgetExhausted:
                if not st.hi_confirmed and not st.hi_failed_search:
                    # a step up's rate, not decided: nothing is known above lo
                    st.hi = st.hi_kind = None
                    return self._result("budget", confirmed=True,
                                        note=self._lo_note() + "; the budget ran out before "
                                        "a rate above lo was decided: capacity >= lo")
                if not st.hi_confirmed:
                    return self._result("bracket", confirmed=True,
                                        note=self._lo_note() + "; the budget ran out before "
                                        "the final trials at hi: hi rests on a search trial")
                return self._result("budget", confirmed=True,
                                    note=self._lo_note() + "; the budget (--max-time) ran "
                                    "out before the confirmed bracket was narrowed to the width")
            if ratio > self.s.exceed_ratio + EPS:
                st.upper_bound(rate, ratio, self.trials[-count:])
                continue
            # held through the whole goal: a confirmed lower bound
            st.lo, st.ratio, st.passes, st.count = rate, ratio, passes, count
            if rate == st.hi:  # hi held: the upper bound steps up by the width
                if st.lo >= self._max - EPS:
                    st.hi = st.hi_kind = None
                    return self._result("at_max_rate", confirmed=True, note=self._lo_note())
                st.hi = min(st.hi * (1 + self.s.width), self._max)
                st.hi_failed_search = False
        note = self._lo_note()
        if st.hi_confirmed and st.hi_ratio is not None:
            note += f"; at hi {st.hi_ratio:.2f} > {self.s.exceed_ratio:g}"
        return self._result("bracket", confirmed=True, note=note)

    def _final_trials(self, rate: float) -> tuple[float, int, int]:
        """Run the final trials at ``rate``: (exceed ratio, passed, ran); stops once the
        breached seconds exceed the ratio of the goal duration (decided against).

        A final trial may end early only when its outcome is decided (RFC 9971): after as
        many consecutive breached seconds as would take the confirmation over the ratio.
        Ending it after a fixed few seconds and counting the rest as breached would turn one
        slow patch of the host into a whole failed trial, and the confirmation would then say
        more about the host's worst ten seconds than about the load."""
        goal = self.s.final_trials * self.s.final_trial_s
        exceeded = counted = 0.0
        passes = count = 0
        for _ in range(self.s.final_trials):
            allowed = self.s.exceed_ratio * goal - exceeded
            decided_after = max(1, math.floor(allowed + EPS) + 1)
            t = self._run(rate, self.s.final_trial_s, "final", decided_after)
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
                            final_count=st.count, hi_confirmed=st.hi_confirmed,
                            hi_exceed_ratio=st.hi_ratio, trials=list(self.trials), note=note)
