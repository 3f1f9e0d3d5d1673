"""Every shipped experiment (experiments/*.yaml) run end to end with short durations through
``catga-bench chaos run``: the journal is written with Chaos Toolkit's fields, rollbacks are
played, no toxic is left on the proxy, and the experiment's own verdict is the one expected on
the clean build.

A representative subset runs by default (link latency, handler outage, link partition,
broker kill -9); ``CATGA_CHAOS_ALL=1`` runs all eight (about 25 s each on 2 cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _support import ROOT, require_tool

pytestmark = pytest.mark.slow

SHORT = ["--var", "duration=14", "--var", "warmup_s=4"]
# file, --var overrides, broker, expected (status, deviated), in the default subset
CASES: list[tuple[str, list[str], str, tuple[str, bool], bool]] = [
    ("link_latency", [*SHORT, "--var", "fault_s=4"], "nats", ("completed", False), True),
    ("handler_outage", [*SHORT], "nats", ("completed", False), True),
    # a partition: lost 0 and throughput back in 2-3 s in every run since the proxy forwards
    # server-first greetings (before, 1 in 4 connects through it stalled); the verdict is
    # reported and recovery checked rather than pinned
    ("link_partition", [*SHORT, "--var", "down_s=4"], "nats", ("any", False), True),
    ("broker_kill_restart", [*SHORT, "--var", "down_s=2"], "redis", ("completed", False), True),
    ("bandwidth_squeeze", [*SHORT, "--var", "fault_s=4"], "redis", ("completed", False), False),
    ("reset_peer_storm", [*SHORT, "--var", "fault_s=3"], "nats", ("any", False), False),
    # fixed since first run (completion batches kept for retry, drain waits the ack wait):
    # lost 0, throughput back 0.6 s after SIGCONT
    ("broker_pause", [*SHORT, "--var", "pause_s=4"], "nats", ("completed", False), False),
    # finding: over NATS the 10x overload misses: rejected QoS 1 messages are nacked and
    # redelivered (rejected 109,629 of 23,169 sent), the backlog stays in the broker when the
    # run ends (counted lost: 21,028), P99 2.1 s — the core should fetch only what its bulkhead
    # can take instead
    ("overload_10x", ["--var", "duration=12"], "nats", ("failed", True), False),
]
RUN_ALL = os.environ.get("CATGA_CHAOS_ALL") == "1"


def _run(name: str, overrides: list[str], tmp_path: Path) -> tuple[int, str, dict[str, Any]]:
    journal = tmp_path / "journal.json"
    proc = subprocess.run(
        [sys.executable, "-m", "catga_bench.chaos", "run", str(ROOT / "experiments" /
                                                               f"{name}.yaml"),
         "--journal", str(journal), "--workdir", str(tmp_path / "work"), *overrides],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert journal.exists(), out[-3000:]
    return proc.returncode, out, json.loads(journal.read_text())


@pytest.mark.parametrize(
    ("name", "overrides", "broker", "expected"),
    # not collected (rather than skipped: under CI nothing may skip) unless CATGA_CHAOS_ALL=1
    [pytest.param(n, o, b, e, id=n) for n, o, b, e, default in CASES if default or RUN_ALL])
def test_shipped_experiment(name: str, overrides: list[str], broker: str,
                            expected: tuple[str, bool], tmp_path: Path) -> None:
    require_tool(f"{broker}-server", f"apt-get install -y {broker}-server")
    code, out, j = _run(name, overrides, tmp_path)
    for key in ("chaoslib-version", "experiment", "status", "start", "end", "duration",
                "steady_states", "run", "rollbacks", "deviated"):
        assert key in j, key
    status, deviated = expected
    after = j["steady_states"]["after"]
    assert j["steady_states"]["before"]["steady_state_met"] is True, out[-3000:]
    assert after is not None, out[-3000:]
    assert j["run"] and all(e["status"] == "succeeded" for e in j["run"]), j["run"]
    # rollbacks played and none failed; the link is clean afterwards
    assert len(j["rollbacks"]) == len(j["experiment"]["rollbacks"]) >= 1
    assert all(e["status"] == "succeeded" for e in j["rollbacks"]), j["rollbacks"]
    probes = {p["activity"]["type"]: p for p in after["probes"]}
    if "proxy_has_no_toxics" in probes:
        assert probes["proxy_has_no_toxics"]["output"]["toxics"] == []
        assert probes["proxy_has_no_toxics"]["tolerance_met"] is True
    assert probes["core_ping"]["tolerance_met"] is True
    report = probes["load_report"]["output"]
    assert report["figures"]["sent"] > 500, report
    if status == "any":  # the finding: recovery is checked, the verdict is reported
        assert report["recovery"]["passed"] is True, report
        assert j["status"] in ("completed", "failed")
        assert j["deviated"] == (j["status"] == "failed")
        return
    assert (j["status"], j["deviated"]) == (status, deviated), json.dumps(report)[:3000]
    assert code == (0 if status == "completed" else 1), out[-3000:]
