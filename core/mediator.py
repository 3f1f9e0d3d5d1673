"""The reference mediator: ``send`` (request/response) and ``publish`` (event fan-out).

Pipeline, outermost first (per message for ``send``, per handler for ``publish``)::

    limiter (bulkhead admission, per message)
      -> timeout -> retry (only after a retryable failure) -> idempotency (QoS 2)
        -> circuit breaker -> user behaviours -> handler

QoS semantics (DESIGN.md): QoS 0 awaits local processing, failures are logged, counted and
dropped; QoS 1 retries failed handlers with backoff and dead-letters them when attempts run out
(only the handler that failed is retried, never the ones that succeeded); QoS 2 is QoS 1 plus
deduplication by message id (per handler for events) in the idempotency store.
``DeliveryMode.ASYNC`` (QoS >= 1) returns once the event is accepted; the limiter slot is held
until the background work ends, so backpressure still applies.

Every expected failure is a :class:`~core.result.Result` value; ``send``/``publish`` do not raise
for handler failures, timeouts, rejections or an open breaker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from core._eager import as_result, complete, failed, run_eagerly
from core.breaker import CircuitBreaker, CircuitState
from core.deadletter import DeadLetter, DeadLetterSink, InMemoryDeadLetterQueue
from core.histogram import BucketHistogram
from core.idempotency import IdempotencyStore, InMemoryIdempotencyStore
from core.limiter import ConcurrencyLimiter
from core.messages import DeliveryMode, Event, Message, QoS, Request
from core.result import Error, ErrorCode, FanoutOutcome, Result
from core.retry import RetryPolicy, retry_after_failure

log = logging.getLogger("catga.mediator")

Handler = Callable[[Any], Awaitable[Any]]
"""A handler: ``async def handler(message) -> Result | value | None``."""
NextHandler = Callable[[Message], Awaitable[Result[Any]]]
Behavior = Callable[[Message, NextHandler], Awaitable[Result[Any]]]
"""A pipeline behaviour: ``async def behavior(message, next) -> Result``; call ``await
next(message)`` to continue inward. Compiled once at registration, not per call."""

_REJECTED: Result[Any] = Result.failure(
    ErrorCode.REJECTED, "backpressure: the concurrency limiter's queue is full", retryable=True
)
_TIMEOUT_MSG = "handler exceeded its timeout of {:g} s"
_EXACTLY_ONCE = int(QoS.EXACTLY_ONCE)  # compare qos with ==: plain ints work too, and reading
_ASYNC = DeliveryMode.ASYNC  # an enum member through its class costs ~60 ns on CPython 3.11
_OK = Result.OK


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Settings for a per-handler :class:`~core.breaker.CircuitBreaker` (same meanings)."""

    failure_threshold: int = 5
    open_duration_s: float = 30.0
    half_open_max_probes: int = 1
    success_threshold: int = 1
    failure_ratio: float | None = None
    window_s: float = 10.0
    min_throughput: int = 20


@dataclass(slots=True)
class HandlerOptions:
    """Per-handler settings.

    Attributes:
        timeout_s: cut the handler after this many seconds (counted; ``ErrorCode.TIMEOUT``).
        breaker: give the handler its own circuit breaker.
        retry: override the mediator's retry policy for this handler.
        limiter: (requests only) a bulkhead for this request type instead of the mediator's.
    """

    timeout_s: float | None = None
    breaker: BreakerConfig | None = None
    retry: RetryPolicy | None = None
    limiter: ConcurrencyLimiter | None = None


@dataclass(slots=True, eq=False)
class _Sub:
    name: str
    call: Callable[[Any], Awaitable[Any]]
    timeout_s: float | None
    breaker: CircuitBreaker | None
    retry: RetryPolicy
    plain: bool  # no breaker: eligible for the inline fast path (QoS 0/1)
    failures: int = 0
    timeouts: int = 0
    last_log_s: float = 0.0
    unlogged: int = 0


@dataclass(slots=True, eq=False)
class _EventRoute:
    name: str
    subs: tuple[_Sub, ...] = ()
    limiter: ConcurrencyLimiter | None = None
    all_plain: bool = True  # no handler has a breaker: the batched fast path applies
    all_ok: Result[FanoutOutcome] = field(default_factory=lambda: Result(FanoutOutcome(0, 0)))
    accepted: int = 0
    failed: int = 0
    histogram: BucketHistogram = field(default_factory=BucketHistogram)


@dataclass(slots=True, eq=False)
class _RequestRoute:
    name: str
    sub: _Sub
    limiter: ConcurrencyLimiter | None
    accepted: int = 0
    succeeded: int = 0
    failed: int = 0
    histogram: BucketHistogram = field(default_factory=BucketHistogram)


class Mediator:
    """Routes requests to their handler and events to every subscriber.

    Args:
        limiter: default bulkhead for every message (None: unlimited).
        behaviors: user pipeline behaviours, outermost first.
        retry: default retry policy for QoS >= 1.
        idempotency: store for QoS 2 (default: bounded in-memory).
        dead_letters: where exhausted deliveries go (default: bounded in-memory queue).
        fanout_concurrency: suspended handlers in flight at once per publish (>= 1).
        timing: record duration histograms (two clock reads per message).

    Attributes:
        breaker_class: the circuit breaker built for a handler whose options ask for one
            (read at registration; the seeded defect ``breaker_disabled`` of
            :mod:`core.defects` swaps it).

    Use as ``async with Mediator(...) as m:``; leaving waits for background (async-mode) work.
    """

    breaker_class: type[CircuitBreaker] = CircuitBreaker

    def __init__(
        self,
        *,
        limiter: ConcurrencyLimiter | None = None,
        behaviors: Sequence[Behavior] = (),
        retry: RetryPolicy | None = None,
        idempotency: IdempotencyStore | None = None,
        dead_letters: DeadLetterSink | None = None,
        fanout_concurrency: int = 256,
        timing: bool = True,
    ) -> None:
        if fanout_concurrency < 1:
            raise ValueError(f"fanout_concurrency must be >= 1, got {fanout_concurrency}")
        self.limiter = limiter
        self.behaviors = tuple(behaviors)
        self.retry = retry or RetryPolicy()
        self.idempotency: IdempotencyStore = idempotency or InMemoryIdempotencyStore()
        self.dead_letters: DeadLetterSink = dead_letters or InMemoryDeadLetterQueue()
        self.fanout_concurrency = fanout_concurrency
        self.timing = timing
        self.breakers: dict[str, CircuitBreaker] = {}
        self.active = 0
        self.retries = 0
        self.timeouts = 0
        self.rejected = 0
        self._events: dict[type, _EventRoute] = {}
        self._requests: dict[type, _RequestRoute] = {}
        self._extra_limiters: list[ConcurrencyLimiter] = []
        self._background: set[asyncio.Task[Any]] = set()

    # ----------------------------------------------------------------- registration
    def register(
        self,
        request_type: type[Request],
        handler: Handler,
        *,
        name: str | None = None,
        options: HandlerOptions | None = None,
    ) -> None:
        """Register the one handler for ``request_type``.

        Raises:
            ValueError: a handler is already registered for this type.
        """
        if request_type in self._requests:
            raise ValueError(f"a handler for {request_type.__name__} is already registered")
        opts = options or HandlerOptions()
        sub = self._make_sub(name or _handler_name(handler), handler, opts)
        if opts.limiter is not None:
            self._extra_limiters.append(opts.limiter)
        self._requests[request_type] = _RequestRoute(
            request_type.__name__, sub, opts.limiter or self.limiter
        )

    def subscribe(
        self,
        event_type: type[Event],
        handler: Handler,
        *,
        name: str | None = None,
        options: HandlerOptions | None = None,
    ) -> None:
        """Add a handler for ``event_type`` (any number; they run in subscription order).

        Raises:
            ValueError: a handler of the same name is already subscribed to this type.
        """
        route = self._events.get(event_type)
        if route is None:
            route = self._events[event_type] = _EventRoute(event_type.__name__,
                                                           limiter=self.limiter)
        hname = name or _handler_name(handler)
        if any(s.name == hname for s in route.subs):
            raise ValueError(f"handler {hname!r} is already subscribed to {route.name}")
        route.subs = (*route.subs, self._make_sub(hname, handler, options or HandlerOptions()))
        route.all_plain = all(s.plain for s in route.subs)
        n = len(route.subs)
        route.all_ok = Result(FanoutOutcome(n, n))  # immutable: shared by every clean publish

    def _make_sub(self, name: str, handler: Handler, opts: HandlerOptions) -> _Sub:
        if opts.timeout_s is not None and opts.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {opts.timeout_s}")
        call: Callable[[Any], Awaitable[Any]] = handler
        for behavior in reversed(self.behaviors):
            call = _chain(behavior, call)
        breaker = None
        if opts.breaker is not None:
            cfg = opts.breaker
            bname = name
            n = 2
            while bname in self.breakers:
                bname = f"{name}#{n}"
                n += 1
            breaker = self.breaker_class(
                bname,
                failure_threshold=cfg.failure_threshold,
                open_duration_s=cfg.open_duration_s,
                half_open_max_probes=cfg.half_open_max_probes,
                success_threshold=cfg.success_threshold,
                failure_ratio=cfg.failure_ratio,
                window_s=cfg.window_s,
                min_throughput=cfg.min_throughput,
                on_state_change=_log_transition,
            )
            self.breakers[bname] = breaker
        return _Sub(name, call, opts.timeout_s, breaker, opts.retry or self.retry,
                    plain=breaker is None)

    def use_limiter(self, message_type: type[Message], limiter: ConcurrencyLimiter) -> None:
        """Give one registered message type its own bulkhead instead of the shared one.

        Raises:
            KeyError: nothing is registered or subscribed for ``message_type``.
        """
        route: _EventRoute | _RequestRoute | None = (
            self._events.get(message_type) or self._requests.get(message_type)
        )
        if route is None:
            raise KeyError(f"no handler registered for {message_type.__name__}")
        route.limiter = limiter
        if all(lim is not limiter for lim in self._extra_limiters):
            self._extra_limiters.append(limiter)

    # ----------------------------------------------------------------- introspection
    def request_routes(self) -> Iterator[_RequestRoute]:
        """Routes for requests (for metrics)."""
        return iter(list(self._requests.values()))

    def event_routes(self) -> Iterator[_EventRoute]:
        """Routes for events (for metrics)."""
        return iter(list(self._events.values()))

    def limiters(self) -> Iterator[ConcurrencyLimiter]:
        """Every distinct bulkhead in use."""
        seen: dict[int, ConcurrencyLimiter] = {}
        for lim in [self.limiter, *self._extra_limiters]:
            if lim is not None:
                seen.setdefault(id(lim), lim)
        return iter(seen.values())

    def handler_names(self, event_type: type[Event]) -> list[str]:
        """Names of the handlers subscribed to ``event_type``, in order."""
        route = self._events.get(event_type)
        return [s.name for s in route.subs] if route else []

    # ----------------------------------------------------------------- send
    async def send(self, request: Request) -> Result[Any]:
        """Run ``request`` through its handler and return the handler's ``Result``.

        Failures are values: ``NO_HANDLER``, ``REJECTED`` (backpressure), ``CIRCUIT_OPEN``,
        ``TIMEOUT``, ``HANDLER_FAILED`` (after retries for QoS >= 1). QoS 2 returns the cached
        result for a message id already handled.
        """
        route = self._requests.get(request.__class__)
        if route is None:
            return Result.failure(ErrorCode.NO_HANDLER,
                                  f"no handler registered for {type(request).__name__}")
        limiter = route.limiter
        if limiter is not None and not limiter.try_acquire() and not await limiter.acquire():
            self.rejected += 1
            return _REJECTED
        route.accepted += 1
        self.active += 1
        t0 = time.perf_counter() if self.timing else 0.0
        try:
            sub = route.sub
            if request.qos == _EXACTLY_ONCE:
                result = await self._send_exactly_once(sub, request)
            elif sub.plain and sub.timeout_s is None:
                try:
                    result = as_result(await sub.call(request))
                except Exception as exc:
                    result = failed(exc)
                if result.error is not None and request.qos and result.error.retryable:
                    result = await self._retry(sub, request, result)
            else:
                result = await self._attempt(sub, request)
                if result.error is not None and request.qos and result.error.retryable:
                    result = await self._retry(sub, request, result)
        finally:
            self.active -= 1
            if limiter is not None:
                limiter.release()
        if result.error is None:
            route.succeeded += 1
        else:
            route.failed += 1
        if self.timing:
            route.histogram.observe((time.perf_counter() - t0) * 1000.0)
        return result

    async def _send_exactly_once(self, sub: _Sub, request: Request) -> Result[Any]:
        key = request.message_id
        cached = await self.idempotency.begin(key)
        if cached is not None:
            return cached
        try:
            result = await self._attempt(sub, request)
            if result.error is not None and result.error.retryable:
                result = await self._retry(sub, request, result)
        except BaseException:
            self.idempotency.abort(key)
            raise
        if result.error is None:
            self.idempotency.complete(key, result)
        else:
            self.idempotency.abort(key)
        return result

    # ----------------------------------------------------------------- publish
    async def publish(self, event: Event) -> Result[FanoutOutcome]:
        """Fan ``event`` out to every subscribed handler.

        Returns ``Result(FanoutOutcome)`` once handling is done (QoS 0, or wait mode), or once
        accepted (QoS >= 1 in async mode); ``REJECTED`` when the bulkhead queue is full. One
        handler's failure never stops the others.
        """
        route = self._events.get(event.__class__)
        if route is None or not route.subs:
            return Result(FanoutOutcome(0, 0))
        limiter = route.limiter
        if limiter is not None and not limiter.try_acquire() and not await limiter.acquire():
            self.rejected += 1
            return _REJECTED  # type: ignore[return-value]
        route.accepted += 1
        self.active += 1
        if event.qos and event.delivery_mode is _ASYNC:
            task = asyncio.get_running_loop().create_task(self._background_publish(route, event))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return Result(FanoutOutcome(len(route.subs), 0, accepted_async=True))
        try:
            return await self._process(route, event)
        finally:
            self.active -= 1
            if limiter is not None:
                limiter.release()

    async def publish_batch(self, events: Iterable[Event]) -> list[Result[FanoutOutcome]]:
        """Publish each event in order (each fan-out starts before the next); results in order."""
        return await run_eagerly([self.publish(e) for e in events])

    async def drain(self) -> None:
        """Wait until background (async-mode) publishes have finished."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def __aenter__(self) -> Mediator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.drain()

    async def _background_publish(self, route: _EventRoute, event: Event) -> None:
        try:
            await self._process(route, event)
        except Exception:  # pragma: no cover - _process turns failures into results
            log.exception("background publish of %s failed", route.name)
        finally:
            self.active -= 1
            if route.limiter is not None:
                route.limiter.release()

    async def _process(self, route: _EventRoute, event: Event) -> Result[FanoutOutcome]:
        timing = self.timing
        t0 = time.perf_counter() if timing else 0.0
        if route.all_plain and event.qos != _EXACTLY_ONCE:
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
        if qos == _EXACTLY_ONCE:
            duplicates = sum(1 for _, r in failures if r is _DUPLICATE)
            failures = [(s, r) for s, r in failures if r is not _DUPLICATE]
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
                    if r is _DUPLICATE:  # a redelivery handled it while this copy retried
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
        self, route: _EventRoute, event: Event
    ) -> list[tuple[_Sub, Result[Any]]]:
        """First attempt of every handler when none has a breaker (QoS 0/1).

        One runner coroutine awaits the handlers in turn and is stepped inline; when a handler
        suspends, the runner is detached into a Task that finishes just that handler, and a new
        runner carries on with the next one. Handlers that finish without suspending cost one
        ``await`` each, with no Task and no per-handler stepping.
        """
        failures: list[tuple[_Sub, Result[Any]]] = []
        subs = route.subs
        state = _RunState()
        coro: Any = _run_plain(subs, event, 0, state, failures)
        try:
            yielded = coro.send(None)
        except StopIteration:
            return failures
        loop = asyncio.get_running_loop()
        pending: dict[asyncio.Task[Result[Any]], tuple[_Sub, asyncio.TimerHandle | None]] = {}
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

    async def _fanout(self, route: _EventRoute, event: Event) -> list[tuple[_Sub, Result[Any]]]:
        """First attempt of every handler; returns the failures (handler, result)."""
        failures: list[tuple[_Sub, Result[Any]]] = []
        pending: dict[asyncio.Task[Result[Any]], tuple[_Sub, asyncio.TimerHandle | None]] = {}
        exactly_once = event.qos == _EXACTLY_ONCE
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
        pending: dict[asyncio.Task[Result[Any]], tuple[_Sub, asyncio.TimerHandle | None]],
        failures: list[tuple[_Sub, Result[Any]]],
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
                # failures, and a QoS 2 duplicate (_DUPLICATE) is not a failure
                if r.error is not None and sub.plain and not exactly_once:
                    sub.failures += 1
            if r.error is not None:
                failures.append((sub, r))

    def _timed_out(self, sub: _Sub) -> Result[Any]:
        sub.timeouts += 1
        sub.failures += 1
        self.timeouts += 1
        return Result.failure(ErrorCode.TIMEOUT, _TIMEOUT_MSG.format(sub.timeout_s),
                              retryable=True)

    async def _guarded(self, sub: _Sub, message: Message, exactly_once: bool) -> Result[Any]:
        """One handler call with idempotency (QoS 2) and the circuit breaker; never raises
        (except cancellation, after recording it as a breaker failure)."""
        key = None
        if exactly_once:
            key = (message.message_id, sub.name)
            cached = await self.idempotency.begin(key)
            if cached is not None:
                return _DUPLICATE
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

    async def _attempt(self, sub: _Sub, message: Message) -> Result[Any]:
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

    async def _within_timeout(self, sub: _Sub, task: asyncio.Task[Result[Any]]) -> Result[Any]:
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

    async def _retry(self, sub: _Sub, message: Message, first: Result[Any]) -> Result[Any]:
        policy = sub.retry
        if policy.max_attempts <= 1:
            return first

        def count() -> None:
            self.retries += 1

        if message.qos == _EXACTLY_ONCE and isinstance(message, Event):
            async def attempt() -> Result[Any]:
                return await self._attempt_exactly_once(sub, message)
        else:
            async def attempt() -> Result[Any]:
                return await self._attempt(sub, message)
        result, _ = await retry_after_failure(first, attempt, policy, count)
        return result

    async def _attempt_exactly_once(self, sub: _Sub, event: Event) -> Result[Any]:
        coro: Any = self._guarded(sub, event, True)
        if sub.timeout_s is None:
            return await coro  # type: ignore[no-any-return]
        return await self._within_timeout(sub, asyncio.get_running_loop().create_task(coro))

    def _dead_letter(self, event: Event, sub: _Sub, error: Error) -> None:
        self.dead_letters.put(DeadLetter(event, sub.name, error, sub.retry.max_attempts))

    def _drop(self, route: _EventRoute, sub: _Sub, error: Error) -> None:
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


_DUPLICATE: Result[Any] = Result.failure(ErrorCode.INVALID, "duplicate (already handled)")
# A sentinel for "skipped: this handler already handled this message id". It is reported in
# FanoutOutcome.duplicates, never as a failure.


class _RunState:
    """Shared between a plain-path runner and the loop stepping it."""

    __slots__ = ("detached", "index")

    def __init__(self) -> None:
        self.index = 0
        self.detached = False


async def _run_plain(
    subs: tuple[_Sub, ...],
    event: Event,
    start: int,
    state: _RunState,
    failures: list[tuple[_Sub, Result[Any]]],
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


def _chain(behavior: Behavior, inner: Callable[[Any], Awaitable[Any]]) -> NextHandler:
    async def _normalized(message: Message) -> Result[Any]:
        try:
            return as_result(await inner(message))
        except Exception as exc:  # behaviours always see a Result, never a handler's exception
            return failed(exc)

    async def step(message: Message) -> Result[Any]:
        return await behavior(message, _normalized)

    return step


def _handler_name(handler: Handler) -> str:
    return getattr(handler, "__qualname__", None) or type(handler).__name__


def _log_transition(breaker: CircuitBreaker, old: CircuitState, new: CircuitState) -> None:
    level = logging.WARNING if new is CircuitState.OPEN else logging.INFO
    log.log(level, "circuit breaker %s: %s -> %s", breaker.name, old.name.lower(),
            new.name.lower())
