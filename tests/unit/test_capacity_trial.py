"""A capacity trial's verdict from its report (catga_bench/capacity/trial.py judge_trial), the
per-second breach rule (catga_bench/judge/breach.py), the exceed-ratio accounting of a trial,
and the command line a trial runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from catga_bench.capacity.model import Trial
from catga_bench.capacity.trial import TrialBroken, TrialRunner, judge_trial
from catga_bench.judge.breach import BreachLimits, breach_flags


def row(name: str, limit: float, value: float, passed: bool, op: str = "<") -> dict[str, Any]:
    return {"name": name, "limit": limit, "value": value, "passed": passed, "op": op, "unit": ""}


def report(rate: float = 1000.0, *, sent_rate: float | None = None,
           achieved: float | None = None, slo: list[dict[str, Any]] | None = None,
           p99s: list[float | None] | None = None, errors: list[int] | None = None,
           generator: dict[str, Any] | None = None, env: list[str] | None = None,
           stopped: bool = False) -> dict[str, Any]:
    p99s = p99s if p99s is not None else [5.0] * 5
    n = len(p99s)
    sent_rate = rate if sent_rate is None else sent_rate
    return {
        "sent": int(sent_rate * n), "sent_rate": sent_rate, "duration_s": float(n),
        "achieved_rate": sent_rate if achieved is None else achieved,
        "latency_ms": {"p99": max((p for p in p99s if p is not None), default=None)},
        "slo": slo if slo is not None else [row("p99_latency", 100, 5, True),
                                            row("max_error_ratio", 0.0, 0.0, True, "<=")],
        "timeline": {"t_s": list(range(n)), "sent": [int(sent_rate)] * n,
                     "completed": [0 if p is None else int(sent_rate) for p in p99s],
                     "errors": errors or [0] * n, "p99_ms": p99s},
        "generator": generator or {"max_behind_s": 0.0, "dropped_sends": 0},
        "environment_failures": env or [],
        "stopped_early": {"after_breach_s": 5} if stopped else None,
    }


def test_pass_when_the_slo_holds_and_the_rate_is_offered_and_handled() -> None:
    t = judge_trial(report(), 1000, 5, "search")
    assert (t.verdict, t.seconds, t.breached, t.p99_ms) == ("PASS", 5, 0, 5.0)


def test_min_throughput_row_is_ignored() -> None:
    slo = [row("p99_latency", 100, 5, True), row("min_throughput", 10_000, 1000, False, ">=")]
    assert judge_trial(report(slo=slo), 1000, 5, "search").verdict == "PASS"


def test_a_missed_latency_target_is_judged_per_second_by_the_exceed_ratio() -> None:
    slo = [row("p99_latency", 100, 250, False)]
    # 2 of 5 seconds breached: <= 50 %, the load held although the whole trial's P99 missed
    t = judge_trial(report(slo=slo, p99s=[5, 5, 250, 300, 5]), 1000, 5, "final")
    assert t.verdict == "PASS" and "2 of 5 s breached (40% <= 50%)" in t.reason
    assert "p99_latency" in t.reason  # the whole trial's miss is still named
    assert (t.breached, t.seconds, t.whole_breach) == (2, 5, False)
    assert t.exceeded_s == 2
    # 3 of 5: > 50 %, failed; a stricter exceed ratio fails the 2 of 5 too
    t = judge_trial(report(slo=slo, p99s=[5, 250, 250, 300, 5]), 1000, 5, "final")
    assert t.verdict == "FAIL" and "3 of 5 s breached (60% > 50%)" in t.reason
    t = judge_trial(report(slo=slo, p99s=[5, 5, 250, 300, 5]), 1000, 5, "final",
                    exceed_ratio=0.2)
    assert t.verdict == "FAIL"


def test_breached_seconds_fail_a_trial_whose_whole_p99_held() -> None:
    # the per-second histogram reads high: seconds can breach when the whole P99 did not
    t = judge_trial(report(p99s=[5, 110, 110, 110, 5]), 1000, 5, "search")
    assert t.verdict == "FAIL" and "3 of 5 s breached" in t.reason


def test_window_wobble_within_5_percent_is_not_invalid() -> None:
    # 970 of 1,000 msg/s in a short window, but nothing due was left unsent: offered
    assert judge_trial(report(sent_rate=970.0), 1000, 3, "search").verdict == "PASS"


def test_a_window_under_2_s_is_not_judged_by_its_rate() -> None:
    # the harness's start is before the target opened: a short run's rate reads low
    short = {**report(sent_rate=900.0), "duration_s": 1.6}
    assert judge_trial(short, 1000, 3, "search").verdict == "PASS"


def test_fail_on_loss_breaches_the_whole_trial() -> None:
    slo = [row("p99_latency", 100, 5, True), row("lost", 0, 3, False, "<=")]
    t = judge_trial(report(slo=slo), 1000, 5, "final")
    assert t.verdict == "FAIL" and t.whole_breach and t.exceeded_s == 5


def test_fail_when_the_system_handles_less_than_98_percent() -> None:
    t = judge_trial(report(achieved=950), 1000, 5, "search")
    assert t.verdict == "FAIL" and "handled 950 of the 1,000" in t.reason and t.whole_breach


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"sent_rate": 900.0}, "offered 900 of 1,000"),
    ({"generator": {"max_behind_s": 0.0, "dropped_sends": 500}}, "sent 5,000 of the 5,500"),
    ({"generator": {"max_behind_s": 2.5, "dropped_sends": 0}}, "2.50 s behind"),
])
def test_invalid_when_the_generator_did_not_offer_the_rate(kwargs: dict[str, Any],
                                                           words: str) -> None:
    # the shortfall is also an environment failure of the gate: still INVALID, not broken
    env = ["the generator issued 900 msg/s of the 1,000 offered"] if "sent_rate" in kwargs else []
    t = judge_trial(report(env=env, **kwargs), 1000, 5, "search")
    assert t.verdict == "INVALID" and words in t.reason


def test_other_environment_failures_break_the_trial() -> None:
    with pytest.raises(TrialBroken, match="broker unreachable"):
        judge_trial(report(env=["broker unreachable: nats://127.0.0.1:4222"]), 1000, 5, "search")
    with pytest.raises(TrialBroken, match="sent no message"):
        judge_trial({**report(), "sent": 0}, 1000, 5, "search")


def test_stopped_early_fails_and_counts_its_unrun_seconds_as_breached() -> None:
    slo = [row("p99_latency", 100, 500, False)]
    t = judge_trial(report(slo=slo, p99s=[5, 500, 500, 500, 500, 500], stopped=True), 1000, 20,
                    "final")
    assert t.verdict == "FAIL" and "stopped early" in t.reason
    assert (t.breached, t.seconds) == (5, 6)
    assert t.counted_s == 20 and t.exceeded_s == 5 + (20 - 6)


def test_breach_rule_per_second() -> None:
    limits = BreachLimits(p99_ms=100, max_error_ratio=0.01)
    timeline = {"sent": [10, 10, 10, 10, 0], "completed": [10, 10, 0, 10, 3],
                "errors": [0, 0, 0, 1, 0], "p99_ms": [50, 150, None, 50, 50]}
    # clean, over P99, nothing completed (a stall), errors over the ratio, nothing sent
    assert breach_flags(timeline, limits) == [False, True, True, True, None]
    assert breach_flags(timeline, BreachLimits(None, None)) == [False, False, True, False, None]


def test_breach_limits_from_slo_rows() -> None:
    rows = [row("p99_latency", 80, 1, True), row("max_error_ratio", 0.02, 0, True, "<=")]
    assert BreachLimits.from_slo_rows(rows) == BreachLimits(80, 0.02)


def test_invalid_trial_counts_as_exceeded_in_a_confirmation() -> None:
    t = Trial(rate=1000, phase="final", planned_s=20, verdict="INVALID", seconds=20)
    assert t.exceeded_s == t.counted_s == 20


def test_command_runs_the_scenario_at_the_rate_with_the_users_options(tmp_path: Path) -> None:
    runner = TrialRunner(Path("scenarios/x.py"), tmp_path, users=4,
                         extra=["--transport", "nats"], stop_on_breach_s=5)
    cmd = runner.command(12_345.5, 5, tmp_path / "t1")
    assert cmd[cmd.index("-f") + 1] == "scenarios/x.py" and cmd[cmd.index("-u") + 1] == "4"
    assert cmd[cmd.index("--rate") + 1] == "12345.5"
    assert cmd[cmd.index("-t") + 1] == "7s"  # 5 s measured + 2 s warm-up
    assert cmd[cmd.index("--transport") + 1] == "nats"
    assert cmd[cmd.index("--slo-min-throughput") + 1] == "off"
    assert cmd[cmd.index("--catga-stop-on-breach-s") + 1] == "5"
    # no HTML page per trial (1.5 s each), unless the user's options after `--` ask for it
    assert cmd[cmd.index("--report-formats") + 1] == "json,md"
    mine = TrialRunner(Path("scenarios/x.py"), tmp_path, extra=["--report-formats", "html"])
    cmd = mine.command(1000, 5, tmp_path / "t0")
    assert cmd[max(i for i, a in enumerate(cmd) if a == "--report-formats") + 1] == "html"
    # a final trial's own stop (its confirmation decided), unless early stops are off
    cmd = runner.command(1000, 20, tmp_path / "t2", stop_after_s=23)
    assert cmd[cmd.index("--catga-stop-on-breach-s") + 1] == "23"
    never = TrialRunner(Path("scenarios/x.py"), tmp_path, stop_on_breach_s=0)
    cmd = never.command(1000, 20, tmp_path / "t3", stop_after_s=23)
    assert cmd[cmd.index("--catga-stop-on-breach-s") + 1] == "0"
