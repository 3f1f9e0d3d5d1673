"""The capacity search's values: one trial's outcome, the search's settings and its result.

Rates are messages per second offered to the whole system; durations are seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Verdict = Literal["PASS", "FAIL", "INVALID"]
Phase = Literal["search", "final", "ceiling"]
#: how a search ended (see :class:`SearchResult`)
Outcome = Literal["bracket", "at_max_rate", "below_min_rate", "budget", "generator"]


@dataclass(frozen=True)
class Trial:
    """One trial: a run at a fixed offered ``rate`` for ``planned_s`` seconds.

    Attributes:
        verdict: PASS (the SLO held and the system handled >= 98 % of the rate), FAIL (it did
            not), INVALID (the generator did not offer >= 98 % of the rate: the generator's
            limit, never the system's).
        reason: why, in one line.
        seconds: trial-seconds measured (timeline seconds in which messages were sent).
        breached: of those, seconds that breached the SLO (:mod:`catga_bench.judge.breach`).
        whole_breach: the trial failed a target that is not per second (lost, duplicates, the
            achieved rate): every planned second counts as breached.
        stopped_early: the harness stopped it after sustained breach.
        p99_ms, achieved_rate, sent_rate: from its report (None when not measured).
        wall_s: wall-clock seconds the trial took, start-up included.
        report_dir: the trial's own report folder.
    """

    rate: float
    phase: Phase
    planned_s: float
    verdict: Verdict
    reason: str = ""
    seconds: int = 0
    breached: int = 0
    whole_breach: bool = False
    stopped_early: bool = False
    p99_ms: float | None = None
    achieved_rate: float | None = None
    sent_rate: float | None = None
    wall_s: float = 0.0
    report_dir: str | None = None

    @property
    def counted_s(self) -> float:
        """Seconds this trial counts for in an exceed ratio: the planned length when it was
        stopped early (it stopped *because* it kept breaching), else the seconds measured."""
        return self.planned_s if self.stopped_early or self.seconds == 0 else self.seconds

    @property
    def exceeded_s(self) -> float:
        """Breached seconds for the exceed ratio: all of them for a whole-run breach or an
        invalid trial; an early stop's unrun seconds count as breached."""
        if self.whole_breach or self.verdict == "INVALID":
            return self.counted_s
        if self.stopped_early:
            return self.breached + max(0.0, self.planned_s - self.seconds)
        return float(self.breached)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exceeded_s": self.exceeded_s, "counted_s": self.counted_s}


@dataclass(frozen=True)
class SearchSettings:
    """What the search is asked (defaults: ``catga-bench capacity``'s).

    Attributes:
        start_rate: the first trial's rate (msg/s, > 0).
        max_rate: never offer more (None: no limit but ``HARD_MAX_RATE``).
        min_rate: never offer less; failing here ends the search (capacity < min_rate).
        trial_s: length of a search trial (s).
        final_trials, final_trial_s: the confirmation at each bound (RFC 9971's final
            trials: their lengths sum to the goal duration); 0 final trials: no confirmation.
        width: the bracket's target relative width: stop narrowing when hi / lo - 1 <= width.
        exceed_ratio: the confirmation passes when breached / counted final seconds <= this.
        max_time_s: the budget, wall-clock seconds for the whole search.
        overhead_s: first guess of a trial's start-up cost (updated from measured trials).
    """

    start_rate: float
    max_rate: float | None = None
    min_rate: float = 10.0
    trial_s: float = 5.0
    final_trials: int = 3
    final_trial_s: float = 20.0
    width: float = 0.05
    exceed_ratio: float = 0.5
    max_time_s: float = 360.0
    overhead_s: float = 5.0


@dataclass
class SearchResult:
    """A search's answer: capacity in ``[lo, hi)`` msg/s.

    Attributes:
        outcome: ``bracket`` (a bracket of the asked width), ``at_max_rate`` (held at
            ``max_rate``: capacity >= lo, no upper end), ``below_min_rate`` (failed even at
            ``min_rate``), ``budget`` (the budget ran out first: the best bracket so far),
            ``generator`` (the generator could not offer even the lowest rate tried).
        lo: the highest rate that passed (confirmed when ``confirmed``), or None.
        hi: the lowest rate that failed or was invalid above ``lo``, or None.
        hi_kind: ``system`` (hi failed the SLO) or ``generator`` (hi was invalid: the
            generator's limit, not the system's).
        confirmed: lo passed its final trials (exceed ratio <= the limit).
        exceed_ratio: of the last confirmation at lo (None: none ran).
        final_passes, final_count: the last confirmation's trials that passed / ran.
        hi_confirmed: hi was backed by final trials (their exceed ratio over the limit), not
            only by a search trial.
        hi_exceed_ratio: of those final trials at hi (None: none ran).
        trials: every trial, in order.
        note: one line on how the search ended.
    """

    outcome: Outcome
    lo: float | None = None
    hi: float | None = None
    hi_kind: Literal["system", "generator"] | None = None
    confirmed: bool = False
    exceed_ratio: float | None = None
    final_passes: int = 0
    final_count: int = 0
    hi_confirmed: bool = False
    hi_exceed_ratio: float | None = None
    trials: list[Trial] = field(default_factory=list)
    note: str = ""

    @property
    def width(self) -> float | None:
        """hi / lo - 1, or None without both ends."""
        if self.lo is None or self.hi is None or self.lo <= 0:
            return None
        return self.hi / self.lo - 1

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "lo": self.lo, "hi": self.hi, "hi_kind": self.hi_kind,
                "width": self.width, "confirmed": self.confirmed,
                "exceed_ratio": self.exceed_ratio, "final_passes": self.final_passes,
                "final_count": self.final_count, "hi_confirmed": self.hi_confirmed,
                "hi_exceed_ratio": self.hi_exceed_ratio, "note": self.note,
                "trials": [t.to_dict() for t in self.trials]}
