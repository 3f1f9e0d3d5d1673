"""Seeded defects: deliberately broken variants of the core that the release gate must catch.

A gate that cannot fail is worthless, so the gate's own tests run it against a core with one
guarantee broken (the catalogue, and the environment variable ``CATGA_BENCH_DEFECTS`` that
chooses defects, are in ``catga_bench.targets.defects``; this module never reads the environment).

The production classes know nothing about defects. Each variant here is a subclass, chosen once
by a factory; a factory given no defect of its own returns the production class itself, so the
clean build does no extra work per message. ``defects`` is a set of names; names a factory does
not know are ignored (``block_loop`` is the core under test's own handler wrapper).

* ``unbounded_queue`` (:func:`new_limiter`): an :class:`UnboundedQueueLimiter` ignores
  ``max_queue``, so nothing is ever rejected for a full queue (overload must show rejections).
* ``breaker_disabled`` (:func:`new_mediator`): handlers' breakers are :class:`NeverOpenBreaker`,
  which count failures and never open (nothing fails fast).
* ``dedup_off`` (:func:`new_mediator`): the idempotency store is a :class:`ForgetfulStore` that
  never finds a key, so QoS 2 runs duplicates again.
* ``ack_before_handling`` (:func:`new_mediator`): a QoS >= 1 ``publish`` answers "accepted"
  before any handler ran and drops handler failures
  (:meth:`DefectiveMediator.publish_ack_first`); (:func:`new_endpoint`): an
  :class:`AckFirstEndpoint` acks each event delivery before decoding and handling it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, Literal

from core._calls import DUPLICATE, EXACTLY_ONCE
from core._routes import EventRoute
from core.breaker import CircuitBreaker
from core.limiter import ConcurrencyLimiter
from core.mediator import _REJECTED, Mediator
from core.messages import Event
from core.result import FanoutOutcome, Result
from core.transport.base import Delivery, Transport
from core.transport.endpoint import Decoder, MediatorEndpoint, OutcomeHook
from core.transport.envelope import TypeRegistry

__all__ = [
    "MEDIATOR_DEFECTS",
    "AckFirstEndpoint",
    "DefectiveMediator",
    "ForgetfulStore",
    "NeverOpenBreaker",
    "UnboundedQueueLimiter",
    "new_endpoint",
    "new_limiter",
    "new_mediator",
]

log = logging.getLogger("catga.mediator")
_log_transport = logging.getLogger("catga.transport")

#: the defects :func:`new_mediator` applies
MEDIATOR_DEFECTS = frozenset({"breaker_disabled", "dedup_off", "ack_before_handling"})


# ----------------------------------------------------------------------------- limiter
class UnboundedQueueLimiter(ConcurrencyLimiter):
    """Defect ``unbounded_queue``: the wait queue has no bound (``max_queue`` is validated,
    then replaced by ``sys.maxsize``), so a caller is never rejected for a full queue."""

    __slots__ = ()

    def __init__(self, max_concurrency: int, max_queue: int = 0, *,
                 queue_timeout_s: float | None = None, name: str = "mediator") -> None:
        super().__init__(max_concurrency, max_queue, queue_timeout_s=queue_timeout_s, name=name)
        self.max_queue = sys.maxsize


def new_limiter(max_concurrency: int, max_queue: int = 0, *,
                queue_timeout_s: float | None = None, name: str = "mediator",
                defects: frozenset[str] = frozenset()) -> ConcurrencyLimiter:
    """A :class:`~core.limiter.ConcurrencyLimiter` (same arguments), or with
    ``unbounded_queue`` in ``defects`` an :class:`UnboundedQueueLimiter`.

    Raises:
        ValueError: a limit out of range (as the limiter).
    """
    cls = UnboundedQueueLimiter if "unbounded_queue" in defects else ConcurrencyLimiter
    return cls(max_concurrency, max_queue, queue_timeout_s=queue_timeout_s, name=name)


# ----------------------------------------------------------------------------- mediator
class NeverOpenBreaker(CircuitBreaker):
    """Defect ``breaker_disabled``: counts failures, never opens (so never fails fast)."""

    def record_failure(self) -> None:
        self.failures += 1


class ForgetfulStore:
    """Defect ``dedup_off``: an idempotency store that never finds a key."""

    hits = misses = evictions = 0

    async def begin(self, key: Any) -> Result[Any] | None:
        return None

    def complete(self, key: Any, result: Result[Any]) -> None:
        return None

    def abort(self, key: Any) -> None:
        return None


class DefectiveMediator(Mediator):
    """A :class:`~core.mediator.Mediator` with the seeded defects in ``defects`` (see the
    module docstring), each applied here at construction.

    Args:
        defects: defect names; those outside :data:`MEDIATOR_DEFECTS` are ignored.
        options: the mediator's own keyword arguments.

    Attributes:
        defects: the names given (:func:`new_endpoint` reads them).
    """

    def __init__(self, defects: frozenset[str], **options: Any) -> None:
        if "dedup_off" in defects:
            options["idempotency"] = ForgetfulStore()
        super().__init__(**options)
        self.defects = frozenset(defects)
        if "breaker_disabled" in defects:
            self.breaker_class = NeverOpenBreaker
        if "ack_before_handling" in defects:
            self.publish = self.publish_ack_first  # type: ignore[method-assign]

    async def publish_ack_first(self, event: Event) -> Result[FanoutOutcome]:
        """Defect ``ack_before_handling``: a QoS >= 1 event is reported accepted at once (the
        publisher's acknowledgement) and handled afterwards in the background, where handler
        failures are neither retried nor dead-lettered nor reported: they are dropped as at
        QoS 0. The publisher was told "done" before anything was done, so a failure vanishes
        (the embedded analogue of a consumer that acks a delivery before handling it)."""
        if not event.qos:
            return await Mediator.publish(self, event)
        route = self._events.get(event.__class__)
        if route is None or not route.subs:
            return Result(FanoutOutcome(0, 0))
        limiter = route.limiter
        if limiter is not None and not limiter.try_acquire() and not await limiter.acquire():
            self.rejected += 1
            return _REJECTED  # type: ignore[return-value]
        route.accepted += 1
        self.active += 1
        task = asyncio.get_running_loop().create_task(self._handle_after_ack(route, event))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return Result(FanoutOutcome(len(route.subs), 0, accepted_async=True))

    async def _handle_after_ack(self, route: EventRoute, event: Event) -> None:
        try:
            if route.all_plain and event.qos != EXACTLY_ONCE:
                failures = await self._fanout_plain(route, event)
            else:
                failures = await self._fanout(route, event)
            for sub, r in failures:
                if r is not DUPLICATE and r.error is not None:
                    self._drop(route, sub, r.error)
        except Exception:  # pragma: no cover
            log.exception("background publish of %s failed", route.name)
        finally:
            self.active -= 1
            if route.limiter is not None:
                route.limiter.release()


def new_mediator(defects: frozenset[str] = frozenset(), **options: Any) -> Mediator:
    """A :class:`~core.mediator.Mediator` built with ``options``, or a
    :class:`DefectiveMediator` when ``defects`` names one of :data:`MEDIATOR_DEFECTS`.

    Raises:
        ValueError: an option out of range (as the mediator).
    """
    if defects & MEDIATOR_DEFECTS:
        return DefectiveMediator(defects, **options)
    return Mediator(**options)


# ----------------------------------------------------------------------------- endpoint
class AckFirstEndpoint(MediatorEndpoint):
    """Defect ``ack_before_handling`` on the serving side: every event delivery is acked
    before it is decoded and handled."""

    async def _on_event(self, d: Delivery) -> None:
        """Ack the delivery, then decode and publish it. The broker forgets the message before
        any handler ran: a crash (or a rejection by the limiter) now loses it instead of
        leaving it for redelivery."""
        await d.ack()
        msg = await self._decode(d)
        if msg is None or not isinstance(msg, Event):
            return
        try:
            result = await self.mediator.publish(msg)
        except Exception:
            self.errors += 1
            _log_transport.exception("publish raised on %s", d.subject)
            return
        if self.on_outcome is not None:
            await self.on_outcome(msg, result, d)


def new_endpoint(mediator: Mediator, transport: Transport, registry: TypeRegistry, *,
                 defects: frozenset[str] | None = None, group: str = "catga-core",
                 max_in_flight: int = 1024, on_outcome: OutcomeHook | None = None,
                 on_rejected: Literal["report", "redeliver"] = "report",
                 rejected_redelivery_s: float = 0.05,
                 decoder: Decoder | None = None) -> MediatorEndpoint:
    """A :class:`~core.transport.endpoint.MediatorEndpoint` (same arguments), or with
    ``ack_before_handling`` in ``defects`` an :class:`AckFirstEndpoint`.

    Args:
        defects: ``None`` takes the mediator's (a :class:`DefectiveMediator`'s ``defects``;
            none for a production mediator).

    Raises:
        ValueError: ``max_in_flight`` or ``on_rejected`` out of range (as the endpoint).
    """
    if defects is None:
        defects = getattr(mediator, "defects", frozenset())
    cls = AckFirstEndpoint if "ack_before_handling" in defects else MediatorEndpoint
    return cls(mediator, transport, registry, group=group, max_in_flight=max_in_flight,
               on_outcome=on_outcome, on_rejected=on_rejected,
               rejected_redelivery_s=rejected_redelivery_s, decoder=decoder)
