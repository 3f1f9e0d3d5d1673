"""Concurrency limiter (bulkhead): bound, bounded queue, rejection, queue timeout, cancellation;
and the per-publish fan-out bound."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest

from core import ConcurrencyLimiter, ErrorCode, Event, Mediator, QoS, Request


@dataclass(slots=True)
class Work(Request):
    x: int = 0


@dataclass(slots=True)
class Fan(Event):
    n: int = 0


def run(coro):
    return asyncio.run(coro)


class Gauge:
    """Tracks how many callers are inside at once and the peak."""

    def __init__(self) -> None:
        self.current = 0
        self.peak = 0
        self.entered: list[int] = []

    async def hold(self, ident: int, seconds: float) -> None:
        self.current += 1
        self.peak = max(self.peak, self.current)
        self.entered.append(ident)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.current -= 1


def test_limiter_on_mediator_bounds_concurrency_queues_and_rejects_the_rest():
    gauge = Gauge()

    async def slow(req):
        await gauge.hold(req.x, 0.02)
        return req.x

    async def main():
        lim = ConcurrencyLimiter(max_concurrency=4, max_queue=8)
        m = Mediator(limiter=lim)
        m.register(Work, slow)
        results = await asyncio.gather(*(m.send(Work(x=i)) for i in range(100)))
        return m, lim, results

    m, lim, results = run(main())
    ok = [r for r in results if r.ok]
    rejected = [r for r in results if not r.ok]
    assert gauge.peak == 4
    assert lim.peak_active == 4
    assert lim.peak_queue_depth == 8
    # 4 running + 8 queued were admitted (FIFO), the other 88 rejected at once
    assert [r.value for r in ok] == list(range(12))
    assert gauge.entered == list(range(12))
    assert len(rejected) == 88
    assert all(r.error.code is ErrorCode.REJECTED for r in rejected)
    assert lim.rejected == 88
    assert m.rejected == 88
    assert lim.admitted == 12
    assert lim.active == 0
    assert lim.queue_depth == 0
    assert m.active == 0


def test_limiter_publish_rejected_when_queue_full():
    gauge = Gauge()

    async def slow(e):
        await gauge.hold(e.n, 0.01)

    async def main():
        lim = ConcurrencyLimiter(max_concurrency=2, max_queue=1)
        m = Mediator(limiter=lim)
        m.subscribe(Fan, slow)
        results = await asyncio.gather(*(m.publish(Fan(n=i)) for i in range(10)))
        return lim, results

    lim, results = run(main())
    assert [r.ok for r in results] == [True] * 3 + [False] * 7
    assert all(r.error.code is ErrorCode.REJECTED for r in results[3:])
    assert gauge.peak == 2
    assert lim.rejected == 7
    assert (lim.active, lim.queue_depth) == (0, 0)


def test_limiter_queue_timeout_rejects_a_waiter():
    async def main():
        lim = ConcurrencyLimiter(1, 4, queue_timeout_s=0.05)
        assert await lim.acquire()
        t0 = time.perf_counter()
        admitted = await lim.acquire()
        elapsed = time.perf_counter() - t0
        snapshot = (lim.rejected, lim.queue_depth, lim.active)
        lim.release()
        return lim, admitted, elapsed, snapshot

    lim, admitted, elapsed, snapshot = run(main())
    assert admitted is False
    assert 0.04 <= elapsed < 0.5
    assert snapshot == (1, 0, 1)
    assert lim.active == 0
    assert lim.try_acquire()  # the slot is free again


def test_limiter_queue_timeout_through_mediator_returns_rejected():
    async def slow(_r):
        await asyncio.sleep(0.3)

    async def main():
        lim = ConcurrencyLimiter(1, 4, queue_timeout_s=0.05)
        m = Mediator(limiter=lim)
        m.register(Work, slow)
        holder = asyncio.create_task(m.send(Work(x=1)))
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        waiter = await m.send(Work(x=2))
        elapsed = time.perf_counter() - t0
        first = await holder
        return m, lim, waiter, elapsed, first

    m, lim, waiter, elapsed, first = run(main())
    assert first.ok
    assert waiter.error.code is ErrorCode.REJECTED
    assert elapsed < 0.25  # rejected at the queue timeout, not after the holder finished
    assert lim.rejected == 1
    assert m.rejected == 1
    assert (lim.active, lim.queue_depth) == (0, 0)


@pytest.mark.parametrize("queue_timeout_s", [None, 5.0])
def test_limiter_cancelled_queued_waiter_does_not_leak_a_slot(queue_timeout_s):
    async def main():
        lim = ConcurrencyLimiter(1, 2, queue_timeout_s=queue_timeout_s)
        assert await lim.acquire()
        waiter = asyncio.create_task(lim.acquire())
        await asyncio.sleep(0)
        depth_while_waiting = lim.queue_depth
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        depth_after_cancel = lim.queue_depth
        lim.release()
        return lim, depth_while_waiting, depth_after_cancel

    lim, depth_while_waiting, depth_after_cancel = run(main())
    assert depth_while_waiting == 1
    assert depth_after_cancel == 0
    assert lim.active == 0
    assert lim.rejected == 0
    assert lim.try_acquire()


@pytest.mark.parametrize("queue_timeout_s", [None, 5.0])
def test_limiter_waiter_cancelled_just_after_hand_off_gives_the_slot_back(queue_timeout_s):
    async def main():
        lim = ConcurrencyLimiter(1, 2, queue_timeout_s=queue_timeout_s)
        assert await lim.acquire()
        waiter = asyncio.create_task(lim.acquire())
        await asyncio.sleep(0)
        lim.release()  # the slot passes to the waiter...
        waiter.cancel()  # ...which is cancelled before it resumes
        with pytest.raises(asyncio.CancelledError):
            await waiter  # the cancellation must not be swallowed
        return lim

    lim = run(main())
    assert lim.active == 0
    assert lim.queue_depth == 0
    assert lim.try_acquire()


class HookedLimiter(ConcurrencyLimiter):
    """Runs ``after_release`` right after a release (to cancel a waiter at hand-off)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.after_release = None

    def release(self) -> None:
        super().release()
        if self.after_release is not None:
            self.after_release()


@pytest.mark.parametrize("queue_timeout_s", [None, 5.0])
def test_cancelled_send_waiting_for_a_slot_does_not_run_its_handler(queue_timeout_s):
    ran: list[int] = []

    async def handler(req):
        ran.append(req.x)
        await asyncio.sleep(0.01)

    async def main():
        lim = HookedLimiter(1, 4, queue_timeout_s=queue_timeout_s)
        m = Mediator(limiter=lim)
        m.register(Work, handler)
        holder = asyncio.create_task(m.send(Work(x=1)))
        await asyncio.sleep(0)
        queued = asyncio.create_task(m.send(Work(x=2)))
        await asyncio.sleep(0)
        assert lim.queue_depth == 1
        # the holder's release hands the slot to the queued send, which is then cancelled
        # before it resumes
        lim.after_release = queued.cancel
        assert (await holder).ok
        lim.after_release = None
        with pytest.raises(asyncio.CancelledError):
            await queued
        return m, lim

    m, lim = run(main())
    assert ran == [1]
    assert lim.active == 0
    assert lim.queue_depth == 0
    assert m.active == 0


def test_limiter_rejects_bad_arguments():
    with pytest.raises(ValueError):
        ConcurrencyLimiter(0)
    with pytest.raises(ValueError):
        ConcurrencyLimiter(1, -1)
    with pytest.raises(ValueError):
        ConcurrencyLimiter(1, 1, queue_timeout_s=0)


# ----------------------------------------------------------------------------- fan-out bound
@pytest.mark.parametrize("qos", [QoS.AT_MOST_ONCE, QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE])
def test_fanout_concurrency_bounds_handlers_in_flight_per_publish(qos):
    gauge = Gauge()

    def make(i: int):
        async def handler(_e):
            await gauge.hold(i, 0.002)

        return handler

    async def main():
        m = Mediator(fanout_concurrency=8)
        for i in range(100):
            m.subscribe(Fan, make(i), name=f"h{i}")
        return await m.publish(Fan(qos=qos))

    r = run(main())
    assert r.ok
    assert r.value.handlers == 100
    assert r.value.succeeded == 100
    assert gauge.peak == 8
    assert sorted(gauge.entered) == list(range(100))


@pytest.mark.parametrize("fanout_concurrency", [256, 2])
def test_cancelled_publish_cancels_its_in_flight_handlers(fanout_concurrency):
    finished: list[int] = []
    cancelled: list[int] = []

    def make(i: int):
        async def handler(_e):
            try:
                await asyncio.sleep(0.05)
                finished.append(i)
            except asyncio.CancelledError:
                cancelled.append(i)
                raise

        return handler

    async def main():
        lim = ConcurrencyLimiter(8)
        m = Mediator(limiter=lim, fanout_concurrency=fanout_concurrency)
        for i in range(4):
            m.subscribe(Fan, make(i), name=f"h{i}")
        task = asyncio.create_task(m.publish(Fan(qos=QoS.AT_MOST_ONCE)))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.08)  # longer than the handlers would have run
        return m, lim

    m, lim = run(main())
    in_flight = min(4, fanout_concurrency)
    assert sorted(cancelled) == list(range(in_flight))  # nothing left running unowned
    assert finished == []
    assert lim.active == 0
    assert m.active == 0


def test_fanout_concurrency_must_be_positive():
    with pytest.raises(ValueError):
        Mediator(fanout_concurrency=0)
