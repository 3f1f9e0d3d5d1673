"""Fixtures for end-to-end runs: Locust in a subprocess (helpers in tests/_support.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _support import DEFECT_CASES, CleanGate, LocustRun, run_gates, run_locust

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


@pytest.fixture
def locust_run(tmp_path: Path):  # type: ignore[no-untyped-def]
    def _run(scenario: str, *args: str, **kwargs: Any) -> LocustRun:
        return run_locust(scenario, tmp_path, *args, **kwargs)

    return _run


#: the embedded cases one clean gate run covers, shared by the tests that need a clean run of
#: them (test_gate_defects' control, test_gate_embedded's scenario checks)
CLEAN_CASES = ("high_fanout", "high_throughput", "slow_handlers", "failing_handlers",
               "overload", "exactly_once")


@pytest.fixture(scope="session")
def gate_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, dict[str, Any]]]:
    """Every gate run the sensitivity tests read, once per session, two processes at a time
    (longest first): the clean build over CLEAN_CASES ("clean", ~85 s) and each seeded defect
    over the one case that must catch it (its name; ~25-30 s each). Each defect's run must
    fail on its target, which sharing the CPU cannot undo; the clean run must pass beside one
    other run, as the fault matrix's cells do."""
    order = sorted(DEFECT_CASES, key=lambda d: d[0] != "unbounded_queue")
    gates = [("clean", list(CLEAN_CASES), None),
             *((defect, [case], defect) for defect, case, _ in order)]
    return run_gates(tmp_path_factory.mktemp("gates"), gates)


@pytest.fixture(scope="session")
def clean_gate(gate_runs: dict[str, tuple[int, dict[str, Any]]]) -> CleanGate:
    """The clean build through the gate (from ``gate_runs``)."""
    return CleanGate(*gate_runs["clean"])
