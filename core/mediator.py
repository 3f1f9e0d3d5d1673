"""The reference mediator: ``send`` (request/response) and ``publish`` (event fan-out).

Pipeline, outermost first (per message for ``send``, per handler for ``publish``)::

    limiter (bulkhead admission, per message)           Mediator       core/mediator.py
      [publish: fan-out to every handler]               Fanout         core/_fanout.py
        -> timeout -> retry (after a retryable failure) HandlerCalls   core/_calls.py
          -> idempotency (QoS 2) -> circuit breaker     HandlerCalls   core/_calls.py
            -> user behaviours -> handler               chained once, at registration

The layers are one object, coded for speed rather than as wrapper objects: :class:`Mediator`
(registration, admission, ``send``, ``publish``) extends :class:`~core._fanout.Fanout` (one
event to every handler; its module pictures the three paths and when each is used), which
extends :class:`~core._calls.HandlerCalls` (one guarded handler call). Routes and per-handler
counters are in :mod:`core._routes`.

QoS semantics: QoS 0 awaits local processing, failures are logged, counted and dropped; QoS 1
retries failed handlers with backoff and dead-letters them when attempts run out (only the
handler that failed is retried, never the ones that succeeded); QoS 2 is QoS 1 plus
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
from dataclasses import dataclass
from typing import Any

from core._calls import EXACTLY_ONCE
from core._eager import as_result, failed, run_eagerly
from core._fanout import Fanout
from core._routes import EventRoute, RequestRoute, Sub
from core.breaker import CircuitBreaker, CircuitState
from core.deadletter import DeadLetterSink, InMemoryDeadLetterQueue
from core.idempotency import IdempotencyStore, InMemoryIdempotencyStore
from core.limiter import ConcurrencyLimiter
from core.messages import DeliveryMode, Event, Message, Request
from core.result import ErrorCode, FanoutOutcome, Result
from core.retry import RetryPolicy

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
_ASYNC = DeliveryMode.ASYNC  # an enum member through its class costs ~60 ns on CPython 3.11


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


class Mediator(Fanout):
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
        self._events: dict[type, EventRoute] = {}
        self._requests: dict[type, RequestRoute] = {}
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
        self._requests[request_type] = RequestRoute(
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
            route = self._events[event_type] = EventRoute(event_type.__name__,
                                                          limiter=self.limiter)
        hname = name or _handler_name(handler)
        if any(s.name == hname for s in route.subs):
            raise ValueError(f"handler {hname!r} is already subscribed to {route.name}")
        route.subs = (*route.subs, self._make_sub(hname, handler, options or HandlerOptions()))
        route.all_plain = all(s.plain for s in route.subs)
        n = len(route.subs)
        route.all_ok = Result(FanoutOutcome(n, n))  # immutable: shared by every clean publish

    def _make_sub(self, name: str, handler: Handler, opts: HandlerOptions) -> Sub:
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
        return Sub(name, call, opts.timeout_s, breaker, opts.retry or self.retry,
                   plain=breaker is None)

    def use_limiter(self, message_type: type[Message], limiter: ConcurrencyLimiter) -> None:
        """Give one registered message type its own bulkhead instead of the shared one.

        Raises:
            KeyError: nothing is registered or subscribed for ``message_type``.
        """
        route: EventRoute | RequestRoute | None = (
            self._events.get(message_type) or self._requests.get(message_type)
        )
        if route is None:
            raise KeyError(f"no handler registered for {message_type.__name__}")
        route.limiter = limiter
        if all(lim is not limiter for lim in self._extra_limiters):
            self._extra_limiters.append(limiter)

    # ----------------------------------------------------------------- introspection
    def request_routes(self) -> Iterator[RequestRoute]:
        """Routes for requests (for metrics)."""
        return iter(list(self._requests.values()))

    def event_routes(self) -> Iterator[EventRoute]:
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
            if request.qos == EXACTLY_ONCE:
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

    async def _send_exactly_once(self, sub: Sub, request: Request) -> Result[Any]:
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

    async def _background_publish(self, route: EventRoute, event: Event) -> None:
        try:
            await self._process(route, event)
        except Exception:  # pragma: no cover - _process turns failures into results
            log.exception("background publish of %s failed", route.name)
        finally:
            self.active -= 1
            if route.limiter is not None:
                route.limiter.release()


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
