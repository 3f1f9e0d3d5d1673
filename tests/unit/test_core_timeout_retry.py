"""Handler timeouts and retries (QoS >= 1): cut, counted, isolated; retried, not retried,
dead-lettered."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest

from core import (
    ErrorCode,
    Event,
    HandlerOptions,
    InMemoryDeadLetterQueue,
    Mediator,
    QoS,
    Request,
    Result,
    RetryPolicy,
)

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.001)
SLOW_S = 5.0
TIMEOUT_S = 0.2


@dataclass(slots=True)
class Slow(Event):
    n: int = 0


@dataclass(slots=True)
class Other(Event):
    n: int = 0


@dataclass(slots=True)
class Ask(Request):
    n: int = 0


def run(coro):
    return asyncio.run(coro)


# ----------------------------------------------------------------------------- timeouts
def test_event_handler_timeout_cuts_it_and_does_not_delay_others():
    marks: dict[str, float] = {}
    cancelled: list[bool] = []

    async def sleeper(_e):
        try:
            await asyncio.sleep(SLOW_S)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def fast(_e):
        await asyncio.sleep(0)
        marks["fast_done"] = time.perf_counter()

    async def other(_e):
        marks["other_done"] = time.perf_counter()

    async def main():
        m = Mediator()
        m.subscribe(Slow, sleeper, name="sleeper", options=HandlerOptions(timeout_s=TIMEOUT_S))
        m.subscribe(Slow, fast, name="fast")
        m.subscribe(Other, other)
        t0 = time.perf_counter()
        slow_task = asyncio.create_task(m.publish(Slow(qos=QoS.AT_MOST_ONCE)))
        await asyncio.sleep(0.01)
        other_result = await m.publish(Other())
        other_returned = time.perf_counter()
        slow_pending_then = not slow_task.done()
        slow_result = await slow_task
        return m, t0, slow_result, other_result, other_returned, slow_pending_then

    m, t0, slow_result, other_result, other_returned, slow_pending_then = run(main())
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0
    assert cancelled == [True]  # the handler was really cancelled, not abandoned
    assert m.timeouts == 1
    assert slow_result.ok
    assert slow_result.value.succeeded == 1
    assert [(n, e.code) for n, e in slow_result.value.failures] == [
        ("sleeper", ErrorCode.TIMEOUT)
    ]
    # the fast handler of the same event finished immediately
    assert marks["fast_done"] - t0 < 0.1
    # a publish of another event type finished while the slow one was still waiting
    assert other_result.ok
    assert slow_pending_then
    assert other_returned - t0 < 0.1


def test_event_timeout_qos1_is_retried_then_dead_lettered():
    calls = 0

    async def sleeper(_e):
        nonlocal calls
        calls += 1
        await asyncio.sleep(SLOW_S)

    async def main():
        dlq = InMemoryDeadLetterQueue()
        m = Mediator(retry=FAST_RETRY, dead_letters=dlq)
        m.subscribe(Slow, sleeper, name="sleeper", options=HandlerOptions(timeout_s=0.05))
        t0 = time.perf_counter()
        r = await m.publish(Slow(qos=QoS.AT_LEAST_ONCE))
        return m, dlq, r, time.perf_counter() - t0

    m, dlq, r, elapsed = run(main())
    assert calls == 3
    assert m.timeouts == 3
    assert m.retries == 2
    assert elapsed < 1.0
    assert r.value.failures[0][1].code is ErrorCode.TIMEOUT
    assert dlq.total == 1
    assert dlq.letters[0].error.code is ErrorCode.TIMEOUT


@pytest.mark.parametrize("qos", [QoS.AT_MOST_ONCE, QoS.EXACTLY_ONCE])
def test_send_timeout_cuts_the_handler(qos):
    cancelled: list[bool] = []

    async def sleeper(_r):
        try:
            await asyncio.sleep(SLOW_S)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main():
        m = Mediator(retry=RetryPolicy(max_attempts=1))
        m.register(Ask, sleeper, options=HandlerOptions(timeout_s=TIMEOUT_S))
        t0 = time.perf_counter()
        r = await m.send(Ask(qos=qos))
        return m, r, time.perf_counter() - t0

    m, r, elapsed = run(main())
    assert 0.15 <= elapsed < 1.0
    assert not r.ok
    assert r.error.code is ErrorCode.TIMEOUT
    assert m.timeouts == 1
    assert cancelled == [True]
    assert m.active == 0


def test_send_timeout_does_not_delay_a_concurrent_send():
    async def handler(req):
        if req.n == 0:
            await asyncio.sleep(SLOW_S)
        return req.n

    async def main():
        m = Mediator()
        m.register(Ask, handler, options=HandlerOptions(timeout_s=TIMEOUT_S))
        t0 = time.perf_counter()
        slow = asyncio.create_task(m.send(Ask(n=0, qos=QoS.AT_MOST_ONCE)))
        await asyncio.sleep(0)
        quick = await m.send(Ask(n=1))
        quick_elapsed = time.perf_counter() - t0
        return quick, quick_elapsed, await slow, m

    quick, quick_elapsed, slow, m = run(main())
    assert quick.value == 1
    assert quick_elapsed < 0.1
    assert slow.error.code is ErrorCode.TIMEOUT
    assert m.timeouts == 1


def test_timeout_must_be_positive():
    m = Mediator()

    async def h(_e):
        return None

    with pytest.raises(ValueError):
        m.subscribe(Slow, h, options=HandlerOptions(timeout_s=0))


# ----------------------------------------------------------------------------- retries
@pytest.mark.parametrize("suspends", [False, True])
def test_qos1_send_failing_twice_succeeds_on_third_attempt(suspends):
    calls = 0

    async def flaky(req):
        nonlocal calls
        calls += 1
        if suspends:
            await asyncio.sleep(0)
        if calls <= 2:
            raise ConnectionError("transient")
        return req.n * 10

    async def main():
        m = Mediator(retry=FAST_RETRY)
        m.register(Ask, flaky)
        return m, await m.send(Ask(n=4, qos=QoS.AT_LEAST_ONCE))

    m, r = run(main())
    assert r.ok
    assert r.value == 40
    assert calls == 3
    assert m.retries == 2


def test_qos1_send_retryable_failure_result_is_retried_until_exhausted():
    calls = 0

    async def always(_r):
        nonlocal calls
        calls += 1
        return Result.failure(ErrorCode.HANDLER_FAILED, "busy", retryable=True)

    async def main():
        m = Mediator(retry=FAST_RETRY)
        m.register(Ask, always)
        return m, await m.send(Ask())

    m, r = run(main())
    assert calls == 3
    assert m.retries == 2
    assert r.error.code is ErrorCode.HANDLER_FAILED
    assert r.error.message == "busy"


@pytest.mark.parametrize("kind", ["send", "publish"])
def test_non_retryable_failure_is_not_retried(kind):
    calls = 0

    async def invalid(_m):
        nonlocal calls
        calls += 1
        return Result.failure(ErrorCode.INVALID, "bad input", retryable=False)

    async def main():
        dlq = InMemoryDeadLetterQueue()
        m = Mediator(retry=FAST_RETRY, dead_letters=dlq)
        if kind == "send":
            m.register(Ask, invalid)
            r = await m.send(Ask(qos=QoS.AT_LEAST_ONCE))
        else:
            m.subscribe(Slow, invalid, name="invalid")
            r = await m.publish(Slow(qos=QoS.AT_LEAST_ONCE))
        return m, dlq, r

    m, dlq, r = run(main())
    assert calls == 1
    assert m.retries == 0
    if kind == "send":
        assert r.error.code is ErrorCode.INVALID
        assert not r.error.retryable
    else:
        # a non-retryable event failure is dead-lettered at once, after one attempt
        assert [(n, e.code) for n, e in r.value.failures] == [("invalid", ErrorCode.INVALID)]
        assert dlq.total == 1
        assert dlq.letters[0].error.message == "bad input"


def test_exhausted_event_delivery_is_dead_lettered_with_the_reason():
    calls = 0
    ok_calls = 0

    async def broken(_e):
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise RuntimeError(f"disk full #{calls}")

    async def fine(_e):
        nonlocal ok_calls
        ok_calls += 1

    async def main():
        dlq = InMemoryDeadLetterQueue()
        m = Mediator(retry=FAST_RETRY, dead_letters=dlq)
        m.subscribe(Slow, broken, name="broken")
        m.subscribe(Slow, fine, name="fine")
        event = Slow(n=9, qos=QoS.AT_LEAST_ONCE)
        r = await m.publish(event)
        return m, dlq, event, r

    m, dlq, event, r = run(main())
    assert calls == 3
    assert ok_calls == 1  # the handler that succeeded is not retried
    assert m.retries == 2
    assert r.ok
    assert r.value.succeeded == 1
    assert [(n, e.code) for n, e in r.value.failures] == [("broken", ErrorCode.HANDLER_FAILED)]
    assert dlq.total == 1
    assert dlq.by_reason == {"handler_failed": 1}
    letter = dlq.letters[0]
    assert letter.message is event
    assert letter.handler == "broken"
    assert letter.error.code is ErrorCode.HANDLER_FAILED
    assert "RuntimeError: disk full #3" in letter.error.message  # the last error
    assert letter.attempts == 3
    assert abs(letter.at_unix_s - time.time()) < 5


def test_per_handler_retry_policy_overrides_the_mediator_default():
    calls = 0

    async def broken(_e):
        nonlocal calls
        calls += 1
        raise RuntimeError("x")

    async def main():
        m = Mediator(retry=FAST_RETRY)
        m.subscribe(Slow, broken, options=HandlerOptions(
            retry=RetryPolicy(max_attempts=5, base_delay_s=0.001)))
        await m.publish(Slow())
        return m

    m = run(main())
    assert calls == 5
    assert m.retries == 4
    assert m.dead_letters.letters[0].attempts == 5


def test_retry_policy_validation():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay_s=-1)
