"""The shipped examples run as a user runs them: ``locust -f examples/<x>/locustfile.py``.
Your own Python handlers embedded and with the core served over a real broker (the served core
runs the team's own handlers and mediator, read from the same file); a service in its own
process tested as a black box from its AsyncAPI document, clean and with seeded defects; the
document's ``x-catga-bench.process`` starts that service (and a service that never becomes ready
is exit 3 with its last lines)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

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
    """``locust -f examples/order-service-python/locustfile.py --nats-url URL``: the document's
    ``x-catga-bench.process`` starts the service (its environment, with ORDER_SERVICE_DEFECT,
    passes through) and stops it after the run."""
    env = {**os.environ, "ORDER_SERVICE_DEFECT": defect or ""}
    report_dir = tmp_path / f"report-{defect}"
    cmd = locust_command(ORDER_SERVICE / "locustfile.py", users=5, run_time_s=6,
                         report_dir=report_dir, extra=("--nats-url", url))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=env)
    assert (report_dir / "report.json").exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.returncode, json.loads((report_dir / "report.json").read_text())


def _spec_copy(tmp_path: Path, process: dict[str, Any] | None) -> Path:
    """The example's document in ``tmp_path`` with ``process`` replaced (None: removed, the
    service is then assumed running)."""
    doc = yaml.safe_load((ORDER_SERVICE / "asyncapi.yaml").read_text(encoding="utf-8"))
    doc["x-catga-bench"].pop("process")
    if process is not None:
        doc["x-catga-bench"]["process"] = process
    path = tmp_path / "asyncapi.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def test_a_service_in_a_black_box_passes_clean(nats_server: BrokerProcess,
                                               tmp_path: Path) -> None:
    """The python example starts itself: the report names the process and its log is there."""
    code, r = _black_box(tmp_path, nats_server.url, None)
    assert code == 0, r["verdict"]
    process = r["sut"].pop("process")
    assert r["sut"] == {"kind": "asyncapi", "spec": str(ORDER_SERVICE / "asyncapi.yaml"),
                        "channels": ["orders.placed", "orders.confirmed"]}
    assert process["command"] == ["python3", "service.py"]
    assert process["exit_code"] == 0  # it stopped on SIGTERM, cleanly, after the drain
    assert process["log"] == "sut-order-service.log"
    assert isinstance(process["pid"], int) and 0 < process["ready_s"] < 20
    log = (tmp_path / "report-None" / process["log"]).read_text()
    assert f"order-service: ready on {nats_server.url} (defect: none)" in log
    assert r["transport"] == "nats"
    # -t counts from before the service's start: about 5 of the 6 s carry load
    assert r["handlers"]["confirmOrder"]["handled"] == r["sent"] > 1200
    assert (r["lost"], r["duplicates"], r["late"], r["unexpected"], r["nonconformant"]) == (
        0, 0, 0, 0, 0)
    assert r["achieved_rate"] >= 0.95 * 300


# drop_1pct, dup_1pct and a kill -9 mid-run are exercised on the Node and Redis examples
# (test_node_example.py, test_redis_black_box.py); here one defect shows the Python one fails too
@pytest.mark.parametrize(("defect", "klass"), [("bad_schema_1pct", "nonconformant")])
def test_a_service_defect_fails_the_gate_and_the_report_names_it(
        nats_server: BrokerProcess, tmp_path: Path, defect: str, klass: str) -> None:
    code, r = _black_box(tmp_path, nats_server.url, defect)
    assert code == 1, r["verdict"]
    assert r[klass] >= r["sent"] // 100 - 1 > 10
    assert klass in r["verdict"]


def test_an_unreachable_service_broker_is_exit_3_and_one_line(tmp_path: Path) -> None:
    report_dir = tmp_path / "report"
    spec = _spec_copy(tmp_path, None)  # a service assumed running: the target finds no broker
    cmd = locust_command(ORDER_SERVICE / "locustfile.py", users=2, run_time_s=3,
                         report_dir=report_dir, extra=("--nats-url", "nats://127.0.0.1:1",
                                                       "--sut-spec", str(spec)))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 3
    assert ("catga-bench: error: the system under test's NATS server nats://127.0.0.1:1 "
            "cannot be reached") in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_distributed_run_starts_one_copy_of_the_service_on_the_master(
        nats_server: BrokerProcess, tmp_path: Path) -> None:
    """``--processes 2``: the master starts and stops the service; the workers only load it.
    Each worker reads every confirmation; those of its sibling's orders (the master's run id
    before the dash) are left to the sibling, not counted unexpected."""
    report_dir = tmp_path / "report-distributed"
    cmd = locust_command(ORDER_SERVICE / "locustfile.py", users=4, run_time_s=6,
                         report_dir=report_dir,
                         extra=("--processes", "2", "--nats-url", nats_server.url))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    r = json.loads((report_dir / "report.json").read_text())
    assert proc.returncode == 0, r["verdict"]
    assert r["workers"] == 2 and r["lost"] == 0 and r["sent"] > 1000
    assert r["unexpected"] == 0 and r["duplicates"] == 0
    assert r["broker"]["outputs_of_siblings"] >= r["sent"] // 4  # each saw the other's
    process = r["sut"]["process"]
    assert process["exit_code"] == 0 and process["ready_s"] is not None
    log = (report_dir / process["log"]).read_text()
    assert log.count("order-service: ready") == 1  # one copy
    assert proc.stderr.count("starting the system under test") == 1


def test_a_service_that_never_becomes_ready_is_exit_3_with_its_last_lines(
        tmp_path: Path) -> None:
    """No broker needed: the run stops before the target opens anything."""
    spec = _spec_copy(tmp_path, {
        "command": [sys.executable, "-c", "import time\nfor i in range(5): print('warming', i)"
                    "\nprint('still warming', flush=True)\ntime.sleep(60)"],
        "ready": {"log": "order-service: ready"}, "start_timeout_s": 2})
    report_dir = tmp_path / "report"
    cmd = locust_command(ORDER_SERVICE / "locustfile.py", users=2, run_time_s=5,
                         report_dir=report_dir, extra=("--sut-spec", str(spec)))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("catga-bench: error: "))
    assert lines[first].startswith("catga-bench: error: the system under test (order-service) "
                                   "was not ready within 2 s (waiting for a log line matching "
                                   "'order-service: ready'); it was killed; command: ")
    assert lines[first].endswith(f"log: {report_dir / 'sut-order-service.log'}")
    assert lines[first + 1:first + 7] == [*(f"    warming {i}" for i in range(5)),
                                          "    still warming"]
    assert "Traceback" not in proc.stdout + proc.stderr
    r = json.loads((report_dir / "report.json").read_text())
    assert r["exit_code"] == 3 and "was not ready within 2 s" in r["verdict"]
    assert r["sut"]["process"]["exit_code"] == -9 and r["sut"]["process"]["ready_s"] is None
    assert (report_dir / "sut-order-service.log").read_text().endswith("still warming\n")


def test_a_placeholder_with_no_url_is_exit_2_and_one_line(tmp_path: Path) -> None:
    spec = _spec_copy(tmp_path, {"command": ["python3", "service.py"],
                                 "env": {"API": "{http_url}/orders"},
                                 "ready": {"log": "ready"}})
    cmd = locust_command(ORDER_SERVICE / "locustfile.py", users=1, run_time_s=2,
                         report_dir=tmp_path / "report", extra=("--sut-spec", str(spec)))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (f"catga-bench: error: {spec}: /x-catga-bench/process/env/API: {{http_url}} has no "
            "value: the document has no http server and --host was not given") in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
