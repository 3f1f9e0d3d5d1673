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

The input message and the output side are shared with the HTTP kind
(:mod:`catga_bench.targets.blackbox`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any

import orjson

from catga_bench.targets.base import OutcomeSink, SystemFigures, TargetUnavailable
from catga_bench.targets.base import wait_for_outcomes as _wait
from catga_bench.targets.blackbox import (
    LATE_GRACE_S,
    BlackBoxTarget,
    connect_nats,
    pointer_get,
    pointer_set,
    render,
)
from catga_bench.workload.asyncapi import SutSpec
from catga_bench.workload.plan import RunPlan
from core import ErrorCode, Result

log = logging.getLogger("catga.bench")


class AsyncApiTarget(BlackBoxTarget):
    """The service ``spec`` describes, driven over NATS (see the module docstring).

    Args:
        spec: the loaded AsyncAPI document.
        url: the NATS server (``--nats-url``); default: the document's ``nats`` server.
        publish_timeout_s: how long a JetStream publish may wait for its ack.
        late_grace_s: how long outputs are still read after the drain deadline (and counted
            late, their messages staying lost).
        run: the id a distributed run's master shares with every generator (their
            correlation ids start ``<run>-``); None for a run with one generator.

    Raises from :meth:`open`: TargetUnavailable (the server cannot be reached, or the
    document has no NATS server and no URL was given).
    """

    name = "asyncapi"

    def __init__(self, spec: SutSpec, url: str | None = None, *,
                 publish_timeout_s: float = 5.0, late_grace_s: float = LATE_GRACE_S,
                 run: str | None = None) -> None:
        self._bind_spec(spec, run)
        server = spec.server("nats")
        self.url = url or (server.url() if server is not None else None)
        self.publish_timeout_s = publish_timeout_s
        self.late_grace_s = late_grace_s
        self.publish_errors = 0
        self._nc: Any = None
        self._js: Any = None
        self._sink: OutcomeSink | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._queue0: list[tuple[int, int, int, bytes, dict[str, str] | None]] = []
        self._wake0 = asyncio.Event()
        self._writer0: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- opening
    async def open(self, plan: RunPlan, sink: OutcomeSink) -> None:
        self._sink = sink
        if self.qos is None:
            self.qos = plan.qos
        if self.url is None:
            raise TargetUnavailable(f"{self.spec.path}: no nats server in the document; give "
                                    "one with --nats-url")
        self._nc = await connect_nats(self.url, "the system under test's NATS server")
        self._js = self._nc.jetstream()
        await self.outputs.subscribe(self._nc, plan, sink)
        if not self.qos:
            self._writer0 = asyncio.get_running_loop().create_task(self._write_qos0(),
                                                                   name="inputs-qos0")

    # ----------------------------------------------------------------- sending
    def offer(self, stream: int, seq: int, copies: int = 1) -> None:
        payload, headers = self.input_for(stream, seq)
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
            await self._js.publish(self.input_address, body, timeout=self.publish_timeout_s,
                                   headers=headers or None)
        else:
            await self._nc.publish(self.input_address, body, headers=headers or None)

    async def _write_qos0(self) -> None:
        """Publish the queued QoS 0 inputs in the order offered (core NATS: each publish only
        appends to the client's buffer; nats-py's flusher writes it out)."""
        nc, subject = self._nc, self.input_address
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
                for column in range(self.outputs.columns):
                    sink.failed(stream, column, seq)  # never stored: a known failure
            return
        if record:
            sink.accepted(stream, seq)

    # ----------------------------------------------------------------- closing
    async def close(self, drain_timeout_s: float) -> SystemFigures:
        """Wait for outputs still due (up to ``drain_timeout_s``, or 3 s with none arriving),
        read stragglers for ``late_grace_s`` more (counted late), then disconnect."""
        sink = self._sink
        assert sink is not None
        await _wait(sink, time.perf_counter() + drain_timeout_s, idle_limit_s=3.0)
        self.outputs.late = True
        await asyncio.sleep(self.late_grace_s)
        if self._writer0 is not None:
            self._writer0.cancel()
            await asyncio.gather(self._writer0, return_exceptions=True)
        await self.outputs.unsubscribe()
        if self._nc is not None:
            await self._nc.close()
        return SystemFigures(transport={"name": "nats", "publish_errors": self.publish_errors,
                                        "outputs_received": self.outputs_received,
                                        "outputs_of_siblings": self.outputs.outputs_of_siblings})


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


__all__ = ["LATE_GRACE_S", "AsyncApiTarget", "pointer_get", "pointer_set", "purge_input_stream",
           "render"]
