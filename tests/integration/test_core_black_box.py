"""The reference core served as a black box: ``catga-bench serve --asyncapi`` (its own process,
started here) driven through ``--sut asyncapi`` from its shipped AsyncAPI document, as a user
runs it. Clean it passes; its own seeded defects (``CATGA_BENCH_DEFECTS``, applied inside the
served core) still fail the gate although the harness sees nothing but the document:
``dedup_off`` at QoS 2 (duplicates) and ``ack_before_handling`` with a kill -9 of the core at
QoS 1 (lost), while the clean core under the same kill loses nothing.

Rates are modest (CI machines are noisy); the 10K msg/s figure of scenarios/core_black_box.py is
measured by hand (docs/sut.md). About 70 s on 2 cores.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from catga_bench.processes.brokers import BrokerProcess
from catga_bench.processes.coreproc import CoreProcess
from catga_bench.processes.locust import locust_command

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "scenarios" / "specs" / "catga-core.asyncapi.yaml"
SCENARIO = ROOT / "scenarios" / "core_black_box.py"

SCENARIO_FILE = '''
from catga_bench import CatgaUser, Scenario, SLOTargets, Stream, profiles


class BlackBoxCase(CatgaUser):
    scenario = Scenario(
        name="black_box_case", rate={rate}, qos={qos}, duplicate_ratio={dup},
        streams=[Stream("Input", handlers=[profiles.HandlerSpec("apply", {profile})])],
        sut="asyncapi", sut_spec={doc!r},
        slo=SLOTargets(p99_ms=100, max_lost=0, max_duplicates=0),
    )
'''


def _scenario(tmp_path: Path, *, qos: int, rate: int, dup: float = 0.0,
              profile: str = "profiles.Fast()") -> Path:
    """A scenario file for both sides: the core runs its handler, the harness its rate."""
    path = tmp_path / "black_box_case.py"
    path.write_text(SCENARIO_FILE.format(rate=rate, qos=qos, dup=dup, profile=profile,
                                         doc=str(DOC)))
    return path


def _core(tmp_path: Path, url: str, scenario: Path, qos: int,
          defect: str | None) -> CoreProcess:
    return CoreProcess("nats", url, tmp_path / "serve.log",
                       ["--asyncapi", str(DOC), "--scenario", str(scenario), "--qos", str(qos),
                        "--ack-wait-s", "2"],
                       env={"CATGA_BENCH_DEFECTS": defect or ""})


def _locust(tmp_path: Path, scenario: Path, url: str, run_time_s: int,
            *extra: str) -> tuple[int, dict[str, Any], str]:
    report_dir = tmp_path / "report"
    cmd = locust_command(scenario, users=5, run_time_s=run_time_s, report_dir=report_dir,
                         extra=("--nats-url", url, *extra))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    out = proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (report_dir / "report.json").exists(), out
    return proc.returncode, json.loads((report_dir / "report.json").read_text()), out


def test_the_core_as_a_black_box_passes_clean(nats_server: BrokerProcess,
                                              tmp_path: Path) -> None:
    """The shipped scenario and document at 2K msg/s, QoS 0: every input gets its one output."""
    core = _core(tmp_path, nats_server.url, SCENARIO, 0, None)
    core.start()
    try:
        code, r, out = _locust(tmp_path, SCENARIO, nats_server.url, 6, "--rate", "2000",
                               "--slo-min-throughput", "off")
    finally:
        core.stop()
    assert code == 0, f"{r['verdict']}\n{out}"
    assert r["sut"] == {"kind": "asyncapi", "spec": str(DOC),
                        "channels": ["catga.blackbox.Input", "catga.blackbox_out.Handled"]}
    assert r["handlers"]["handled"]["handled"] == r["sent"] > 8000
    assert (r["lost"], r["duplicates"], r["late"], r["unexpected"], r["nonconformant"]) == (
        0, 0, 0, 0, 0)
    assert "outputs" in core.output()  # the core's own periodic line or its summary


@pytest.mark.parametrize("defect", [None, "dedup_off"])
def test_dedup_off_fails_at_qos_2_as_a_black_box(nats_server: BrokerProcess, tmp_path: Path,
                                                  defect: str | None) -> None:
    """5% of inputs offered twice with the same correlation id (the core's dedup key): the
    clean core emits one output each; with dedup_off it emits two, the ledger counts them."""
    scenario = _scenario(tmp_path, qos=2, rate=500, dup=0.05)
    core = _core(tmp_path, nats_server.url, scenario, 2, defect)
    core.start()
    try:
        code, r, out = _locust(tmp_path, scenario, nats_server.url, 6)
    finally:
        core.stop()
    assert r["qos"] == 2 and r["redeliveries"] > 50
    assert r["lost"] == 0, r["verdict"]
    if defect is None:
        assert code == 0 and r["duplicates"] == 0, f"{r['verdict']}\n{out}"
    else:
        assert code == 1, f"{r['verdict']}\n{out}"
        assert r["duplicates"] >= r["redeliveries"] // 2 > 25
        assert "duplicates" in r["verdict"]


@pytest.mark.parametrize("defect", [None, "ack_before_handling"])
def test_a_kill_of_the_core_loses_only_with_ack_before_handling(
        nats_server: BrokerProcess, tmp_path: Path, defect: str | None) -> None:
    """kill -9 of the served core 3 s into a QoS 1 run, restarted at once. Clean: JetStream
    redelivers what the dead core took but never acked (after its 2 s ack wait): lost 0.
    ack_before_handling: what it acked and had not yet handled is gone: lost > 0, exit 1."""
    scenario = _scenario(tmp_path, qos=1, rate=500, profile="profiles.Io(latency_ms=50)")
    core = _core(tmp_path, nats_server.url, scenario, 1, defect)
    core.start()
    killed = threading.Event()

    def chaos() -> None:
        time.sleep(3.0)
        core.kill()
        killed.set()
        core.start()

    thread = threading.Thread(target=chaos)
    thread.start()
    try:
        code, r, out = _locust(tmp_path, scenario, nats_server.url, 10,
                               "--slo-p99-ms", "off")
    finally:
        thread.join()
        core.stop()
    assert killed.is_set() and core.starts == 2
    assert r["sent"] > 3500
    if defect is None:
        assert r["lost"] == 0, f"{r['verdict']}\n{out}"
        assert code == 0, f"{r['verdict']}\n{out}"
        assert r["latency_ms"]["max"] >= 1000  # the outage shows in latency
    else:
        assert code == 1, f"{r['verdict']}\n{out}"
        assert r["lost"] > 0 and "lost" in r["verdict"]
