"""``catga-bench gate --baseline``, for real: a release's runs of the service_time case kept in a
history, then the next release with its handler path 50% slower (``CATGA_BENCH_SLOWDOWN=1.5``:
P99 about 22 -> 32 ms, still far under the case's own 100 ms SLO) — every run passes its SLO,
and only the comparison with the last release fails it. Four runs a side: the fewest with which
a one-sided Mann-Whitney test can reach p < 0.05 (1/70). About 70 s on 2 cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catga_bench.suite.cli import main as gate_main

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def _gate(tmp: Path, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    out = tmp / "gate.json"
    code = gate_main(["--profile", "ci", "--only", "service_time", "--runs", "4", "--json",
                      str(out), "--report-dir", str(tmp / "reports"), *args])
    assert out.exists(), f"gate exited {code} without writing {out}"
    return code, json.loads(out.read_text())


def test_a_slower_release_fails_the_gate_only_by_its_comparison(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CATGA_BENCH_DEFECTS", raising=False)
    monkeypatch.delenv("CATGA_BENCH_SLOWDOWN", raising=False)
    history = tmp_path / "history"
    code, doc = _gate(tmp_path / "v1", "--history", str(history), "--release", "v1")
    assert code == 0, doc["cases"]
    assert len(list((history / "v1" / "service_time-embedded").glob("run-*/report.json"))) == 4

    monkeypatch.setenv("CATGA_BENCH_SLOWDOWN", "1.5")
    code, doc = _gate(tmp_path / "v2", "--baseline", str(history), "--max-runs", "4")
    [row] = doc["cases"]
    assert code == 1, row["verdict"]
    assert row["status"] == "FAIL" and row["failed_targets"] == ["regression:p99_ms"]
    assert row["comparison"]["outcome"] == "regressed"
    assert row["comparison"]["metrics"]["p99_ms"]["ratio"] > 1.2
    # every run met its own SLO: the comparison alone failed the case
    runs = sorted(Path(row["report_dir"]).glob("run-*/report.json"))
    assert len(runs) == 4
    assert all(json.loads(p.read_text())["passed"] for p in runs)
    assert (Path(row["report_dir"]) / "compare" / "report.md").exists()
