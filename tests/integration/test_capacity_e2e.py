"""``catga-bench capacity`` end to end, once: real Locust trials against a system of known
capacity (tests/fixtures/capacity_1000.py: at most 1,000 msg/s), short trials, a wide bracket
and a small budget (~30 s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "tests" / "fixtures" / "capacity_1000.py"


def test_capacity_finds_a_bracket_below_the_known_limit(tmp_path: Path) -> None:
    out = tmp_path / "cap"
    cmd = [sys.executable, "-m", "catga_bench.cli", "capacity", "-f", str(SCENARIO),
           "--start-rate", "600", "--trial-s", "2", "--final-trials", "1",
           "--final-trial-s", "2", "--width", "0.5", "--max-time", "55", "--users", "2",
           "--ceiling", "off", "--report-dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    doc = json.loads((out / "capacity.json").read_text())
    lo, hi = doc["capacity"]["lo"], doc["capacity"]["hi"]
    assert lo is not None and hi is not None and lo < hi
    assert hi / lo - 1 <= 0.5 + 1e-9
    assert lo <= 1020  # 10 slots x 10 ms: it cannot hold more
    assert doc["capacity"]["confirmed"] and doc["result"]["final_count"] == 1
    trials = doc["result"]["trials"]
    assert [t["rate"] for t in trials[:2]] == [600, 1200]  # doubling from the start rate
    assert any(t["verdict"] != "PASS" for t in trials)  # the upper end was a trial
    for t in trials:
        assert (Path(t["report_dir"]) / "report.json").exists()
    assert "<svg" in (out / "capacity.html").read_text()
    assert "capacity in [" in (out / "capacity.md").read_text()
    assert "capacity in [" in proc.stdout
