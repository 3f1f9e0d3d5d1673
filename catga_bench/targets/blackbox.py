"""What every black-box system under test shares, whatever carries its input (NATS for
:mod:`catga_bench.targets.asyncapi`, Redis Streams for :mod:`catga_bench.targets.redis_streams`,
HTTP for :mod:`catga_bench.targets.http`): the input message (payload template, stamped
correlation id) and the output side (correlation and the classes of docs/sut.md, for an output
read from any transport: :meth:`OutputReader.receive`; NATS subscriptions).

The input: a fresh correlation id ``<run>.<stream>.<seq>`` goes where the input message's
``correlationId.location`` says (a header, or a JSON pointer in the payload); the payload comes
from the ``x-catga-bench.payload`` template (``{seq}``, ``{uuid}``, ``{now_ms}``; a list means
one of its values at random).

The outputs (:class:`OutputReader`), each read back at its own message's location:

* the first output of an output operation for a message is that operation's handling of it
  (a ledger column per output operation); the first output of any completes the message
  (latency from the intended send time to the moment the harness saw it);
* a second output of the same operation is a **duplicate** (the ledger counts it);
* an output whose id matches no message of this run, or that carries none: **unexpected**;
* an output after the drain deadline, when its message was counted lost: **late**;
* an output that fails its message's JSON Schema: **nonconformant** (it still counts).

Output subscriptions are registered on the server (a flush round trip) before the first input
goes out, so a slow join never shows up as loss. Core NATS subscriptions also see what the
service publishes through JetStream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Mapping
from functools import partial
from typing import Any

import orjson
from jsonschema.validators import validator_for

from catga_bench.targets.base import OutcomeSink, Target, TargetUnavailable
from catga_bench.workload.asyncapi import (
    Correlation,
    SpecMessage,
    SpecOperation,
    SutSpec,
    pointer_tokens,
)
from catga_bench.workload.plan import RunPlan
from core import Result

log = logging.getLogger("catga.bench")

#: schema verdicts kept per output operation (by output body)
VERDICTS_KEPT = 4096
_UNSEEN = object()

#: after the drain deadline, outputs are still read this long (and counted late)
LATE_GRACE_S = 0.5


def render(template: Any, seq: int) -> Any:
    """The payload template with ``{seq}``, ``{uuid}``, ``{now_ms}`` filled in and each list
    replaced by one of its values at random (a JSON-friendly copy)."""
    if isinstance(template, dict):
        return {k: render(v, seq) for k, v in template.items()}
    if isinstance(template, list):
        return render(random.choice(template), seq) if template else None
    if isinstance(template, str) and "{" in template:
        # each placeholder is computed only when present (uuid4 alone costs ~2 us a message)
        if "{seq}" in template:
            template = template.replace("{seq}", str(seq))
        if "{uuid}" in template:
            template = template.replace("{uuid}", uuid.uuid4().hex)
        if "{now_ms}" in template:
            template = template.replace("{now_ms}", str(int(time.time() * 1000)))
    return template


def pointer_get(doc: Any, pointer: str) -> Any:
    """The value at RFC 6901 ``pointer`` in ``doc``, or None when there is none."""
    node = doc
    for token in pointer_tokens(pointer):
        if isinstance(node, dict):
            node = node.get(token)
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def pointer_set(doc: dict[str, Any], pointer: str, value: Any) -> None:
    """Set ``value`` at RFC 6901 ``pointer`` in ``doc``, creating objects on the way."""
    tokens = pointer_tokens(pointer)
    node = doc
    for token in tokens[:-1]:
        nxt = node.get(token)
        if not isinstance(nxt, dict):
            nxt = node[token] = {}
        node = nxt
    node[tokens[-1]] = value


def new_run_id(run: str | None = None) -> str:
    """A fresh id for one generator: the first part of every correlation id it stamps (10 hex
    digits). With ``run`` (the id a distributed run's master gave every worker), it is
    ``<run>-<6 hex digits>``: an output of a sibling generator of the same run is then told
    from a stranger's (the siblings all read every output)."""
    if run:
        return f"{run}-{uuid.uuid4().hex[:6]}"
    return uuid.uuid4().hex[:10]


def input_message(template: dict[str, Any], correlation: Correlation | None, cid: str,
                  seq: int) -> tuple[dict[str, Any], dict[str, str]]:
    """Input ``seq``: its payload (``template`` rendered, ``{}`` when it renders to no object)
    and its headers, with the correlation id ``cid`` stamped at ``correlation``'s location."""
    payload = render(template, seq)
    if not isinstance(payload, dict):
        payload = {}
    headers: dict[str, str] = {}
    if correlation is not None and correlation.where == "payload":
        pointer_set(payload, correlation.path, cid)
    elif correlation is not None:
        headers[correlation.path] = cid
    return payload, headers


async def connect_nats(url: str, what: str) -> Any:
    """A connected nats-py client for ``url`` (three attempts, then a verdict; afterwards it
    rides out a broker restart). ``what`` names the server in the error.

    Raises:
        TargetUnavailable: the server cannot be reached (one line naming ``url``).
    """
    import nats
    import nats.errors

    async def on_error(exc: Exception) -> None:
        log.warning("%s link: %r", what, exc)

    nc = nats.NATS()
    try:  # three attempts, then a verdict (nats-py alone would retry a refused connect)
        await asyncio.wait_for(nc.connect(
            servers=[url], name="catga-bench", allow_reconnect=True,
            connect_timeout=2, reconnect_time_wait=0.5, max_reconnect_attempts=2,
            error_cb=on_error), timeout=8.0)
    except (OSError, nats.errors.Error, TimeoutError) as exc:
        with contextlib.suppress(Exception):
            await nc.close()
        raise TargetUnavailable(f"{what} {url} cannot be reached: {type(exc).__name__}: "
                                f"{exc}") from None
    nc.options["max_reconnect_attempts"] = -1  # from now on: ride out a broker restart
    return nc


class _Output:
    """One output operation: its ledger column, its message's correlation and schema."""

    def __init__(self, column: int, channel: str, message: SpecMessage) -> None:
        self.column = column
        self.channel = channel
        self.correlation: Correlation | None = message.correlation
        schema = message.payload_schema
        self.validator = validator_for(schema)(schema) if schema else None
        self._verdicts: dict[bytes, str | None] = {}

    def problem(self, raw: bytes, data: Any) -> str | None:
        """Why ``data`` (decoded from ``raw``) fails this output's schema, or None. A verdict is
        a function of the bytes alone, so the verdicts of the first ``VERDICTS_KEPT`` distinct
        bodies are kept (a service whose outputs repeat is validated once per body; jsonschema
        costs ~40 us an output, the loop's largest cost at 10K outputs/s)."""
        verdict = self._verdicts.get(raw, _UNSEEN)
        if verdict is not _UNSEEN:
            return verdict  # type: ignore[return-value]
        assert self.validator is not None
        error = next(iter(self.validator.iter_errors(data)), None)
        verdict = (None if error is None else
                   f"{'/'.join(map(str, error.absolute_path))}: {error.message}")
        if len(self._verdicts) < VERDICTS_KEPT:
            self._verdicts[raw] = verdict
        return verdict  # type: ignore[return-value]


class OutputReader:
    """The outputs of a black box, counted for the run ``run_id`` (see the module docstring):
    on NATS through :meth:`subscribe`; any other transport calls :meth:`bind`, then
    :meth:`receive` for each output it reads. Output operation ``i`` is ledger column ``i``.

    Args:
        run_id: the first part of the correlation ids this run stamps.
        operations: the output operations, in ledger-column order.

    Attributes:
        outputs_received: outputs read (of any class).
        late: set by the owner once the drain deadline passed (from then on every output
            with a known id is counted late and completes nothing).
    """

    def __init__(self, run_id: str, operations: list[SpecOperation]) -> None:
        self.run_id = run_id
        #: ``<run>-``: the prefix of the ids of this run's other generators (None: alone)
        self.siblings = run_id.rsplit("-", 1)[0] + "-" if "-" in run_id else None
        #: outputs of messages that another generator of this run sent (it counts them)
        self.outputs_of_siblings = 0
        self.outputs = [_Output(i, o.channel.address, o.messages[0])
                        for i, o in enumerate(operations)]
        self.outputs_received = 0
        self.late = False
        self._sink: OutcomeSink | None = None
        self._plan: RunPlan | None = None
        self._subs: list[Any] = []

    @property
    def columns(self) -> int:
        """Ledger columns (output operations)."""
        return len(self.outputs)

    def bind(self, plan: RunPlan, sink: OutcomeSink) -> None:
        """Count outputs for ``plan`` into ``sink`` from now on (before that, :meth:`receive`
        ignores them). Whatever reads the transport calls this before its first read."""
        self._plan, self._sink = plan, sink

    async def subscribe(self, nc: Any, plan: RunPlan, sink: OutcomeSink) -> None:
        """Subscribe to every output channel on the NATS client ``nc`` and wait until the
        server has every subscription (a flush round trip): none joins late."""
        self.bind(plan, sink)
        for out in self.outputs:
            self._subs.append(await nc.subscribe(out.channel, cb=partial(self._on_output, out)))
        await nc.flush(timeout=5)

    async def unsubscribe(self) -> None:
        """Stop reading outputs (NATS)."""
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs = []

    async def _on_output(self, out: _Output, msg: Any) -> None:
        self.receive(out, msg.data, msg.headers)

    def receive(self, out: _Output, body: bytes, headers: Mapping[str, str] | None) -> None:
        """One output arrived, whatever carried it: count it in its class (module docstring).

        Args:
            out: the output operation it arrived on (one of :attr:`outputs`).
            body: the payload as read (JSON expected; ``b""`` or undecodable: no data, so a
                payload-located correlation id is missing and a schema fails).
            headers: the message's headers (NATS headers; for Redis Streams the entry's
                fields other than ``payload``), where a header-located correlation id is
                read; None when it has none.
        """
        sink = self._sink
        if sink is None:
            return
        self.outputs_received += 1
        data: Any = None
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        cid = self._correlation_of(out, headers, data)
        where = self.resolve(cid)
        if where is None:
            if cid is not None and self.siblings and cid.startswith(self.siblings):
                self.outputs_of_siblings += 1  # another generator of this run counts it
                return
            reason = "no correlation id" if cid is None else "matches no message of this run"
            sink.output_class("unexpected", out.channel, cid, reason)
            return
        if out.validator is not None:
            problem = out.problem(body, data)
            if problem is not None:
                sink.output_class("nonconformant", out.channel, cid, problem)
        stream, seq = where
        if self.late:
            sink.output_class("late", out.channel, cid, "after the drain deadline", where)
            return
        sink.handled(stream, out.column, seq)
        sink.completed(stream, seq, Result.success(None))

    @staticmethod
    def _correlation_of(out: _Output, headers: Mapping[str, str] | None,
                        data: Any) -> str | None:
        corr = out.correlation
        if corr is None:
            return None
        if corr.where == "header":
            value = (headers or {}).get(corr.path)
        else:
            value = pointer_get(data, corr.path)
        return value if isinstance(value, str) else None

    def resolve(self, cid: str | None) -> tuple[int, int] | None:
        """``(stream, seq)`` of a correlation id this run stamped, or None."""
        if cid is None:
            return None
        parts = cid.rsplit(".", 2)
        plan = self._plan
        if len(parts) != 3 or parts[0] != self.run_id or plan is None:
            return None
        try:
            stream, seq = int(parts[1]), int(parts[2])
        except ValueError:
            return None
        return (stream, seq) if 0 <= stream < len(plan.streams) else None


__all__ = ["LATE_GRACE_S", "OutputReader", "connect_nats", "input_message", "new_run_id",
           "pointer_get", "pointer_set", "render"]


class BlackBoxTarget(Target):
    """The input side every black-box target shares, whatever carries it (NATS, Redis Streams,
    HTTP): the run id, the stamped correlation id ``<run>.<stream>.<seq>``, the payload template
    and the :class:`OutputReader` of the spec's output operations.

    A subclass calls :meth:`_bind_spec` first in its ``__init__``.
    """

    spec: SutSpec
    run_id: str
    input_address: str
    input_correlation: Correlation | None
    template: dict[str, Any]
    qos: int | None
    outputs: OutputReader

    def _bind_spec(self, spec: SutSpec, run: str | None, *,
                   outputs_required: bool = True) -> None:
        """Take the input operation and output operations of ``spec``; ``run`` is the id a
        distributed run's master shares (None: one generator). ``outputs_required=False``
        allows a document with no output operation (HTTP: the response completes)."""
        self.spec = spec
        self.run_id = new_run_id(run)
        op = spec.input_operation()
        self.input_address = op.channel.address
        self.input_correlation = op.messages[0].correlation if op.messages else None
        self.template = dict(spec.bench.payload)
        self.qos = spec.bench.qos
        self.outputs = OutputReader(self.run_id,
                                    spec.output_operations(required=outputs_required))

    @property
    def outputs_received(self) -> int:
        """Outputs read so far (of any class)."""
        return self.outputs.outputs_received

    def correlation_id(self, stream: int, seq: int) -> str:
        return f"{self.run_id}.{stream}.{seq}"

    def input_for(self, stream: int, seq: int) -> tuple[dict[str, Any], dict[str, str]]:
        """The input message of ``seq``: its payload and headers, correlation id stamped
        (:func:`input_message`)."""
        return input_message(self.template, self.input_correlation,
                             self.correlation_id(stream, seq), seq)
