"""Prometheus exposition of the mediator's counters (CatgaCollector) and the loop-lag monitor."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core import (
    BreakerConfig,
    BucketHistogram,
    CatgaCollector,
    CircuitState,
    ConcurrencyLimiter,
    ErrorCode,
    Event,
    HandlerOptions,
    LoopLagMonitor,
    Mediator,
    QoS,
    Request,
    RetryPolicy,
    new_message_id,
)


@dataclass(slots=True)
class CreateOrder(Request):
    ok: bool = True


@dataclass(slots=True)
class OrderPlaced(Event):
    n: int = 0


@dataclass(slots=True)
class Hold(Request):
    pass


def run(coro):
    return asyncio.run(coro)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse an exposition into {(sample_name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def scrape(m: Mediator, monitor: LoopLagMonitor | None = None) -> str:
    registry = CollectorRegistry()
    registry.register(CatgaCollector(m, monitor))
    return generate_latest(registry).decode()


def test_collector_exports_mediator_counters_and_histograms():
    async def create(req):
        await asyncio.sleep(0)
        if not req.ok:
            raise RuntimeError("invalid order")
        return "id-1"

    async def h1(_e):
        return None

    async def h2(_e):
        await asyncio.sleep(0)

    async def h3(_e):
        return None

    async def hold(_r):
        await asyncio.sleep(0.01)

    async def dead(_e):
        raise RuntimeError("down")

    async def main():
        lim = ConcurrencyLimiter(1, 0, name="hold")
        m = Mediator(retry=RetryPolicy(max_attempts=1))
        m.register(CreateOrder, create)
        m.register(Hold, hold, options=HandlerOptions(limiter=lim))
        m.subscribe(OrderPlaced, h1, name="h1")
        m.subscribe(OrderPlaced, h2, name="h2")
        m.subscribe(OrderPlaced, h3, name="h3")
        for _ in range(3):
            assert (await m.send(CreateOrder())).ok
        assert not (await m.send(CreateOrder(ok=False))).ok
        for i in range(2):
            assert (await m.publish(OrderPlaced(n=i))).value.succeeded == 3
        held = await asyncio.gather(m.send(Hold()), m.send(Hold()), m.send(Hold()))
        assert [r.ok for r in held] == [True, False, False]

        @dataclass(slots=True)
        class Ping(Event):
            pass

        m.subscribe(Ping, dead, name="dead", options=HandlerOptions(
            breaker=BreakerConfig(failure_threshold=2, open_duration_s=60.0)))
        for _ in range(2):
            await m.publish(Ping(qos=QoS.AT_MOST_ONCE))
        assert m.breakers["dead"].state is CircuitState.OPEN

        async with LoopLagMonitor(interval_s=0.005) as monitor:
            await asyncio.sleep(0.03)
        return m, monitor

    m, monitor = run(main())
    text = scrape(m, monitor)
    s = samples(text)

    assert 'catga_commands_executed_total{request_type="CreateOrder",success="true"} 3.0' in text
    assert s["catga_commands_executed_total",
             (("request_type", "CreateOrder"), ("success", "false"))] == 1
    assert s["catga_events_published_total",
             (("event_type", "OrderPlaced"), ("handler_count", "3"))] == 2
    assert s["catga_resilience_bulkhead_rejected_total", (("limiter", "hold"),)] == 2
    assert s["catga_circuit_breaker_state", (("breaker", "dead"),)] == 1
    assert s["catga_resilience_circuit_opened_total", (("breaker", "dead"),)] == 1
    assert s["catga_limiter_active", (("limiter", "hold"),)] == 0

    # request duration histogram: one observation per send, cumulative buckets
    inf = s["catga_command_duration_milliseconds_bucket",
            (("le", "+Inf"), ("request_type", "CreateOrder"))]
    assert inf == 4
    assert s["catga_command_duration_milliseconds_count", (("request_type", "CreateOrder"),)] == 4
    assert "catga_command_duration_milliseconds_bucket{" in text
    buckets = [v for (name, labels), v in s.items()
               if name == "catga_command_duration_milliseconds_bucket"
               and ("request_type", "CreateOrder") in labels]
    assert buckets == sorted(buckets)  # cumulative

    assert "catga_event_loop_lag_milliseconds_bucket{" in text
    assert s["catga_event_loop_lag_milliseconds_count", ()] >= 2


def test_collector_without_monitor_omits_loop_lag_and_works_empty():
    text = scrape(Mediator())
    assert "catga_event_loop_lag_milliseconds" not in text
    assert "catga_resilience_retries_total 0.0" in text


def test_duplicates_and_successes_are_not_counted_as_handler_failures():
    async def slow(_e):
        await asyncio.sleep(0.005)

    async def main():
        m = Mediator()
        m.subscribe(OrderPlaced, slow, name="slow")
        mid = new_message_id()
        results = await asyncio.gather(
            *(m.publish(OrderPlaced(message_id=mid, qos=QoS.EXACTLY_ONCE)) for _ in range(4))
        )
        assert sum(r.value.duplicates for r in results) == 3
        return m

    m = run(main())
    text = scrape(m)
    assert "catga_event_handler_failures_total{" not in text
    assert samples(text)["catga_idempotency_hits_total", ()] == 3


@pytest.mark.parametrize("qos", [QoS.AT_MOST_ONCE, QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE])
@pytest.mark.parametrize("suspends", [False, True])
def test_each_failed_handler_attempt_is_counted_once(qos, suspends):
    async def broken(_e):
        if suspends:
            await asyncio.sleep(0)
        raise RuntimeError("x")

    async def main():
        m = Mediator(retry=RetryPolicy(max_attempts=2, base_delay_s=0.001))
        m.subscribe(OrderPlaced, broken, name="broken")
        await m.publish(OrderPlaced(qos=qos))
        return m

    m = run(main())
    attempts = 1 if qos is QoS.AT_MOST_ONCE else 2
    s = samples(scrape(m))
    assert s["catga_event_handler_failures_total",
             (("event_type", "OrderPlaced"), ("handler", "broken"))] == attempts
    assert s["catga_messages_failed_total", (("message_type", "OrderPlaced"),)] == 1


def test_timeouts_and_rejections_are_exported():
    async def hang(_r):
        await asyncio.sleep(5)

    async def main():
        m = Mediator(limiter=ConcurrencyLimiter(1, 0))
        m.register(Hold, hang, options=HandlerOptions(timeout_s=0.02))
        results = await asyncio.gather(m.send(Hold(qos=QoS.AT_MOST_ONCE)),
                                       m.send(Hold(qos=QoS.AT_MOST_ONCE)))
        return m, results

    m, results = run(main())
    assert [r.error.code for r in results] == [ErrorCode.TIMEOUT, ErrorCode.REJECTED]
    s = samples(scrape(m))
    assert s["catga_resilience_timeouts_total", ()] == 1
    assert s["catga_resilience_bulkhead_rejected_total", (("limiter", "mediator"),)] == 1


def test_bucket_histogram_is_cumulative_with_inf():
    h = BucketHistogram((1, 10))
    for v in (0.5, 1, 5, 50):
        h.observe(v)
    assert h.cumulative() == [("1", 2), ("10", 3), ("+Inf", 4)]
    assert h.count == 4
    assert h.sum == pytest.approx(56.5)
    with pytest.raises(ValueError):
        BucketHistogram((10, 1))


# ----------------------------------------------------------------------------- loop lag
def test_loop_lag_monitor_sees_a_blocked_loop():
    async def main():
        monitor = LoopLagMonitor(interval_s=0.01)
        async with monitor:
            await asyncio.sleep(0.02)
            time.sleep(0.2)  # block the loop
            await asyncio.sleep(0.03)
        return monitor

    monitor = run(main())
    assert monitor.max_lag_ms >= 150
    assert monitor.histogram.count >= 2
    # the blocked sample landed in a bucket at or above 100 ms
    cumulative = dict(monitor.histogram.cumulative())
    assert cumulative["+Inf"] - cumulative["100"] >= 1
    assert monitor._task is None  # stopped


def test_loop_lag_monitor_idle_loop_has_small_lag():
    async def main():
        async with LoopLagMonitor(interval_s=0.005) as monitor:
            await asyncio.sleep(0.05)
        return monitor

    monitor = run(main())
    assert monitor.histogram.count >= 3
    assert monitor.max_lag_ms < 100
