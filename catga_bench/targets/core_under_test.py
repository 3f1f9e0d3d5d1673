"""The reference core built for a run plan: mediator, limiters, breakers and the handlers.

Used by the embedded target (the core in the generator's process) and by ``catga-bench serve``
(the core in its own process). What the handlers do is reported to a :class:`Reporter`: the
generator's ledger when embedded, completion batches to the generators when served.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from catga_bench.observability.hdr import encode_hdr, new_hdr
from catga_bench.observability.resources import ResourceProbe
from catga_bench.targets.base import BreakerFigures, SystemFigures
from catga_bench.targets.defects import blocking_handler
from catga_bench.targets.wire import message_type
from catga_bench.workload.plan import RunPlan, StreamPlan
from catga_bench.workload.profiles import Failing
from core import (
    CircuitBreaker,
    CircuitState,
    DeliveryMode,
    HandlerOptions,
    LoopLagMonitor,
    Mediator,
    QoS,
    RetryPolicy,
)
from core.defects import new_limiter, new_mediator

#: the core's retry policy in every run (QoS >= 1 retries failed handlers with backoff)
RUN_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.005, max_delay_s=0.1)
SAMPLE_EVERY_S = 0.1


class Reporter(Protocol):
    """Where the core's handlers report (the generator's ledger, or the served core's
    completion publisher) and where its gauges go."""

    def handled(self, stream: int, handler: int, seq: int) -> None: ...

    def failed(self, stream: int, handler: int, seq: int) -> None: ...

    def gauge(self, name: str, value: float) -> None: ...


@dataclass(slots=True)
class CoreStream:
    """One stream as the core sees it: its message class and how to build a message."""

    plan: StreamPlan
    msg_type: type
    make: Any  # seq -> message (partial of msg_type with the stream's QoS and delivery mode)
    name_to_index: dict[str, int]

    @property
    def is_event(self) -> bool:
        return self.plan.is_event


class CoreUnderTest:
    """The plan's mediator with its limiters, breakers and handlers; implements the handlers'
    :class:`~catga_bench.workload.profiles.HandlerContext`.

    Args:
        plan: the run plan.
        reporter: receives ``handled`` / ``failed`` from the handlers and the core's gauges.
        defects: seeded defects (gate tests only; :mod:`catga_bench.targets.defects`):
            ``block_loop`` wraps the first handler (:meth:`wrap_handler`), the others go to the
            limiters and the mediator.
        local_delivery: build messages with the stream's delivery mode (``wait``/``async``):
            True when messages are published in this process; False when they arrive over a
            broker (the broker is the queue; the core waits for its handlers).
        probe: sample this process's RSS with the gauges (the served core's own figures).

    Call :meth:`start` on the loop, :meth:`stop` at the end, then :meth:`figures`.
    """

    def __init__(self, plan: RunPlan, reporter: Reporter, *,
                 defects: frozenset[str] = frozenset(), local_delivery: bool = True,
                 probe: ResourceProbe | None = None) -> None:
        self.plan = plan
        self.reporter = reporter
        self.defects = defects
        self.probe = probe
        # the profiles bind these once per handler: the reporter's own bound methods, so a
        # handled message costs one call into the ledger, as before the seam
        self.handled = reporter.handled
        self.failed = reporter.failed
        b = plan.scenario.bulkhead
        # seeded defects pick their variant of each core object once, here (core/defects.py):
        # the clean build gets the production classes and does no extra work per message
        own = plan.scenario.mediator
        if own is not None:  # the user's configured mediator is the system under test
            self.mediator: Mediator = _own_mediator(own)
        else:
            limiter = new_limiter(b.max_concurrency, b.max_queue, name="mediator",
                                  defects=defects)
            self.mediator = new_mediator(defects, limiter=limiter, retry=RUN_RETRY)
        self.lag = LoopLagMonitor(interval_s=0.05)
        self.lag_hdr = new_hdr()
        self.calls_while_open = 0
        self.t0 = time.perf_counter()
        self._breaker_index: dict[tuple[int, int], CircuitBreaker] = {}
        self._first_open: dict[str, int] = {}
        self._transitions: list[tuple[float, str, str]] = []
        self._sampler: asyncio.Task[None] | None = None
        self.streams = [self._build(st, local_delivery) for st in plan.streams]

    # ----------------------------------------------------------------- building
    def _build(self, st: StreamPlan, local_delivery: bool) -> CoreStream:
        msg_type = message_type(st)
        if local_delivery:
            delivery = (DeliveryMode.ASYNC if st.spec.delivery == "async"
                        else DeliveryMode.WAIT_FOR_RESULT)
            make = partial(msg_type, qos=QoS(st.qos), delivery_mode=delivery)
        else:
            make = partial(msg_type, qos=QoS(st.qos))
        for h_index, h in enumerate(st.handlers):
            fn = self.wrap_handler(st.index, h_index, h.profile.build(self, st.index, h_index))
            opts = HandlerOptions(timeout_s=h.timeout_s, breaker=h.breaker)
            if st.is_event:
                self.mediator.subscribe(msg_type, fn, name=h.name, options=opts)
            else:
                self.mediator.register(msg_type, fn, name=h.name, options=opts)
            if h.breaker is not None:
                breaker = list(self.mediator.breakers.values())[-1]
                breaker.add_listener(self._on_transition)
                self._breaker_index[(st.index, h_index)] = breaker
        if st.spec.bulkhead is not None:
            self.mediator.use_limiter(msg_type, new_limiter(
                st.spec.bulkhead.max_concurrency, st.spec.bulkhead.max_queue, name=st.name,
                defects=self.defects))
        return CoreStream(st, msg_type, make, {n: i for i, n in enumerate(st.handler_names)})

    def wrap_handler(self, stream: int, handler: int, fn: Any) -> Any:
        """The handler the core registers for ``fn`` (the served core adds runtime faults
        here; the ``block_loop`` defect wraps the first handler)."""
        if "block_loop" in self.defects and stream == 0 and handler == 0:
            return blocking_handler(fn)
        return fn

    # ----------------------------------------------------------------- HandlerContext
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.t0

    def breaker_state(self, stream: int, handler: int) -> CircuitState | None:
        b = self._breaker_index.get((stream, handler))
        return b.state if b is not None else None

    def called_while_open(self, stream: int, handler: int) -> None:
        self.calls_while_open += 1

    def _on_transition(self, b: CircuitBreaker, old: CircuitState, new: CircuitState) -> None:
        self._transitions.append((self.elapsed_s(), b.name, new.name.lower()))
        if new is CircuitState.OPEN and b.name not in self._first_open:
            self._first_open[b.name] = b.failures

    # ----------------------------------------------------------------- running
    def start(self) -> None:
        """Start the loop-lag monitor and the gauge sampler (call on the loop)."""
        self.t0 = time.perf_counter()
        if self.probe is not None:
            self.probe.start()
        self.lag.listeners.append(self._on_lag)
        self.lag.start()
        self._sampler = asyncio.get_running_loop().create_task(self._sample(), name="core-gauges")

    async def drain(self, timeout_s: float) -> bool:
        """Wait for the mediator's background work (True when it finished in time)."""
        try:
            await asyncio.wait_for(self.mediator.drain(), max(0.1, timeout_s))
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Stop the sampler and the lag monitor."""
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        await self.lag.stop()

    def _on_lag(self, lag_ms: float) -> None:
        self.lag_hdr.record_value(max(1, int(lag_ms * 1000.0)))
        self.reporter.gauge("loop_lag_ms", round(lag_ms, 3))

    async def _sample(self) -> None:
        limiters = list(self.mediator.limiters())
        breakers = list(self.mediator.breakers.values())
        gauge = self.reporter.gauge
        while True:
            gauge("queue_depth", sum(lim.queue_depth for lim in limiters))
            gauge("breaker_open", sum(1 for b in breakers if b.state is not CircuitState.CLOSED))
            if self.probe is not None:
                self.probe.sample()
            await asyncio.sleep(SAMPLE_EVERY_S)

    # ----------------------------------------------------------------- figures
    def figures(self, undrained: int = 0) -> SystemFigures:
        """The core's side of the run (limiter, breakers, timeouts, retries, loop lag)."""
        m = self.mediator
        breakers = m.breakers
        return SystemFigures(
            rejected=sum(lim.rejected for lim in m.limiters()),
            timeouts=m.timeouts,
            retries=m.retries,
            dead_lettered=getattr(m.dead_letters, "total", 0),
            breaker=BreakerFigures(
                opened=sum(b.opened for b in breakers.values()),
                half_opened=sum(b.half_opened for b in breakers.values()),
                closed=sum(b.closed for b in breakers.values()),
                rejected=sum(b.rejected for b in breakers.values()),
                breakers={n: b.state.name.lower() for n, b in breakers.items()},
                failures_before_first_open=max(self._first_open.values(), default=None),
                closed_after_recovery_s=self._closed_after_recovery(),
                calls_while_open=self.calls_while_open,
                transitions=self._transitions[-200:],
            ),
            loop_lag_hdr=encode_hdr(self.lag_hdr),
            undrained=undrained,
        )

    def recovered_breakers(self) -> list[tuple[CircuitBreaker, float]]:
        """(breaker, end of its handler's outage in elapsed seconds) for every breaker whose
        handler's outage window (the scenario's :class:`Failing` profiles) has ended."""
        now = self.elapsed_s()
        out: list[tuple[CircuitBreaker, float]] = []
        for (si, hi), breaker in self._breaker_index.items():
            prof = self.plan.streams[si].handlers[hi].profile
            if isinstance(prof, Failing) and prof.outage_end_s is not None \
                    and prof.outage_end_s <= now:
                out.append((breaker, prof.outage_end_s))
        return out

    def breakers_of(self, handler: str) -> list[CircuitBreaker]:
        """The breakers of the handlers named ``handler`` (``"*"``: every breaker)."""
        return [b for (si, hi), b in self._breaker_index.items()
                if handler in ("*", self.plan.streams[si].handlers[hi].name)]

    def _closed_after_recovery(self) -> float | None:
        """Seconds from the end of a handler's outage to its breaker closing (max over the
        recovered breakers that opened; None if one never closed after its outage)."""
        worst: float | None = None
        for breaker, end in self.recovered_breakers():
            if breaker.opened == 0:
                continue
            closes = [t for t, name, state in self._transitions
                      if name == breaker.name and state == "closed" and t >= end]
            if not closes:
                return None
            delta = round(closes[0] - end, 3)
            worst = delta if worst is None else max(worst, delta)
        return worst


def _own_mediator(factory: Any) -> Mediator:
    """Call the scenario's mediator factory (once per run: the streams' handlers are
    registered on what it returns). Raises ValueError (the run cannot start, exit 3) when it
    does not return a :class:`~core.Mediator`."""
    mediator = factory()
    if not isinstance(mediator, Mediator):
        raise ValueError(f"Scenario.mediator must return a core.Mediator, got {mediator!r}")
    return mediator


__all__ = ["RUN_RETRY", "CoreStream", "CoreUnderTest", "Reporter"]
