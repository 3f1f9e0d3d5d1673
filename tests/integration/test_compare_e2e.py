"""catga-bench compare end to end: two command sides running the service_time scenario through
Locust, interleaved, the candidate seeded with 1% failing handler calls (CATGA_BENCH_FAIL_RATIO,
set through ``env`` in its command line). The absolute error limit (0, the clean baseline's)
must catch it at once: exit 1, whatever the latency noise says. ~25 s."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from _support import ROOT, SCENARIOS

pytestmark = pytest.mark.slow


def test_a_seeded_one_percent_error_ratio_is_caught_by_its_absolute_limit(tmp_path: Path) -> None:
    run = shlex.join([sys.executable, "-m", "locust", "-f", str(SCENARIOS / "service_time.py"),
                      "--headless", "-u", "2", "-r", "2", "-t", "4s", "--only-summary"])
    out = tmp_path / "cmp"
    proc = subprocess.run(
        [sys.executable, "-m", "catga_bench.cli", "compare", run,
         f"env CATGA_BENCH_FAIL_RATIO=0.01 {run}", "--runs", "2", "--max-runs", "2",
         "--report-dir", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ},
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
    assert [ln.split()[1] for ln in lines[:4]] == ["baseline", "candidate"] * 2
    data = json.loads((out / "report.json").read_text())
    verdicts = {m["metric"]: m for m in data["metrics"]}
    assert verdicts["error_ratio"]["verdict"] == "regressed"
    assert verdicts["error_ratio"]["limit"] == 0.0
    assert 0.005 <= verdicts["error_ratio"]["worst_candidate"] <= 0.02
    assert all(r["error_ratio"] == 0.0 for r in data["baseline_runs"])
    assert all(r["scenario"] == "service_time" for r in data["candidate_runs"])
    assert (out / "report.html").is_file() and (out / "candidate" / "run-02").is_dir()
