"""Declarative workloads: a scenario is a rate, a QoS and one or more message streams.

A stream is one message type with its handlers; the generator splits the offered rate between
streams by ``share``. Scenario files (``scenarios/*.py``) declare one :class:`Scenario` on a
:class:`~catga_bench.harness.user.CatgaUser` subclass; command-line options override rate, QoS and
handler count (``--rate``, ``--qos``, ``--handlers``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from catga_bench.workload.profiles import HandlerFn, HandlerSpec, user_handlers
from catga_bench.workload.slo import SLOTargets

if TYPE_CHECKING:
    from core import Mediator

HandlerFactory = Callable[[int], list[HandlerSpec]]
MediatorFactory = Callable[[], "Mediator"]


@dataclass(frozen=True)
class Bulkhead:
    """A concurrency limiter: ``max_concurrency`` in flight, ``max_queue`` waiting, the rest
    rejected (backpressure)."""

    max_concurrency: int = 2_000
    max_queue: int = 10_000


@dataclass(frozen=True)
class Stream:
    """One message type of the workload.

    Attributes:
        name: the message type's name (metrics label, report key).
        kind: ``"event"`` (publish, fan-out) or ``"request"`` (send, one handler).
        handlers: fixed handler list — :class:`HandlerSpec` entries (synthetic profiles) and
            your own ``async def handler(msg)`` callables (the in-process system under test,
            :class:`~catga_bench.workload.profiles.UserHandler`) — or one ``async def``, or a
            factory taking the handler count.
        count: handler count for a factory (``--handlers`` overrides it).
        share: relative share of the offered rate.
        slo: whether this stream's latency counts for the latency and error-ratio targets.
        delivery: ``"wait"`` (publish returns after handling) or ``"async"`` (QoS >= 1).
        bulkhead: this stream's own limiter (default: the scenario's shared one).
        qos: this stream's QoS (0, 1 or 2); None: the scenario's (``--qos``). A scenario whose
            streams carry different levels measures them side by side in one run, each with
            its own lost and duplicate counts (the chaos matrix does this).
    """

    name: str
    kind: Literal["event", "request"] = "event"
    handlers: Sequence[HandlerSpec | HandlerFn] | HandlerFactory | HandlerFn = ()
    count: int | None = None
    share: float = 1.0
    slo: bool = True
    delivery: Literal["wait", "async"] = "wait"
    bulkhead: Bulkhead | None = None
    qos: int | None = None

    def __post_init__(self) -> None:
        if self.qos is not None and self.qos not in (0, 1, 2):
            raise ValueError(f"Stream {self.name!r}: qos must be 0, 1, 2 or None, "
                             f"got {self.qos!r}")

    def handler_specs(self, count_override: int | None = None) -> list[HandlerSpec]:
        """The concrete handlers (a factory is called with the count; your own ``async def``
        handlers are wrapped, see :func:`~catga_bench.workload.profiles.user_handlers`).

        Raises:
            ConfigError: an entry is neither a HandlerSpec nor an ``async def``.
        """
        handlers: Any = self.handlers
        if inspect.iscoroutinefunction(handlers):
            return user_handlers([handlers], self.name)
        if callable(handlers):
            n = count_override if count_override is not None else (self.count or 1)
            return list(handlers(n))
        return user_handlers(list(handlers), self.name)


@dataclass(frozen=True)
class Scenario:
    """A complete workload and its default SLO targets.

    Attributes:
        name: report name (defaults to the locustfile's name).
        rate: offered load in messages/s for the whole run (all users together).
        qos: 0 at-most-once, 1 at-least-once, 2 exactly-once.
        streams: the message streams.
        bulkhead: the shared limiter.
        slo: default targets (overridden by ``--slo-file`` then ``--slo-*`` options).
        duplicate_ratio: share of messages the generator sends twice with the same id (to
            exercise deduplication; duplicates handled must stay 0 at QoS 2).
        mediator: your own configured mediator, as a factory called once per run
            (``lambda: Mediator(limiter=..., retry=...)``): its limiter, retries, idempotency
            store and dead letters are what is tested, and the scenario's ``bulkhead`` is not
            used (a stream's own ``bulkhead`` still is). None: the reference core's (the
            scenario's bulkhead, 3 attempts with backoff). Seeded defects apply only to the
            reference core's.
        sut: the system under test: ``"core"`` (the reference core, with your handlers if
            the streams name them), ``"asyncapi"``: a black box described by the AsyncAPI 3
            document ``sut_spec`` (a path), whose input and output operations make the run's
            one stream (``streams`` is then ignored; docs/sut.md), or ``"http"``: the same,
            its input sent as HTTP requests (docs/sut.md, "HTTP"). ``--sut`` and
            ``--sut-spec`` override both.
        description: one line for ``--help`` and reports.
    """

    name: str
    rate: float
    streams: Sequence[Stream]
    qos: int = 1
    bulkhead: Bulkhead = field(default_factory=Bulkhead)
    slo: SLOTargets = field(default_factory=SLOTargets)
    duplicate_ratio: float = 0.0
    description: str = ""
    mediator: MediatorFactory | None = None
    sut: Literal["core", "asyncapi", "http"] = "core"
    sut_spec: str | None = None

    def with_overrides(self, *, rate: float | None = None, qos: int | None = None,
                       sut: str | None = None, sut_spec: str | None = None) -> Scenario:
        """A copy with command-line overrides applied."""
        return replace(
            self,
            rate=self.rate if rate is None else rate,
            qos=self.qos if qos is None else qos,
            sut=self.sut if sut is None else sut,  # type: ignore[arg-type]
            sut_spec=self.sut_spec if sut_spec is None else sut_spec,
        )
