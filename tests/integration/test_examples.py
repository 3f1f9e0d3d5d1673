"""The shipped examples run as a user runs them: ``locust -f examples/<x>/locustfile.py``.
Your own Python handlers embedded and with the core served over a real broker (the served core
runs the team's own handlers and mediator, read from the same file); a service in its own
process tested as a black box from its AsyncAPI document, clean and with seeded defects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


ORDER_SERVICE = Path(__file__).resolve().parents[2] / "examples" / "order-service-python"


def _black_box(tmp_path: Path, url: str, defect: str | None) -> tuple[int, dict[str, Any]]:
    """The order service as a user runs it (its own process), then
    ``locust -f examples/order-service-python/locustfile.py --nats-url URL``."""
    env = {**os.environ, "ORDER_SERVICE_DEFECT": defect or ""}
    service = subprocess.Popen([sys.executable, str(ORDER_SERVICE / "service.py"),
                                "--nats-url", url], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        assert service.stdout is not None
        ready = service.stdout.readline()
        assert "ready" in ready, ready + service.stdout.read()
        report_dir = tmp_path / f"report-{defect}"
        cmd = locust_command(ORDER_SERVICE / "locustfile.py", users=5, run_time_s=6,
                             report_dir=report_dir, extra=("--nats-url", url))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    finally:
        service.terminate()
        service.wait(10)
    assert (report_dir / "report.json").exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.returncode, json.loads((report_dir / "report.json").read_text())


def test_a_service_in_a_black_box_passes_clean(nats_server: BrokerProcess,
                                               tmp_path: Path) -> None:
    code, r = _black_box(tmp_path, nats_server.url, None)
    assert code == 0, r["verdict"]
    assert r["sut"] == {"kind": "asyncapi", "spec": str(ORDER_SERVICE / "asyncapi.yaml"),
                        "channels": ["orders.placed", "orders.confirmed"]}
    assert r["transport"] == "nats"
    assert r["handlers"]["confirmOrder"]["handled"] == r["sent"] > 1500
    assert (r["lost"], r["duplicates"], r["late"], r["unexpected"], r["nonconformant"]) == (
        0, 0, 0, 0, 0)
    assert r["achieved_rate"] >= 0.95 * 300


@pytest.mark.parametrize(("defect", "klass"), [("drop_1pct", "lost"),
                                               ("bad_schema_1pct", "nonconformant")])
def test_a_service_defect_fails_the_gate_and_the_report_names_it(
        nats_server: BrokerProcess, tmp_path: Path, defect: str, klass: str) -> None:
    code, r = _black_box(tmp_path, nats_server.url, defect)
    assert code == 1, r["verdict"]
    assert r[klass] >= r["sent"] // 100 - 1 > 10
    assert klass in r["verdict"]


def test_an_unreachable_service_broker_is_exit_3_and_one_line(tmp_path: Path) -> None:
    report_dir = tmp_path / "report"
    cmd = locust_command(ORDER_SERVICE / "locustfile.py", users=2, run_time_s=3,
                         report_dir=report_dir, extra=("--nats-url", "nats://127.0.0.1:1"))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 3
    assert ("catga-bench: error: the system under test's NATS server nats://127.0.0.1:1 "
            "cannot be reached") in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def _start_service(url: str) -> subprocess.Popen[str]:
    service = subprocess.Popen([sys.executable, str(ORDER_SERVICE / "service.py"),
                                "--nats-url", url], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "ORDER_SERVICE_DEFECT": ""})
    assert service.stdout is not None
    ready = service.stdout.readline()
    assert "ready" in ready, ready + service.stdout.read()
    return service


def test_a_service_killed_and_restarted_mid_run_loses_nothing_at_qos_1(
        nats_server: BrokerProcess, tmp_path: Path) -> None:
    """kill -9 of the service mid-run: JetStream keeps every stored order and redelivers what
    the dead process took but never acked to the restarted one (after its ack wait). Lost 0;
    the orders confirmed twice across the crash are at-least-once's duplicates, reported."""
    import signal
    import threading
    import time

    services = [_start_service(nats_server.url)]

    def chaos() -> None:
        time.sleep(3.0)
        services[0].send_signal(signal.SIGKILL)
        services[0].wait(10)
        time.sleep(1.0)
        services.append(_start_service(nats_server.url))

    report_dir = tmp_path / "report-kill"
    cmd = locust_command(ORDER_SERVICE / "locustfile.py", users=5, run_time_s=9,
                         report_dir=report_dir,
                         extra=("--nats-url", nats_server.url, "--slo-p99-ms", "off",
                                "--slo-max-late", "off"))
    thread = threading.Thread(target=chaos)
    thread.start()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    finally:
        thread.join()
        for s in services:
            s.kill()
            s.wait(10)
    r = json.loads((report_dir / "report.json").read_text())
    assert len(services) == 2
    assert r["sent"] > 2000
    assert r["lost"] == 0, r["verdict"]
    assert proc.returncode == 0, r["verdict"]
    # the outage shows where users look: latency from the intended send time
    assert r["latency_ms"]["max"] >= 1000
