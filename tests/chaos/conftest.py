"""Helpers for end-to-end runs: Locust in a subprocess against the embedded core."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


@dataclass
class LocustRun:
    """A finished Locust run: exit code, combined output and the report (if written)."""

    code: int
    output: str
    report_dir: Path

    @property
    def report(self) -> dict[str, Any]:
        path = self.report_dir / "report.json"
        assert path.exists(), f"no report.json written; output:\n{self.output[-3000:]}"
        return json.loads(path.read_text())

    def slo(self, name: str) -> dict[str, Any]:
        rows = [r for r in self.report["slo"] if r["name"] == name]
        assert rows, f"no SLO row {name!r} in {[r['name'] for r in self.report['slo']]}"
        return rows[0]


def run_locust(scenario: str, tmp_path: Path, *args: str, seconds: int = 10, users: int = 20,
               env: dict[str, str] | None = None, timeout_s: int = 180) -> LocustRun:
    """Run ``locust -f scenarios/<scenario>.py --headless`` and return what happened."""
    report_dir = tmp_path / f"report-{scenario}"
    cmd = [
        sys.executable, "-m", "locust", "-f", str(SCENARIOS / f"{scenario}.py"), "--headless",
        "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--only-summary",
        "--report-dir", str(report_dir), *args,
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout_s, cwd=tmp_path,
        env={**os.environ, **(env or {})},
    )
    return LocustRun(proc.returncode, proc.stdout + proc.stderr, report_dir)


@pytest.fixture
def locust_run(tmp_path: Path):  # type: ignore[no-untyped-def]
    def _run(scenario: str, *args: str, **kwargs: Any) -> LocustRun:
        return run_locust(scenario, tmp_path, *args, **kwargs)

    return _run
