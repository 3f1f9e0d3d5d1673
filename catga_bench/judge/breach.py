"""Per-second SLO breaches: which seconds of a run broke the latency or error targets.

One definition, used twice: by the harness to stop a trial early after N seconds of sustained
breach (``catga_bench.harness.breach_watch``), and by ``catga-bench capacity`` for the final
trials' *exceed ratio* (breached trial-seconds / trial-seconds), after MLRsearch (RFC 9971,
"exceed ratio" of trial durations; here counted per second of the timeline).

A second *breaches* when the generator sent in it and:

* its P99 latency (the timeline's per-second histogram, log buckets 10 % wide, so a value is
  read at most 10 % high) exceeds the P99 limit, or
* its failed / completed ratio exceeds the error-ratio limit, or
* nothing completed in it at all (a stalled system shows no latency: it must not look clean).

Seconds in which nothing was sent (before the first message, the drain) are not trial-seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from catga_bench.judge.values import as_list, as_number


@dataclass(frozen=True)
class BreachLimits:
    """The per-second limits: ``p99_ms`` (ms) and ``max_error_ratio`` (0..1); None: not
    judged."""

    p99_ms: float | None
    max_error_ratio: float | None

    @classmethod
    def from_slo_rows(cls, rows: Sequence[Any]) -> BreachLimits:
        """The limits of a report's ``slo`` rows (``p99_latency``, ``max_error_ratio``)."""
        p99 = err = None
        for row in rows:
            if not isinstance(row, dict):
                continue
            if row.get("name") == "p99_latency":
                p99 = as_number(row.get("limit"))
            elif row.get("name") == "max_error_ratio":
                err = as_number(row.get("limit"))
        return cls(p99, err)


def second_breached(limits: BreachLimits, *, sent: int, completed: int, errors: int,
                    p99_ms: float | None) -> bool | None:
    """Whether one second breached; None when nothing was sent in it (not a trial-second)."""
    if sent <= 0:
        return None
    if completed <= 0:
        return True
    if limits.p99_ms is not None and p99_ms is not None and p99_ms > limits.p99_ms:
        return True
    return limits.max_error_ratio is not None and errors / completed > limits.max_error_ratio


def breach_flags(timeline: dict[str, Any], limits: BreachLimits) -> list[bool | None]:
    """One flag per timeline second (a report's ``timeline``: lists ``sent``, ``completed``,
    ``errors``, ``p99_ms``): True breached, False clean, None nothing sent."""
    sent, done = as_list(timeline.get("sent")), as_list(timeline.get("completed"))
    errors, p99 = as_list(timeline.get("errors")), as_list(timeline.get("p99_ms"))

    def at(values: list[Any], i: int) -> float | None:
        return as_number(values[i]) if i < len(values) else None

    return [second_breached(limits, sent=int(at(sent, i) or 0), completed=int(at(done, i) or 0),
                            errors=int(at(errors, i) or 0), p99_ms=at(p99, i))
            for i in range(len(sent))]


def breached_seconds(timeline: dict[str, Any], limits: BreachLimits) -> tuple[int, int]:
    """(breached seconds, trial-seconds) of a report's timeline."""
    flags = [f for f in breach_flags(timeline, limits) if f is not None]
    return sum(flags), len(flags)
