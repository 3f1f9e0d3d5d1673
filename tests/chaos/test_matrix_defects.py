"""The fault matrix can fail: with a seeded defect (``CATGA_BENCH_DEFECTS``, inherited by the
chaos run's core) the cell that must catch it fails with exit 1 on the expected target, while
tests/chaos/test_fault_matrix.py shows the same cells pass on the clean build.

* dedup_off x broker kill -9 on NATS: the restart redelivers (hundreds per run, measured), so
  QoS 2 handles duplicates;
* breaker_disabled x handler outage: the breakers never open.
(unbounded_queue x overload_10x fails too — measured on Redis: 0 rejected, admitted P99 41 s,
2,112 / 2,206 QoS 1 / 2 messages unhandled at the end — but the embedded overload case of
tests/chaos/test_gate_defects.py already proves that defect is caught, so CI's minute goes
elsewhere.) About 45 s on 2 cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _support import require_tool

from catga_bench.suite.cli import main as gate_main

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("defect", "fault", "transport", "target"),
    [
        ("dedup_off", "broker_kill_restart", "nats", "duplicates_by_qos.2"),
        ("breaker_disabled", "handler_outage", "nats", "breaker.opened"),
    ],
)
def test_seeded_defect_fails_its_cell(defect: str, fault: str, transport: str, target: str,
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool(f"{transport}-server", f"apt-get install -y {transport}-server")
    monkeypatch.setenv("CATGA_BENCH_DEFECTS", defect)
    out = tmp_path / "gate.json"
    code = gate_main(["--faults", fault, "--transports", transport, "--profile", "ci",
                      "--json", str(out), "--report-dir", str(tmp_path / "reports")])
    doc = json.loads(out.read_text())
    assert doc["defects"] == [defect]
    [cell] = doc["cases"]
    assert code == 1 and cell["status"] == "FAIL", (code, cell["verdict"])
    assert target in cell["failed_targets"], cell["failed_targets"]
