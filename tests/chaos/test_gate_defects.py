"""Gate sensitivity: ``catga-bench gate`` passes the clean build, and each seeded defect
(``CATGA_BENCH_DEFECTS``, catga_bench/targets/defects.py) makes the case responsible for it fail
with exit 1 on the expected SLO target. A gate that cannot fail is worthless.

One clean gate run covers every case involved (the session's ``clean_gate``, shared with
test_gate_embedded.py); each defect gets one run of the single case that must catch it. All of
them are ``catga-bench gate`` processes run two at a time (``gate_runs``, conftest.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _support import DEFECT_CASES, CleanGate

pytestmark = pytest.mark.slow

CASES = ("high_fanout", "failing_handlers", "overload", "exactly_once")


@pytest.fixture(scope="module")
def defect_gates(gate_runs: dict[str, tuple[int, dict[str, Any]]]
                 ) -> dict[str, tuple[int, dict[str, Any]]]:
    """defect -> (exit code, --json document) of ``catga-bench gate --profile ci --only CASE``
    with that defect seeded (the session's ``gate_runs``, tests/chaos/conftest.py)."""
    return {defect: gate_runs[defect] for defect, _, _ in DEFECT_CASES}


def _case(doc: dict[str, Any], name: str) -> dict[str, Any]:
    rows = [c for c in doc["cases"] if c["case"] == name and c["transport"] == "embedded"]
    assert len(rows) == 1, doc["cases"]
    return rows[0]


def test_clean_build_passes_every_case_that_must_catch_a_defect(clean_gate: CleanGate) -> None:
    doc = clean_gate.doc
    assert clean_gate.code == 0, json.dumps([(c["case"], c["verdict"]) for c in doc["cases"]])
    assert doc["passed"] is True and doc["defects"] == []
    for name in CASES:
        case = _case(doc, name)
        assert case["status"] == "PASS" and case["failed_targets"] == []
    assert _case(doc, "exactly_once")["figures"]["duplicates"] == 0
    assert _case(doc, "failing_handlers")["figures"]["lost"] == 0
    assert _case(doc, "overload")["figures"]["rejected"] > 0


@pytest.mark.parametrize(("defect", "case", "target"), DEFECT_CASES)
def test_each_seeded_defect_fails_its_case(
        defect_gates: dict[str, tuple[int, dict[str, Any]]], defect: str, case: str,
        target: str) -> None:
    code, doc = defect_gates[defect]
    row = _case(doc, case)
    assert code == 1, f"{defect}: gate exited {code}: {row['verdict']}"
    assert doc["defects"] == [defect] and doc["passed"] is False
    assert row["status"] == "FAIL" and target in row["failed_targets"], row["verdict"]
    slo = {r["name"]: r for r in row["slo"]}
    assert slo[target]["passed"] is False
    figures = row["figures"]
    if defect == "block_loop":
        assert figures["p99_ms"] >= 100 and figures["loop_lag_max_ms"] >= 150
    elif defect == "breaker_disabled":
        assert figures["breaker_opened"] == 0
        assert "breaker_closes_within" in row["failed_targets"]
    elif defect == "unbounded_queue":
        assert figures["rejected"] == 0
        assert "p99_latency" in row["failed_targets"]
    elif defect == "dedup_off":
        assert figures["duplicates"] > 0
    else:  # ack_before_handling: failures during the outage vanished after the early ack
        assert figures["lost"] > 0
