"""``catga-bench gate --baseline DIR`` / ``--runs`` / ``--history``: the plumbing around the
comparison (catga_bench/suite/baseline.py, run.py, cli.py), with the Locust runs replaced by
runs that write a report.json of a chosen P99. The statistics are compare's own
(tests/unit/test_compare_stats.py); the real runs are tests/chaos/test_gate_baseline.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from catga_bench.suite import run
from catga_bench.suite.cli import main as gate_main
from catga_bench.suite.judging import CaseJudgement, case_result

WOBBLE = (0.0, 0.01, -0.012, 0.006, -0.004, 0.011, -0.009, 0.003, -0.007, 0.008)


def _report(p99: float, error_ratio: float = 0.0) -> dict[str, object]:
    return {"scenario": "service_time", "transport": "embedded", "sut": {"kind": "core"},
            "latency_ms": {"p50": p99 / 1.2, "p99": p99, "p999": p99 * 1.1},
            "achieved_rate": 500.0, "offered_rate": 500.0, "error_ratio": error_ratio,
            "lost": 0, "duplicates": 0, "exit_code": 0, "passed": True, "slo": [],
            "verdict": "PASS: 3 targets met"}


class FakeRuns:
    """The P99 each next run reports (``p99s``, filled by the test) and those it used."""

    def __init__(self) -> None:
        self.p99s: list[float] = []
        self.used: list[float] = []


@pytest.fixture
def fake_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRuns]:
    """Replace each case run with one writing a report.json of the next P99 (with a fixed
    wobble, as real runs have)."""
    runs = FakeRuns()

    def fake(case, transport, profile, scenarios, out_dir, report_dir=None):  # type: ignore[no-untyped-def]
        k = len(runs.used)
        p99 = runs.p99s[k] * (1 + WOBBLE[k % len(WOBBLE)])
        runs.used.append(p99)
        folder = report_dir or out_dir / f"{case.name}-{transport}"
        folder.mkdir(parents=True, exist_ok=True)
        report = _report(p99)
        (folder / "report.json").write_text(json.dumps(report))
        return case_result(case.name, transport, 6, 1.0, str(folder),
                           CaseJudgement("PASS", 0, str(report["verdict"]), report))

    monkeypatch.setattr(run, "_run_isolated", fake)
    yield runs


def _baseline(tmp: Path, n: int = 5, p99: float = 22.0) -> Path:
    root = tmp / "baseline"
    for k in range(n):
        folder = root / "service_time-embedded" / f"run-{k + 1}"
        folder.mkdir(parents=True)
        (folder / "report.json").write_text(
            json.dumps(_report(p99 * (1 + WOBBLE[(k + 3) % len(WOBBLE)]))))
    return root


def _gate(tmp: Path, *args: str) -> tuple[int, dict[str, object]]:
    out = tmp / "gate.json"
    code = gate_main(["--only", "service_time", "--json", str(out), "--report-dir",
                      str(tmp / "reports"), *args])
    return code, json.loads(out.read_text()) if out.exists() else {}


def test_a_slower_candidate_fails_its_case_as_a_regression(tmp_path: Path,
                                                           fake_runs: FakeRuns) -> None:
    fake_runs.p99s.extend([27.0] * 10)
    code, doc = _gate(tmp_path, "--baseline", str(_baseline(tmp_path)))
    assert code == 1
    [row] = doc["cases"]  # type: ignore[misc]
    assert row["status"] == "FAIL" and "regression:p99_ms" in row["failed_targets"]
    assert row["comparison"]["outcome"] == "regressed" and row["comparison"]["runs"] == 5
    assert row["verdict"].startswith("REGRESSED: p99_ms")
    case_dir = Path(row["report_dir"])
    assert sorted(p.name for p in case_dir.glob("run-*")) == [f"run-{k}" for k in range(1, 6)]
    assert (case_dir / "compare" / "report.html").exists()
    assert doc["baseline"] and doc["runs"] == 5


def test_the_same_build_passes_with_the_comparison_in_its_row(tmp_path: Path,
                                                            fake_runs: FakeRuns) -> None:
    fake_runs.p99s.extend([22.0] * 10)
    code, doc = _gate(tmp_path, "--baseline", str(_baseline(tmp_path)))
    [row] = doc["cases"]  # type: ignore[misc]
    assert code == 0, row["verdict"]
    assert row["status"] == "PASS" and row["comparison"]["outcome"] == "same"


def test_noise_runs_more_then_cannot_tell_is_exit_3(tmp_path: Path,
                                                    fake_runs: FakeRuns) -> None:
    # alternating 14 / 34 ms: the median moves, the spread hides whether it is worse
    fake_runs.p99s.extend([14.0, 34.0] * 10)
    code, doc = _gate(tmp_path, "--baseline", str(_baseline(tmp_path)), "--runs", "3",
                      "--max-runs", "7")
    [row] = doc["cases"]  # type: ignore[misc]
    assert code == 3 and row["status"] == "ERROR", row["verdict"]
    assert row["verdict"].startswith("cannot tell at this noise")
    assert row["comparison"]["runs"] == 7  # 3, then 2 more twice


def test_history_keeps_the_runs_and_serves_as_the_next_baseline(tmp_path: Path,
                                                                fake_runs: FakeRuns) -> None:
    fake_runs.p99s.extend([22.0] * 5 + [28.0] * 5)
    history = tmp_path / "history"
    code, _ = _gate(tmp_path / "a", "--runs", "5", "--history", str(history), "--release", "v1")
    assert code == 0
    stored = sorted((history / "v1" / "service_time-embedded").glob("run-*/report.json"))
    assert len(stored) == 5
    code, doc = _gate(tmp_path / "b", "--baseline", str(history), "--max-runs", "5")
    assert code == 1 and "release v1" in str(doc["baseline"])


@pytest.mark.parametrize(("args", "needle"), [
    (["--baseline", "NOPE"], "--baseline: no such directory"),
    (["--baseline", "EMPTY"], "no runs of case service_time over embedded"),
    (["--baseline", "BASE", "--runs", "1"], "--runs: must be >= 2 with --baseline"),
    (["--baseline", "BASE", "--margin", "1.5"], "--margin: must be in (0, 1)"),
    (["--baseline", "BASE", "--runs", "6", "--max-runs", "4"], "--max-runs: must be >= --runs"),
    (["--release", "v1"], "--release: needs --history DIR"),
    (["--history", "H", "--release", "../x"], "not a release label"),
])
def test_bad_baseline_options_are_one_line_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_runs: FakeRuns,
        args: list[str], needle: str) -> None:
    (tmp_path / "EMPTY").mkdir()
    names = {"NOPE": tmp_path / "nope", "EMPTY": tmp_path / "EMPTY",
             "BASE": _baseline(tmp_path), "H": tmp_path / "h"}
    argv = [str(names[a]) if a in names else a for a in args]
    assert gate_main(["--only", "service_time", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert fake_runs.used == []  # nothing ran
