"""Stop a run early after N seconds of sustained SLO breach (``--catga-stop-on-breach-s N``,
a hidden option ``catga-bench capacity`` passes to its trials).

Once a second the watcher reads the generator's live per-second timeline (the rows the
generator's loop thread fills; copied before reading, as the progress line does) and judges
the last N *finished* seconds with :func:`catga_bench.judge.breach.second_breached`. When each
of them breached, it quits the Locust runner: the run then stops as at the end of ``-t``, so the
report is still written, and :meth:`BreachWatch.annotate` marks it ``stopped_early``. This is
MLRsearch's (RFC 9971) early end of a trial whose outcome is already known: a trial far over
capacity need not run its whole length.

Only a process that generates load watches (a local run); in a distributed run the master has
no timeline until the end and the option is ignored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from catga_bench.generator.timeline import Timeline
from catga_bench.judge.breach import BreachLimits, second_breached

log = logging.getLogger("catga.bench")


class BreachWatch:
    """Judges the last ``seconds`` finished seconds of a live timeline.

    Args:
        seconds: how many consecutive breached seconds stop the run (>= 1).
        limits: the per-second P99 and error-ratio limits (the run's SLO).
    """

    def __init__(self, seconds: int, limits: BreachLimits) -> None:
        if seconds < 1:
            raise ValueError(f"seconds must be >= 1, got {seconds}")
        self.seconds = seconds
        self.limits = limits
        self.stopped_at_s: float | None = None
        self.breached_from_s: int | None = None

    def sustained(self, rows: dict[int, dict[str, Any]], now_s: int) -> bool:
        """Whether each of the ``seconds`` seconds before ``now_s`` (Unix seconds; the current,
        unfinished second is left out) breached. A second with no row or nothing sent is not
        a breach."""
        window = range(now_s - self.seconds, now_s)
        probe = Timeline()
        for second in window:
            row = rows.get(second)
            if row is None:
                return False
            try:  # the loop thread may be adding to this row right now
                probe.rows[second] = {**row, "lat": dict(row["lat"])}
            except RuntimeError:
                return False
        series = probe.series()
        for i in range(len(series["t_s"])):
            flag = second_breached(self.limits, sent=series["sent"][i],
                                   completed=series["completed"][i],
                                   errors=series["errors"][i], p99_ms=series["p99_ms"][i])
            if not flag:
                return False
        self.breached_from_s = window.start
        return True

    def watch(self, rows: Callable[[], dict[int, dict[str, Any]] | None],
              stop: Callable[[], None], running: Callable[[], bool]) -> None:
        """Check once a second while ``running()``; on a sustained breach call ``stop()`` once
        and return (run it in a greenlet: it sleeps with gevent)."""
        import gevent

        while running():
            gevent.sleep(1.0)
            current = rows()
            if current is None or not running():
                continue
            if self.sustained(current, int(time.time())):
                self.stopped_at_s = time.time()
                log.warning("catga-bench: stopping early: %d s of sustained SLO breach",
                            self.seconds)
                stop()
                return

    def annotate(self, report: dict[str, Any]) -> None:
        """Add ``stopped_early`` to the report (null when the run ran its full length) and a
        note when it stopped."""
        if self.stopped_at_s is None:
            report["stopped_early"] = None
            return
        report["stopped_early"] = {"after_breach_s": self.seconds,
                                   "breached_from_s": self.breached_from_s,
                                   "stopped_at_s": round(self.stopped_at_s, 3)}
        report.setdefault("notes", []).append(
            f"stopped early: each of {self.seconds} consecutive seconds breached the SLO "
            "(P99 over its limit, errors over their ratio, or nothing completed)")
