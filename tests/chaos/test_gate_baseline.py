"""Release against release, for real (Locust runs of the service_time case, 4 s each):

* ``catga-bench gate --history H --release v1`` keeps four clean runs; the next release runs
  with its handler path 50% slower (``CATGA_BENCH_SLOWDOWN=1.5``: P99 about 22 -> 32 ms, far
  under the case's own 100 ms SLO) through ``gate --baseline H``: every run passes its SLO and
  only the comparison with v1 fails the case. Four runs a side: the fewest with which a
  one-sided Mann-Whitney test can reach p < 0.05 (1/70).
* ``catga-bench trend H`` then finds the change point at v2 (Apache Otava).
* ``catga-bench compare`` of v1's runs with a command side whose handlers fail 1% of calls
  (``CATGA_BENCH_FAIL_RATIO``): the absolute error limit (0, the clean baseline's) catches it at
  once, with two runs.

About 70 s on 2 cores.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _support import ROOT, SCENARIOS

from catga_bench.compare.trend import main as trend_main
from catga_bench.suite.cli import main as gate_main

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]
CASE = "service_time-embedded"


def _gate(tmp: Path, *args: str) -> tuple[int, dict[str, Any]]:
    out = tmp / "gate.json"
    code = gate_main(["--profile", "ci", "--only", "service_time", "--runs", "4", "--json",
                      str(out), "--report-dir", str(tmp / "reports"), *args])
    assert out.exists(), f"gate exited {code} without writing {out}"
    return code, json.loads(out.read_text())


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """v1 clean, then v2 50% slower compared with it; both kept in one history."""
    tmp = tmp_path_factory.mktemp("releases")
    history = tmp / "history"
    mp = pytest.MonkeyPatch()
    try:
        mp.delenv("CATGA_BENCH_DEFECTS", raising=False)
        mp.delenv("CATGA_BENCH_SLOWDOWN", raising=False)
        v1 = _gate(tmp / "v1", "--history", str(history), "--release", "v1")
        mp.setenv("CATGA_BENCH_SLOWDOWN", "1.5")
        v2 = _gate(tmp / "v2", "--baseline", str(history), "--max-runs", "4",
                   "--history", str(history), "--release", "v2")
    finally:
        mp.undo()
    return {"history": history, "v1": v1, "v2": v2}


def test_the_clean_release_passes_and_is_kept(releases: dict[str, Any]) -> None:
    code, doc = releases["v1"]
    assert code == 0, doc["cases"]
    assert len(list((releases["history"] / "v1" / CASE).glob("run-*/report.json"))) == 4


def test_a_slower_release_fails_the_gate_only_by_its_comparison(
        releases: dict[str, Any]) -> None:
    code, doc = releases["v2"]
    [row] = doc["cases"]
    assert code == 1, row["verdict"]
    assert "release v1" in doc["baseline"]
    assert row["status"] == "FAIL" and row["failed_targets"] == ["regression:p99_ms"]
    assert row["comparison"]["outcome"] == "regressed"
    assert row["comparison"]["metrics"]["p99_ms"]["ratio"] > 1.2
    # every run met its own SLO: the comparison alone failed the case
    runs = sorted(Path(row["report_dir"]).glob("run-*/report.json"))
    assert len(runs) == 4
    assert all(json.loads(p.read_text())["passed"] for p in runs)
    assert (Path(row["report_dir"]) / "compare" / "report.md").exists()


def test_trend_finds_the_change_point_at_the_slower_release(
        releases: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "trend.json"
    assert trend_main([str(releases["history"]), "--metrics", "p99_ms", "--json",
                       str(out)]) == 0
    points = json.loads(out.read_text())["change_points"]
    assert [(p["metric"], p["release"], p["worse"]) for p in points] == [
        ("p99_ms", "v2", True)], points


def test_a_one_percent_error_ratio_is_caught_at_once_by_its_absolute_limit(
        releases: dict[str, Any], tmp_path: Path) -> None:
    run = shlex.join([sys.executable, "-m", "locust", "-f", str(SCENARIOS / "service_time.py"),
                      "--headless", "-u", "4", "-r", "4", "-t", "4s", "--only-summary"])
    out = tmp_path / "cmp"
    proc = subprocess.run(
        [sys.executable, "-m", "catga_bench.cli", "compare",
         str(releases["history"] / "v1" / CASE), f"env CATGA_BENCH_FAIL_RATIO=0.01 {run}",
         "--runs", "2", "--max-runs", "2", "--report-dir", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("CATGA_BENCH_")},
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "report.json").read_text())
    verdicts = {m["metric"]: m for m in data["metrics"]}
    assert verdicts["error_ratio"]["verdict"] == "regressed"
    assert verdicts["error_ratio"]["limit"] == 0.0
    assert 0.005 <= verdicts["error_ratio"]["worst_candidate"] <= 0.02
    assert len(data["baseline_runs"]) == 4
    assert all(r["error_ratio"] == 0.0 for r in data["baseline_runs"])
    assert (out / "report.html").is_file() and (out / "candidate" / "run-02").is_dir()
