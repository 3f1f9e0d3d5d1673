"""The release gate on the embedded core: every scenario passes its default targets here, and
the gate fails (exit 1) when the system is broken or a target cannot be met.

The clean scenario checks read the session's one clean gate run (``clean_gate``, tests/chaos/
conftest.py: ``catga-bench gate --profile ci``, each case a real Locust subprocess of 8-16 s,
20 users); the others run Locust themselves. Durations are shortened from the 20-30 s a user
would run; the targets are the scenarios' defaults, unchanged. The gate catching a handler that
blocks the loop is tests/chaos/test_gate_defects.py's block_loop case.
"""

from __future__ import annotations

import pytest
from _support import CleanGate

pytestmark = pytest.mark.slow

REPORT_KEYS = {
    "scenario", "transport", "qos", "duration_s", "offered_rate", "achieved_rate", "latency_ms",
    "sent", "handled", "lost", "duplicates", "handlers", "errors", "rejected", "timeouts",
    "breaker", "slo", "passed",
}


def test_high_fanout_passes_and_writes_three_reports(clean_gate: CleanGate) -> None:
    row = clean_gate.row("high_fanout")
    assert row["exit_code"] == 0, row["verdict"]
    for name in ("report.json", "report.md", "report.html"):
        assert (clean_gate.report_dir("high_fanout") / name).stat().st_size > 500
    r = clean_gate.report("high_fanout")
    assert set(r) >= REPORT_KEYS
    assert set(r["latency_ms"]) >= {"p50", "p90", "p99", "p999", "max"}
    assert set(r["breaker"]) >= {"opened", "closed", "state"}
    assert r["passed"] is True and r["lost"] == 0
    assert len(r["handlers"]) == 120
    # every handler ran for every event
    assert {h["handled"] for h in r["handlers"].values()} == {r["sent"]}
    assert r["latency_ms"]["p99"] < 100


def test_same_run_with_impossible_p99_fails_with_exit_1(locust_run) -> None:
    run = locust_run("high_fanout", "--slo-p99-ms", "0.001", seconds=3)
    assert run.code == 1, run.output[-3000:]
    assert run.report["passed"] is False
    assert run.slo("p99_latency")["passed"] is False


def test_a_run_sends_for_its_whole_run_time(locust_run) -> None:
    """-t 3s sends for 3 s: Locust's timer is measured from gevent's cached clock, which the
    imports before it left behind by 0.6-2.4 s (a 3 s run sent for 0.6 s in CI)."""
    run = locust_run("service_time", seconds=3, users=4)
    assert run.code == 0, run.output[-3000:]
    assert run.report["sent"] >= 0.95 * 500 * 3, run.report["timeline"]["sent"]


def test_high_throughput_reaches_10k_msgs(clean_gate: CleanGate) -> None:
    assert clean_gate.row("high_throughput")["exit_code"] == 0
    r = clean_gate.report("high_throughput")
    assert r["achieved_rate"] >= 10_000
    assert r["latency_ms"]["p99"] < 100


def test_slow_handlers_are_cut_and_do_not_stall_fast_messages(clean_gate: CleanGate) -> None:
    assert clean_gate.row("slow_handlers")["exit_code"] == 0
    r = clean_gate.report("slow_handlers")
    assert r["timeouts"] > 0
    assert r["streams"]["OrderPlaced"]["latency_ms"]["p99"] < 100
    # the slow stream's messages wait for their 1 s timeouts (and retries), never 5 s
    assert r["streams"]["ReportRequested"]["latency_ms"]["max"] < 5_000


def test_failing_handler_opens_and_closes_its_breaker(clean_gate: CleanGate) -> None:
    assert clean_gate.row("failing_handlers")["exit_code"] == 0
    r = clean_gate.report("failing_handlers")
    b = r["breaker"]
    assert b["opened"] >= 1 and b["closed"] >= 1 and b["state"] == "closed"
    assert b["failures_before_first_open"] == 5
    assert b["calls_while_open"] == 0
    assert r["lost"] == 0
    # the healthy handlers handled every event
    handlers = r["handlers"]
    for name in ("reserve_stock", "notify_customer", "update_ledger", "emit_audit"):
        assert handlers[name]["handled"] == r["sent"]


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
