"""The benchmark suite (``catga-bench bench``): structure of its results, not speed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from catga_bench.bench.embedded import EmbeddedResult, EmbeddedStep, embedded_step
from catga_bench.bench.micro import (
    BENCH_NAMES,
    LIMIT_PUBLISH_100,
    LIMIT_SEND,
    LIMIT_SEND_FULL,
    Budget,
    bench_breaker,
    bench_metrics,
    bench_publish,
    bench_send,
    bench_send_full,
    main,
)
from catga_bench.bench.timing import Figure, LoopFn, Section, compare, loop_kind, run_on_loop

REPEATS = 2


def _sane(fig: Figure) -> None:
    assert fig.floor_ns > 0, fig
    assert math.isfinite(fig.ratio)
    assert fig.ratio == pytest.approx(fig.ns / fig.floor_ns)
    assert len(fig.samples_ns) == len(fig.floor_samples_ns) == REPEATS
    if fig.limit is None:
        assert fig.passed is None
    else:
        assert fig.passed == (fig.ratio <= fig.limit)
    d = fig.to_dict()
    assert set(d) >= {"ns", "floor_ns", "ratio", "limit", "passed", "label", "floor_label"}


def _positive(fig: Figure) -> None:
    _sane(fig)
    assert fig.ns > 0
    assert fig.ratio > 0


def test_compare_interleaves_and_returns_ns_per_iteration() -> None:
    calls: list[tuple[str, int]] = []

    def make(name: str) -> LoopFn:
        async def body(n: int) -> None:
            calls.append((name, n))

        return body

    res = run_on_loop(compare({"a": make("a"), "b": make("b")}, {"a": 10, "b": 20}, 3))
    assert set(res) == {"a", "b"}
    assert all(len(v) == 3 and all(x >= 0 for x in v) for v in res.values())
    # one warm-up each (a fifth of the count), then a, b, a, b, a, b
    assert calls[:2] == [("a", 2), ("b", 4)]
    assert calls[2:] == [("a", 10), ("b", 20)] * 3
    with pytest.raises(ValueError):
        run_on_loop(compare({"a": make("a")}, 1, 0))


def test_send_figure() -> None:
    section = run_on_loop(bench_send(300, REPEATS))
    fig = section.figure("send")
    _positive(fig)
    assert fig.limit == LIMIT_SEND


def test_send_full_figure_and_scrape_cost() -> None:
    section = run_on_loop(bench_send_full(300, REPEATS, scrapes=3))
    fig = section.figure("send_full")
    _positive(fig)
    assert fig.limit == LIMIT_SEND_FULL
    assert section.info["scrape_us"] > 0
    assert section.info["scrape_bytes"] > 0


def test_publish_figures() -> None:
    section = run_on_loop(bench_publish(400, REPEATS, fanout=100))
    names = [f.name for f in section.figures]
    assert names == ["publish_1", "publish_1_qos1", "publish_100", "publish_100_qos1"]
    for f in section.figures:
        _positive(f)
    assert section.figure("publish_100").limit == LIMIT_PUBLISH_100
    assert section.figure("publish_1").limit is None
    assert "100 handlers" in section.figure("publish_100").floor_label


def test_metrics_figures() -> None:
    section = run_on_loop(bench_metrics(300, REPEATS))
    for name in ("send_timing_false", "send_timing_true", "prom_counter_inc",
                 "prom_histogram_observe", "prom_per_message", "bucket_observe"):
        _positive(section.figure(name))
    cost = section.figure("timing_cost")  # a difference: may be <= 0 on a noisy machine
    _sane(cost)
    assert all(f.limit is None for f in section.figures)


def test_breaker_figures() -> None:
    section = run_on_loop(bench_breaker(400, REPEATS))
    _positive(section.figure("catga"))
    # purgatory is a [dev] dependency: the comparison must run, not skip
    assert section.skipped is None
    _positive(section.figure("purgatory"))
    _positive(section.figure("purgatory_get"))
    assert section.info["purgatory_reused_over_catga"] > 0


def test_figure_pass_flag_follows_limit() -> None:
    assert Figure("x", "x", 50.0, "f", 10.0, limit=5.0).passed is True
    assert Figure("x", "x", 51.0, "f", 10.0, limit=5.0).passed is False
    assert Figure("x", "x", 51.0, "f", 10.0).passed is None
    with pytest.raises(KeyError):
        Section("s", "s").figure("missing")


def _step(offered: float, achieved: float, p99: float | None) -> EmbeddedStep:
    return EmbeddedStep(offered, 1.0, int(offered), int(achieved), 0, achieved, 0.1, p99, p99)


def test_embedded_max_stops_at_first_unsustained_step() -> None:
    ok, slow, short = _step(1000, 990, 5.0), _step(2000, 1990, 150.0), _step(3000, 2000, 1.0)
    assert ok.sustained and not slow.sustained and not short.sustained
    assert EmbeddedResult([ok, _step(1500, 1500, 2.0), slow], 1.0).max_sustainable == 1500
    assert EmbeddedResult([slow], 1.0).max_sustainable is None
    capped = EmbeddedResult([ok], 1.0)
    assert capped.capped and capped.max_sustainable == 1000
    assert capped.to_dict()["max_sustainable_rate"] == 1000


def test_embedded_step_reaches_a_low_offered_rate() -> None:
    step = run_on_loop(embedded_step(500, 1.0))
    assert step.offered == 500
    assert step.achieved == pytest.approx(500, rel=0.2)
    assert step.completed > 0 and step.failed == 0
    assert step.p99_ms is not None and step.p99_ms >= 0
    assert step.sustained == (step.achieved >= 0.95 * 500 and step.p99_ms < 100)


def test_main_quick_subset_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = main(["--quick", "--only", "send,publish", "--json", str(out)])
    assert code in (0, 1)
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert set(doc) >= {"python", "loop", "quick", "repeats", "benchmarks", "limits", "passed",
                        "embedded", "comparison_note"}
    assert doc["quick"] is True and doc["repeats"] == 3
    assert doc["loop"] == loop_kind()
    assert set(doc["benchmarks"]) == {"send", "publish"}
    assert doc["embedded"] is None
    assert {row["name"] for row in doc["limits"]} == {"send", "publish_100"}
    for row in doc["limits"]:
        assert row["floor_ns"] > 0 and row["ratio"] > 0
        assert row["passed"] == (row["ratio"] <= row["limit"])
    assert doc["passed"] == all(row["passed"] for row in doc["limits"])
    assert code == (0 if doc["passed"] else 1)
    send = doc["benchmarks"]["send"]["figures"]["send"]
    assert send["floor_label"] == "await handler(msg)"


def test_main_rejects_unknown_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--only", "send,nope"])
    assert exc.value.code == 2
    assert "nope" in capsys.readouterr().err


def test_budgets() -> None:
    quick, full = Budget.for_run(True), Budget.for_run(False)
    assert quick.repeats == 3 and full.repeats == 5
    assert quick.step_s == 3.0 and full.step_s == 5.0
    assert set(BENCH_NAMES) == {"send", "send_full", "publish", "metrics", "breaker", "embedded"}
