"""A black-box system under test described by an AsyncAPI 3 document, over NATS.

Any service in any language: the harness publishes each input message on the channel of the
document's input operation (the service's ``receive``) and reads the service's outputs on the
channels of its output operations (the service's ``send``), correlating them by the id it
stamped on the input (docs/sut.md). It never trusts the service to invent an id.

Per message: a fresh correlation id ``<run>.<stream>.<seq>`` goes where the input message's
``correlationId.location`` says (a header, or a JSON pointer in the payload); the payload comes
from the ``x-catga-bench.payload`` template (``{seq}``, ``{uuid}``, ``{now_ms}``; a list means
one of its values at random). At QoS 0 it is published on the core subject, at QoS >= 1
through JetStream (accepted once the stream stored it). Each output is read back at its own
message's location:

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
from functools import partial
from typing import Any

import orjson
from jsonschema.validators import validator_for

from catga_bench.targets.base import OutcomeSink, SystemFigures, Target, TargetUnavailable
from catga_bench.targets.base import wait_for_outcomes as _wait
from catga_bench.workload.asyncapi import Correlation, SpecMessage, SutSpec, pointer_tokens
from catga_bench.workload.plan import RunPlan
from core import ErrorCode, Result

log = logging.getLogger("catga.bench")

#: after the drain deadline, outputs are still read this long (and counted late)
LATE_GRACE_S = 0.5
#: schema verdicts kept per output operation, by output body (see _Output.problem)
VERDICTS_KEPT = 4096
_UNSEEN = object()


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


class AsyncApiTarget(Target):
    """The service ``spec`` describes, driven over NATS (see the module docstring).

    Args:
        spec: the loaded AsyncAPI document.
        url: the NATS server (``--nats-url``); default: the document's ``nats`` server.
        publish_timeout_s: how long a JetStream publish may wait for its ack.
        late_grace_s: how long outputs are still read after the drain deadline (and counted
            late, their messages staying lost).

    Raises from :meth:`open`: TargetUnavailable (the server cannot be reached, or the
    document has no NATS server and no URL was given).
    """

    name = "asyncapi"

    def __init__(self, spec: SutSpec, url: str | None = None, *,
                 publish_timeout_s: float = 5.0, late_grace_s: float = LATE_GRACE_S) -> None:
        self.spec = spec
        server = spec.server("nats")
        self.url = url or (server.url() if server is not None else None)
        self.publish_timeout_s = publish_timeout_s
        self.late_grace_s = late_grace_s
        self.run_id = uuid.uuid4().hex[:10]
        self.publish_errors = 0
        self.outputs_received = 0
        op = spec.input_operation()
        self.input_subject = op.channel.address
        self.input_correlation = op.messages[0].correlation if op.messages else None
        self.template = dict(spec.bench.payload)
        self.qos = spec.bench.qos
        self._outputs = [_Output(i, o.channel.address, o.messages[0])
                         for i, o in enumerate(spec.output_operations())]
        self._nc: Any = None
        self._js: Any = None
        self._sink: OutcomeSink | None = None
        self._plan: RunPlan | None = None
        self._subs: list[Any] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._late = False
        # QoS 0 inputs waiting for the writer task: (stream, seq, copies, body, headers)
        self._queue0: list[tuple[int, int, int, bytes, dict[str, str] | None]] = []
        self._wake0 = asyncio.Event()
        self._writer0: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- opening
    async def open(self, plan: RunPlan, sink: OutcomeSink) -> None:
        import nats
        import nats.errors

        self._plan, self._sink = plan, sink
        if self.qos is None:
            self.qos = plan.qos
        if self.url is None:
            raise TargetUnavailable(f"{self.spec.path}: no nats server in the document; give "
                                    "one with --nats-url")
        nc = nats.NATS()
        try:  # three attempts, then a verdict (nats-py alone would retry a refused connect)
            await asyncio.wait_for(nc.connect(
                servers=[self.url], name="catga-bench", allow_reconnect=True,
                connect_timeout=2, reconnect_time_wait=0.5, max_reconnect_attempts=2,
                error_cb=self._on_error), timeout=8.0)
        except (OSError, nats.errors.Error, TimeoutError) as exc:
            with contextlib.suppress(Exception):
                await nc.close()
            raise TargetUnavailable(f"the system under test's NATS server {self.url} cannot "
                                    f"be reached: {type(exc).__name__}: {exc}") from None
        nc.options["max_reconnect_attempts"] = -1  # from now on: ride out a broker restart
        self._nc = nc
        self._js = self._nc.jetstream()
        for out in self._outputs:
            self._subs.append(await self._nc.subscribe(out.channel,
                                                       cb=partial(self._on_output, out)))
        await self._nc.flush(timeout=5)  # the server has every subscription: none joins late
        if not self.qos:
            self._writer0 = asyncio.get_running_loop().create_task(self._write_qos0(),
                                                                   name="inputs-qos0")

    async def _on_error(self, exc: Exception) -> None:
        log.warning("the system under test's NATS link: %r", exc)

    # ----------------------------------------------------------------- sending
    def correlation_id(self, stream: int, seq: int) -> str:
        return f"{self.run_id}.{stream}.{seq}"

    def offer(self, stream: int, seq: int, copies: int = 1) -> None:
        cid = self.correlation_id(stream, seq)
        payload = render(self.template, seq)
        if not isinstance(payload, dict):
            payload = {}
        headers: dict[str, str] = {}
        corr = self.input_correlation
        if corr is not None and corr.where == "payload":
            pointer_set(payload, corr.path, cid)
        elif corr is not None:
            headers[corr.path] = cid
        body = orjson.dumps(payload)
        if not self.qos:  # core NATS: queued for one writer task, no task per message
            self._queue0.append((stream, seq, copies, body, headers or None))
            self._wake0.set()
            return
        loop = asyncio.get_running_loop()
        for copy in range(copies):
            task = loop.create_task(self._publish(body, headers))
            self._tasks.add(task)
            task.add_done_callback(partial(self._published, stream, seq, copy == 0))

    async def _publish(self, body: bytes, headers: dict[str, str]) -> None:
        if self.qos:
            await self._js.publish(self.input_subject, body, timeout=self.publish_timeout_s,
                                   headers=headers or None)
        else:
            await self._nc.publish(self.input_subject, body, headers=headers or None)

    async def _write_qos0(self) -> None:
        """Publish the queued QoS 0 inputs in the order offered (core NATS: each publish only
        appends to the client's buffer; nats-py's flusher writes it out)."""
        nc, subject = self._nc, self.input_subject
        while True:
            await self._wake0.wait()
            self._wake0.clear()
            batch, self._queue0 = self._queue0, []
            for stream, seq, copies, body, headers in batch:
                for copy in range(copies):
                    try:
                        await nc.publish(subject, body, headers=headers)
                    except Exception as exc:
                        self._settle(stream, seq, copy == 0, exc)
                    else:
                        self._settle(stream, seq, copy == 0, None)

    def _published(self, stream: int, seq: int, record: bool, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if task.cancelled() and exc is None:
            exc = asyncio.CancelledError()
        self._settle(stream, seq, record, exc)

    def _settle(self, stream: int, seq: int, record: bool, exc: BaseException | None) -> None:
        """One copy of an input was published (``exc`` None) or not."""
        sink = self._sink
        if sink is None:
            return
        if exc is not None:
            self.publish_errors += 1
            if record and sink.completed(stream, seq, Result.failure(
                    ErrorCode.HANDLER_FAILED, f"publish failed: {exc!r}")):
                for column in range(len(self._outputs)):
                    sink.failed(stream, column, seq)  # never stored: a known failure
            return
        if record:
            sink.accepted(stream, seq)

    # ----------------------------------------------------------------- outputs
    async def _on_output(self, out: _Output, msg: Any) -> None:
        sink = self._sink
        if sink is None:
            return
        self.outputs_received += 1
        data: Any = None
        try:
            data = orjson.loads(msg.data) if msg.data else None
        except orjson.JSONDecodeError:
            data = None
        cid = self._correlation_of(out, msg, data)
        where = self._resolve(cid)
        if where is None:
            reason = "no correlation id" if cid is None else "matches no message of this run"
            sink.output_class("unexpected", out.channel, cid, reason)
            return
        if out.validator is not None:
            problem = out.problem(msg.data, data)
            if problem is not None:
                sink.output_class("nonconformant", out.channel, cid, problem)
        stream, seq = where
        if self._late:
            sink.output_class("late", out.channel, cid, "after the drain deadline", where)
            return
        sink.handled(stream, out.column, seq)
        sink.completed(stream, seq, Result.success(None))

    def _correlation_of(self, out: _Output, msg: Any, data: Any) -> str | None:
        corr = out.correlation
        if corr is None:
            return None
        if corr.where == "header":
            value = (msg.headers or {}).get(corr.path)
        else:
            value = pointer_get(data, corr.path)
        return value if isinstance(value, str) else None

    def _resolve(self, cid: str | None) -> tuple[int, int] | None:
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

    # ----------------------------------------------------------------- closing
    async def close(self, drain_timeout_s: float) -> SystemFigures:
        """Wait for outputs still due (up to ``drain_timeout_s``, or 3 s with none arriving),
        read stragglers for ``late_grace_s`` more (counted late), then disconnect."""
        sink = self._sink
        assert sink is not None
        await _wait(sink, time.perf_counter() + drain_timeout_s, idle_limit_s=3.0)
        self._late = True
        await asyncio.sleep(self.late_grace_s)
        if self._writer0 is not None:
            self._writer0.cancel()
            await asyncio.gather(self._writer0, return_exceptions=True)
        for sub in self._subs:
            await sub.unsubscribe()
        if self._nc is not None:
            await self._nc.close()
        return SystemFigures(transport={"name": "nats", "publish_errors": self.publish_errors,
                                        "outputs_received": self.outputs_received})


async def purge_input_stream(spec: SutSpec, url: str) -> int | None:
    """Empty the service's JetStream stream (``x-catga-bench.jetstream.stream``) before a run,
    so nothing an earlier run left behind comes out as this run's outputs. Returns how many
    messages were removed, or None when the stream does not exist yet (the service creates it).

    Raises:
        TargetUnavailable: the NATS server at ``url`` cannot be reached.
    """
    import nats
    import nats.errors
    import nats.js.errors

    js_ext = spec.bench.jetstream
    if js_ext is None or not js_ext.stream:
        return None
    try:
        nc = await asyncio.wait_for(nats.connect(url, allow_reconnect=False,
                                                 connect_timeout=2), timeout=5.0)
    except (OSError, nats.errors.Error, TimeoutError) as exc:
        raise TargetUnavailable(f"the system under test's NATS server {url} cannot be reached "
                                f"(to purge stream {js_ext.stream}): {type(exc).__name__}: "
                                f"{exc}") from None
    try:
        jsm = nc.jetstream()
        try:
            info = await jsm.stream_info(js_ext.stream)
        except nats.js.errors.NotFoundError:
            return None
        await jsm.purge_stream(js_ext.stream)
        return int(info.state.messages)
    finally:
        await nc.close()


__all__ = ["AsyncApiTarget", "pointer_get", "pointer_set", "purge_input_stream", "render"]
