"""The release gate on the embedded core: every scenario passes its default targets here, and
the gate fails (exit 1) when the system is broken or a target cannot be met.

Each test runs Locust for real (a subprocess, 8-16 s). Durations are shortened from the 20-30 s
a user would run; the targets are the scenarios' defaults, unchanged.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

REPORT_KEYS = {
    "scenario", "transport", "qos", "duration_s", "offered_rate", "achieved_rate", "latency_ms",
    "sent", "handled", "lost", "duplicates", "handlers", "errors", "rejected", "timeouts",
    "breaker", "slo", "passed",
}


def test_high_fanout_passes_and_writes_three_reports(locust_run) -> None:
    run = locust_run("high_fanout", seconds=10)
    assert run.code == 0, run.output[-3000:]
    for name in ("report.json", "report.md", "report.html"):
        assert (run.report_dir / name).stat().st_size > 500
    r = run.report
    assert set(r) >= REPORT_KEYS
    assert set(r["latency_ms"]) >= {"p50", "p90", "p99", "p999", "max"}
    assert set(r["breaker"]) >= {"opened", "closed", "state"}
    assert r["passed"] is True and r["lost"] == 0
    assert len(r["handlers"]) == 120
    # every handler ran for every event
    assert {h["handled"] for h in r["handlers"].values()} == {r["sent"]}
    assert r["latency_ms"]["p99"] < 100


def test_same_run_with_impossible_p99_fails_with_exit_1(locust_run) -> None:
    run = locust_run("high_fanout", "--slo-p99-ms", "0.001", seconds=6)
    assert run.code == 1, run.output[-3000:]
    assert run.report["passed"] is False
    assert run.slo("p99_latency")["passed"] is False


def test_gate_catches_a_handler_that_blocks_the_loop(locust_run) -> None:
    """Gate sensitivity: the same scenario with a seeded defect (a handler blocks the event loop
    200 ms once a second) must fail on P99, while the clean build passes (test above)."""
    run = locust_run("high_fanout", seconds=8, env={"CATGA_BENCH_DEFECTS": "block_loop"})
    assert run.code == 1, run.output[-3000:]
    assert run.slo("p99_latency")["passed"] is False
    assert run.report["latency_ms"]["p99"] >= 100
    assert run.report["event_loop_lag_ms"]["max"] >= 150


def test_high_throughput_reaches_10k_msgs(locust_run) -> None:
    run = locust_run("high_throughput", seconds=12)
    assert run.code == 0, run.output[-3000:]
    r = run.report
    assert r["achieved_rate"] >= 10_000
    assert r["latency_ms"]["p99"] < 100


def test_slow_handlers_are_cut_and_do_not_stall_fast_messages(locust_run) -> None:
    run = locust_run("slow_handlers", seconds=10)
    assert run.code == 0, run.output[-3000:]
    r = run.report
    assert r["timeouts"] > 0
    assert r["streams"]["OrderPlaced"]["latency_ms"]["p99"] < 100
    # the slow stream's messages wait for their 1 s timeouts (and retries), never 5 s
    assert r["streams"]["ReportRequested"]["latency_ms"]["max"] < 5_000


def test_failing_handler_opens_and_closes_its_breaker(locust_run) -> None:
    run = locust_run("failing_handlers", seconds=16)
    assert run.code == 0, run.output[-3000:]
    b = run.report["breaker"]
    assert b["opened"] >= 1 and b["closed"] >= 1 and b["state"] == "closed"
    assert b["failures_before_first_open"] == 5
    assert b["calls_while_open"] == 0
    assert run.report["lost"] == 0
    # the healthy handlers handled every event
    handlers = run.report["handlers"]
    for name in ("reserve_stock", "notify_customer", "update_ledger", "emit_audit"):
        assert handlers[name]["handled"] == run.report["sent"]


def test_distributed_run_merges_both_workers(locust_run) -> None:
    run = locust_run("high_fanout", "--processes", "2", seconds=8)
    assert run.code == 0, run.output[-3000:]
    r = run.report
    assert r["workers"] == 2
    per = r["sent_per_generator"]
    assert len(per) == 2 and all(n > 0 for n in per)
    assert r["sent"] == sum(per)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rate", "-5"], "--rate"),
        (["--transport", "nope"], "--transport"),
        (["--qos", "3"], "--qos"),
        (["--slo-p99-ms", "fast"], "--slo-p99-ms"),
    ],
)
def test_bad_options_exit_2_with_one_clear_line(locust_run, args, needle) -> None:
    run = locust_run("high_fanout", *args, seconds=2)
    assert run.code == 2, run.output[-2000:]
    errors = [line for line in run.output.splitlines() if line.startswith("catga-bench: error")]
    assert len(errors) == 1 and needle in errors[0]
    assert "Traceback" not in run.output


def test_unknown_key_in_slo_file_exits_2(locust_run, tmp_path) -> None:
    slo = tmp_path / "slo.toml"
    slo.write_text("p99_ms = 50\nlatency_budget = 3\n")
    run = locust_run("high_fanout", "--slo-file", str(slo), seconds=2)
    assert run.code == 2
    assert "unknown key 'latency_budget'" in run.output
    assert "allowed keys:" in run.output
