"""The harness's early stop (catga_bench/harness/breach_watch.py): N finished seconds of
sustained breach stop the run, one clean second or the unfinished current second do not, and
the report is marked ``stopped_early``; the hidden option is validated."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from catga_bench.errors import ConfigError
from catga_bench.generator.timeline import Timeline
from catga_bench.harness.breach_watch import BreachWatch
from catga_bench.harness.options import parse_options
from catga_bench.judge.breach import BreachLimits

NOW = 1_000_000


def rows(latencies_ms: list[float | None], *, errors: int = 0) -> dict[int, dict[str, Any]]:
    """One row per second ending just before NOW: 100 sent, 100 completed at the latency
    (None: nothing completed)."""
    tl = Timeline()
    start = NOW - len(latencies_ms)
    for i, lat in enumerate(latencies_ms):
        r = tl.row(start + i)
        r["sent"] = 100
        if lat is not None:
            r["completed"] = 100
            r["errors"] = errors
            for _ in range(100):
                tl.add_latency(start + i, lat)
    return tl.rows


def watch(seconds: int = 5) -> BreachWatch:
    return BreachWatch(seconds, BreachLimits(p99_ms=100, max_error_ratio=0.0))


def test_five_breached_seconds_are_sustained() -> None:
    w = watch()
    assert w.sustained(rows([5, 500, 500, 500, 500, 500]), NOW)
    assert w.breached_from_s == NOW - 5


def test_one_clean_second_in_the_window_is_not() -> None:
    assert not watch().sustained(rows([500, 500, 5, 500, 500]), NOW)


def test_too_few_seconds_yet() -> None:
    assert not watch().sustained(rows([500, 500, 500, 500]), NOW)


def test_stalls_and_errors_breach_too() -> None:
    assert watch(3).sustained(rows([None, None, None]), NOW)
    assert watch(3).sustained(rows([5, 5, 5], errors=1), NOW)
    assert not watch(3).sustained(rows([5, 5, 5]), NOW)


def test_the_current_second_is_left_out() -> None:
    r = rows([500, 500, 500, 500, 500])
    r[NOW] = {**r[NOW - 1], "lat": {}}  # the second in progress: not judged
    assert watch().sustained(r, NOW)
    assert not watch().sustained(r, NOW + 1)  # one second later it is, and it is empty


def test_watch_stops_the_run_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import gevent

    monkeypatch.setattr(gevent, "sleep", lambda s: None)
    monkeypatch.setattr("catga_bench.harness.breach_watch.time.time", lambda: NOW + 0.5)
    stops: list[int] = []
    checks = iter([True, True, True, False])
    w = watch()
    w.watch(lambda: rows([500] * 6), lambda: stops.append(1), lambda: next(checks))
    assert stops == [1] and w.stopped_at_s == NOW + 0.5
    report: dict[str, Any] = {"notes": []}
    w.annotate(report)
    assert report["stopped_early"]["after_breach_s"] == 5 and "stopped early" in report["notes"][0]


def test_an_unstopped_run_is_marked_null() -> None:
    report: dict[str, Any] = {}
    watch().annotate(report)
    assert report["stopped_early"] is None


def test_hidden_option_parsed_and_checked() -> None:
    assert parse_options(SimpleNamespace(catga_stop_on_breach_s="5")).stop_on_breach_s == 5
    assert parse_options(SimpleNamespace()).stop_on_breach_s == 0
    with pytest.raises(ConfigError, match="--catga-stop-on-breach-s"):
        parse_options(SimpleNamespace(catga_stop_on_breach_s="-1"))


def test_a_second_finish_waits_for_the_first() -> None:
    """The early stop's quit judges the run in one greenlet while Locust's -t timer quits in
    another: the second must not go on to stop the loop under the first's drain. (gevent only:
    importing the Locust plugin here would monkey-patch this test process.)"""
    import gevent

    from catga_bench.harness.once import Once

    events: list[str] = []

    def slow_finish() -> None:
        events.append("judging")
        gevent.sleep(0.2)
        events.append("judged")

    once = Once(slow_finish)

    def second() -> None:
        gevent.sleep(0.05)
        once()
        events.append("second returned")

    gevent.joinall([gevent.spawn(once), gevent.spawn(second)], timeout=5)
    assert events == ["judging", "judged", "second returned"] and once.started
