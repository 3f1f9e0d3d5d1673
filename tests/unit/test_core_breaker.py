"""Circuit breaker: state machine with a fake clock, the failure-ratio window, and the mediator."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from core import (
    BreakerConfig,
    CircuitBreaker,
    CircuitState,
    ErrorCode,
    Event,
    HandlerOptions,
    Mediator,
    QoS,
    Request,
    RetryPolicy,
)


def run(coro):
    return asyncio.run(coro)


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


@dataclass(slots=True)
class Tick(Event):
    n: int = 0


@dataclass(slots=True)
class Query(Request):
    n: int = 0


def fail(b: CircuitBreaker) -> None:
    assert b.allow()
    b.record_failure()


def succeed(b: CircuitBreaker) -> None:
    assert b.allow()
    b.record_success()


def test_breaker_closed_open_half_open_closed_with_exact_counts():
    clock = FakeClock()
    transitions: list[tuple[CircuitState, CircuitState]] = []
    b = CircuitBreaker(
        "b",
        failure_threshold=3,
        open_duration_s=10.0,
        half_open_max_probes=2,
        clock=clock,
        on_state_change=lambda _b, old, new: transitions.append((old, new)),
    )
    # two failures, then a success resets the consecutive count
    fail(b)
    fail(b)
    succeed(b)
    fail(b)
    fail(b)
    assert b.state is CircuitState.CLOSED
    assert b.opened == 0
    # exactly the third consecutive failure opens it
    fail(b)
    assert b.state is CircuitState.OPEN
    assert b.opened == 1
    # open: fail fast, counted as rejected
    for _ in range(4):
        assert not b.allow()
    assert b.rejected == 4
    clock.advance(9.999)
    assert not b.allow()
    assert b.rejected == 5
    assert b.state is CircuitState.OPEN
    # after open_duration_s: half-open, exactly half_open_max_probes probes admitted
    clock.advance(0.001)
    assert b.allow()
    assert b.state is CircuitState.HALF_OPEN
    assert b.half_opened == 1
    assert b.allow()
    assert not b.allow()
    assert b.rejected == 6
    # one probe failure re-opens
    b.record_failure()
    assert b.state is CircuitState.OPEN
    assert b.opened == 2
    b.record_success()  # the other probe finishing late does not close an open breaker
    assert b.state is CircuitState.OPEN
    assert not b.allow()
    assert b.rejected == 7
    # half-open again; a probe success closes
    clock.advance(10.0)
    assert b.allow()
    assert b.state is CircuitState.HALF_OPEN
    assert b.half_opened == 2
    b.record_success()
    assert b.state is CircuitState.CLOSED
    assert (b.opened, b.half_opened, b.closed) == (2, 2, 1)
    assert b.failures == 6
    assert b.calls == 9
    assert transitions == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]
    # closed again with a fresh consecutive count: two failures do not open it
    fail(b)
    fail(b)
    assert b.state is CircuitState.CLOSED


def test_breaker_success_threshold_needs_that_many_probe_successes():
    clock = FakeClock()
    b = CircuitBreaker("s", failure_threshold=1, open_duration_s=1.0, success_threshold=2,
                       clock=clock)
    fail(b)
    assert b.state is CircuitState.OPEN
    clock.advance(1.0)
    succeed(b)
    assert b.state is CircuitState.HALF_OPEN
    succeed(b)
    assert b.state is CircuitState.CLOSED
    assert (b.opened, b.half_opened, b.closed) == (1, 1, 1)


def test_breaker_failure_ratio_opens_at_ratio_once_min_throughput_is_reached():
    clock = FakeClock()
    b = CircuitBreaker("r", failure_threshold=1000, failure_ratio=0.5, min_throughput=10,
                       window_s=10.0, clock=clock)
    for i in range(9):  # 5 successes, 4 failures: below min_throughput
        if i % 2 == 0:
            succeed(b)
        else:
            fail(b)
        clock.advance(0.1)
    assert b.state is CircuitState.CLOSED
    fail(b)  # 10 calls, 5 failed: 0.5 >= 0.5
    assert b.state is CircuitState.OPEN
    assert b.opened == 1


def test_breaker_failure_ratio_below_ratio_stays_closed():
    clock = FakeClock()
    b = CircuitBreaker("r", failure_threshold=1000, failure_ratio=0.5, min_throughput=10,
                       clock=clock)
    for _ in range(6):
        succeed(b)
    for _ in range(4):
        fail(b)  # 4/10
    fail(b)  # 5/11
    assert b.state is CircuitState.CLOSED
    fail(b)  # 6/12 = 0.5
    assert b.state is CircuitState.OPEN


def test_breaker_failure_ratio_needs_min_throughput():
    clock = FakeClock()
    b = CircuitBreaker("r", failure_threshold=1000, failure_ratio=0.5, min_throughput=10,
                       clock=clock)
    for _ in range(9):
        fail(b)  # 100 % failures, but only 9 calls
    assert b.state is CircuitState.CLOSED
    fail(b)
    assert b.state is CircuitState.OPEN


def test_breaker_failure_ratio_window_forgets_old_calls():
    clock = FakeClock()
    b = CircuitBreaker("r", failure_threshold=1000, failure_ratio=0.5, min_throughput=10,
                       window_s=10.0, clock=clock)
    for _ in range(9):
        fail(b)
    clock.advance(10.0)  # the window slid past all nine
    fail(b)  # 1 call in the window
    assert b.state is CircuitState.CLOSED
    for _ in range(8):
        fail(b)
    assert b.state is CircuitState.CLOSED  # 9 in the window
    fail(b)
    assert b.state is CircuitState.OPEN


def test_breaker_rejects_bad_arguments():
    with pytest.raises(ValueError):
        CircuitBreaker("x", failure_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker("x", open_duration_s=0)
    with pytest.raises(ValueError):
        CircuitBreaker("x", half_open_max_probes=0)
    with pytest.raises(ValueError):
        CircuitBreaker("x", failure_ratio=1.5)


# ----------------------------------------------------------------------------- through the mediator
OPEN_S = 0.05


def test_mediator_breaker_stops_calling_a_failing_event_handler_and_recovers():
    calls = 0
    healthy = False

    async def fragile(_e):
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if not healthy:
            raise RuntimeError("down")

    async def main():
        nonlocal healthy
        m = Mediator()
        m.subscribe(Tick, fragile, name="fragile", options=HandlerOptions(
            breaker=BreakerConfig(failure_threshold=5, open_duration_s=OPEN_S)))
        breaker = m.breakers["fragile"]
        first = [await m.publish(Tick(qos=QoS.AT_MOST_ONCE)) for _ in range(5)]
        state_after_5 = breaker.state
        calls_after_5 = calls
        short = [await m.publish(Tick(qos=QoS.AT_MOST_ONCE)) for _ in range(3)]
        calls_while_open = calls
        healthy = True
        await asyncio.sleep(OPEN_S * 1.5)
        probe = await m.publish(Tick(qos=QoS.AT_MOST_ONCE))
        return (breaker, first, state_after_5, calls_after_5, short, calls_while_open, probe)

    breaker, first, state_after_5, calls_after_5, short, calls_while_open, probe = run(main())
    assert calls_after_5 == 5
    assert all(r.value.failures[0][1].code is ErrorCode.HANDLER_FAILED for r in first)
    assert state_after_5 is CircuitState.OPEN
    assert calls_while_open == 5  # not called while open
    for r in short:
        assert r.ok
        assert [(n, e.code) for n, e in r.value.failures] == [
            ("fragile", ErrorCode.CIRCUIT_OPEN)
        ]
    assert breaker.rejected == 3
    assert calls == 6  # the half-open probe ran
    assert probe.value.succeeded == 1
    assert breaker.state is CircuitState.CLOSED
    assert (breaker.opened, breaker.half_opened, breaker.closed) == (1, 1, 1)


def test_mediator_half_open_breaker_admits_one_probe_among_concurrent_calls():
    calls = 0
    healthy = False

    async def fragile(_e):
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if not healthy:
            raise RuntimeError("down")

    async def main():
        nonlocal healthy
        m = Mediator()
        m.subscribe(Tick, fragile, name="fragile", options=HandlerOptions(
            breaker=BreakerConfig(failure_threshold=1, open_duration_s=OPEN_S)))
        await m.publish(Tick(qos=QoS.AT_MOST_ONCE))
        healthy = True
        await asyncio.sleep(OPEN_S * 1.5)
        results = await asyncio.gather(*(m.publish(Tick(qos=QoS.AT_MOST_ONCE))
                                         for _ in range(5)))
        return m.breakers["fragile"], results

    breaker, results = run(main())
    assert calls == 2  # the opening failure, then exactly one probe
    assert sum(r.value.succeeded for r in results) == 1
    codes = [e.code for r in results for _, e in r.value.failures]
    assert codes == [ErrorCode.CIRCUIT_OPEN] * 4
    assert breaker.state is CircuitState.CLOSED


def test_mediator_breaker_on_send_returns_circuit_open_without_calling_handler():
    calls = 0

    async def down(_r):
        nonlocal calls
        calls += 1
        raise RuntimeError("down")

    async def main():
        m = Mediator(retry=RetryPolicy(max_attempts=1))
        m.register(Query, down, name="down", options=HandlerOptions(
            breaker=BreakerConfig(failure_threshold=5, open_duration_s=60.0)))
        failed = [await m.send(Query()) for _ in range(5)]
        rejected = [await m.send(Query()) for _ in range(4)]
        return m, failed, rejected

    m, failed, rejected = run(main())
    assert calls == 5
    assert all(r.error.code is ErrorCode.HANDLER_FAILED for r in failed)
    assert all(r.error.code is ErrorCode.CIRCUIT_OPEN for r in rejected)
    assert m.breakers["down"].state is CircuitState.OPEN
    assert m.breakers["down"].rejected == 4


def test_mediator_breaker_counts_a_timeout_as_a_failure():
    async def hangs(_e):
        await asyncio.sleep(5)

    async def main():
        m = Mediator()
        m.subscribe(Tick, hangs, name="hangs", options=HandlerOptions(
            timeout_s=0.01, breaker=BreakerConfig(failure_threshold=2, open_duration_s=60.0)))
        results = [await m.publish(Tick(qos=QoS.AT_MOST_ONCE)) for _ in range(3)]
        return m, results

    m, results = run(main())
    codes = [r.value.failures[0][1].code for r in results]
    assert codes == [ErrorCode.TIMEOUT, ErrorCode.TIMEOUT, ErrorCode.CIRCUIT_OPEN]
    assert m.breakers["hangs"].state is CircuitState.OPEN
    assert m.timeouts == 2
