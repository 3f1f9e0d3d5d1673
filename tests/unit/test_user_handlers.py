"""The in-process system under test: your own ``async def`` handlers and your own configured
mediator, driven by the real generator, ledger and judge (issue: "test your own system")."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from catga_bench.errors import ConfigError
from catga_bench.generator.generator import Generator
from catga_bench.judge.gate import RunFacts, build_report
from catga_bench.targets.embedded import EmbeddedTarget
from catga_bench.workload.plan import RunPlan
from catga_bench.workload.profiles import UserHandler
from catga_bench.workload.scenario import Scenario, Stream
from catga_bench.workload.slo import SLOTargets
from core import ConcurrencyLimiter, ErrorCode, Mediator, Result, RetryPolicy

OFF = SLOTargets(p99_ms=None, max_error_ratio=None)


def _run(scenario: Scenario, seconds: float = 1.0, targets: SLOTargets = OFF) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        generator = Generator(RunPlan.of(scenario), EmbeddedTarget())
        started = time.time()
        await generator.start()
        generator.set_producer_rate(1, scenario.rate)
        await asyncio.sleep(seconds)
        stopped = time.time()
        payload = await generator.finish()
        facts = RunFacts(scenario.name, "embedded", scenario.qos, scenario.rate, started, None,
                         stopped)
        return build_report(payload, facts, targets)

    return asyncio.run(main())


async def record_order(msg: Any) -> None:
    return None


async def charge_card(msg: Any) -> Result[Any] | None:
    """Declines every 10th order for good (a non-retryable failure)."""
    if msg.seq % 10 == 0:
        return Result.failure(ErrorCode.HANDLER_FAILED, "card declined")
    return None


def test_own_handlers_are_named_counted_and_their_failures_known() -> None:
    scenario = Scenario("own", rate=400, qos=1,
                        streams=[Stream("OrderPlaced", handlers=[record_order, charge_card])])
    specs = RunPlan.of(scenario).streams[0].handlers
    assert [h.name for h in specs] == ["record_order", "charge_card"]
    assert all(isinstance(h.profile, UserHandler) for h in specs)
    r = _run(scenario)
    sent = r["sent"]
    assert sent > 300
    declined = (sent + 9) // 10  # seq 0, 10, 20, ...
    assert r["handlers"]["record_order"] == {"handled": sent, "failed": 0}
    assert r["handlers"]["charge_card"] == {"handled": sent - declined, "failed": declined}
    assert r["lost"] == 0  # every declined order is a known failure, not a loss
    assert r["errors"].get("handler_failed") == declined
    assert r["dead_lettered"] == declined  # at QoS 1 the core dead-letters what fails for good


def test_a_handler_that_raises_is_retried_and_then_handled() -> None:
    attempts: dict[int, int] = {}

    async def flaky(msg: Any) -> None:
        attempts[msg.seq] = attempts.get(msg.seq, 0) + 1
        if msg.seq % 5 == 0 and attempts[msg.seq] == 1:
            raise ConnectionError("dependency hiccup")

    r = _run(Scenario("flaky", rate=300, qos=1, streams=[Stream("Tick", handlers=flaky)]))
    assert r["handlers"]["flaky"]["handled"] == r["sent"]
    assert r["retries"] >= (r["sent"] + 4) // 5 - 1
    assert r["lost"] == 0


def test_own_mediator_is_the_system_under_test() -> None:
    """Your limiter (one in flight, no queue) rejects what the scenario's default bulkhead
    (2,000 in flight) would have admitted: the run measures your mediator, not ours."""

    async def slow(msg: Any) -> None:
        await asyncio.sleep(0.02)

    def mine() -> Mediator:
        return Mediator(limiter=ConcurrencyLimiter(1, 0, name="mine"),
                        retry=RetryPolicy(max_attempts=1))

    streams = [Stream("Job", handlers=[slow])]
    ours = _run(Scenario("ours", rate=200, qos=0, streams=streams))
    yours = _run(Scenario("yours", rate=200, qos=0, streams=streams, mediator=mine))
    assert ours["rejected"] == 0
    assert yours["rejected"] > yours["sent"] // 2


def test_bad_handler_entries_and_mediators_are_clear_errors() -> None:
    def not_async(msg: Any) -> None:
        return None

    with pytest.raises(ConfigError, match=r"Stream 'Bad': handlers\[1\] must be a HandlerSpec"):
        Stream("Bad", handlers=[record_order, not_async]).handler_specs()
    scenario = Scenario("bad", rate=10, streams=[Stream("Ev", handlers=[record_order])],
                        mediator=lambda: "not a mediator")  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match=r"must return a core\.Mediator"):
        asyncio.run(Generator(RunPlan.of(scenario), EmbeddedTarget()).start())

