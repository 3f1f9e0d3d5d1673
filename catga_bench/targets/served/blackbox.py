"""``catga-bench serve --asyncapi FILE``: the reference core as a *black box* over NATS.

In this mode the core speaks no bench protocol at all (no control requests, no completion
batches): it does what its AsyncAPI document says, and the harness drives it like any other
service (``--sut asyncapi``, :mod:`catga_bench.targets.asyncapi`):

* **Input.** It consumes plain JSON objects on the channel of the document's input operation:
  core NATS at QoS 0, a JetStream durable consumer at QoS >= 1 (the core's own
  :class:`~core.transport.endpoint.MediatorEndpoint` over its own transport, which creates the
  stream ``CATGA_<FAMILY>`` for ``catga.<family>.<rest>`` and the durable
  ``catga-core-<subject>``). Each input must carry its correlation id in the header the input
  message's ``correlationId.location`` names (``$message.header#/Catga-Correlation-Id``); one
  without it, or whose body is not a JSON object, is dead-lettered with the reason.
* **Identity.** The correlation id is the message's identity: the message id the mediator
  deduplicates on at QoS 2 is derived from it (:func:`message_id_of`). The harness stamps the
  same id on every copy of a message it offers twice (``Scenario.duplicate_ratio``) and sets no
  ``Nats-Msg-Id``, so JetStream's publisher dedup does not hide the copies: deduplication is
  the core's job here, as it is the job under test.
* **Output.** When the message's handlers have run (each reported its success; with the seeded
  ``ack_before_handling`` that is after the ack, in the background), the core publishes ONE
  output on the channel of the document's output operation (core NATS), carrying the correlation
  id in the output message's header (``Catga-Correlation-Id``, as the Catga design carries it).
  A message whose handler fails for good (dropped at QoS 0, dead-lettered at QoS >= 1) emits
  nothing: the harness sees it lost. At QoS >= 1 the outputs of a message are flushed to the
  server before its delivery is acknowledged (a kill in between redelivers it: a duplicate
  output, at-least-once), so nothing the core acked can vanish — unless a defect acks first.
* **Handlers.** A scenario file's one stream (``--scenario FILE``): the same mediator, limiter,
  retry policy and handler profiles as every other run; the seeded defects
  (``CATGA_BENCH_DEFECTS``) apply inside, through the core's own factories.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from catga_bench.errors import ConfigError
from catga_bench.observability.resources import ResourceProbe
from catga_bench.targets.core_under_test import CoreUnderTest
from catga_bench.workload.asyncapi import SutSpec
from catga_bench.workload.plan import RunPlan
from catga_bench.workload.scenario import Scenario
from core import FanoutOutcome, Message, QoS, Result
from core.defects import new_endpoint
from core.transport import Delivery, MediatorEndpoint, Transport, TypeRegistry
from core.transport.envelope import MalformedMessage

log = logging.getLogger("catga.serve")

#: the body of every output: the correlation id travels in the header
OUTPUT_BODY = b'{"status":"handled"}'
#: the consumer group (durable ``catga-core-<subject>`` at QoS >= 1; queue group at QoS 0)
GROUP = "catga-core"


def message_id_of(correlation_id: str) -> int:
    """The message id of an input: 63 bits of BLAKE2b of its correlation id (stable across
    copies, redeliveries and core restarts; a collision needs ~3e9 ids in one dedup window)."""
    digest = hashlib.blake2b(correlation_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


@dataclass(frozen=True)
class BlackBoxContract:
    """What the document tells the core: where inputs arrive, where outputs go, and the header
    each carries its correlation id in."""

    input_subject: str
    input_header: str
    output_subject: str
    output_header: str
    #: the document's ``x-catga-bench.qos`` (None: the run's own)
    qos: int | None

    @classmethod
    def of(cls, spec: SutSpec) -> BlackBoxContract:
        """Raises ConfigError: not exactly one output operation, or a correlation id that
        does not travel in a header (the core reads and writes it as a header)."""
        op = spec.input_operation()
        outputs = spec.output_operations()
        if len(outputs) != 1:
            raise ConfigError(f"{spec.path}: the core emits one output per message; the "
                              f"document names {len(outputs)} output operations")
        out = outputs[0]
        return cls(op.channel.address, _header(spec, op.messages, op.id),
                   out.channel.address, _header(spec, out.messages, out.id), spec.bench.qos)


def _header(spec: SutSpec, messages: list[Any], op_id: str) -> str:
    corr = messages[0].correlation if messages else None
    if corr is None or corr.where != "header":
        where = "none" if corr is None else f"$message.payload#{corr.path}"
        raise ConfigError(f"{spec.path}: operation {op_id}: the core carries the correlation "
                          f"id in a header ($message.header#/NAME), the document says {where}")
    return corr.path


class OutputWriter:
    """Publishes the outputs (one per handled message) from one task, in the order emitted.

    :meth:`emit` is synchronous (the handlers' reporter calls it); :meth:`commit` returns once
    everything emitted before it is published and flushed to the server (raises if that
    failed: the caller then leaves its delivery unacknowledged, to be redelivered).
    """

    def __init__(self, transport: Transport, subject: str, header: str) -> None:
        self.transport = transport
        self.subject = subject
        self.header = header
        self.published = 0
        self.errors = 0
        self._pending: list[str] = []
        self._commit: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outputs")

    def emit(self, correlation_id: str) -> None:
        self._pending.append(correlation_id)
        self._wake.set()

    async def commit(self) -> None:
        if self._commit is None:
            self._commit = asyncio.get_running_loop().create_future()
        self._wake.set()
        await asyncio.shield(self._commit)

    async def _run(self) -> None:
        publish, subject, header = self.transport.publish, self.subject, self.header
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            fut, self._commit = self._commit, None
            sent = 0
            try:
                for cid in batch:
                    await publish(subject, {header: cid}, OUTPUT_BODY)
                    sent += 1
                if fut is not None:
                    await self.transport.flush()
            except Exception as exc:
                self._pending[:0] = batch[sent:]  # keep them: the broker may come back
                self.errors += 1
                log.warning("could not publish outputs (%d kept): %s", len(batch) - sent, exc)
                if fut is not None and not fut.done():
                    fut.set_exception(exc)
                    fut.exception()  # retrieved: waiters see it, the loop does not log it
                self._wake.set()
                await asyncio.sleep(0.1)
                continue
            finally:
                self.published += sent
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def close(self) -> None:
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.commit(), 2.0)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class _Outputs:
    """The black-box core's :class:`~catga_bench.targets.core_under_test.Reporter`: once every
    handler of a delivery reported success, that delivery's output is emitted."""

    def __init__(self, writer: OutputWriter) -> None:
        self.writer = writer
        #: delivery seq -> [correlation id, handlers still to report]
        self.pending: dict[int, list[Any]] = {}

    def handled(self, stream: int, handler: int, seq: int) -> None:
        entry = self.pending.get(seq)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self.pending[seq]
            self.writer.emit(entry[0])

    def failed(self, stream: int, handler: int, seq: int) -> None:
        """A known failure of one attempt: the retry (QoS >= 1) may still succeed."""

    def gauge(self, name: str, value: float) -> None:
        """Gauges go to ``/metrics`` (the core's collector), not to the harness."""


class BlackBoxCore(CoreUnderTest):
    """The scenario's one stream served as the document's contract (the module docstring).

    Args:
        plan: the run plan (one event stream; its handlers are the core's).
        contract: the document's subjects and headers.
        writer: publishes the outputs.
        defects: seeded core defects.

    Raises:
        ConfigError: the plan has not exactly one stream, or it is a request stream.
    """

    def __init__(self, plan: RunPlan, contract: BlackBoxContract, writer: OutputWriter, *,
                 defects: frozenset[str] = frozenset()) -> None:
        if len(plan.streams) != 1 or not plan.streams[0].is_event:
            raise ConfigError(f"scenario {plan.scenario.name}: a black-box core serves exactly "
                              "one event stream")
        self.contract = contract
        self.writer = writer
        self.outputs = _Outputs(writer)
        super().__init__(plan, self.outputs, defects=defects, local_delivery=False,
                         probe=ResourceProbe())
        self.stream = self.streams[0]
        self.handlers = len(self.stream.plan.handlers)
        self.registry = TypeRegistry([self.stream.msg_type])
        self._seqs = itertools.count(1)

    def decode(self, headers: Mapping[str, str], body: bytes) -> Message:
        """An input delivery as the stream's event (a :data:`~core.transport.endpoint.Decoder`).

        Raises:
            MalformedMessage: no correlation header, or a body that is not a JSON object.
        """
        cid = headers.get(self.contract.input_header)
        if not cid:
            raise MalformedMessage(f"missing header {self.contract.input_header} "
                                   "(the correlation id)")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedMessage(f"body is not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise MalformedMessage(f"body must be a JSON object, got {type(payload).__name__}")
        seq = next(self._seqs)
        self.outputs.pending[seq] = [cid, self.handlers]
        msg: Message = self.stream.make(seq=seq, message_id=message_id_of(cid))
        return msg

    async def on_outcome(self, msg: Message, result: Result[Any], d: Delivery) -> None:
        """After the mediator returned, before the ack: forget a delivery no handler will
        report any more (a duplicate, a failure, a rejection), then (QoS >= 1) make its
        output durable on the server."""
        value = result.value
        if not (isinstance(value, FanoutOutcome) and value.accepted_async):
            self.outputs.pending.pop(msg.seq, None)  # type: ignore[attr-defined]
        if msg.qos:
            await self.writer.commit()


class BlackBoxServer:
    """Serves ``scenario``'s one stream on the document's input channel (see the module
    docstring) until :meth:`close`.

    Args:
        transport: a connected NATS transport.
        spec: the loaded AsyncAPI document.
        scenario: gives the handlers (its one stream) and the default QoS.
        qos: the QoS of the input (None: the document's, else the scenario's).
        defects: seeded core defects.
        max_in_flight: deliveries handled at once.

    Raises:
        ConfigError: the document or the scenario does not fit (one line).
    """

    def __init__(self, transport: Transport, spec: SutSpec, scenario: Scenario, *,
                 qos: int | None = None, defects: frozenset[str] = frozenset(),
                 max_in_flight: int = 1024) -> None:
        self.transport = transport
        self.collector: Any = None  # the core's /metrics collector (set by main)
        self.contract = BlackBoxContract.of(spec)
        if qos is None:
            qos = self.contract.qos if self.contract.qos is not None else int(scenario.qos)
        self.qos = QoS(qos)
        self.name = scenario.name
        plan = RunPlan.of(scenario.with_overrides(qos=int(qos), sut="core"))
        self.writer = OutputWriter(transport, self.contract.output_subject,
                                   self.contract.output_header)
        self.core = BlackBoxCore(plan, self.contract, self.writer, defects=defects)
        self.endpoint: MediatorEndpoint = new_endpoint(
            self.core.mediator, transport, self.core.registry, group=GROUP,
            max_in_flight=max_in_flight, on_outcome=self.core.on_outcome,
            decoder=self.core.decode)

    async def start(self) -> None:
        """Start the output writer and consume the input channel."""
        self.writer.start()
        self.core.start()
        await self.endpoint.serve_events(self.contract.input_subject, self.qos)
        log.info("black box: %s at QoS %d: %s -> %s (%s), handlers: %s", self.name,
                 int(self.qos), self.contract.input_subject, self.contract.output_subject,
                 self.contract.output_header,
                 ", ".join(h.name for h in self.core.stream.plan.handlers))

    def summary(self) -> str:
        """One line for the periodic log."""
        ep = self.endpoint
        rejected = ep.rejected_dropped + ep.rejected_reported
        return (f"black box {self.name}: outputs {self.writer.published}, malformed "
                f"{sum(ep.malformed.values())}, rejected {rejected}")

    async def close(self) -> None:
        await self.endpoint.close()
        await self.core.drain(2.0)
        await self.core.stop()
        await self.writer.close()
        log.info("stopped: %s", self.summary())


__all__ = ["OUTPUT_BODY", "BlackBoxContract", "BlackBoxCore", "BlackBoxServer", "OutputWriter",
           "message_id_of"]
