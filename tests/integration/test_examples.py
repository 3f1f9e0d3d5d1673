"""The shipped examples run as a user runs them: ``locust -f examples/<x>/locustfile.py``,
embedded and with the core served over a real broker (the served core runs the team's own
handlers and mediator, read from the same file)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from catga_bench.processes.brokers import BrokerProcess
from catga_bench.processes.coreproc import CoreProcess
from catga_bench.processes.locust import locust_command, transport_options

pytestmark = pytest.mark.slow

PYTHON_HANDLERS = (Path(__file__).resolve().parents[2] / "examples" / "python-handlers"
                   / "locustfile.py")


def _run(tmp_path: Path, *extra: str) -> dict[str, Any]:
    report_dir = tmp_path / "report"
    cmd = locust_command(PYTHON_HANDLERS, users=5, run_time_s=4, report_dir=report_dir,
                         extra=extra)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report: dict[str, Any] = json.loads((report_dir / "report.json").read_text())
    return report


def _judge_own_handlers(r: dict[str, Any]) -> None:
    assert r["scenario"] == "python_handlers"
    assert set(r["handlers"]) == {"reserve_stock", "charge_card"}
    assert r["handlers"]["reserve_stock"]["handled"] == r["sent"] > 800
    assert r["lost"] == 0


def test_own_python_handlers_embedded(tmp_path: Path) -> None:
    _judge_own_handlers(_run(tmp_path))


def test_own_python_handlers_served_over_nats(nats_server: BrokerProcess,
                                              tmp_path: Path) -> None:
    core = CoreProcess("nats", nats_server.url, tmp_path / "serve.log",
                       ["--scenario", str(PYTHON_HANDLERS), "--scenarios", str(tmp_path)])
    core.start()
    try:
        r = _run(tmp_path, *transport_options("nats", nats_server.url))
    finally:
        core.stop()
    assert r["transport"] == "nats"
    _judge_own_handlers(r)
