"""The core's Prometheus endpoint serves live figures during a real Locust run; Locust's own
statistics (fed in bulk, catga_bench/harness/locust_stats.py) count every message."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from _support import free_port
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow
SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def _scrape(port: int) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    values: dict[str, float] = {}
    for fam in text_string_to_metric_families(body):
        for sample in fam.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def test_metrics_are_served_during_a_run(tmp_path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(SCENARIOS / "failing_handlers.py"),
         "--headless", "-u", "10", "-r", "10", "-t", "13s", "--only-summary",
         "--metrics-port", str(port), "--report-dir", str(tmp_path / "r"),
         "--csv", str(tmp_path / "locust")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        seen: dict[str, float] = {}
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                seen = _scrape(port)
            except OSError:
                continue
            if seen.get("catga_resilience_circuit_opened_total", 0) >= 1:
                break
        assert seen.get("catga_events_published_total", 0) > 0, sorted(seen)
        assert seen.get("catga_event_duration_milliseconds_count", 0) > 0
        assert "catga_event_loop_lag_milliseconds_count" in seen
        assert seen.get("catga_limiter_max_concurrency", 0) > 0
        # the payment handler's outage starts at 4 s: its breaker opens, and it shows
        assert seen.get("catga_resilience_circuit_opened_total", 0) >= 1
        assert "catga_circuit_breaker_state" in seen
    finally:
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    # Locust's own table (web UI, --csv): every message once, its failures as failures
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    with (tmp_path / "locust_stats.csv").open() as f:
        total = next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")
    assert int(total["Request Count"]) == report["sent"] > 0
    failures = int(total["Failure Count"])
    assert failures == round(report["error_ratio"] * report["sent"]) > 0
