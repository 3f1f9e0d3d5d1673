"""End to end with a real Prometheus (Debian's package): it scrapes two real Locust runs on the
embedded core — failing_handlers (a handler outage opens a breaker) and overload (the bulkhead
rejects) — evaluates the compressed-window alert profile, and answers every dashboard query.

Proves: the metrics are scrapeable, every panel query of every dashboard parses and returns
data, the breaker alert reaches ``firing`` during the outage and the rejection alert during
overload.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from _support import free_port, require_tool

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "alerts" / "catga-rules.test-profile.yml"
pytestmark = pytest.mark.slow


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read().decode())


def _alert_named_by(expr_fragment: str) -> str:
    rules = yaml.safe_load(RULES.read_text())
    names = [r["alert"] for g in rules["groups"] for r in g["rules"]
             if "alert" in r and expr_fragment in r["expr"]]
    assert names, f"no alert in {RULES.name} uses {expr_fragment}"
    return names[0]


def _locust(scenario: str, port: int, seconds: int, tmp: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "scenarios" / f"{scenario}.py"),
         "--headless", "-u", "10", "-r", "10", "-t", f"{seconds}s", "--only-summary",
         "--metrics-port", str(port), "--report-dir", str(tmp / scenario)],
        cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_prometheus_scrapes_runs_answers_dashboards_and_fires_alerts(tmp_path: Path) -> None:
    from catga_bench.observability.dashboards import panel_queries

    binary = require_tool("prometheus", "apt-get install -y prometheus")
    breaker_alert = _alert_named_by("catga_circuit_breaker_state")
    rejection_alert = _alert_named_by("catga_resilience_bulkhead_rejected_total")
    failing_port, overload_port, prom_port = free_port(), free_port(), free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "catga", "static_configs": [{"targets": [
            f"127.0.0.1:{failing_port}", f"127.0.0.1:{overload_port}"]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    runs = [_locust("failing_handlers", failing_port, 22, tmp_path),
            _locust("overload", overload_port, 22, tmp_path)]
    prom = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    api = f"http://127.0.0.1:{prom_port}/api/v1"
    try:
        firing: set[str] = set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not {breaker_alert, rejection_alert} <= firing:
            time.sleep(1)
            try:
                alerts = _get(f"{api}/alerts")["data"]["alerts"]
            except OSError:
                continue
            firing |= {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}
        assert breaker_alert in firing, f"{breaker_alert} never fired; firing: {firing}"
        assert rejection_alert in firing, f"{rejection_alert} never fired; firing: {firing}"

        empty: list[str] = []
        checked = 0
        for dash in sorted((ROOT / "dashboards").glob("*.json")):
            for title, expr in panel_queries(json.loads(dash.read_text())):
                query = urllib.parse.urlencode({"query": expr})
                answer = _get(f"{api}/query?{query}")
                assert answer["status"] == "success", (dash.name, title, expr, answer)
                checked += 1
                if not answer["data"]["result"]:
                    empty.append(f"{dash.name}: {title}: {expr}")
        assert checked >= 20
        assert not empty, "panels without data:\n" + "\n".join(empty)
    finally:
        prom.terminate()
        prom.wait(timeout=30)
        outputs = [p.communicate(timeout=120)[0] for p in runs]
    for p, out in zip(runs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
