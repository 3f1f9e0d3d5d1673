"""One handler call with its guards: the inner half of the mediator's pipeline.

Per call, outermost first: timeout -> retry (only after a retryable failure) -> idempotency
(QoS 2) -> circuit breaker -> the handler (behaviours included). :class:`HandlerCalls` is the
base of :class:`~core.mediator.Mediator`; ``send`` and the fan-out of ``publish`` call these
methods on the mediator itself (no wrapper objects, no extra awaits on the hot path).

Every outcome is a :class:`~core.result.Result`; these methods raise only cancellation.
"""

from __future__ import annotations

import asyncio
from typing import Any

from core._eager import as_result, complete, failed
from core._routes import Sub
from core.idempotency import IdempotencyStore
from core.messages import Event, Message, QoS
from core.result import ErrorCode, Result
from core.retry import retry_after_failure

# compare qos with == to this int: plain ints work too, and reading an enum member through its
# class costs ~60 ns on CPython 3.11
EXACTLY_ONCE = int(QoS.EXACTLY_ONCE)
DUPLICATE: Result[Any] = Result.failure(ErrorCode.INVALID, "duplicate (already handled)")
"""A sentinel for "skipped: this handler already handled this message id". It is reported in
FanoutOutcome.duplicates, never as a failure."""
_TIMEOUT_MSG = "handler exceeded its timeout of {:g} s"


class HandlerCalls:
    """The guarded handler call. Needs ``idempotency``, ``retries`` and ``timeouts`` (set by
    :class:`~core.mediator.Mediator`)."""

    idempotency: IdempotencyStore
    retries: int  # retries executed
    timeouts: int  # handler calls cut by their timeout

    def _timed_out(self, sub: Sub) -> Result[Any]:
        sub.timeouts += 1
        sub.failures += 1
        self.timeouts += 1
        return Result.failure(ErrorCode.TIMEOUT, _TIMEOUT_MSG.format(sub.timeout_s),
                              retryable=True)

    async def _guarded(self, sub: Sub, message: Message, exactly_once: bool) -> Result[Any]:
        """One handler call with idempotency (QoS 2) and the circuit breaker; never raises
        (except cancellation, after recording it as a breaker failure)."""
        key = None
        if exactly_once:
            key = (message.message_id, sub.name)
            cached = await self.idempotency.begin(key)
            if cached is not None:
                return DUPLICATE
        breaker = sub.breaker
        if breaker is not None and not breaker.allow():
            if key is not None:
                self.idempotency.abort(key)
            sub.failures += 1
            return Result.failure(ErrorCode.CIRCUIT_OPEN,
                                  f"circuit breaker {breaker.name!r} is {breaker.state.name}",
                                  retryable=True)
        try:
            try:
                result = as_result(await sub.call(message))
            except Exception as exc:
                result = failed(exc)
        except BaseException:  # cancelled (timeout): a failure for the breaker
            if breaker is not None:
                breaker.record_failure()
            if key is not None:
                self.idempotency.abort(key)
            raise
        if breaker is not None:
            if result.error is None:
                breaker.record_success()
            else:
                breaker.record_failure()
        if result.error is not None:
            sub.failures += 1
            if key is not None:
                self.idempotency.abort(key)
        elif key is not None:
            self.idempotency.complete(key, result)
        return result

    async def _attempt(self, sub: Sub, message: Message) -> Result[Any]:
        """One full attempt in the caller's own task: breaker, timeout, handler."""
        coro: Any = self._guarded(sub, message, False)
        if sub.timeout_s is None:
            return await coro  # type: ignore[no-any-return]
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        task = asyncio.get_running_loop().create_task(complete(coro, yielded))
        return await self._within_timeout(sub, task)

    async def _within_timeout(self, sub: Sub, task: asyncio.Task[Result[Any]]) -> Result[Any]:
        """Wait for ``task`` at most ``sub.timeout_s``; cancel it and report a timeout after.

        Uses ``asyncio.wait`` (a timer, not ``asyncio.timeout``), so it is correct even when
        the caller's coroutine is being stepped eagerly inside another task.
        """
        try:
            done, _ = await asyncio.wait((task,), timeout=sub.timeout_s)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if done:
            return task.result()
        task.cancel()
        await asyncio.wait((task,))  # let the handler unwind (breaker, idempotency release)
        return self._timed_out(sub)

    async def _retry(self, sub: Sub, message: Message, first: Result[Any]) -> Result[Any]:
        policy = sub.retry
        if policy.max_attempts <= 1:
            return first

        def count() -> None:
            self.retries += 1

        if message.qos == EXACTLY_ONCE and isinstance(message, Event):
            async def attempt() -> Result[Any]:
                return await self._attempt_exactly_once(sub, message)
        else:
            async def attempt() -> Result[Any]:
                return await self._attempt(sub, message)
        result, _ = await retry_after_failure(first, attempt, policy, count)
        return result

    async def _attempt_exactly_once(self, sub: Sub, event: Event) -> Result[Any]:
        coro: Any = self._guarded(sub, event, True)
        if sub.timeout_s is None:
            return await coro  # type: ignore[no-any-return]
        return await self._within_timeout(sub, asyncio.get_running_loop().create_task(coro))
