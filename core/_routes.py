"""What the mediator keeps per message type (a route) and per handler (a :class:`Sub`).

Built at registration, read on every message; the counters and histograms are what
:class:`~core.metrics.CatgaCollector` exports. Plain attributes on slotted dataclasses, so an
increment on the hot path costs ~30 ns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from core.breaker import CircuitBreaker
from core.histogram import BucketHistogram
from core.limiter import ConcurrencyLimiter
from core.result import FanoutOutcome, Result
from core.retry import RetryPolicy


@dataclass(slots=True, eq=False)
class Sub:
    """One subscribed (or registered) handler: its compiled call (behaviours included), its
    guards, and the counters metrics read (``failures``, ``timeouts``)."""

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
class EventRoute:
    """One event type: its handlers in subscription order, its bulkhead, and the counters and
    latency histogram (ms) metrics read. ``all_ok`` is the shared result of a clean publish."""

    name: str
    subs: tuple[Sub, ...] = ()
    limiter: ConcurrencyLimiter | None = None
    all_plain: bool = True  # no handler has a breaker: the batched fast path applies
    all_ok: Result[FanoutOutcome] = field(default_factory=lambda: Result(FanoutOutcome(0, 0)))
    accepted: int = 0
    failed: int = 0
    histogram: BucketHistogram = field(default_factory=BucketHistogram)


@dataclass(slots=True, eq=False)
class RequestRoute:
    """One request type: its one handler, its bulkhead, counters and latency histogram (ms)."""

    name: str
    sub: Sub
    limiter: ConcurrencyLimiter | None
    accepted: int = 0
    succeeded: int = 0
    failed: int = 0
    histogram: BucketHistogram = field(default_factory=BucketHistogram)
