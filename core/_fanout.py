"""Fan-out: one event to every handler subscribed to its type (the body of ``publish``).

:meth:`Fanout._process` runs one publish after admission. It makes the *first attempt* of every
handler through one of two paths, then settles the failures:

1. :meth:`Fanout._fanout_plain` (no handler has a circuit breaker, QoS 0 or 1: the common
   case). One *runner* coroutine awaits the handlers in turn and is stepped inline by hand
   (``coro.send(None)``). A handler that finishes without suspending costs one ``await`` and no
   Task. When a handler suspends, the runner holding it is moved into a Task that finishes just
   that handler, and a fresh runner carries on with the next one; at most
   ``fanout_concurrency`` such Tasks are in flight, a timeout is a timer that cancels its Task.
2. :meth:`Fanout._fanout` (any handler has a breaker, or QoS 2). Each handler's first step
   runs inline too: a handler without a breaker is called raw (below QoS 2), the others through
   ``_guarded`` (breaker, and per-handler idempotency at QoS 2); only a handler that suspends
   gets a Task, with the same bound and timers as path 1.
3. Then, back in :meth:`Fanout._process`, the failures: QoS 0 drops them (logged, rate-limited
   per handler, and counted); QoS 1/2 retries the retryable ones, all at once, and
   dead-letters whatever failed for good; QoS 2 duplicates are counted, never reported as
   failures. A clean publish returns the route's shared ``all_ok`` result (no allocation).

``DeliveryMode.ASYNC`` runs the same :meth:`Fanout._process` in a background Task (the
mediator's ``_background_publish``). The defect ``ack_before_handling`` (:mod:`core.defects`)
calls the two first-attempt paths itself and drops every failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from core._calls import DUPLICATE, EXACTLY_ONCE, HandlerCalls
from core._eager import as_result, complete, failed
from core._routes import EventRoute, Sub
from core.deadletter import DeadLetter, DeadLetterSink
from core.messages import Event
from core.result import Error, FanoutOutcome, Result

log = logging.getLogger("catga.mediator")

_OK = Result.OK


class Fanout(HandlerCalls):
    """The fan-out of ``publish``. Needs ``fanout_concurrency``, ``timing`` and
    ``dead_letters`` (set by :class:`~core.mediator.Mediator`)."""

    fanout_concurrency: int  # suspended handlers in flight at once per publish
    timing: bool  # record the publish time in the route's histogram (ms)
    dead_letters: DeadLetterSink

    async def _process(self, route: EventRoute, event: Event) -> Result[FanoutOutcome]:
        """One admitted publish: first attempts (path 1 or 2), then retries, dead letters or
        drops (3). Returns the outcome; handler failures never raise."""
        timing = self.timing
        t0 = time.perf_counter() if timing else 0.0
        if route.all_plain and event.qos != EXACTLY_ONCE:
            failures = await self._fanout_plain(route, event)
        else:
            failures = await self._fanout(route, event)
        if not failures:
            if timing:
                route.histogram.observe((time.perf_counter() - t0) * 1000.0)
            return route.all_ok
        qos = event.qos
        dropped: list[tuple[str, Error]] = []
        duplicates = 0
        if qos == EXACTLY_ONCE:
            duplicates = sum(1 for _, r in failures if r is DUPLICATE)
            failures = [(s, r) for s, r in failures if r is not DUPLICATE]
        if failures:
            if qos:
                retried = [
                    (sub, first) for sub, first in failures
                    if first.error is not None and first.error.retryable
                ]
                final = [(sub, r) for sub, r in failures if not (r.error and r.error.retryable)]
                if retried:
                    results = await asyncio.gather(*(self._retry(s, event, r) for s, r in retried))
                    final.extend(zip((s for s, _ in retried), results, strict=True))
                for sub, r in final:
                    if r is DUPLICATE:  # a redelivery handled it while this copy retried
                        duplicates += 1
                    elif r.error is not None:
                        self._dead_letter(event, sub, r.error)
                        dropped.append((sub.name, r.error))
            else:
                for sub, r in failures:
                    assert r.error is not None
                    self._drop(route, sub, r.error)
                    dropped.append((sub.name, r.error))
            if dropped:
                route.failed += 1
        if timing:
            route.histogram.observe((time.perf_counter() - t0) * 1000.0)
        n = len(route.subs)
        return Result(FanoutOutcome(n, n - len(dropped) - duplicates, tuple(dropped), duplicates))

    async def _fanout_plain(
        self, route: EventRoute, event: Event
    ) -> list[tuple[Sub, Result[Any]]]:
        """First attempt of every handler when none has a breaker (QoS 0/1).

        One runner coroutine awaits the handlers in turn and is stepped inline; when a handler
        suspends, the runner is detached into a Task that finishes just that handler, and a new
        runner carries on with the next one. Handlers that finish without suspending cost one
        ``await`` each, with no Task and no per-handler stepping.
        """
        failures: list[tuple[Sub, Result[Any]]] = []
        subs = route.subs
        state = _RunState()
        coro: Any = _run_plain(subs, event, 0, state, failures)
        try:
            yielded = coro.send(None)
        except StopIteration:
            return failures
        loop = asyncio.get_running_loop()
        pending: dict[asyncio.Task[Result[Any]], tuple[Sub, asyncio.TimerHandle | None]] = {}
        n = len(subs)
        try:
            while True:
                state.detached = True
                sub = subs[state.index]
                task = loop.create_task(complete(coro, yielded))
                pending[task] = (sub, loop.call_later(sub.timeout_s, task.cancel)
                                 if sub.timeout_s is not None else None)
                if len(pending) >= self.fanout_concurrency:
                    done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    self._collect(done, pending, failures, False)
                start = state.index + 1
                if start >= n:
                    break
                state = _RunState()
                coro = _run_plain(subs, event, start, state, failures)
                try:
                    yielded = coro.send(None)
                except StopIteration:
                    break
            if pending:
                done, _ = await asyncio.wait(pending)
                self._collect(done, pending, failures, False)
        except asyncio.CancelledError:  # do not orphan in-flight handlers
            for task in pending:
                task.cancel()
            raise
        return failures

    async def _fanout(self, route: EventRoute, event: Event) -> list[tuple[Sub, Result[Any]]]:
        """First attempt of every handler; returns the failures (handler, result)."""
        failures: list[tuple[Sub, Result[Any]]] = []
        pending: dict[asyncio.Task[Result[Any]], tuple[Sub, asyncio.TimerHandle | None]] = {}
        exactly_once = event.qos == EXACTLY_ONCE
        loop = asyncio.get_running_loop()
        for sub in route.subs:
            if sub.plain and not exactly_once:
                coro: Any = sub.call(event)
                try:
                    yielded = coro.send(None)
                except StopIteration as stop:
                    value = stop.value
                    if value is None or value is Result.OK:
                        continue
                    r = as_result(value)
                    if r.error is not None:
                        sub.failures += 1
                        failures.append((sub, r))
                    continue
                except Exception as exc:
                    sub.failures += 1
                    failures.append((sub, failed(exc)))
                    continue
                task = loop.create_task(complete(coro, yielded))
            else:
                coro = self._guarded(sub, event, exactly_once)
                try:
                    yielded = coro.send(None)
                except StopIteration as stop:
                    r = stop.value
                    if r.error is not None:
                        failures.append((sub, r))
                    continue
                task = loop.create_task(complete(coro, yielded))
            timer = (loop.call_later(sub.timeout_s, task.cancel)
                     if sub.timeout_s is not None else None)
            pending[task] = (sub, timer)
            if len(pending) >= self.fanout_concurrency:
                try:
                    done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                except asyncio.CancelledError:  # as below: do not orphan in-flight handlers
                    for task in pending:
                        task.cancel()
                    raise
                self._collect(done, pending, failures, exactly_once)
        if pending:
            try:
                done, _ = await asyncio.wait(pending)
            except asyncio.CancelledError:
                for task in pending:
                    task.cancel()
                raise
            self._collect(done, pending, failures, exactly_once)
        return failures

    def _collect(
        self,
        done: set[asyncio.Task[Result[Any]]],
        pending: dict[asyncio.Task[Result[Any]], tuple[Sub, asyncio.TimerHandle | None]],
        failures: list[tuple[Sub, Result[Any]]],
        exactly_once: bool,
    ) -> None:
        for task in done:
            sub, timer = pending.pop(task)
            if timer is not None:
                timer.cancel()
            if task.cancelled():  # only our timer cancels these tasks
                r = self._timed_out(sub)
            else:
                r = task.result()
                # raw handler calls are counted here; _guarded (breaker or QoS 2) counts its own
                # failures, and a QoS 2 duplicate (DUPLICATE) is not a failure
                if r.error is not None and sub.plain and not exactly_once:
                    sub.failures += 1
            if r.error is not None:
                failures.append((sub, r))

    def _dead_letter(self, event: Event, sub: Sub, error: Error) -> None:
        self.dead_letters.put(DeadLetter(event, sub.name, error, sub.retry.max_attempts))

    def _drop(self, route: EventRoute, sub: Sub, error: Error) -> None:
        """QoS 0: log (rate-limited per handler), count, drop."""
        now = time.monotonic()
        if now - sub.last_log_s >= 5.0:
            log.warning(
                "at-most-once: dropped %s for handler %s: %s (%d more since last report)",
                route.name, sub.name, error.message, sub.unlogged,
            )
            sub.last_log_s = now
            sub.unlogged = 0
        else:
            sub.unlogged += 1


class _RunState:
    """Shared between a plain-path runner and the loop stepping it."""

    __slots__ = ("detached", "index")

    def __init__(self) -> None:
        self.index = 0
        self.detached = False



async def _run_plain(
    subs: tuple[Sub, ...],
    event: Event,
    start: int,
    state: _RunState,
    failures: list[tuple[Sub, Result[Any]]],
) -> Result[Any] | None:
    """Await ``subs[start:]`` in turn, recording failures. Once detached (its current handler
    suspended and the runner moved into a Task) it returns that handler's Result instead."""
    for i in range(start, len(subs)):
        state.index = i
        sub = subs[i]
        try:
            value = await sub.call(event)
        except Exception as exc:
            r = failed(exc)
        else:
            if value is None or value is _OK:
                if state.detached:
                    return _OK
                continue
            r = as_result(value)
        if state.detached:
            return r
        if r.error is not None:
            sub.failures += 1
            failures.append((sub, r))
    return None
