"""Every scenario over a real broker: Locust generates, ``catga-bench serve`` runs the core in
its own process, a private nats-server / redis-server carries the messages, and the same gate
judges the run. Also: a core killed mid-run loses nothing, and a broker or core that is not
there gives exit code 3 and one line. (A broker killed -9 and restarted mid-run, at QoS 0, 1
and 2 on both brokers: the fault matrix, tests/chaos/test_fault_matrix.py.)"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from _support import CoreProcess, free_port, run_locust

from catga_bench.processes.brokers import BrokerProcess

TRANSPORTS = ["nats", "redis"]


@pytest.mark.parametrize(("transport", "scenario", "seconds"), [
    ("nats", "high_fanout", 6), ("nats", "slow_handlers", 6), ("nats", "failing_handlers", 15),
    ("redis", "high_fanout", 6), ("redis", "slow_handlers", 6),
    # failing_handlers over Redis in CI's time: the fault matrix's handler_outage cell
    # (tests/chaos/test_fault_matrix.py) opens and closes the breakers over Redis as well
])
def test_scenario_passes_over_the_broker(request: pytest.FixtureRequest, tmp_path: Path,
                                          transport: str, scenario: str, seconds: int) -> None:
    broker: BrokerProcess = request.getfixturevalue(f"{transport}_server")
    with CoreProcess(broker.kind, broker.url, scenario, tmp_path) as core:
        run = run_locust(scenario, tmp_path, "--transport", broker.kind,
                         f"--{broker.kind}-url", broker.url, seconds=seconds, users=10)
    report = run.report
    assert run.code == 0, f"{report['verdict']}\n{run.output[-3000:]}\n{core.output()[-2000:]}"
    assert report["transport"] == broker.kind
    assert report["broker"]["name"] == broker.kind and report["broker"]["publish_errors"] == 0
    assert report["sent"] > 0 and report["lost"] == 0 and report["duplicates"] == 0
    assert report["handled"] >= report["sent"]  # every handler of every message


def test_core_killed_mid_run_and_restarted_loses_nothing(redis_server: BrokerProcess,
                                                         tmp_path: Path) -> None:
    # over Redis only in CI's time: over NATS the same kill -9 and restart is
    # tests/integration/test_core_black_box.py's (clean: lost 0; ack_before_handling: lost > 0)
    broker = redis_server
    # QoS 1. At QoS 2 a crash leaves a window no store closes (a handler's effect and its mark
    # in the idempotency store are not atomic): docs/transports.md reports what it does.
    qos = 1
    core = CoreProcess(broker.kind, broker.url, "high_fanout", tmp_path, "--ack-wait-s", "2")
    core.start()

    def chaos() -> None:
        time.sleep(4)
        core.kill()  # kill -9 mid-run: messages in progress are neither acked nor reported
        time.sleep(1.5)
        core.start()

    t = threading.Thread(target=chaos)
    t.start()
    try:
        run = run_locust("high_fanout", tmp_path, "--transport", broker.kind,
                         f"--{broker.kind}-url", broker.url, "--qos", str(qos),
                         "--handlers", "20", "--slo-p99-ms", "off", "--slo-p999-ms", "off",
                         "--slo-min-throughput", "off", seconds=12, users=5)
    finally:
        t.join()
        core.stop()
    r = run.report
    assert core.starts == 2
    assert r["sent"] > 1000
    assert r["lost"] == 0, r["verdict"]
    assert r["core"]["transport"]["redelivered"] > 0  # the kill left work to redeliver
    # Duplicates across a crash are reported, not asserted away: a handler that finished in
    # the instant between its effect and the idempotency store's write runs again (no store
    # makes a side effect and its mark atomic). Redeliveries without a crash: next test.


@pytest.mark.parametrize(("qos", "duplicates_expected"), [(1, True), (2, False)])
def test_redeliveries_are_handled_twice_at_qos1_and_once_at_qos2(
        nats_server: BrokerProcess, tmp_path: Path, qos: int, duplicates_expected: bool) -> None:
    # over NATS only in CI's time: Redis redeliveries (XAUTOCLAIM) at QoS 1/2 are
    # tests/integration/test_transport_redis.py's and the fault matrix's broker_kill_restart cell's
    broker = nats_server
    # slow_handlers: 10% of messages take 1 s (a 5 s handler cut by its timeout); with a 0.5 s
    # ack wait the broker redelivers them while the first copy is still being handled
    with CoreProcess(broker.kind, broker.url, "slow_handlers", tmp_path, "--ack-wait-s", "0.5"):
        run = run_locust("slow_handlers", tmp_path, "--transport", broker.kind,
                         f"--{broker.kind}-url", broker.url, "--qos", str(qos),
                         "--slo-max-duplicates", "off", seconds=8, users=5)
    r = run.report
    redelivered = r["core"]["transport"]["redelivered"]
    assert redelivered > 100, r["core"]
    assert r["lost"] == 0, r["verdict"]
    if duplicates_expected:
        assert r["duplicates"] > 0  # the ledger sees what at-least-once does
    else:
        assert r["duplicates"] == 0, f"{redelivered} redeliveries: {r['verdict']}"


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_unreachable_broker_is_exit_3_and_one_line(kind: str, tmp_path: Path) -> None:
    url = f"{kind}://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    run = run_locust("high_fanout", tmp_path, "--transport", kind, f"--{kind}-url", url,
                     seconds=30)
    assert run.code == 3, run.output[-2000:]
    assert time.monotonic() - t0 < 25, "an unreachable broker must fail fast"
    assert "Traceback" not in run.output
    lines = [ln for ln in run.output.splitlines() if ln.startswith("catga-bench: error:")]
    assert len(lines) == 1 and "unreachable" in lines[0], run.output[-2000:]


def test_no_core_serving_is_exit_3(nats_server: BrokerProcess, tmp_path: Path) -> None:
    run = run_locust("high_fanout", tmp_path, "--transport", "nats", "--nats-url",
                     nats_server.url, seconds=30)
    assert run.code == 3, run.output[-2000:]
    assert "Traceback" not in run.output
    assert "no catga-bench core answered" in run.output
    assert "catga-bench serve --transport nats" in run.output


def test_serve_with_unreachable_broker_is_exit_3(tmp_path: Path) -> None:
    core = CoreProcess("redis", f"redis://127.0.0.1:{free_port()}", "high_fanout", tmp_path)
    with pytest.raises(AssertionError, match="serve exited 3"):
        core.start()
    assert "Traceback" not in core.output()
    assert "catga-bench serve: error: broker redis://" in core.output()
