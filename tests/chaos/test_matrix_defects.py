"""The fault matrix can fail: with a seeded defect (``CATGA_BENCH_DEFECTS``, inherited by the
chaos run's core) the cell that must catch it fails with exit 1 on the expected target, while
tests/chaos/test_fault_matrix.py shows the same cells pass on the clean build.

* dedup_off x broker kill -9 on NATS: the restart redelivers (hundreds per run, measured), so
  QoS 2 handles duplicates;
* breaker_disabled x handler outage: the breakers never open.
(unbounded_queue x overload_10x fails too — measured on Redis: 0 rejected, admitted P99 41 s,
2,112 / 2,206 QoS 1 / 2 messages unhandled at the end — but the embedded overload case of
tests/chaos/test_gate_defects.py already proves that defect is caught, so CI's minute goes
elsewhere.) Both cells run side by side in one gate run: about 25 s on 2 cores.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _support import require_tool

from catga_bench.suite.cli import main as gate_main

pytestmark = pytest.mark.slow


CELLS = [  # (defect, fault, target it must miss)
    ("dedup_off", "broker_kill_restart", "duplicates_by_qos.2"),
    ("breaker_disabled", "handler_outage", "breaker.opened"),
]


@pytest.fixture(scope="module")
def broken_matrix(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any]]:
    """Both cells in one gate run (--jobs 2: side by side), both defects seeded: neither defect
    touches the other cell's target (dedup_off makes no breaker open or stay shut;
    breaker_disabled makes no QoS 2 duplicate)."""
    require_tool("nats-server", "apt-get install -y nats-server")
    tmp = tmp_path_factory.mktemp("broken-matrix")
    out = tmp / "gate.json"
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("CATGA_BENCH_DEFECTS", ",".join(d for d, _, _ in CELLS))
        code = gate_main(["--faults", ",".join(f for _, f, _ in CELLS), "--transports", "nats",
                          "--profile", "ci", "--jobs", "2", "--json", str(out),
                          "--report-dir", str(tmp / "reports")])
    finally:
        mp.undo()
    return code, json.loads(out.read_text())


@pytest.mark.parametrize(("defect", "fault", "target"), CELLS)
def test_seeded_defect_fails_its_cell(broken_matrix: tuple[int, dict[str, Any]], defect: str,
                                      fault: str, target: str) -> None:
    code, doc = broken_matrix
    assert sorted(doc["defects"]) == sorted(d for d, _, _ in CELLS) and code == 1
    [cell] = [c for c in doc["cases"] if c["case"] == f"fault:{fault}"]
    assert cell["status"] == "FAIL", cell["verdict"]
    assert target in cell["failed_targets"], (defect, cell["failed_targets"])
