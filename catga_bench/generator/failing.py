"""The failing messages of a run: the first messages that were lost, duplicated or late, with
what a user needs to find them in their own system's logs.

Jepsen reports the operations behind an anomaly, not just a count; this does the same for the
ledger. Each :class:`FailingMessage` carries the message's correlation id (what the harness
stamped on it), its intended and actual send times and the first output observed (wall-clock
UTC, ISO 8601 with milliseconds), and the outputs seen for it. Kinds:

``lost``
    acknowledged, but some handler (a black box: some output operation) never handled it and
    reported no known failure;
``late``
    lost, and an output for it arrived after the drain deadline (it stays lost);
``duplicate``
    a handler (output operation) handled it more than once.

Bookkeeping is bounded: the send times of the last :data:`RECENT` completed messages (a
duplicate usually follows its original within seconds), at most :data:`MAX_FAILING` kept per
kind, and the late outputs of at most 1,000 messages.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from catga_bench.generator.ledger import StreamLedger

#: how many failing messages a report keeps (first by intended send time)
MAX_FAILING = 20
#: completed messages whose times are remembered (to describe a later duplicate)
RECENT = 200_000
_MAX_LATE = 1_000


class SeenOutput(BaseModel):
    """One output observed for a failing message."""

    model_config = ConfigDict(extra="forbid")

    #: the handler, or a black box's output operation id / channel
    output: str
    #: when the harness observed it (UTC, ISO 8601)
    at: str
    #: ``handled`` (the first), ``duplicate`` (a further one), ``late`` (after the deadline)
    kind: Literal["handled", "duplicate", "late"]


class FailingMessage(BaseModel):
    """A message that was lost, late or duplicated (docs/report.md, ``failing_messages``)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["lost", "late", "duplicate"]
    stream: str
    seq: int
    correlation_id: str
    #: when the schedule meant to send it / when it was handed to the system (UTC, ISO 8601)
    intended_at: str | None = None
    sent_at: str | None = None
    #: the first output observed for it (None: none was)
    observed_at: str | None = None
    #: the handlers (output operations) that never handled it (lost, late) or handled it
    #: more than once (duplicate)
    handlers: list[str] = Field(default_factory=list)
    outputs: list[SeenOutput] = Field(default_factory=list)


def first_failing(messages: Iterable[FailingMessage],
                  limit: int = MAX_FAILING) -> list[FailingMessage]:
    """The first ``limit`` of ``messages`` by intended send time (ties: stream, seq)."""
    return sorted(messages, key=lambda m: (m.intended_at or "", m.stream, m.seq))[:limit]


class FailingTracker:
    """Collects failing messages during a run (call on the generator's loop only).

    Args:
        correlation_id: ``(stream, seq) -> str``, the id the target stamped on a message.
        stream_names: the run's stream names, by index.
    """

    def __init__(self, correlation_id: Callable[[int, int], str],
                 stream_names: list[str]) -> None:
        self._cid = correlation_id
        self._names = stream_names
        self._wall = time.time() - time.perf_counter()
        self._times: dict[tuple[int, int], tuple[float, float, float]] = {}
        self._order: deque[tuple[int, int]] = deque()
        self._late: dict[tuple[int, int], list[SeenOutput]] = {}
        self.duplicates: list[FailingMessage] = []

    def iso(self, perf: float | None) -> str | None:
        """``time.perf_counter()`` value ``perf`` as UTC ISO 8601 with milliseconds."""
        if perf is None:
            return None
        dt = datetime.fromtimestamp(self._wall + perf, tz=UTC)
        return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def completed(self, stream: int, seq: int, intended: float, sent: float,
                  observed: float) -> None:
        """Remember a completed message's times (bounded: the last :data:`RECENT`)."""
        key = (stream, seq)
        self._times[key] = (intended, sent, observed)
        self._order.append(key)
        if len(self._order) > RECENT:
            self._times.pop(self._order.popleft(), None)

    def duplicate(self, stream: int, handler: str, seq: int,
                  pending: tuple[float, float] | None) -> None:
        """``handler`` handled ``seq`` a second time, now (``pending``: its send times if it
        has not completed yet)."""
        if len(self.duplicates) >= MAX_FAILING:
            return
        now = time.perf_counter()
        times = self._times.get((stream, seq))
        intended, sent, observed = times if times else (*(pending or (None, None)), None)
        outputs = [SeenOutput(output=handler, at=self.iso(now) or "", kind="duplicate")]
        if observed is not None:
            outputs.insert(0, SeenOutput(output=handler, at=self.iso(observed) or "",
                                         kind="handled"))
        self.duplicates.append(FailingMessage(
            kind="duplicate", stream=self._names[stream], seq=seq,
            correlation_id=self._cid(stream, seq), intended_at=self.iso(intended),
            sent_at=self.iso(sent), observed_at=self.iso(observed), handlers=[handler],
            outputs=outputs))

    def late(self, stream: int, seq: int, output: str) -> None:
        """An output for ``seq`` arrived after the drain deadline, now."""
        key = (stream, seq)
        if key not in self._late and len(self._late) >= _MAX_LATE:
            return
        self._late.setdefault(key, []).append(
            SeenOutput(output=output, at=self.iso(time.perf_counter()) or "", kind="late"))

    def lost(self, ledgers: list[StreamLedger],
             pending: dict[tuple[int, int], tuple[float, float]]) -> list[FailingMessage]:
        """The first lost messages of each stream (late ones marked ``late``)."""
        out: list[FailingMessage] = []
        for stream, ledger in enumerate(ledgers):
            for seq, handlers in ledger.lost_seqs(MAX_FAILING):
                key = (stream, seq)
                times = self._times.get(key)
                intended, sent = times[:2] if times else pending.get(key, (None, None))
                late = self._late.get(key, [])
                out.append(FailingMessage(
                    kind="late" if late else "lost", stream=self._names[stream], seq=seq,
                    correlation_id=self._cid(stream, seq), intended_at=self.iso(intended),
                    sent_at=self.iso(sent),
                    observed_at=self.iso(times[2]) if times else None,
                    handlers=handlers, outputs=list(late)))
        return out

    def collect(self, ledgers: list[StreamLedger],
                pending: dict[tuple[int, int], tuple[float, float]]) -> list[FailingMessage]:
        """The run's failing messages: the first :data:`MAX_FAILING` by intended time."""
        return first_failing([*self.lost(ledgers, pending), *self.duplicates])


__all__ = ["MAX_FAILING", "FailingMessage", "FailingTracker", "SeenOutput", "first_failing"]
