"""The run payload: every figure one load generator measured, declared once, typed.

A generator's :meth:`~catga_bench.generator.generator.Generator.finish` returns a
:class:`RunPayload`; a Locust worker ships it to the master as ``to_dict()`` (JSON-friendly:
histograms are HdrHistogram's compressed base64, the timeline its shipped form) and the master
reads it back with :meth:`RunPayload.from_dict`; :meth:`RunPayload.merge` combines the
generators of a run; the judge (:func:`catga_bench.judge.gate.build_report`) reads the merged
payload. Adding a figure = one field here (and its line in :meth:`RunPayload.merge`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from catga_bench.generator.failing import FailingMessage, first_failing
from catga_bench.generator.timeline import Timeline
from catga_bench.observability.hdr import encode_hdr, merge_hdr
from catga_bench.targets.base import BreakerFigures, CoreFigures


class _Figures(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamTotals(_Figures):
    """One stream: counts in messages; ``lost`` and ``duplicates`` in (message, handler)
    pairs; histograms in us (encoded HDR): ``latency_hdr`` from the intended send time,
    ``service_hdr`` from the actual one (admitted messages only)."""

    kind: str
    slo: bool
    qos: int | None = None
    sent: int = 0
    completed: int = 0
    failed: int = 0
    rejected: int = 0
    acked: int = 0
    lost: int = 0
    duplicates: int = 0
    latency_hdr: str = ""
    service_hdr: str = ""


class HandlerTotals(_Figures):
    """One handler: messages it handled successfully, and known failures."""

    handled: int = 0
    failed: int = 0


class LedgerTotals(_Figures):
    """The ledger over every stream (docs/report.md: ``sent`` … ``undrained``)."""

    sent: int = 0
    acked: int = 0
    handled: int = 0
    lost: int = 0
    duplicates: int = 0
    known_failures: int = 0
    redeliveries: int = 0
    undrained: int = 0

    def add(self, other: LedgerTotals) -> None:
        for k in LedgerTotals.model_fields:
            setattr(self, k, getattr(self, k) + getattr(other, k))


class GeneratorTotals(_Figures):
    """How the generator kept its schedule: worst lag behind it (s), messages never sent."""

    max_behind_s: float = 0.0
    dropped_sends: int = 0


class OutputSample(_Figures):
    """One output of a black-box system that completed nothing (or failed its schema)."""

    kind: str  # late | unexpected | nonconformant
    channel: str
    correlation_id: str | None = None
    reason: str = ""
    at_s: float = 0.0  # seconds into the run


class OutputTotals(_Figures):
    """Outputs of a black-box system by class (docs/sut.md): ``late`` (after its message was
    counted lost), ``unexpected`` (no message of this run), ``nonconformant`` (fails its
    schema); ``samples``: the first few, with their reason."""

    late: int = 0
    unexpected: int = 0
    nonconformant: int = 0
    samples: list[OutputSample] = Field(default_factory=list)

    def add(self, other: OutputTotals, keep: int = 10) -> None:
        self.late += other.late
        self.unexpected += other.unexpected
        self.nonconformant += other.nonconformant
        self.samples = [*self.samples, *other.samples][:keep]


class RunPayload(CoreFigures):
    """What one load generator (or, merged, a whole run) measured, with what the system
    reported (:class:`~catga_bench.targets.base.CoreFigures`: rejected, timeouts, retries,
    dead letters, breakers, loop lag, link and core). Units as in docs/report.md; ``rss_mb`` is
    ``{start, peak}`` (MB), ``cpu_s`` CPU seconds by part."""

    streams: dict[str, StreamTotals] = Field(default_factory=dict)
    handlers: dict[str, HandlerTotals] = Field(default_factory=dict)
    ledger: LedgerTotals = Field(default_factory=LedgerTotals)
    errors: dict[str, int] = Field(default_factory=dict)
    timeline: dict[str, Any] = Field(default_factory=dict)
    generator: GeneratorTotals = Field(default_factory=GeneratorTotals)
    rss_mb: dict[str, float] = Field(default_factory=dict)
    cpu_s: dict[str, float] = Field(default_factory=dict)
    outputs: OutputTotals = Field(default_factory=OutputTotals)
    sent_per_generator: list[int] = Field(default_factory=list)
    failing_messages: list[FailingMessage] = Field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-friendly form (what a Locust worker sends its master)."""
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunPayload:
        """Read :meth:`to_dict`'s form back. Raises pydantic.ValidationError on a bad one."""
        return cls.model_validate(data)

    @classmethod
    def merge(cls, parts: list[RunPayload]) -> RunPayload:
        """Combine the payloads of a run's load generators: counts add, histograms merge,
        timelines merge by second, breaker maxima take the worst, the core's side (reported by
        one generator) is kept."""
        if len(parts) == 1:
            return parts[0].model_copy(update={"sent_per_generator": [parts[0].ledger.sent]})
        out = cls(sent_per_generator=[p.ledger.sent for p in parts])
        lat: dict[str, list[str]] = {}
        svc: dict[str, list[str]] = {}
        for p in parts:
            _add_streams(out, p, lat, svc)
            for name, h in p.handlers.items():
                cur = out.handlers.setdefault(name, HandlerTotals())
                cur.handled += h.handled
                cur.failed += h.failed
            out.ledger.add(p.ledger)
            out.outputs.add(p.outputs)
            out.failing_messages = first_failing([*out.failing_messages,
                                                  *p.failing_messages])
            for code, n in p.errors.items():
                out.errors[code] = out.errors.get(code, 0) + n
            out.rejected += p.rejected
            out.timeouts += p.timeouts
            out.retries += p.retries
            out.dead_lettered += p.dead_lettered
            if p.transport:
                _add_counts(out, p.transport)
            if p.core:
                out.core = p.core
            if p.breaker is not None:
                out.breaker = merge_breakers(out.breaker, p.breaker)
            out.generator.max_behind_s = max(out.generator.max_behind_s,
                                             p.generator.max_behind_s)
            out.generator.dropped_sends += p.generator.dropped_sends
            for k, v in p.cpu_s.items():
                out.cpu_s[k] = round(out.cpu_s.get(k, 0.0) + v, 3)
            for k in ("start", "peak"):
                out.rss_mb[k] = out.rss_mb.get(k, 0.0) + p.rss_mb.get(k, 0.0)
        for name, s in out.streams.items():
            s.latency_hdr = encode_hdr(merge_hdr(lat[name]))
            s.service_hdr = encode_hdr(merge_hdr(svc[name]))
        lags = [p.loop_lag_hdr for p in parts if p.loop_lag_hdr]
        out.loop_lag_hdr = encode_hdr(merge_hdr(lags)) if lags else None
        out.timeline = Timeline.merge(p.timeline for p in parts).to_dict()
        return out


def _add_streams(out: RunPayload, p: RunPayload, lat: dict[str, list[str]],
                 svc: dict[str, list[str]]) -> None:
    for name, s in p.streams.items():
        cur = out.streams.get(name)
        if cur is None:
            cur = out.streams[name] = StreamTotals(kind=s.kind, slo=s.slo, qos=s.qos)
        for k in ("sent", "completed", "failed", "rejected", "acked", "lost", "duplicates"):
            setattr(cur, k, getattr(cur, k) + getattr(s, k))
        lat.setdefault(name, []).append(s.latency_hdr)
        svc.setdefault(name, []).append(s.service_hdr)


def _add_counts(out: RunPayload, transport: dict[str, Any]) -> None:
    cur = out.transport if out.transport is not None else {"name": transport.get("name")}
    for k, v in transport.items():
        if isinstance(v, int):
            cur[k] = cur.get(k, 0) + v
    out.transport = cur


def merge_breakers(a: BreakerFigures | None, b: BreakerFigures) -> BreakerFigures:
    """Two generators' breaker figures as one: counts add, states join, the worst of
    ``failures_before_first_open`` and ``closed_after_recovery_s`` (None — never closed after
    its outage — is the worst there)."""
    if a is None:
        return b.model_copy(deep=True)
    firsts = [v for v in (a.failures_before_first_open, b.failures_before_first_open)
              if v is not None]
    closes = (None if a.closed_after_recovery_s is None or b.closed_after_recovery_s is None
              else max(a.closed_after_recovery_s, b.closed_after_recovery_s))
    return BreakerFigures(
        opened=a.opened + b.opened, half_opened=a.half_opened + b.half_opened,
        closed=a.closed + b.closed, rejected=a.rejected + b.rejected,
        breakers={**a.breakers, **b.breakers},
        failures_before_first_open=max(firsts) if firsts else None,
        closed_after_recovery_s=closes,
        calls_while_open=a.calls_while_open + b.calls_while_open,
        transitions=[*a.transitions, *b.transitions],
    )


__all__ = ["GeneratorTotals", "HandlerTotals", "LedgerTotals", "OutputSample", "OutputTotals",
           "RunPayload", "StreamTotals", "merge_breakers"]
