"""Fixtures for end-to-end runs: Locust in a subprocess (helpers in tests/_support.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from _support import CleanGate, LocustRun, run_locust

from catga_bench.suite.cli import main as gate_main

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
def clean_gate(tmp_path_factory: pytest.TempPathFactory) -> CleanGate:
    """The clean build through the gate, once per session (about 70 s)."""
    tmp = tmp_path_factory.mktemp("clean-gate")
    out = tmp / "gate.json"
    saved = os.environ.pop("CATGA_BENCH_DEFECTS", None)
    try:
        code = gate_main(["--profile", "ci", "--only", ",".join(CLEAN_CASES), "--json",
                          str(out), "--report-dir", str(tmp / "reports")])
    finally:
        if saved is not None:
            os.environ["CATGA_BENCH_DEFECTS"] = saved
    assert out.exists(), f"gate exited {code} without writing {out}"
    return CleanGate(code, json.loads(out.read_text()))
