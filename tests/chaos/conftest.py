"""Fixtures for end-to-end runs: Locust in a subprocess (helpers in tests/_support.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _support import LocustRun, run_locust

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


@pytest.fixture
def locust_run(tmp_path: Path):  # type: ignore[no-untyped-def]
    def _run(scenario: str, *args: str, **kwargs: Any) -> LocustRun:
        return run_locust(scenario, tmp_path, *args, **kwargs)

    return _run
