"""The reference core in another process (``catga-bench serve``), driven over NATS or Redis.

Per message: the target publishes it through the core's own
:class:`~core.transport.endpoint.RemoteMediator` (wire envelope, the stream's QoS) — the
message counts as *accepted* when ``publish`` returns (QoS >= 1: the broker stored it) — and
its latency runs until the core's outcome record for it arrives (end to end: broker, core,
handlers, completion back). Requests (``send``) use request/reply and their latency ends with
the reply. The core's records of what each handler did feed the ledger, so lost
(acknowledged, never handled, no known failure) and duplicated counts stay exact.

The control protocol and the completion batches are in :mod:`catga_bench.targets.wire`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any

import orjson

from catga_bench.targets.base import (
    BreakerFigures,
    OutcomeSink,
    SystemFigures,
    Target,
    TargetUnavailable,
    wait_for_outcomes,
)
from catga_bench.targets.wire import (
    CTL_SUBJECT,
    CompletionBatch,
    done_subject,
    message_type,
    pack_seq,
    stream_subject,
)
from catga_bench.workload.plan import RunPlan
from core import Error, ErrorCode, FanoutOutcome, QoS, Result
from core.transport import (
    Delivery,
    RemoteMediator,
    Subscription,
    Transport,
    TransportError,
    TypeRegistry,
    open_transport,
)

log = logging.getLogger("catga.bench")

#: ack wait of the generator's completion subscription (seconds)
DONE_ACK_WAIT_S = 2.0
#: keys of the core's statistics that are the system's figures (``stop`` reply)
CORE_FIGURES = ("rejected", "timeouts", "retries", "dead_lettered")


class CoreUnavailable(TargetUnavailable, TransportError):
    """No ``catga-bench serve`` answered, or it refused the run (the reason says which)."""


class BrokerTarget(Target):
    """Drives the core served over a broker (see the module docstring).

    Args:
        kind: ``"nats"`` or ``"redis"``.
        url: the broker's URL.
        transport: a transport to use instead of opening one (closed by :meth:`close`).
        request_timeout_s: timeout of request/reply messages.
        control_timeout_s: timeout of control requests to the core.

    Raises from :meth:`open`: BrokerUnavailable (the broker is down), CoreUnavailable (no core
    answered, or it refused).
    """

    def __init__(self, kind: str, url: str = "", *, transport: Transport | None = None,
                 request_timeout_s: float = 10.0, control_timeout_s: float = 5.0) -> None:
        self.name = kind
        self.url = url
        self.transport: Transport | None = transport
        self.request_timeout_s = request_timeout_s
        self.control_timeout_s = control_timeout_s
        self.generator = 0
        self.seq_base = 0
        self.publish_errors = 0
        self.bad_batches = 0
        self.core_reachable = True
        self.core_ack_wait_s = 0.0
        self._plan: RunPlan | None = None
        self._sink: OutcomeSink | None = None
        self._remote: RemoteMediator | None = None
        self._calls: list[tuple[Any, bool]] = []  # per stream: (make, is_event)
        self._batches_seen: set[str] = set()
        self._done_sub: Subscription | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._keepalive: asyncio.Task[None] | None = None

    @property
    def _transport(self) -> Transport:
        assert self.transport is not None, "open() first"
        return self.transport

    # ----------------------------------------------------------------- opening
    async def open(self, plan: RunPlan, sink: OutcomeSink) -> None:
        self._plan, self._sink = plan, sink
        if self.transport is None:
            # the generator's own ack wait only matters for its completion subscription: a
            # batch whose delivery a dropped link swallowed comes back after this long
            self.transport = open_transport(self.name, self.url, ack_wait_s=DONE_ACK_WAIT_S)
            await self.transport.connect()
        try:
            await self._start_run(plan)
        except BaseException:
            await self._transport.close()
            raise
        self._keepalive = asyncio.get_running_loop().create_task(self._keep_alive(),
                                                                 name="keepalive")

    async def _start_run(self, plan: RunPlan) -> None:
        types = [message_type(st) for st in plan.streams]
        subjects = {t: stream_subject(plan.scenario.name, st.name)
                    for t, st in zip(types, plan.streams, strict=True)}
        self._remote = RemoteMediator(self._transport, TypeRegistry(types),
                                      subject_for=subjects.__getitem__,
                                      request_timeout_s=self.request_timeout_s)
        # the core waits for its handlers; the broker is the queue
        self._calls = [(partial(t, qos=QoS(st.qos)), st.is_event)
                       for t, st in zip(types, plan.streams, strict=True)]
        answer = await self.control({"op": "start", "scenario": plan.scenario.name,
                                     "qos": plan.qos, "handlers": plan.handler_count})
        self.generator = int(answer["generator"])
        self.seq_base = pack_seq(self.generator, 0)
        ack_wait = (answer.get("core") or {}).get("ack_wait_s")
        if isinstance(ack_wait, int | float) and ack_wait > 0:
            self.core_ack_wait_s = float(ack_wait)
        done_qos = QoS.AT_LEAST_ONCE if plan.max_qos >= 1 else QoS.AT_MOST_ONCE
        self._done_sub = await self._transport.subscribe(
            done_subject(self.generator), self._on_batch, qos=done_qos,
            group=f"catga-bench-g{self.generator}", max_in_flight=1)

    async def control(self, request: dict[str, Any]) -> dict[str, Any]:
        """One control request to the core. Raises CoreUnavailable."""
        t = self._transport
        try:
            reply = await t.request(CTL_SUBJECT, {}, orjson.dumps(request),
                                    timeout_s=self.control_timeout_s)
        except TransportError as exc:
            raise CoreUnavailable(
                f"no catga-bench core answered on {t.name} ({exc}); start one "
                f"with: catga-bench serve --transport {t.name}") from None
        answer: dict[str, Any] = orjson.loads(reply.body)
        if not answer.get("ok"):
            raise CoreUnavailable(f"the core refused: {answer.get('error')}")
        return answer

    async def _keep_alive(self, every_s: float = 1.0) -> None:
        """Tell the core every second that this generator is running (a restarted core learns
        the run's parameters from it)."""
        assert self._plan is not None
        request = {"op": "join", "scenario": self._plan.scenario.name, "qos": self._plan.qos,
                   "handlers": self._plan.handler_count, "generator": self.generator}
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.control(request)
                self.core_reachable = True
            except CoreUnavailable as exc:
                if self.core_reachable:
                    log.warning("the core is not answering: %s", exc)
                self.core_reachable = False

    # ----------------------------------------------------------------- sending
    def offer(self, stream: int, seq: int, copies: int = 1) -> None:
        make, is_event = self._calls[stream]
        msg = make(seq=self.seq_base | seq)
        remote = self._remote
        assert remote is not None
        loop = asyncio.get_running_loop()
        for copy in range(copies):
            task = loop.create_task(remote.publish(msg) if is_event else remote.send(msg))
            self._tasks.add(task)
            done = self._published if is_event else self._replied
            task.add_done_callback(partial(done, stream, seq, copy == 0))

    def _published(self, stream: int, seq: int, record: bool, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        result = None if task.cancelled() or exc is not None else task.result()
        if result is None or result.error is not None:
            self.publish_errors += 1
            if record:
                reason = result.error.message if result is not None and result.error else exc
                self._complete(stream, seq, Result.failure(
                    ErrorCode.HANDLER_FAILED, f"publish failed: {reason!r}"), accepted=False)
            return
        if record and self._sink is not None:
            self._sink.accepted(stream, seq)

    def _replied(self, stream: int, seq: int, record: bool, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not record:
            return
        if task.cancelled():
            result: Result[Any] = Result.failure(ErrorCode.HANDLER_FAILED, "cancelled")
        elif task.exception() is not None:
            result = Result.failure(ErrorCode.HANDLER_FAILED, repr(task.exception()))
        else:
            result = task.result()
        self._complete(stream, seq, result, accepted=True)

    def _complete(self, stream: int, seq: int, result: Result[Any], *, accepted: bool) -> None:
        sink = self._sink
        if sink is None or not sink.completed(stream, seq, result):
            return
        rejected = result.error is not None and result.error.code is ErrorCode.REJECTED
        # never stored by the broker, or refused by the core's limiter and reported back to
        # this sender (backpressure): a reported failure, not a loss
        if not accepted or rejected:
            assert self._plan is not None
            for h in range(len(self._plan.streams[stream].handlers)):
                sink.failed(stream, h, seq)

    # ----------------------------------------------------------------- completions
    async def _on_batch(self, d: Delivery) -> None:
        try:
            batch = CompletionBatch.decode(d.body)
        except ValueError as exc:
            self.bad_batches += 1
            log.warning("dead-lettering a bad completion batch: %s", exc)
            await d.term(f"not a completion batch: {exc}")
            return
        if batch.batch_id in self._batches_seen:  # a redelivered batch: applied already
            await d.ack()
            return
        if batch.batch_id:
            self._batches_seen.add(batch.batch_id)
        self._apply(batch)
        await d.ack()

    def _apply(self, batch: CompletionBatch) -> None:
        sink, plan = self._sink, self._plan
        assert sink is not None and plan is not None
        n = len(plan.streams)
        for s, h, seq in batch.handled:
            if s < n:
                sink.handled(s, h, seq)
        for s, h, seq in batch.failed:
            if s < n:
                sink.failed(s, h, seq)
        for s, seq, code, failures in batch.results:
            if s >= n:
                continue
            result: Result[Any]
            if code:
                result = Result.failure(ErrorCode(code), "reported by the core")
            else:
                names = plan.streams[s].handler_names
                fails = tuple((names[h], Error(ErrorCode(c), "reported by the core"))
                              for h, c in failures)
                result = Result.success(FanoutOutcome(len(names), len(names) - len(fails),
                                                      fails))
            self._complete(s, seq, result, accepted=True)

    # ----------------------------------------------------------------- closing
    async def close(self, drain_timeout_s: float) -> SystemFigures:
        """Wait for outstanding outcomes, collect the core's statistics, close the link.

        A delivery the broker lost track of (a dropped link, a dead core) comes back only
        after the core's ack wait, so the wait lasts until nothing has arrived for that long
        plus 2 s (3 s at least; 3 s when only QoS 0 messages are missing), and at most
        ``max(drain_timeout_s, ack wait + 5 s)`` — only then is a missing message counted
        lost."""
        sink, plan, t = self._sink, self._plan, self._transport
        assert sink is not None and plan is not None
        redelivery_s = self.core_ack_wait_s if plan.max_qos >= 1 else 0.0  # QoS 0: never
        deadline = time.perf_counter() + max(drain_timeout_s, redelivery_s + 5.0)
        qos0 = {st.index for st in plan.streams if st.qos == 0}
        await wait_for_outcomes(sink, deadline, idle_limit_s=max(3.0, redelivery_s + 2.0),
                                idle_streams_s=(qos0, 3.0), poll_s=0.02)
        if t.stats.disconnects and plan.max_qos >= 1:
            # the link dropped during the run: a completion batch in flight then is redelivered
            # after the generator's ack wait; give it the time before judging
            await asyncio.sleep(DONE_ACK_WAIT_S + 1.0)
        if self._keepalive is not None:
            self._keepalive.cancel()
            await asyncio.gather(self._keepalive, return_exceptions=True)
        core: dict[str, Any] = {}
        try:
            answer = await self.control({"op": "stop", "generator": self.generator})
            core = answer.get("stats") or {}
        except CoreUnavailable as exc:
            log.error("could not collect the core's statistics: %s", exc)
        if self._done_sub is not None:
            await self._done_sub.stop()
        figures = SystemFigures(transport={"name": t.name, "publish_errors": self.publish_errors,
                                           "bad_batches": self.bad_batches,
                                           **t.stats.as_dict()})
        await t.close()
        if core:  # else another generator of this run reports the core's side
            for k in CORE_FIGURES:
                if k in core:
                    setattr(figures, k, core[k])
            breaker = core.get("breaker")
            figures.breaker = BreakerFigures.model_validate(breaker) if breaker else None
            figures.loop_lag_hdr = core.get("loop_lag_hdr")
            figures.core = {k: core.get(k) for k in ("rss_mb", "cpu_s", "endpoint", "transport")}
            figures.timeline = core.get("timeline") or {}
        return figures


__all__ = ["DONE_ACK_WAIT_S", "BrokerTarget", "CoreUnavailable"]
