"""The seam between the load generator and the system under test.

The generator *offers* messages to a :class:`Target` and is *told of outcomes* through an
:class:`OutcomeSink`; it never touches a mediator, a broker or a handler. One target, three
methods (as httpx's ``AsyncBaseTransport`` is one ``handle_async_request`` plus ``aclose``):

``open(plan, sink)``
    build or reach the system for this run plan (raises :class:`TargetUnavailable`);
``offer(stream, seq, copies)``
    hand message ``seq`` of stream ``stream`` to the system now, without waiting for it;
    ``copies=2`` offers the same message (same id) twice, as a redelivering transport would;
``close(drain_timeout_s)``
    wait (bounded) for the outcomes still due, stop, and return the system's own figures.

Outcomes flow back on the generator's asyncio loop through the sink: which handler handled or
failed which message (the ledger), when the system accepted a message (acknowledged: stored by
a broker at QoS >= 1), the message's final :class:`~core.Result` (latency ends here), and gauges
sampled inside the system (queue depth, open breakers, loop lag).

Adding a system under test = one class implementing :class:`Target` (see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from core import Error

if TYPE_CHECKING:
    from catga_bench.workload.plan import RunPlan
    from core import Result


class TargetUnavailable(Exception):
    """The system under test cannot be reached or refused the run (exit 3: no verdict).
    The message says which system and what to start."""


@dataclass(frozen=True, slots=True)
class LabelledError(Error):
    """A failure the system under test answered in its own terms (an HTTP status): ``code``
    keeps its generic meaning for the ledger and the timeline (``handler_failed``, ``timeout``)
    and ``label`` is the class the report counts it under in ``errors`` (``http_503``,
    ``http_timeout``, ``http_connect``; docs/sut.md)."""

    label: str = ""


def error_label(error: Error) -> str:
    """The report's error class of ``error``: its ``label`` if it has one, else its code's
    value (``handler_failed``, ``timeout``, ...)."""
    if isinstance(error, LabelledError) and error.label:
        return error.label
    return error.code.value


class OutcomeSink(Protocol):
    """What a target tells the generator (call on the generator's loop only)."""

    @property
    def in_flight(self) -> int:
        """Messages offered whose outcome has not arrived yet."""
        ...

    @property
    def last_outcome_at(self) -> float:
        """``time.perf_counter()`` of the latest outcome (for idle detection while draining)."""
        ...

    def pending_streams(self) -> set[int]:
        """Streams that still have messages without an outcome."""
        ...

    def handled(self, stream: int, handler: int, seq: int) -> None:
        """Handler ``handler`` of ``stream`` handled message ``seq`` successfully."""
        ...

    def failed(self, stream: int, handler: int, seq: int) -> None:
        """The handler failed ``seq`` in a known, reported way (not a loss)."""
        ...

    def accepted(self, stream: int, seq: int) -> None:
        """The system took responsibility for ``seq`` (QoS >= 1: a broker stored it)."""
        ...

    def completed(self, stream: int, seq: int, result: Result[Any]) -> bool:
        """The final outcome of ``seq``: latency ends now. Returns False when an outcome of
        this message was already counted (a redelivered copy's), which is then ignored."""
        ...

    def gauge(self, name: str, value: float) -> None:
        """A gauge sampled inside the system now (``queue_depth``, ``breaker_open``,
        ``loop_lag_ms``; the names of :data:`catga_bench.generator.timeline.GAUGES`)."""
        ...

    def output_class(self, kind: str, channel: str, correlation_id: str | None,
                     reason: str, message: tuple[int, int] | None = None) -> None:
        """An output of a black-box system that completes nothing: ``late`` (its message was
        already counted lost), ``unexpected`` (its correlation id matches no message, or it
        has none) or ``nonconformant`` (it fails its message's schema; it may still complete
        its message). Counted in the report under that name; the first few are kept with
        ``reason`` (docs/sut.md). ``message`` is ``(stream, seq)`` when the id matched one
        (a late output is then listed with its message in ``failing_messages``)."""
        ...



class BreakerFigures(BaseModel):
    """Circuit-breaker figures of a run (docs/report.md, ``breaker``).

    Attributes:
        opened, half_opened, closed: transitions into each state, over every breaker.
        rejected: calls refused while a breaker was open.
        breakers: each breaker's state at the end (``closed``, ``open``, ``half_open``).
        failures_before_first_open: failures a breaker saw before it first opened (worst).
        closed_after_recovery_s: seconds from the end of a handler's outage to its breaker
            closing (worst); None when one never closed after its outage.
        calls_while_open: handler calls while the handler's own breaker was open.
        transitions: the last 200 ``(elapsed_s, breaker, new_state)``.
    """

    model_config = ConfigDict(extra="forbid")

    opened: int = 0
    half_opened: int = 0
    closed: int = 0
    rejected: int = 0
    breakers: dict[str, str] = Field(default_factory=dict)
    failures_before_first_open: int | None = None
    closed_after_recovery_s: float | None = None
    calls_while_open: int = 0
    transitions: list[tuple[float, str, str]] = Field(default_factory=list)


class CoreFigures(BaseModel):
    """What the system's mediator counted (a run payload carries these too).

    Attributes:
        rejected: messages the system's limiters refused (backpressure).
        timeouts, retries, dead_lettered: counted by the system's mediator.
        breaker: circuit-breaker figures; None when another generator of the run reports
            them.
        loop_lag_hdr: the system's event-loop lag histogram (encoded HDR, us), if measured.
        transport: the generator's link to the system (over a broker), or None.
        core: the serving process's own figures (RSS, CPU, endpoint, transport), or None.
    """

    model_config = ConfigDict(extra="forbid")

    rejected: int = 0
    timeouts: int = 0
    retries: int = 0
    dead_lettered: int = 0
    breaker: BreakerFigures | None = None
    loop_lag_hdr: str | None = None
    transport: dict[str, Any] | None = None
    core: dict[str, Any] | None = None


class SystemFigures(CoreFigures):
    """The system's own side of a run's figures, returned by :meth:`Target.close`: the
    :class:`CoreFigures`, and

    Attributes:
        undrained: outcomes the system still owed when the run ended (beyond the generator's
            own count of messages in flight).
        timeline: per-second gauges measured inside the system (``{second: {gauge: value}}``)
            that replace the generator's for those seconds.
    """

    undrained: int = 0
    timeline: dict[str, Any] = Field(default_factory=dict)

    def core_figures(self) -> dict[str, Any]:
        """The :class:`CoreFigures` fields of these figures (to build a payload from)."""
        return {k: getattr(self, k) for k in CoreFigures.model_fields}


class Target(ABC):
    """A system under test (see the module docstring). ``name`` is what reports call the
    run's ``transport``: ``embedded``, ``nats``, ``redis``."""

    name: str = "target"

    @abstractmethod
    async def open(self, plan: RunPlan, sink: OutcomeSink) -> None:
        """Build or reach the system for ``plan``; outcomes go to ``sink`` from now on.

        Raises:
            TargetUnavailable: the system cannot be reached or refused the run.
        """

    @abstractmethod
    def offer(self, stream: int, seq: int, copies: int = 1) -> None:
        """Hand message ``seq`` of ``stream`` to the system (``copies`` times, same id).
        Must not block: the outcome arrives later through the sink."""

    @abstractmethod
    async def close(self, drain_timeout_s: float) -> SystemFigures:
        """Wait up to ``drain_timeout_s`` for outcomes still due, stop, return the figures."""

    def correlation_id(self, stream: int, seq: int) -> str:
        """The id this target gives message ``seq`` of ``stream`` — what a user looks for in
        the system's logs (``failing_messages``). Default: ``"<stream>.<seq>"``."""
        return f"{stream}.{seq}"


async def wait_for_outcomes(sink: OutcomeSink, deadline: float, *,
                            idle_limit_s: float = float("inf"),
                            idle_streams_s: tuple[set[int], float] | None = None,
                            poll_s: float = 0.01) -> None:
    """Wait until no message is in flight, or ``deadline`` (``time.perf_counter()``) passes,
    or no outcome arrived for ``idle_limit_s``, or — with ``idle_streams_s = (streams, s)`` —
    only messages of ``streams`` are missing and nothing arrived for ``s`` seconds. Idle time
    counts from the later of the last outcome and the start of this wait (a quiet spell
    before the run ended, e.g. a core being restarted, does not cut the wait short)."""
    started = time.perf_counter()
    while sink.in_flight and time.perf_counter() < deadline:
        idle = time.perf_counter() - max(sink.last_outcome_at, started)
        if idle > idle_limit_s:
            return
        if idle_streams_s is not None and idle > idle_streams_s[1] \
                and sink.pending_streams() <= idle_streams_s[0]:
            return
        await asyncio.sleep(poll_s)


__all__ = ["BreakerFigures", "CoreFigures", "LabelledError", "OutcomeSink", "SystemFigures",
           "Target", "TargetUnavailable", "error_label", "wait_for_outcomes"]
