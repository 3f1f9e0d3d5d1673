"""``catga-bench capacity``'s command line (catga_bench/capacity/cli.py): bad input is one line
and exit 2; a whole run against fake trials (no Locust) writes the report with the bracket,
the generator's ceiling and what limited it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from catga_bench.capacity import cli
from catga_bench.capacity.model import Phase, Trial
from catga_bench.capacity.trial import TrialRunner
from catga_bench.cli import main as catga_main

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "high_throughput.py"


@pytest.mark.parametrize(("argv", "words"), [
    ([], "-f/--scenario: required"),
    (["-f", "nope.py"], "no such file: nope.py"),
    (["-f", str(SCENARIO), "--width", "0"], "--width: must be in (0, 1)"),
    (["-f", str(SCENARIO), "--max-time", "-5"], "--max-time: must be > 0"),
    (["-f", str(SCENARIO), "--final-trials", "-1"], "--final-trials: must be >= 0"),
    (["-f", str(SCENARIO), "--trial-s", "abc"], "--trial-s: invalid float value"),
    (["-f", str(SCENARIO), "--ceiling", "maybe"], "--ceiling: invalid choice"),
    (["-f", str(SCENARIO), "--min-rate", "100", "--max-rate", "50"], "--max-rate: must be >="),
    (["-f", str(SCENARIO), "--", "--rate", "5"], "--rate: set by capacity itself"),
    (["-f", str(SCENARIO), "--", "-t", "5s"], "-t: set by capacity itself"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], words: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert catga_main(["capacity", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("catga-bench capacity: error: ")
    assert words in err


def test_scenario_rate_read_from_the_file() -> None:
    assert cli.scenario_rate(SCENARIO) == 10_500


def _fake_report(rate: float, p99: float, transport: str = "embedded") -> dict[str, Any]:
    return {"scenario": "fake", "transport": transport, "sut": {"kind": "core"},
            "sent": int(rate * 3), "sent_rate": rate, "achieved_rate": rate,
            "latency_ms": {"p99": p99}, "generator": {"max_behind_s": 0, "dropped_sends": 0},
            "slo": [{"name": "p99_latency", "limit": 100.0, "value": p99, "passed": p99 < 100,
                     "op": "<", "unit": "ms"}],
            "timeline": {"sent": [int(rate)] * 3, "completed": [int(rate)] * 3,
                         "errors": [0] * 3, "p99_ms": [p99] * 3},
            "environment_failures": [], "stopped_early": None}


def fake_call(capacities: dict[str, float]) -> Any:
    """A TrialRunner.__call__ whose system holds below capacities[scenario file name]."""

    def call(self: TrialRunner, rate: float, seconds: float, phase: Phase, index: int,
             stop_after_s: int | None = None) -> Trial:
        from catga_bench.capacity.trial import judge_trial

        p99 = 5.0 if rate < capacities[self.scenario.name] else 500.0
        report = _fake_report(rate, p99)
        out = self.out_dir / f"trial-{index:02d}"
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report))
        return judge_trial(report, rate, seconds, phase, wall_s=seconds, report_dir=out)

    return call


def test_run_writes_the_bracket_ceiling_and_limit(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(TrialRunner, "__call__",
                        fake_call({"high_throughput.py": 10_000, "_noop.py": 50_000}))
    out = tmp_path / "out"
    code = cli.main(["-f", str(SCENARIO), "--report-dir", str(out), "--max-time", "100000",
                     "--ceiling", "fresh", "--json", str(tmp_path / "c.json")])
    assert code == 0
    doc = json.loads((out / "capacity.json").read_text())
    lo, hi = doc["capacity"]["lo"], doc["capacity"]["hi"]
    assert lo < 10_000 <= hi and hi / lo - 1 <= 0.05 + 1e-9 and doc["capacity"]["confirmed"]
    assert doc["ceiling"]["kind"] == "embedded"
    assert doc["ceiling"]["lo"] < 50_000 <= doc["ceiling"]["hi"]
    assert doc["limited_by"] == "system"
    assert doc["at_lo"]["p99_ms"] == 5.0 and doc["at_hi"]["p99_ms"] == 500.0
    speed = doc["host_speed"]  # sampled from the start: at least one sample
    assert speed["samples"] and speed["min"] > 0 and "notable" in speed
    assert "host speed" in (out / "capacity.md").read_text()
    assert (out / "capacity.md").read_text().startswith("# catga-bench capacity: fake")
    html = (out / "capacity.html").read_text()
    assert "<svg" in html and "Generator ceiling" in html
    assert json.loads((tmp_path / "c.json").read_text())["capacity"] == doc["capacity"]
    printed = capsys.readouterr().out
    assert "capacity in [" in printed and "limited by: system" in printed
    assert "at lo: p99 5.00 ms" in printed and "at hi: p99 500.00 ms" in printed
    # the ceiling was cached: the next run with --ceiling auto reuses it
    monkeypatch.setattr(TrialRunner, "__call__",
                        fake_call({"high_throughput.py": 45_000, "_noop.py": 1.0}))
    assert cli.main(["-f", str(SCENARIO), "--report-dir", str(tmp_path / "again"),
                     "--max-time", "100000", "--final-trials", "0"]) == 0
    again = json.loads((tmp_path / "again" / "capacity.json").read_text())
    assert again["ceiling"]["lo"] == doc["ceiling"]["lo"] and again["ceiling"]["cached"]
    assert again["limited_by"] == "generator"  # 45K reaches 90% of the ~50K ceiling


def test_budget_out_is_exit_3_with_the_best_bracket(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TrialRunner, "__call__", fake_call({"high_throughput.py": 10_000}))
    times = iter(range(0, 10_000, 10))  # each look at the clock: 10 s later
    monkeypatch.setattr(cli.time, "monotonic", lambda: float(next(times)))
    code = cli.main(["-f", str(SCENARIO), "--report-dir", str(tmp_path), "--max-time", "120",
                     "--ceiling", "off"])
    assert code == 3
    doc = json.loads((tmp_path / "capacity.json").read_text())
    assert doc["result"]["outcome"] == "budget" and not doc["capacity"]["confirmed"]
    assert doc["result"]["trials"]
