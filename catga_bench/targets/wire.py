"""The bench protocol between load generators and ``catga-bench serve`` over a broker.

Subjects (NATS; Redis maps them to keys of the same names):

* ``catga.<scenario>.<Stream>`` — the scenario's messages (the wire envelope), one JetStream
  stream / Redis stream per scenario ("message family").
* ``catga.bench.ctl`` — control requests (JSON): ``{"op": "start", "scenario", "qos",
  "handlers"}`` -> ``{"ok", "generator", "core": {...}}``; ``{"op": "stop", "generator"}`` ->
  ``{"ok", "stats"}``; ``{"op": "ping"}``.
* ``catga.benchdone.g<generator>`` — completion batches from the core to one generator: what
  each handler did with each message, and each message's outcome. The core publishes a batch
  *before* it acknowledges the messages in it — at QoS 1 for runs at QoS >= 1 (JetStream / a
  Redis stream: stored before the ack, so a broker restart or a generator reconnecting loses
  no record), each batch with a unique id the generator deduplicates (``Nats-Msg-Id`` too).
  The ledger stays exact across processes, crashes and broker restarts.

A message's ``seq`` field carries the generator id in its high bits (:func:`pack_seq`), so the
core routes completions without per-message headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any

import orjson

from catga_bench.workload.plan import StreamPlan
from core import Event, Request

CTL_SUBJECT = "catga.bench.ctl"
DONE_PREFIX = "catga.benchdone"
GEN_SHIFT = 40
SEQ_MASK = (1 << GEN_SHIFT) - 1
MAX_GENERATOR = (1 << 22) - 1


def message_type(stream: StreamPlan) -> type[Event] | type[Request]:
    """The message class of ``stream``: named after it (its wire type name), an
    :class:`~core.Event` or :class:`~core.Request` with one field, ``seq`` (int)."""
    base = Event if stream.is_event else Request
    cls: type[Event] | type[Request] = make_dataclass(stream.name, [("seq", int, 0)],
                                                       bases=(base,), slots=True)
    return cls


def stream_subject(scenario: str, stream: str) -> str:
    """``catga.<scenario>.<stream>`` (dots in names become underscores)."""
    return f"catga.{scenario.replace('.', '_')}.{stream.replace('.', '_')}"


def done_subject(generator: int) -> str:
    return f"{DONE_PREFIX}.g{generator}"


def pack_seq(generator: int, seq: int) -> int:
    """The wire ``seq``: generator id in bits 40..61, the generator's own sequence below."""
    if not 0 <= generator <= MAX_GENERATOR:
        raise ValueError(f"generator id out of range: {generator}")
    return (generator << GEN_SHIFT) | seq


def unpack_seq(wire_seq: int) -> tuple[int, int]:
    """``(generator, seq)`` from a wire ``seq``."""
    return wire_seq >> GEN_SHIFT, wire_seq & SEQ_MASK


@dataclass(slots=True)
class CompletionBatch:
    """Records for one generator.

    Attributes:
        handled / failed: ``[stream, handler, seq]`` — the handler finished the message, or
            failed it in a known, reported way.
        results: ``[stream, seq, code, [[handler, code], ...]]`` — the message's outcome
            (``code`` "" = processed; failures per handler).
        batch_id: unique per batch (the generator applies a redelivered batch once).
    """

    handled: list[list[int]] = field(default_factory=list)
    failed: list[list[int]] = field(default_factory=list)
    results: list[list[Any]] = field(default_factory=list)
    batch_id: str = ""

    def __len__(self) -> int:
        return len(self.handled) + len(self.failed) + len(self.results)

    def encode(self) -> bytes:
        return orjson.dumps({"id": self.batch_id, "h": self.handled, "f": self.failed,
                             "r": self.results})

    @classmethod
    def decode(cls, body: bytes) -> CompletionBatch:
        """Raises ValueError on a body that is not a batch."""
        try:
            d = orjson.loads(body)
            return cls(list(d["h"]), list(d["f"]), list(d["r"]), str(d.get("id", "")))
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"not a completion batch: {exc!r}") from None
