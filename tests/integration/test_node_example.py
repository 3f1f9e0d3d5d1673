"""The Node.js order service (examples/order-service-node) as a black box, run as a user runs
it: ``locust -f scenarios/black_box_orders.py`` — the harness starts the service from its
AsyncAPI document, drives it at 1,000 orders/s over JetStream and judges what it emitted.
Clean it passes; each seeded defect fails the gate and the report names it; killed -9 and
restarted mid-run at QoS 1 it loses nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from catga_bench.processes.brokers import BrokerProcess
from catga_bench.processes.locust import locust_command

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "black_box_orders.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spec(folder: Path, tmp_path: Path, *, process: bool = True,
          name: str = "asyncapi.yaml") -> tuple[Path, int]:
    """The example's document ``name`` with the service on a free HTTP port (and, with
    ``process=False``, without ``process``: the test starts the service itself)."""
    doc = yaml.safe_load((folder / name).read_text(encoding="utf-8"))
    port = _free_port()
    bench = doc["x-catga-bench"]
    bench["process"]["env"]["HTTP_PORT"] = str(port)
    bench["process"]["cwd"] = str(folder)
    if not process:
        bench.pop("process")
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path, port


def _run(tmp_path: Path, spec: Path, url: str, defect: str = "", seconds: int = 6,
         extra: tuple[str, ...] = (), scenario: Path = SCENARIO,
         ) -> tuple[int, dict[str, Any], str]:
    report_dir = tmp_path / f"report-{defect or 'clean'}"
    cmd = locust_command(scenario, users=10, run_time_s=seconds, report_dir=report_dir,
                         extra=("--nats-url", url, "--sut-spec", str(spec), *extra))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path,
                          env={**os.environ, "ORDER_SERVICE_DEFECT": defect})
    out = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (report_dir / "report.json").exists(), out
    return proc.returncode, json.loads((report_dir / "report.json").read_text()), out


def test_the_node_service_passes_clean(nats_server: BrokerProcess, node_order_service: Path,
                                       tmp_path: Path) -> None:
    spec, _ = _spec(node_order_service, tmp_path)
    code, r, out = _run(tmp_path, spec, nats_server.url)
    assert code == 0, r["verdict"] + out
    assert r["sut"]["kind"] == "asyncapi" and r["sut"]["process"]["command"][0] == "node"
    assert (r["lost"], r["duplicates"], r["late"], r["unexpected"], r["nonconformant"]) == (
        0, 0, 0, 0, 0)
    assert r["achieved_rate"] >= 0.95 * r["offered_rate"] == 950
    assert r["failing_messages"] == []
    assert (tmp_path / "report-clean" / r["sut"]["process"]["log"]).is_file()


@pytest.mark.parametrize("defect", ["drop_1pct", "dup_1pct", "bad_schema_1pct",
                                    "stall_1s_every_5s"])
def test_each_seeded_defect_fails_the_gate_and_is_named(
        nats_server: BrokerProcess, node_order_service: Path, tmp_path: Path,
        defect: str) -> None:
    spec, _ = _spec(node_order_service, tmp_path)
    code, r, out = _run(tmp_path, spec, nats_server.url, defect,
                        seconds=8 if defect.startswith("stall") else 6)
    assert code == 1, r["verdict"] + out
    failed = {row["name"] for row in r["slo"] if not row["passed"]}
    one_pct = r["sent"] // 100
    if defect == "drop_1pct":  # acked, never confirmed: lost, and the ids are named
        assert failed == {"lost"} and one_pct - 2 <= r["lost"] <= one_pct + 2
        lost = [m for m in r["failing_messages"] if m["kind"] == "lost"]
        assert len(lost) == min(20, r["lost"])
        assert lost[0]["correlation_id"].endswith(".0.99")  # every 100th order
        assert lost[0]["outputs"] == [] and lost[0]["intended_at"].endswith("Z")
    elif defect == "dup_1pct":  # beyond at-least-once's budget
        assert failed == {"duplicate_ratio"} and r["duplicates"] >= one_pct - 2
        assert r["duplicates_by_qos"]["1"] == r["duplicates"]
        assert r["failing_messages"][0]["kind"] == "duplicate"
    elif defect == "bad_schema_1pct":
        assert failed == {"nonconformant"} and r["nonconformant"] >= one_pct - 2
        assert "status" in r["output_samples"][0]["reason"]
    else:  # every 5 s, 1 s of stall: it shows in P99 from the intended send time
        assert "p99_latency" in failed and r["latency_ms"]["p99"] >= 900
        assert r["lost"] == 0


def test_killed_and_restarted_mid_run_it_loses_nothing_at_qos_1(
        nats_server: BrokerProcess, node_order_service: Path, tmp_path: Path) -> None:
    """kill -9 of the service 3 s into the run, restarted 1 s later: JetStream keeps every
    stored order and redelivers what the dead process never acked (ack wait 2 s). Lost 0; any
    order confirmed twice across the crash is at-least-once's duplicate, reported under QoS 1."""
    spec, port = _spec(node_order_service, tmp_path, process=False)
    env = {**os.environ, "NATS_URL": nats_server.url, "HTTP_PORT": str(port),
           "ORDER_SERVICE_DEFECT": ""}
    log = open(tmp_path / "service.log", "ab")  # noqa: SIM115 - closed below

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["node", "service.js"], cwd=node_order_service, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while b"order-service ready" not in (tmp_path / "service.log").read_bytes()[-4000:]:
            assert proc.poll() is None and time.monotonic() < deadline, "service not ready"
            time.sleep(0.05)
        return proc

    services = [start()]

    def chaos() -> None:
        time.sleep(3.0)
        os.killpg(services[0].pid, signal.SIGKILL)
        services[0].wait(10)
        (tmp_path / "service.log").write_bytes(b"")  # wait for the new ready line
        time.sleep(1.0)
        services.append(start())

    thread = threading.Thread(target=chaos)
    thread.start()
    try:
        code, r, out = _run(tmp_path, spec, nats_server.url, seconds=10, extra=(
            "--slo-p99-ms", "off", "--slo-max-late", "off",
            "--slo-max-duplicate-ratio", "off"))
    finally:
        thread.join()
        for s in services:
            s.kill()
            s.wait(10)
        log.close()
    assert len(services) == 2
    assert r["sent"] > 5000
    assert r["lost"] == 0, r["verdict"] + out
    assert code == 0, r["verdict"]
    assert r["duplicates_by_qos"] == {"1": r["duplicates"]}
    assert r["latency_ms"]["max"] >= 1000  # the outage, from the intended send time


HTTP_SCENARIO = ROOT / "scenarios" / "http_orders.py"


def test_http_orders_pass_clean(nats_server: BrokerProcess, node_order_service: Path,
                                tmp_path: Path) -> None:
    """``locust -f scenarios/http_orders.py``: 1,000 POST /orders per second, open model."""
    spec, port = _spec(node_order_service, tmp_path, name="http.asyncapi.yaml")
    code, r, out = _run(tmp_path, spec, nats_server.url, scenario=HTTP_SCENARIO,
                        extra=("--host", f"http://127.0.0.1:{port}"))
    assert code == 0, r["verdict"] + out
    assert r["sut"]["kind"] == "http" and r["transport"] == "http"
    assert r["sut"]["channels"][0] == f"http://127.0.0.1:{port}/orders"
    assert r["lost"] == 0 and r["errors"] == {}
    assert r["achieved_rate"] >= 0.95 * r["offered_rate"] == 950


def test_http_orders_show_a_stalled_endpoint_in_p99(nats_server: BrokerProcess,
                                                    node_order_service: Path,
                                                    tmp_path: Path) -> None:
    """Every 5 s the service stalls 1 s: latency from each request's intended send time shows
    it (a closed-model client would send fewer requests and report a P99 of a few ms)."""
    spec, port = _spec(node_order_service, tmp_path, name="http.asyncapi.yaml")
    # 8 s: the run must hold a whole stall (every 5 s of the service's life), not its edge
    code, r, out = _run(tmp_path, spec, nats_server.url, "stall_1s_every_5s", seconds=8,
                        scenario=HTTP_SCENARIO, extra=("--host", f"http://127.0.0.1:{port}"))
    assert code == 1, r["verdict"] + out
    assert r["latency_ms"]["p99"] >= 900
    assert r["achieved_rate"] >= 0.95 * r["offered_rate"]  # the schedule was kept


def test_http_202_then_the_event_is_correlated(nats_server: BrokerProcess,
                                              node_order_service: Path,
                                              tmp_path: Path) -> None:
    """POST /orders/async answers 202 at once; the order is complete when OrderConfirmed,
    carrying the correlation id, comes out on NATS (the trigger -> event case)."""
    spec, port = _spec(node_order_service, tmp_path, name="http-async.asyncapi.yaml")
    code, r, out = _run(tmp_path, spec, nats_server.url, scenario=HTTP_SCENARIO,
                        extra=("--host", f"http://127.0.0.1:{port}"))
    assert code == 0, r["verdict"] + out
    assert r["lost_by_qos"] == {"1": 0} and r["duplicates"] == 0  # lost gated at QoS 1
    assert r["handlers"]["confirmOrder"]["handled"] == r["sent"] > 4000
    assert r["unexpected"] == 0


EXPERIMENT = ROOT / "experiments" / "black_box_partition.yaml"


@pytest.mark.parametrize("defect", ["", "drop_1pct"])
def test_the_partition_experiment_holds_clean_and_catches_a_lossy_service(
        node_order_service: Path, tmp_path: Path, defect: str) -> None:
    """``catga-bench chaos run experiments/black_box_partition.yaml``: the service's broker
    link goes through the fault proxy and is cut for 8 s. Clean, JetStream redelivers and
    nothing is lost (exit 0); a service that drops 1% of orders deviates (exit 1) — the
    experiment can fail."""
    import sys

    spec, _ = _spec(node_order_service, tmp_path)
    workdir = tmp_path / "chaos"
    proc = subprocess.run(
        [sys.executable, "-m", "catga_bench.chaos", "run", str(EXPERIMENT), "--workdir",
         str(workdir), "--var", f"spec={spec}", "--var", "duration=15", "--var", "down_s=4",
         "--var", "warmup_s=4"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
        env={**os.environ, "ORDER_SERVICE_DEFECT": defect})
    journal = json.loads((workdir / "journal.json").read_text())
    report = json.loads((workdir / "load-report" / "report.json").read_text())
    assert report["sut"]["kind"] == "asyncapi" and report["sent"] > 8000
    if not defect:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert journal["status"] == "completed" and not journal["deviated"]
        assert report["lost"] == 0
        assert report["latency_ms"]["max"] >= 3000  # the outage, seen at the service's output
        assert (workdir / "sut-order-service-node-js.log").read_text().count("ready") >= 1
    else:
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert journal["deviated"] is True and report["lost"] > 0
