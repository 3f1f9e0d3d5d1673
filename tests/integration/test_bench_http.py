"""``catga-bench bench-http`` end to end on the Node example: a wrk floor, then one open-model
rate on the same service (the ratio is a benchmark's business: only the shape, the floor and
the rate being kept are asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _support import require_tool

from catga_bench.bench.http import main
from catga_bench.processes.brokers import BrokerProcess

pytestmark = pytest.mark.slow


def test_bench_http_reports_a_wrk_floor_and_keeps_the_rate(
        nats_server: BrokerProcess, node_order_service: Path, tmp_path: Path) -> None:
    require_tool("wrk", "apt-get install -y wrk")
    out = tmp_path / "out.json"
    code = main(["--spec", str(node_order_service / "http.asyncapi.yaml"), "--rates", "2000",
                 "--seconds", "4", "--nats-url", nats_server.url, "--json", str(out)])
    result = json.loads(out.read_text())
    assert code == 0, result
    assert result["floor"]["tool"] == "wrk" and result["floor"]["rps"] > 0, result["floor"]
    assert result["floor"]["non_2xx"] == 0 and result["floor"]["socket_errors"] == 0
    [row] = result["rates"]
    assert row["offered"] == 2000 and row["passed"] and row["exit_code"] == 0, row
    assert row["achieved"] >= 0.95 * 2000, row
    assert row["ratio"] == round(row["achieved"] / result["floor"]["rps"], 3)
    assert result["highest_passed"] == 2000
