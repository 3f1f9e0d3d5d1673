"""A service in a black box, over NATS: an order service (a few lines of nats-py here; any
language in real life) described by an AsyncAPI 3 document, driven through the real generator,
ledger and judge. Clean, it passes; each seeded defect fails the gate on its own class."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest

from catga_bench.errors import EXIT_FAIL, EXIT_PASS
from catga_bench.generator.generator import Generator
from catga_bench.judge.gate import RunFacts, build_report
from catga_bench.processes.brokers import BrokerProcess
from catga_bench.targets.asyncapi import AsyncApiTarget
from catga_bench.workload.plan import RunPlan
from catga_bench.workload.scenario import Scenario
from catga_bench.workload.slo import SLOTargets

SPEC = Path(__file__).parent / "specs" / "orders-nats.yaml"
RATE = 400.0

Defect = Callable[[int], str | None]  # order number -> what goes wrong with it, or None


async def order_service(url: str, defect: Defect, stop: asyncio.Event) -> None:
    """Consumes test.orders.placed (stored by JetStream), confirms each order."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="TEST_ORDERS", subjects=["test.orders.placed"])
    count = 0

    async def on_order(msg: Any) -> None:
        nonlocal count
        count += 1
        cid = (msg.headers or {}).get("Catga-Correlation-Id")
        what = defect(count)
        out = {"order_id": cid, "status": "confirmed"}
        if what == "drop":
            return
        if what == "slow":  # confirmed 1.5 s later, without holding up the next orders
            asyncio.get_running_loop().call_later(
                1.5, lambda: asyncio.ensure_future(
                    nc.publish("test.orders.confirmed", orjson.dumps(out))))
            return
        if what == "bad_schema":
            out["status"] = "maybe"
        if what == "stray":
            await nc.publish("test.orders.confirmed", orjson.dumps({"order_id": "nobody's",
                                                                    "status": "confirmed"}))
        await nc.publish("test.orders.confirmed", orjson.dumps(out))
        if what == "dup":
            await nc.publish("test.orders.confirmed", orjson.dumps(out))

    await nc.subscribe("test.orders.placed", cb=on_order)
    await nc.flush()
    await stop.wait()
    await nc.drain()


def _run(url: str, defect: Defect, qos: int = 1, drain_s: float = 5.0,
         late_grace_s: float = 0.5) -> dict[str, Any]:
    scenario = Scenario("orders", rate=RATE, streams=[], qos=qos, sut="asyncapi",
                        sut_spec=str(SPEC))

    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        service = asyncio.create_task(order_service(url, defect, stop))
        await asyncio.sleep(0.5)  # the service made its stream and subscribed
        plan = RunPlan.of(scenario)
        assert plan.spec is not None
        generator = Generator(plan, AsyncApiTarget(plan.spec, url=url,
                                                   late_grace_s=late_grace_s))
        started = time.time()
        await generator.start()
        generator.set_producer_rate(1, RATE)
        await asyncio.sleep(2.0)
        stopped = time.time()
        payload = await generator.finish(drain_timeout_s=drain_s)
        stop.set()
        await service
        facts = RunFacts("orders", "nats", qos, RATE, started, None, stopped,
                         sut={"kind": "asyncapi", "spec": str(SPEC),
                              "channels": plan.channels()})
        return build_report(payload, facts, SLOTargets(p99_ms=250))

    return asyncio.run(main())


def _every(n: int, what: str) -> Defect:
    return lambda i: what if i % n == 0 else None


@pytest.fixture
def url(nats_server: BrokerProcess) -> str:
    return nats_server.url


def test_a_clean_service_passes(url: str) -> None:
    r = _run(url, lambda i: None)
    assert r["exit_code"] == EXIT_PASS, r["verdict"]
    assert r["sut"]["kind"] == "asyncapi"
    assert r["sut"]["channels"] == ["test.orders.placed", "test.orders.confirmed"]
    assert r["sent"] > 600
    assert r["handlers"] == {"confirmOrder": {"handled": r["sent"], "failed": 0}}
    assert (r["lost"], r["duplicates"], r["late"], r["unexpected"], r["nonconformant"]) == (
        0, 0, 0, 0, 0)


@pytest.mark.parametrize(("defect", "klass", "qos"), [
    ("drop", "lost", 1),
    ("dup", "duplicates", 2),  # duplicates are gated at exactly-once (QoS 1 allows them)
    ("bad_schema", "nonconformant", 1),
    ("stray", "unexpected", 1),
])
def test_each_seeded_defect_fails_the_gate_on_its_own_class(url: str, defect: str, klass: str,
                                                            qos: int) -> None:
    r = _run(url, _every(20, defect), qos)
    expected = r["sent"] // 20
    assert r[klass] == pytest.approx(expected, abs=1), r["verdict"]
    assert r["exit_code"] == EXIT_FAIL
    failed = {row["name"] for row in r["slo"] if not row["passed"]}
    assert failed == {klass}, r["verdict"]
    if klass in ("nonconformant", "unexpected"):
        sample = r["output_samples"][0]
        assert sample["kind"] == klass and sample["channel"] == "test.orders.confirmed"


def test_an_output_after_the_drain_deadline_is_late_and_its_message_stays_lost(
        url: str) -> None:
    # every 50th order is confirmed 1.5 s late; the drain gives up after 0.3 s and then reads
    # for 2.5 s more: the orders of the run's last 1.5 s are counted lost, then seen late
    r = _run(url, _every(50, "slow"), drain_s=0.3, late_grace_s=2.5)
    assert r["late"] > 0
    assert r["late"] == r["lost"], r["verdict"]
    assert {row["name"] for row in r["slo"] if not row["passed"]} == {"lost", "late"}
    assert r["output_samples"][0]["kind"] == "late"


def test_an_unreachable_server_is_an_environment_failure() -> None:
    from catga_bench.targets.base import TargetUnavailable

    scenario = Scenario("orders", rate=RATE, streams=[], sut="asyncapi", sut_spec=str(SPEC))
    plan = RunPlan.of(scenario)
    assert plan.spec is not None

    async def start() -> None:
        await Generator(plan, AsyncApiTarget(plan.spec, url="nats://127.0.0.1:1")).start()

    with pytest.raises(TargetUnavailable, match="cannot be reached"):
        asyncio.run(start())


