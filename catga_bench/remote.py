"""The remote driver: the same open-model generator, ledger and histograms as the embedded
driver, with the core in another process (``catga-bench serve``) behind NATS or Redis.

Per message: the generator encodes it (wire envelope), publishes it at the scenario's QoS —
the ledger marks it *acknowledged* when ``publish`` returns (QoS >= 1: the broker stored it) —
and latency runs from its intended send time until the core's outcome record for it arrives
(end to end: broker, core, handlers, completion back). Requests (``send``) use request/reply and
their latency ends with the reply. The core's records of what each handler did feed the ledger,
so lost (acknowledged, never handled, no known failure) and duplicated counts stay exact.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any

import orjson

from catga_bench.embedded import EmbeddedDriver, _StreamState
from catga_bench.targets.wire import (
    CTL_SUBJECT,
    CompletionBatch,
    done_subject,
    pack_seq,
    stream_subject,
)
from catga_bench.workload.scenario import Scenario
from core import Error, ErrorCode, FanoutOutcome, QoS, Result
from core.transport import (
    Delivery,
    RequestTimeout,
    Subscription,
    Transport,
    TransportError,
    TypeRegistry,
    encode,
)
from core.transport.envelope import MalformedMessage, decode_result

log = logging.getLogger("catga.bench")

#: ack wait of the generator's completion subscription (seconds)
DONE_ACK_WAIT_S = 2.0


class CoreUnavailable(TransportError):
    """No ``catga-bench serve`` answered, or it refused the run (the reason says which)."""


class RemoteDriver(EmbeddedDriver):
    """Drives ``scenario`` against a core served over ``transport``.

    Args:
        scenario: the workload.
        transport: a connected transport (closed by :meth:`finish`).
        handler_count: ``--handlers`` override (sent to the core).
        request_timeout_s: timeout of request/reply messages.
        control_timeout_s: timeout of control requests to the core.

    Call :meth:`connect` then :meth:`start` on the loop; :meth:`finish` returns the payload.
    Raises CoreUnavailable from :meth:`connect` when no core answers.
    """

    serves_locally = False

    def __init__(self, scenario: Scenario, transport: Transport, *,
                 handler_count: int | None = None, request_timeout_s: float = 10.0,
                 control_timeout_s: float = 5.0, max_in_flight: int = 200_000) -> None:
        super().__init__(scenario, handler_count=handler_count, max_in_flight=max_in_flight)
        self.transport = transport
        self.handler_count = handler_count
        self.request_timeout_s = request_timeout_s
        self.control_timeout_s = control_timeout_s
        self.registry = TypeRegistry(st.msg_type for st in self.streams)
        self.subjects = [stream_subject(scenario.name, st.spec.name) for st in self.streams]
        for st in self.streams:  # the core waits for its handlers; the broker is the queue
            st.make = partial(st.msg_type, qos=st.qos)
        self.generator = 0
        self.pending: dict[tuple[int, int], tuple[float, float]] = {}
        self.publish_errors = 0
        self.bad_batches = 0
        self.core_stats: dict[str, Any] = {}
        self.core_reachable = True
        self.core_ack_wait_s = 0.0
        self._batches_seen: set[str] = set()
        self.last_progress = time.perf_counter()
        self._done_sub: Subscription | None = None
        self._publish_tasks: set[asyncio.Task[Any]] = set()

    async def control(self, request: dict[str, Any]) -> dict[str, Any]:
        """One control request to the core. Raises CoreUnavailable."""
        try:
            reply = await self.transport.request(CTL_SUBJECT, {}, orjson.dumps(request),
                                                 timeout_s=self.control_timeout_s)
        except TransportError as exc:
            raise CoreUnavailable(
                f"no catga-bench core answered on {self.transport.name} ({exc}); start one "
                f"with: catga-bench serve --transport {self.transport.name}") from None
        answer: dict[str, Any] = orjson.loads(reply.body)
        if not answer.get("ok"):
            raise CoreUnavailable(f"the core refused: {answer.get('error')}")
        return answer

    async def connect(self) -> None:
        """Ask the core to serve this scenario and subscribe to this generator's completions."""
        answer = await self.control({"op": "start", "scenario": self.scenario.name,
                                     "qos": int(self.qos), "handlers": self.handler_count})
        self.generator = int(answer["generator"])
        self.seq_base = pack_seq(self.generator, 0)
        ack_wait = (answer.get("core") or {}).get("ack_wait_s")
        if isinstance(ack_wait, int | float) and ack_wait > 0:
            self.core_ack_wait_s = float(ack_wait)
        done_qos = QoS.AT_LEAST_ONCE if int(self.max_qos) >= 1 else QoS.AT_MOST_ONCE
        self._done_sub = await self.transport.subscribe(
            done_subject(self.generator), self._on_batch, qos=done_qos,
            group=f"catga-bench-g{self.generator}", max_in_flight=1)

    def start(self) -> None:
        super().start()
        self._tasks.append(asyncio.get_running_loop().create_task(self._keepalive(),
                                                                  name="keepalive"))

    async def _keepalive(self, every_s: float = 1.0) -> None:
        """Tell the core every second that this generator is running (a restarted core learns
        the run's parameters from it)."""
        request = {"op": "join", "scenario": self.scenario.name, "qos": int(self.qos),
                   "handlers": self.handler_count, "generator": self.generator}
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
    def _dispatch(self, st: _StreamState, msg: Any, seq: int, intended: float,
                  record: bool) -> None:
        headers, body = encode(msg, self.registry)
        subject = self.subjects[st.index]
        if record:
            self.pending[(st.index, seq)] = (intended, time.perf_counter())
            self.in_flight += 1
        if st.is_event:
            coro = self.transport.publish(subject, headers, body, qos=st.qos)
            done = partial(self._published, st, seq, record)
        else:
            coro = self.transport.request(subject, headers, body,
                                          timeout_s=self.request_timeout_s)
            done = partial(self._replied, st, seq, record)
        task = asyncio.get_running_loop().create_task(coro)
        self._publish_tasks.add(task)
        task.add_done_callback(done)

    def _published(self, st: _StreamState, seq: int, record: bool, task: asyncio.Task[Any]) -> None:
        self._publish_tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if task.cancelled() or exc is not None:
            self.publish_errors += 1
            if record:
                self._complete(st, seq, Result.failure(ErrorCode.HANDLER_FAILED,
                                                       f"publish failed: {exc!r}"), acked=False)
            return
        if record:
            st.ledger.record_acked(seq)

    def _replied(self, st: _StreamState, seq: int, record: bool, task: asyncio.Task[Any]) -> None:
        self._publish_tasks.discard(task)
        if not record:
            return
        if task.cancelled():
            result: Result[Any] = Result.failure(ErrorCode.HANDLER_FAILED, "cancelled")
        elif task.exception() is not None:
            exc = task.exception()
            timed_out = isinstance(exc, RequestTimeout)
            code = ErrorCode.TIMEOUT if timed_out else ErrorCode.HANDLER_FAILED
            result = Result.failure(code, str(exc))
        else:
            try:
                result = decode_result(task.result().body)
            except MalformedMessage as exc:
                result = Result.failure(ErrorCode.INVALID, exc.reason)
        self._complete(st, seq, result, acked=True)

    def _complete(self, st: _StreamState, seq: int, result: Result[Any], *, acked: bool) -> None:
        timing = self.pending.pop((st.index, seq), None)
        if timing is None:
            return  # a redelivered copy's outcome: the first one counted
        self.in_flight -= 1
        self.last_progress = time.perf_counter()
        intended, start = timing
        self._done(st, seq, intended, start, result)
        rejected = result.error is not None and result.error.code is ErrorCode.REJECTED
        # never stored by the broker, or refused by the core's limiter and reported back to
        # this sender (backpressure): a reported failure, not a loss
        if not acked or rejected:
            for h in range(len(st.handlers)):
                st.ledger.record_failed(h, seq)

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
        streams = self.streams
        n = len(streams)
        for s, h, seq in batch.handled:
            if s < n:
                streams[s].ledger.record_handled(h, seq)
        for s, h, seq in batch.failed:
            if s < n:
                streams[s].ledger.record_failed(h, seq)
        for s, seq, code, failures in batch.results:
            if s >= n:
                continue
            st = streams[s]
            result: Result[Any]
            if code:
                result = Result.failure(ErrorCode(code), "reported by the core")
            else:
                names = st.ledger.handler_names
                fails = tuple((names[h], Error(ErrorCode(c), "reported by the core"))
                              for h, c in failures)
                result = Result.success(FanoutOutcome(len(names), len(names) - len(fails),
                                                      fails))
            self._complete(st, seq, result, acked=True)

    # ----------------------------------------------------------------- finishing
    async def finish(self, drain_timeout_s: float = 15.0) -> dict[str, Any]:
        """Stop generating, wait for outstanding outcomes, collect the core's stats, and return
        the payload. A delivery the broker lost track of (a dropped link, a dead core) comes
        back only after the core's ack wait, so the wait lasts until nothing has arrived for
        that long plus 2 s (3 s at least; 3 s when only QoS 0 messages are missing), and at
        most ``max(drain_timeout_s, ack wait + 5 s)`` — only then is a missing message counted
        lost."""
        self._stopping = True
        self.dropped_sends += int(self.behind_s * self.total_rate)
        redelivery_s = self.core_ack_wait_s if int(self.max_qos) >= 1 else 0.0  # QoS 0: never
        idle_limit = max(3.0, redelivery_s + 2.0)
        deadline = time.perf_counter() + max(drain_timeout_s, redelivery_s + 5.0)
        self.last_progress = time.perf_counter()
        qos0 = {st.index for st in self.streams if int(st.qos) == 0}
        while self.in_flight and time.perf_counter() < deadline:
            idle = time.perf_counter() - self.last_progress
            if idle > idle_limit:
                break
            if idle > 3.0 and all(s in qos0 for s, _ in self.pending):
                break  # only QoS 0 messages missing: nothing will redeliver them
            await asyncio.sleep(0.02)
        if self.transport.stats.disconnects and int(self.max_qos) >= 1:
            # the link dropped during the run: a completion batch in flight then is redelivered
            # after the generator's ack wait; give it the time before judging
            await asyncio.sleep(DONE_ACK_WAIT_S + 1.0)
        undrained = self.in_flight
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.lag.stop()
        try:
            answer = await self.control({"op": "stop", "generator": self.generator})
            self.core_stats = answer.get("stats") or {}
        except CoreUnavailable as exc:
            log.error("could not collect the core's statistics: %s", exc)
        if self._done_sub is not None:
            await self._done_sub.stop()
        payload = self._payload(undrained)
        payload["transport"] = {"name": self.transport.name,
                                "publish_errors": self.publish_errors,
                                "bad_batches": self.bad_batches,
                                **self.transport.stats.as_dict()}
        await self.transport.close()
        core = self.core_stats
        if core:
            for k in ("rejected", "timeouts", "retries", "dead_lettered", "breaker",
                      "loop_lag_hdr"):
                if k in core:
                    payload[k] = core[k]
            payload["core"] = {k: core.get(k) for k in ("rss_mb", "cpu_s", "endpoint",
                                                         "transport")}
            self._merge_core_timeline(payload, core.get("timeline") or {})
        else:  # another generator of this run reports the core's side
            payload["breaker"] = {}
            payload.pop("loop_lag_hdr", None)
        return payload

    @staticmethod
    def _merge_core_timeline(payload: dict[str, Any], core_tl: dict[str, Any]) -> None:
        """Gauges of the core (queue depth, open breakers, loop lag) replace the generator's
        own, which measure an idle local mediator; counts stay the generator's."""
        rows = payload.get("timeline")
        if not isinstance(rows, dict) or not isinstance(core_tl, dict):
            return
        for second, crow in core_tl.items():
            row = rows.get(second)
            if row is None:
                continue
            for k in ("queue_depth", "breaker_open", "loop_lag_ms"):
                if k in crow:
                    row[k] = crow[k]


async def open_remote_driver(scenario: Scenario, kind: str, url: str, *,
                             handler_count: int | None = None) -> RemoteDriver:
    """Connect a transport, reach the core, start generating (call on the loop).

    Raises:
        BrokerUnavailable: the broker cannot be reached.
        CoreUnavailable: no core answered or it refused.
    """
    from core.transport import open_transport

    # the generator's own ack wait only matters for its completion subscription: a batch
    # whose delivery a dropped link swallowed comes back after this long (batch ids dedup)
    transport = open_transport(kind, url, ack_wait_s=DONE_ACK_WAIT_S)
    await transport.connect()
    try:
        driver = RemoteDriver(scenario, transport, handler_count=handler_count)
        await driver.connect()
    except BaseException:
        await transport.close()
        raise
    driver.start()
    return driver


__all__ = ["CoreUnavailable", "RemoteDriver", "open_remote_driver"]
